"""Schedules of 定期確認: when each contractor and approved service is next confirmed, and the
triggers that bring it forward (対策基準 9.1(3), 9.2(6)).

- A schedule opens when a 業務委託 assessment is decided (not 不可) or a 利用申請 is approved; an
  external-service engagement is confirmed through its application, never twice.
- The interval is the organisation's default, its shorter one for high risk, and at most 12
  months where personal data is handled (個人情報保護委員会: contractors handling 保有個人情報
  are checked at least once a year); staff may set it per item (1–60 months).
- The regular due date is the last day of the period that starts on the last confirmation (or
  the decision), counted as 民法143条 does; it and every trigger's due date move to the next
  business day (weekends, national holidays, 12月29日–1月3日).
- Triggers: certificate / ISMAP expiry (found by the daily job, due on the expiry), a
  subcontractor or data-location change or an incident reported by the vendor, a terms change.
  The schedule is due on the earliest of its regular date and its open triggers.

Services flush, callers commit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload

from portal.approvals.models import ACTIVE_STATES, ManagerAssignment, UseApplication
from portal.assessments.models import Answer, Assessment
from portal.audit import service as audit
from portal.engagements.models import Engagement
from portal.evaluations.models import Outcome
from portal.permissions import ORGANISATION_WIDE_READERS, same_organisation
from portal.questionnaires.schema import CERTIFICATION_KINDS
from portal.reviews.calendar import next_business_day
from portal.reviews.models import (
    TRIGGER_KINDS,
    Confirmation,
    ConfirmationSection,
    ReviewSchedule,
    ReviewTrigger,
)
from portal.scoring import ismap
from portal.scoring.ismap import add_months_period_end
from portal.users.models import User
from portal.web import JST, today_jst

HIGH_RISK = ("high", "unacceptable")
MAX_INTERVAL_MONTHS = 60
PERSONAL_DATA_MAX_MONTHS = 12
# Days the vendor and staff have to confirm after a reported change or incident.
TRIGGER_RESPONSE_DAYS = {
    "incident": 7,
    "subcontractor_change": 30,
    "location_change": 30,
    "terms_change": 30,
}
EXPIRY_WARN_DAYS = (120, 30, 7)  # certificate and ISMAP expiry warnings, days ahead
EXPIRY_TRIGGER_DAYS = EXPIRY_WARN_DAYS[0]  # an expiry this close brings the confirmation forward
DUE_SOON_DAYS = 90  # "due within 90 days" on the dashboards
CERTIFICATION_KEYS = "certifications."  # the answers ``expiries_from_answers`` reads
IN_BATCH = 500  # schedules per IN (...) list


class ScheduleError(ValueError):
    """A refused change, with a message in Japanese. Nothing has been changed."""


# ---------------------------------------------------------------------------------------------
# Dates and intervals
# ---------------------------------------------------------------------------------------------


def regular_due(since: date, months: int) -> date:
    """The last day of the ``months`` period starting on ``since``, on a business day."""
    return next_business_day(add_months_period_end(since, months))


def default_interval(organisation, risk_rating: str | None, personal_data: bool) -> int:
    months = (
        organisation.high_risk_review_interval_months
        if risk_rating in HIGH_RISK
        else organisation.review_interval_months
    )
    return min(months, PERSONAL_DATA_MAX_MONTHS) if personal_data else months


def recompute(schedule: ReviewSchedule, regular: date | None = None) -> None:
    """Due on the earliest of the regular date (changed to ``regular`` when given) and the open
    triggers' dates; the register's "next review" of an application follows."""
    dues = [t.due_on for t in schedule.open_triggers]  # loaded before anything changes
    if regular is not None:
        schedule.regular_due_on = regular
    schedule.due_on = min([schedule.regular_due_on, *dues])
    if schedule.application is not None:
        schedule.application.next_review_on = schedule.due_on


def state_of(schedule: ReviewSchedule, today: date) -> str:
    """overdue | due_soon (within 90 days) | scheduled | ending | ended."""
    if schedule.status != "active":
        return schedule.status
    if schedule.due_on < today:
        return "overdue"
    if schedule.due_on <= today + timedelta(days=DUE_SOON_DAYS):
        return "due_soon"
    return "scheduled"


STATE_LABELS = {
    "overdue": "期限超過",
    "due_soon": "90日以内に期限",
    "scheduled": "予定どおり",
    "ending": "終了手続中",
    "ended": "終了",
}


# ---------------------------------------------------------------------------------------------
# Opening schedules
# ---------------------------------------------------------------------------------------------


def _personal(subject) -> bool:
    return bool(
        subject.personal_data or subject.specific_personal_data or subject.sensitive_personal_data
    )


def _decided_on(session: Session, assessment: Assessment) -> date:
    outcome = session.scalar(sa.select(Outcome).where(Outcome.assessment_id == assessment.id))
    moment = outcome and (outcome.confirmed_at or outcome.recommended_at)
    return moment.astimezone(JST).date() if moment else today_jst()


def _assessment_rating(session: Session, assessment: Assessment) -> tuple[str | None, str | None]:
    """(decision, rating) of a decided assessment."""
    outcome = session.scalar(
        sa.select(Outcome)
        .options(selectinload(Outcome.score))
        .where(Outcome.assessment_id == assessment.id)
    )
    if outcome is None:
        return None, None
    return outcome.decision, outcome.score.rating if outcome.score else None


def open_for_assessment(
    session: Session, assessment: Assessment, actor: User | None
) -> ReviewSchedule | None:
    """The schedule of a decided 業務委託 assessment (None when it does not need one: another
    kind of engagement, not decided, or decided 不可)."""
    engagement: Engagement = assessment.engagement
    if engagement.kind != "outsourcing" or assessment.status != "decided":
        return None
    existing = session.scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.assessment_id == assessment.id)
    )
    if existing is not None:
        return existing
    decision, rating = _assessment_rating(session, assessment)
    if decision == "reject":
        return None
    personal = _personal(engagement)
    months = default_interval(engagement.organisation, rating, personal)
    starts = _decided_on(session, assessment)
    due = regular_due(starts, months)
    schedule = ReviewSchedule(
        organisation_id=assessment.organisation_id,
        department_id=engagement.department_id,
        vendor_company_id=assessment.vendor_company_id,
        assessment=assessment,
        title=engagement.title,
        risk_rating=rating,
        personal_data=personal,
        interval_months=months,
        starts_on=starts,
        regular_due_on=due,
        due_on=due,
        ending_on=engagement.period_end,
    )
    session.add(schedule)
    session.flush()
    _record(session, "schedule.opened", actor, schedule, {"due_on": due, "months": months})
    return schedule


def open_for_application(
    session: Session, application: UseApplication, actor: User | None, today: date | None = None
) -> ReviewSchedule | None:
    """The schedule of an approved (or conditionally approved) 利用申請."""
    if application.status not in ACTIVE_STATES:
        return None
    existing = session.scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.application_id == application.id)
    )
    if existing is not None:
        return existing
    personal = _personal(application)
    months = default_interval(application.organisation, application.risk_rating, personal)
    decided = application.decided_at
    starts = today or (decided.astimezone(JST).date() if decided else today_jst())
    due = regular_due(starts, months)
    schedule = ReviewSchedule(
        organisation_id=application.organisation_id,
        department_id=application.department_id,
        vendor_company_id=application.service.vendor_company_id,
        application=application,
        title=application.title,
        risk_rating=application.risk_rating,
        personal_data=personal,
        interval_months=months,
        starts_on=starts,
        regular_due_on=due,
        due_on=due,
    )
    session.add(schedule)
    session.flush()
    recompute(schedule)
    _record(session, "schedule.opened", actor, schedule, {"due_on": due, "months": months})
    return schedule


def schedule_of_application(session: Session, application: UseApplication):
    return session.scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.application_id == application.id)
    )


def ids_by_assessment(session: Session, assessment_ids: list[int]) -> dict[int, int]:
    """assessment id → its schedule's id, for a list of assessments (one query)."""
    return dict(
        session.execute(
            sa.select(ReviewSchedule.assessment_id, ReviewSchedule.id).where(
                ReviewSchedule.assessment_id.in_(assessment_ids)
            )
        ).all()
    )


def schedule_of_assessment(session: Session, assessment: Assessment):
    return session.scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.assessment_id == assessment.id)
    )


# ---------------------------------------------------------------------------------------------
# Staff changes: interval and next date
# ---------------------------------------------------------------------------------------------


def set_interval(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    *,
    months: int | None,
    next_due_on: date | None,
    today: date,
    version: int,
) -> None:
    """Set the interval of one item (and optionally its next regular date). Refused: no
    permission, a schedule that has ended, zero or negative or too long intervals, more than 12
    months with personal data, a date in the past or beyond one interval."""
    if not can_manage_schedule(actor, schedule):
        raise ScheduleError("この確認予定を変更する権限がありません。")
    if schedule.version != version:
        raise ScheduleError(
            "他の利用者が先にこの確認予定を変更しました。最新の内容を確認してからやり直してください。"
        )
    if schedule.status != "active":
        raise ScheduleError("終了した契約・サービスの確認予定は変更できません。")
    if months is None or months < 1:
        raise ScheduleError("確認の間隔は1か月以上で入力してください。")
    if months > MAX_INTERVAL_MONTHS:
        raise ScheduleError(f"確認の間隔は{MAX_INTERVAL_MONTHS}か月以内で入力してください。")
    if schedule.personal_data and months > PERSONAL_DATA_MAX_MONTHS:
        raise ScheduleError(
            "個人情報を取り扱う契約・サービスは、少なくとも年1回（12か月以内）確認してください。"
        )
    since = schedule.last_confirmed_on or schedule.starts_on
    regular = regular_due(since, months)
    if next_due_on is not None:
        if next_due_on < today:
            raise ScheduleError("次回の確認期限に過去の日付は指定できません。")
        if next_due_on > regular:
            raise ScheduleError(
                "次回の確認期限は、確認の間隔による期限"
                f"（{regular.isoformat()}）より後にはできません。"
            )
        regular = next_business_day(next_due_on)
    before = {"months": schedule.interval_months, "due_on": schedule.regular_due_on}
    recompute(schedule, regular)
    schedule.interval_months = months
    schedule.interval_custom = True
    session.flush()
    _record(
        session,
        "schedule.changed",
        actor,
        schedule,
        {"before": before, "months": months, "due_on": regular},
    )


# ---------------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------------


def add_trigger(
    session: Session,
    schedule: ReviewSchedule,
    kind: str,
    *,
    key: str,
    occurred_on: date,
    detail: str,
    due_on: date | None = None,
    report=None,
    actor: User | None = None,
) -> ReviewTrigger | None:
    """Bring the next confirmation forward. Returns None (and changes nothing) when a trigger
    with the same ``key`` exists already or the schedule is no longer active."""
    if kind not in TRIGGER_KINDS:
        raise ValueError(kind)
    if schedule.status != "active":
        return None
    if any(t.key == key for t in schedule.triggers):
        return None
    if due_on is None:
        due_on = occurred_on + timedelta(days=TRIGGER_RESPONSE_DAYS[kind])
    trigger = ReviewTrigger(
        kind=kind,
        key=key[:200],
        occurred_on=occurred_on,
        due_on=min(next_business_day(due_on), schedule.regular_due_on),
        detail=detail,
        report_id=report.id if report is not None else None,
    )
    schedule.triggers.append(trigger)
    recompute(schedule)
    waiting = schedule.current_confirmation
    if waiting is not None and waiting.status in ("open", "returned"):
        # The vendor's answer is now due as early as the trigger asks.
        waiting.due_on = min(waiting.due_on, trigger.due_on)
    session.flush()
    _record(
        session,
        "schedule.triggered",
        actor,
        schedule,
        {"kind": kind, "detail": detail, "due_on": trigger.due_on},
    )
    return trigger


@dataclass(frozen=True)
class Expiry:
    kind: str  # certificate_expiry | ismap_expiry
    label: str
    until: date


def expiries(session: Session, schedule: ReviewSchedule) -> list[Expiry]:
    """Every dated certificate of the subject: the service record of an application, the
    current answers (assessment, then confirmations) of a contractor."""
    return expiries_many(session, [schedule])[schedule.id]


def expiries_many(session: Session, schedules: Sequence[ReviewSchedule]) -> dict[int, list[Expiry]]:
    """schedule id → ``expiries`` of it, for many schedules at once: the certification answers
    of the contractors in two queries (``current_values_many``), the service records of the
    applications as loaded (load ``application`` → ``service`` with the schedules)."""
    contractors = [s for s in schedules if s.application_id is None]
    answers = current_values_many(session, contractors, keys_prefix=CERTIFICATION_KEYS)
    found: dict[int, list[Expiry]] = {}
    for schedule in schedules:
        if schedule.application_id is not None:
            found[schedule.id] = service_expiries(schedule.application.service)
        else:
            found[schedule.id] = expiries_from_answers(answers[schedule.id])
    return found


def service_expiries(service) -> list[Expiry]:
    found = []
    for label, until in service.expiries():
        kind = "ismap_expiry" if label.startswith("ISMAP") else "certificate_expiry"
        found.append(Expiry(kind, label, until))
    return found


def expiries_from_answers(answers: dict[str, Any]) -> list[Expiry]:
    found: list[Expiry] = []
    if answers.get("certifications.ismap") in ("ismap", "ismap_liu"):
        end = _as_date(answers.get("certifications.ismap_audit_period_end"))
        pending = answers.get("certifications.ismap_renewal_pending") == "yes"
        if end and not pending:
            number = answers.get("certifications.ismap_number") or ""
            found.append(Expiry("ismap_expiry", f"ISMAP {number}".strip(), ismap.valid_until(end)))
    for row in answers.get("certifications.others") or []:
        until = _as_date(row.get("expires"))
        if until:
            kind = CERTIFICATION_KINDS.get(row.get("kind", ""), row.get("kind", "")) or "認証"
            label = f"{kind} {row.get('number', '')}".strip()
            found.append(Expiry("certificate_expiry", label, until))
    return sorted(found, key=lambda e: e.until)


def _as_date(value) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def expiry_triggers(
    session: Session,
    schedule: ReviewSchedule,
    today: date,
    found: list[Expiry] | None = None,
) -> list[ReviewTrigger]:
    """A trigger for every certificate expiring within 120 days (due on the expiry, or at the
    latest the next business day when it has passed). Idempotent within a period: keyed by
    label, date and the period's start, so a certificate confirmed as unchanged that is still
    expiring raises a trigger again in the next period. ``found``: the schedule's expiries when
    the caller has them (``expiries_many``)."""
    added = []
    period = (schedule.last_confirmed_on or schedule.starts_on).isoformat()
    for expiry in expiries(session, schedule) if found is None else found:
        if expiry.until > today + timedelta(days=EXPIRY_TRIGGER_DAYS):
            continue
        trigger = add_trigger(
            session,
            schedule,
            expiry.kind,
            key=f"{expiry.kind}:{expiry.label}:{expiry.until.isoformat()}:{period}",
            occurred_on=today,
            due_on=max(expiry.until, today),
            detail=f"{expiry.label}（有効期限 {expiry.until.isoformat()}）",
        )
        if trigger is not None:
            added.append(trigger)
    return added


def answered(schedule: ReviewSchedule, confirmation) -> None:
    """The open triggers the confirmation covered — those raised before the vendor handed it
    in — are answered by it; later ones stay open for the next confirmation."""
    handed_in = confirmation.submitted_at
    for trigger in schedule.open_triggers:
        if handed_in is None or trigger.created_at is None or trigger.created_at <= handed_in:
            trigger.confirmation_id = confirmation.id


def confirmed(session: Session, schedule: ReviewSchedule, confirmation, on: date) -> date:
    """A confirmation was completed on ``on``: the next period starts; returns the next due."""
    answered(schedule, confirmation)
    recompute(schedule, regular_due(on, schedule.interval_months))
    schedule.last_confirmed_on = on
    session.flush()
    return schedule.regular_due_on


# ---------------------------------------------------------------------------------------------
# What the subject's vendor answered, as confirmed so far
# ---------------------------------------------------------------------------------------------


def base_assessment(schedule: ReviewSchedule) -> Assessment | None:
    if schedule.assessment is not None:
        return schedule.assessment
    return schedule.application.assessment if schedule.application is not None else None


def current_values(session: Session, schedule: ReviewSchedule) -> dict[str, Any]:
    """The assessment's answers, overlaid by what every completed confirmation changed."""
    return current_values_many(session, [schedule])[schedule.id]


def current_values_many(
    session: Session, schedules: Sequence[ReviewSchedule], keys_prefix: str | None = None
) -> dict[int, dict[str, Any]]:
    """schedule id → its current values, for many schedules in two queries (per
    ``IN_BATCH`` schedules): the answers of the base assessment (the contractor's own, or the
    one an application was made on), overlaid in order (第1回, 第2回 …; section by section)
    by the sections every completed confirmation changed. ``keys_prefix`` ("certifications.")
    keeps only the answers whose key starts with it. Every schedule has an entry."""
    return current_values_by_id(session, [s.id for s in schedules], keys_prefix)


def current_values_by_id(
    session: Session, schedule_ids: Sequence[int], keys_prefix: str | None = None
) -> dict[int, dict[str, Any]]:
    """``current_values_many`` for schedules known by their ids (nothing else is loaded)."""
    found: dict[int, dict[str, Any]] = {schedule_id: {} for schedule_id in schedule_ids}
    ids = list(found)
    for start in range(0, len(ids), IN_BATCH):
        batch = ids[start : start + IN_BATCH]
        base = (
            sa.select(ReviewSchedule.id, Answer.question_key, Answer.value)
            .outerjoin(UseApplication, UseApplication.id == ReviewSchedule.application_id)
            .join(
                Answer,
                Answer.assessment_id
                == sa.func.coalesce(ReviewSchedule.assessment_id, UseApplication.assessment_id),
            )
            .where(ReviewSchedule.id.in_(batch))
        )
        if keys_prefix:
            base = base.where(Answer.question_key.startswith(keys_prefix, autoescape=True))
        for schedule_id, key, value in session.execute(base):
            found[schedule_id][key] = json.loads(value)
        changed = session.execute(
            sa.select(Confirmation.schedule_id, ConfirmationSection.values)
            .join(ConfirmationSection, ConfirmationSection.confirmation_id == Confirmation.id)
            .where(
                Confirmation.schedule_id.in_(batch),
                Confirmation.status == "completed",
                ConfirmationSection.changed == sa.true(),
            )
            .order_by(Confirmation.schedule_id, Confirmation.number, ConfirmationSection.id)
        )
        for schedule_id, values in changed:
            overlay = json.loads(values or "{}")
            if keys_prefix:
                overlay = {k: v for k, v in overlay.items() if k.startswith(keys_prefix)}
            found[schedule_id].update(overlay)
    return found


def values_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(values, ensure_ascii=False, sort_keys=True).encode()
    ).hexdigest()


# ---------------------------------------------------------------------------------------------
# Who sees and changes what
# ---------------------------------------------------------------------------------------------


def can_view_schedule(actor: User, schedule: ReviewSchedule) -> bool:
    """Staff of the responsible department; organisation-wide readers (approver, 外部サービス
    管理者, CISO, ネットワーク管理者, auditor) everything of their organisation."""
    if actor.is_vendor or not same_organisation(actor, schedule.organisation_id):
        return False
    if actor.role_set & ORGANISATION_WIDE_READERS:
        return True
    return schedule.department_id in {d.id for d in actor.departments}


def is_vendor_of(actor: User, schedule: ReviewSchedule) -> bool:
    """A vendor user of the schedule's company, given access by its organisation."""
    return (
        actor.is_vendor
        and actor.vendor_company_id is not None
        and actor.vendor_company_id == schedule.vendor_company_id
        and schedule.organisation_id in actor.vendor_organisation_ids
    )


def can_manage_schedule(actor: User, schedule: ReviewSchedule) -> bool:
    """Staff of the responsible department (and the service's current 外部サービス管理者)."""
    from portal.permissions import Permission, can

    if not same_organisation(actor, schedule.organisation_id) or actor.is_vendor:
        return False
    if can(actor, Permission.REVIEWS_MANAGE) and schedule.department_id in {
        d.id for d in actor.departments
    }:
        return True
    application = schedule.application
    manager = application.current_manager if application is not None else None
    return manager is not None and manager.user_id == actor.id


def visible_query(actor: User):
    """The schedules ``actor`` may see, as a select to refine."""
    query = sa.select(ReviewSchedule).where(ReviewSchedule.organisation_id == actor.organisation_id)
    if not actor.role_set & ORGANISATION_WIDE_READERS:
        query = query.where(ReviewSchedule.department_id.in_([d.id for d in actor.departments]))
    return query


# ---------------------------------------------------------------------------------------------
# Daily upkeep (run by ``send-reminders`` before it looks for what is due)
# ---------------------------------------------------------------------------------------------


# What the daily job reads of every active schedule, loaded with the schedules so that its
# number of queries does not grow with theirs (``sync`` here, ``reminder_plan.plan``).
DAILY_JOB_LOADS = (
    joinedload(ReviewSchedule.department),
    joinedload(ReviewSchedule.vendor_company),
    selectinload(ReviewSchedule.triggers),
    selectinload(ReviewSchedule.confirmations),
    selectinload(ReviewSchedule.application).selectinload(UseApplication.service),
    selectinload(ReviewSchedule.application)
    .selectinload(UseApplication.managers)
    .joinedload(ManagerAssignment.user),
)


@dataclass
class SyncResult:
    opened: int = 0
    triggers: int = 0
    ending_changed: int = 0


def sync(session: Session, today: date) -> SyncResult:
    """Open the schedules that are missing (decided before this feature, or opened outside the
    usual path), keep the contract end of each 業務委託 being confirmed on its engagement's
    period end (staff extend or shorten a contract on the engagement; the copy is what the
    reminder to start the exit reads, 9.1(2)⑨), and add the expiry triggers due by ``today``.
    Idempotent; a fixed number of queries whatever the number of schedules (but those it
    opens or triggers)."""
    result = SyncResult()
    assessments = session.scalars(
        sa.select(Assessment)
        .join(Engagement, Assessment.engagement_id == Engagement.id)
        .outerjoin(ReviewSchedule, ReviewSchedule.assessment_id == Assessment.id)
        .where(
            Assessment.status == "decided",
            Engagement.kind == "outsourcing",
            ReviewSchedule.id.is_(None),
        )
    ).all()
    for assessment in assessments:
        if open_for_assessment(session, assessment, None) is not None:
            result.opened += 1
    applications = session.scalars(
        sa.select(UseApplication)
        .outerjoin(ReviewSchedule, ReviewSchedule.application_id == UseApplication.id)
        .where(UseApplication.status.in_(ACTIVE_STATES), ReviewSchedule.id.is_(None))
    ).all()
    for application in applications:
        if open_for_application(session, application, None) is not None:
            result.opened += 1
    active = session.scalars(
        sa.select(ReviewSchedule)
        .options(*DAILY_JOB_LOADS)
        .where(ReviewSchedule.status == "active")
        .order_by(ReviewSchedule.id)
    ).all()
    period_ends = dict(
        session.execute(
            sa.select(ReviewSchedule.id, Engagement.period_end)
            .join(Assessment, Assessment.id == ReviewSchedule.assessment_id)
            .join(Engagement, Engagement.id == Assessment.engagement_id)
            .where(
                ReviewSchedule.status == "active",
                ReviewSchedule.ending_on.is_distinct_from(Engagement.period_end),
            )
        ).all()
    )
    found = expiries_many(session, active)
    for schedule in active:
        if schedule.id in period_ends:
            schedule.ending_on = period_ends[schedule.id]
            result.ending_changed += 1
        result.triggers += len(expiry_triggers(session, schedule, today, found[schedule.id]))
    session.flush()
    return result


def _record(session: Session, action: str, actor: User | None, schedule, details) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        actor_label=None if actor is not None else "定期処理",
        obj=schedule,
        organisation_id=schedule.organisation_id,
        details={k: (v.isoformat() if isinstance(v, date) else v) for k, v in details.items()},
    )
