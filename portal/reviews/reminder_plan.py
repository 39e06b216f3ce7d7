"""What ``send-reminders`` sends on a given day, and to whom (対策基準 9.1(3), 9.2(6), 10.1(4)).

- 定期確認 of every active schedule: 30 and 7 days before it is due (``due_30``, ``due_7``),
  the first day after (``overdue``), then weekly while it stays overdue; to the responsible staff
  (staff of the schedule's department who manage reviews, and the service's current
  外部サービス管理者) and, while a confirmation waits for the vendor's answer, to the vendor's
  contacts (counted from that confirmation's answer due date). Overdue by more than
  ``escalation_days``: once per due date to the ネットワーク管理者 and the CISO (``escalation``).
- Certificate and ISMAP expiry: 120 / 30 / 7 days ahead (``expiry_120`` …) to the vendor's
  contacts and the responsible staff; a certificate shared by several schedules of one body
  reaches each vendor contact once.
- The end of a 業務委託 contract (9.1(2)⑨): a schedule still being confirmed whose contract
  period ends within ``CONTRACT_ENDING_DAYS`` (30) days, or has ended, prompts the responsible
  staff once per end date to start the exit checklist (``contract_ending``).
- Findings (指摘事項) with a corrective action: 7 days before the due date and weekly once
  overdue, to the owner (``finding_due_7``, ``finding_overdue``); escalated like schedules.
- Requests to answer a confirmation (``request``) and alerts of a vendor's incident or change
  report to staff (``report_alert``, 9.1(3)) queued or failed earlier: the web records them in
  the transaction that opens the confirmation or takes the report and tries to send them at
  once; what it could not send, the job sends.

The schedules are read with what the plan reads of them (``schedules.DAILY_JOB_LOADS``) and
their certificates in a fixed number of queries (``schedules.expiries_many``): the number of
queries does not grow with the number of schedules.

Every message has a key — item, stage, due date, recipient — that ``ReminderLog`` keeps unique:
the plan may be made any number of times a day, a key is sent once. Pure reading; nothing here
writes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, contains_eager, selectinload
from werkzeug.routing import BuildError

from portal.approvals.service import report_recipients
from portal.orgs.models import Department, Organisation
from portal.permissions import Permission, can
from portal.reviews import findings, reports, schedules
from portal.reviews.models import (
    Confirmation,
    Finding,
    ReminderLog,
    ReviewSchedule,
    ReviewTrigger,
    VendorReport,
)
from portal.users.models import User, user_department
from portal.vendors.models import VendorAccess
from portal.web import JST, format_date

log = logging.getLogger(__name__)

DUE_STAGES = ((7, "due_7"), (30, "due_30"))  # nearest first
FINDING_DUE_DAYS = 7
OVERDUE_REPEAT_DAYS = 7  # overdue reminders repeat weekly
VENDOR_TURN = ("open", "returned")  # a confirmation waiting for the vendor's answer
KEY_LENGTH = 300  # ReminderLog.key
# A contract ending this close (or ended) prompts the exit; also how far ahead the end may be
# recorded (``exits.EXIT_LEAD_DAYS``).
CONTRACT_ENDING_DAYS = 30

STAGE_LABELS = {
    "request": "定期確認の依頼",
    "due_30": "期限30日前",
    "due_7": "期限7日前",
    "overdue": "期限超過",
    "escalation": "エスカレーション",
    **{f"expiry_{days}": f"有効期限{days}日前" for days in schedules.EXPIRY_WARN_DAYS},
    "contract_ending": "契約期間の終了",
    "finding_due_7": "指摘事項の期限7日前",
    "finding_overdue": "指摘事項の期限超過",
    "report_alert": "事故・変更の報告の通知",
}

ALERT_SUBJECTS = {
    "incident": "【至急】委託先から事故（インシデント）の報告がありました",
    "subcontractor_change": "【報告】委託先から再委託先の変更の報告がありました",
    "location_change": "【報告】委託先からデータの保存場所の変更の報告がありました",
}


@dataclass
class Reminder:
    """One message to one recipient. ``key`` is unique in ``ReminderLog``."""

    key: str
    organisation_id: int
    item: str  # schedule:12 | confirmation:7 | finding:3
    stage: str
    recipient: str  # e-mail address
    subject: str
    template: str  # mail/<template>.txt
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage)


def make_key(item: str, stage: str, due: date, recipient: str) -> str:
    """``{item}:{stage}:{due date}:{recipient}``; a key too long for the column keeps its start
    and ends in the SHA-256 of the whole, so it stays unique and stable."""
    key = f"{item}:{stage}:{due.isoformat()}:{recipient}"
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_LENGTH - len(digest) - 1]}:{digest}"


def _message(
    user: User,
    *,
    item: str,
    stage: str,
    due: date,
    organisation_id: int,
    subject: str,
    template: str,
    context: dict[str, Any],
    key_stage: str | None = None,
) -> Reminder:
    return Reminder(
        key=make_key(item, key_stage or stage, due, user.email),
        organisation_id=organisation_id,
        item=item,
        stage=stage,
        recipient=user.email,
        subject=" ".join(subject.split())[:300],
        template=template,
        context={**context, "user": user},
    )


def absolute_url(endpoint: str, **values: Any) -> str:
    """``BASE_URL`` + the route's path, as the invitation link is built; works outside a request
    (the cron job). An endpoint that cannot be built falls back to the home page, so that one
    broken link never stops the reminders."""
    try:
        path = current_app.url_map.bind("localhost").build(endpoint, values)
    except BuildError:
        log.warning("reminder link to %s %s cannot be built; using the home page", endpoint, values)
        path = "/"
    return current_app.config["BASE_URL"] + path


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _weeks_overdue(days_overdue: int) -> int:
    """1 for the first seven days after the due date, 2 for the next seven …"""
    return (days_overdue - 1) // OVERDUE_REPEAT_DAYS + 1


def due_stage(days_left: int) -> tuple[str, str] | None:
    """(stage, the stage as keyed) for a due date ``days_left`` days away: due_30, due_7, or
    overdue keyed by its week (overdue-1 the first seven days after, overdue-2 …)."""
    if days_left < 0:
        return "overdue", f"overdue-{_weeks_overdue(-days_left)}"
    stage = next((s for limit, s in DUE_STAGES if days_left <= limit), None)
    return (stage, stage) if stage else None


def expiry_stage(days_left: int) -> str | None:
    """The nearest warning the expiry has reached: 120, 30 or 7 days ahead; None when further
    away or already expired (the schedule, brought forward to the expiry, is overdue then)."""
    if days_left < 0:
        return None
    reached = [days for days in schedules.EXPIRY_WARN_DAYS if days_left <= days]
    return f"expiry_{min(reached)}" if reached else None


def _policy(schedule: ReviewSchedule) -> str:
    return "9.1(3)" if schedule.kind == "assessment" else "9.2(6)"


# ---------------------------------------------------------------------------------------------
# Who receives what
# ---------------------------------------------------------------------------------------------


class People:
    """The recipients of one run, each looked up once."""

    def __init__(self, session: Session):
        self.session = session
        self._staff: dict[int, list[User]] = {}
        self._vendors: dict[tuple[int, int], list[User]] = {}
        self._escalation: dict[int, list[User]] = {}

    def responsible_staff(self, schedule: ReviewSchedule) -> list[User]:
        """Staff of the schedule's department who manage reviews, and the current 外部サービス
        管理者 of an application (whom ``schedules.can_manage_schedule`` lets act)."""
        if schedule.department_id not in self._staff:
            users = self.session.scalars(
                sa.select(User)
                .join(user_department, user_department.c.user_id == User.id)
                .where(
                    user_department.c.department_id == schedule.department_id,
                    User.organisation_id == schedule.organisation_id,
                    User.active.is_(True),
                )
                .order_by(User.id)
            ).all()
            self._staff[schedule.department_id] = [
                u for u in users if can(u, Permission.REVIEWS_MANAGE)
            ]
        found = {u.id: u for u in self._staff[schedule.department_id]}
        application = schedule.application
        manager = application.current_manager if application is not None else None
        if manager is not None and manager.user.active:
            found.setdefault(manager.user_id, manager.user)
        return list(found.values())

    def vendor_contacts(self, schedule: ReviewSchedule) -> list[User]:
        """Active users of the schedule's vendor company whom its organisation gave access."""
        key = (schedule.organisation_id, schedule.vendor_company_id)
        if key not in self._vendors:
            users = self.session.scalars(
                sa.select(User)
                .join(VendorAccess, VendorAccess.user_id == User.id)
                .where(
                    User.vendor_company_id == schedule.vendor_company_id,
                    VendorAccess.organisation_id == schedule.organisation_id,
                    User.active.is_(True),
                )
                .order_by(User.id)
            ).all()
            self._vendors[key] = [u for u in users if can(u, Permission.REVIEWS_ANSWER)]
        return self._vendors[key]

    def escalation(self, organisation_id: int) -> list[User]:
        """The ネットワーク管理者 and the CISO (9.1(3))."""
        if organisation_id not in self._escalation:
            self._escalation[organisation_id] = report_recipients(self.session, organisation_id)
        return self._escalation[organisation_id]


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


def plan(session: Session, today: date, *, escalation_days: int) -> list[Reminder]:
    """Every reminder due on ``today``, sent or not (``reminders.run`` skips the sent ones)."""
    people = People(session)
    # Requests to answer a confirmation first: the reminders about it follow them.
    planned = pending_requests(session, people) + pending_alerts(session)
    active = session.scalars(
        sa.select(ReviewSchedule)
        .join(Organisation, Organisation.id == ReviewSchedule.organisation_id)
        .options(contains_eager(ReviewSchedule.organisation), *schedules.DAILY_JOB_LOADS)
        .where(ReviewSchedule.status == "active", Organisation.active.is_(True))
        .order_by(ReviewSchedule.id)
    ).all()
    for schedule in active:
        planned += _schedule_reminders(schedule, today, escalation_days, people)
        planned += _contract_ending_reminders(schedule, today, people)
    found = schedules.expiries_many(session, active)
    planned += _merge_expiries(
        r
        for schedule in active
        for r in _expiry_reminders(schedule, found[schedule.id], today, people)
    )
    planned += _finding_reminders(session, today, escalation_days, people)
    unique: dict[str, Reminder] = {}
    for reminder in planned:
        unique.setdefault(reminder.key, reminder)
    return list(unique.values())


def _schedule_reminders(
    schedule: ReviewSchedule, today: date, escalation_days: int, people: People
) -> list[Reminder]:
    """Staff: the schedule's due date. Vendor: the answer's due date of the confirmation
    waiting for it (never less than two weeks after it was opened, so it may be later).
    Escalation: the schedule's due date passed by more than ``escalation_days``."""
    reminders = []
    item = f"schedule:{schedule.id}"
    title = _one_line(schedule.title)
    confirmation = schedule.current_confirmation
    days_left = (schedule.due_on - today).days
    context = {
        "schedule": schedule,
        "organisation": schedule.organisation,
        "confirmation": confirmation,
        "due_on": schedule.due_on,
        "days_left": days_left,
        "days_overdue": max(0, -days_left),
        "policy": _policy(schedule),
        "for_vendor": False,
        "url": absolute_url("confirmations.schedule", schedule_id=schedule.id),
    }
    common = {"item": item, "due": schedule.due_on, "organisation_id": schedule.organisation_id}
    staff = people.responsible_staff(schedule)
    due = due_stage(days_left)
    if due is not None:
        stage, key_stage = due
        subject = (
            f"【期限超過】定期確認の期限を{-days_left}日過ぎています（{title}）"
            if stage == "overdue"
            else f"【定期確認】確認期限まであと{days_left}日です（{title}）"
        )
        template = "reminder_overdue" if stage == "overdue" else "reminder_due"
        reminders += [
            _message(
                user,
                **common,
                stage=stage,
                key_stage=key_stage,
                subject=subject,
                template=template,
                context=context,
            )
            for user in staff
        ]
    if confirmation is not None and confirmation.status in VENDOR_TURN:
        reminders += _vendor_reminders(schedule, confirmation, today, people, context)
    if -days_left > escalation_days:
        escalation = {
            **context,
            "subject_kind": "schedule",
            "what": f"{schedule.kind_label}「{title}」の定期確認",
            "department": schedule.department,
            "vendor_name": schedule.vendor_company.name,
            "responsible": staff,
            "escalation_days": escalation_days,
        }
        reminders += [
            _message(
                user,
                **common,
                stage="escalation",
                subject=f"【エスカレーション】定期確認が期限を{-days_left}日過ぎています（{title}）",
                template="reminder_escalation",
                context=escalation,
            )
            for user in people.escalation(schedule.organisation_id)
        ]
    return reminders


def _vendor_reminders(
    schedule: ReviewSchedule,
    confirmation: Confirmation,
    today: date,
    people: People,
    context: dict[str, Any],
) -> list[Reminder]:
    days_left = (confirmation.due_on - today).days
    due = due_stage(days_left)
    if due is None:
        return []
    stage, key_stage = due
    body = schedule.organisation.name
    when = f"{confirmation.due_on.month}月{confirmation.due_on.day}日"
    subject = (
        f"【{body}】定期確認のご回答が期限（{when}）を過ぎています"
        if stage == "overdue"
        else f"【{body}】定期確認のご回答のお願い（期限 {when}）"
    )
    context = {
        **context,
        "due_on": confirmation.due_on,
        "days_left": days_left,
        "days_overdue": max(0, -days_left),
        "for_vendor": True,
        "url": absolute_url("confirmations.vendor_answer", confirmation_id=confirmation.id),
    }
    return [
        _message(
            user,
            item=f"confirmation:{confirmation.id}",
            stage=stage,
            key_stage=key_stage,
            due=confirmation.due_on,
            organisation_id=schedule.organisation_id,
            subject=subject,
            template="reminder_overdue" if stage == "overdue" else "reminder_due",
            context=context,
        )
        for user in people.vendor_contacts(schedule)
    ]


def _contract_ending_reminders(
    schedule: ReviewSchedule, today: date, people: People
) -> list[Reminder]:
    """A 業務委託 contract still being confirmed whose period ends within 30 days or has
    ended: the responsible staff are asked to start the exit checklist — information returned
    or deleted, the 消去証明書 received (9.1(2)⑨). Once per end date: a changed end date is
    prompted again. An external service ends through its register entry (9.2(7)), not here."""
    ending_on = schedule.ending_on
    if schedule.application_id is not None or ending_on is None:
        return []
    days_left = (ending_on - today).days
    if days_left > CONTRACT_ENDING_DAYS:
        return []
    ended = days_left < 0
    title = _one_line(schedule.title)
    when = format_date(ending_on)
    subject = (
        f"【契約終了】契約期間が{when}に{'終了しました' if ended else '終了します'}（{title}）"
    )
    context = {
        "schedule": schedule,
        "organisation": schedule.organisation,
        "ending_on": ending_on,
        "ended": ended,
        "days_left": days_left,
        "days_since": max(0, -days_left),
        "policy": "9.1(2)⑨",
        "url": absolute_url("exits.checklist", schedule_id=schedule.id),
    }
    return [
        _message(
            user,
            item=f"schedule:{schedule.id}",
            stage="contract_ending",
            due=ending_on,
            organisation_id=schedule.organisation_id,
            subject=subject,
            template="reminder_contract_ending",
            context=context,
        )
        for user in people.responsible_staff(schedule)
    ]


def _expiry_reminders(
    schedule: ReviewSchedule, expiries: list[schedules.Expiry], today: date, people: People
) -> list[Reminder]:
    reminders = []
    staff_url = absolute_url("confirmations.schedule", schedule_id=schedule.id)
    vendor_url = absolute_url("confirmations.vendor_index")
    for expiry in expiries:
        days_left = (expiry.until - today).days
        stage = expiry_stage(days_left)
        if stage is None:
            continue
        label = _one_line(expiry.label)
        kind = "ISMAP登録" if expiry.kind == "ismap_expiry" else "認証"
        subject = f"【有効期限】{kind}「{label}」の有効期限まであと{days_left}日です"
        context = {
            "schedule": schedule,
            "organisation": schedule.organisation,
            "expiry_label": label,
            "expiry_kind": kind,
            "until": expiry.until,
            "days_left": days_left,
            "schedules": [schedule],
            "policy": _policy(schedule),
        }
        common = {
            "item": f"schedule:{schedule.id}",
            "stage": stage,
            "key_stage": f"{stage}:{label}",
            "due": expiry.until,
            "organisation_id": schedule.organisation_id,
            "template": "reminder_expiry",
        }
        reminders += [
            _message(
                user,
                **common,
                subject=subject,
                context={**context, "for_vendor": False, "url": staff_url},
            )
            for user in people.responsible_staff(schedule)
        ]
        reminders += [
            _message(
                user,
                **common,
                subject=f"{subject}（{schedule.organisation.name}）",
                context={**context, "for_vendor": True, "url": vendor_url, "schedules": []},
            )
            for user in people.vendor_contacts(schedule)
        ]
    return reminders


def _merge_expiries(reminders: Iterable[Reminder]) -> list[Reminder]:
    """A vendor's certificate shared by several schedules of one body (one service used by
    several departments) reaches each vendor contact once, naming every schedule."""
    merged: list[Reminder] = []
    first: dict[tuple, Reminder] = {}
    for reminder in reminders:
        context = reminder.context
        if context["for_vendor"]:
            same = (reminder.recipient, reminder.organisation_id, reminder.stage)
            same += (context["expiry_label"], context["until"])
            if same in first:
                first[same].context["schedules"].append(context["schedule"])
                continue
            context["schedules"].append(context["schedule"])
            first[same] = reminder
        merged.append(reminder)
    return merged


def _source_text(info: findings.SourceInfo | None) -> str:
    if info is None:
        return ""
    if info.kind == "audit":
        return f"委託先監査「{_one_line(info.label)}」（{_one_line(info.subject)}）"
    return f"{info.label}（{_one_line(info.subject)}）"


def _finding_reminders(
    session: Session, today: date, escalation_days: int, people: People
) -> list[Reminder]:
    due = session.scalars(
        sa.select(Finding)
        .options(selectinload(Finding.owner))
        .join(Organisation, Organisation.id == Finding.organisation_id)
        .where(
            Finding.status == "open",
            Finding.due_on <= today + timedelta(days=FINDING_DUE_DAYS),
            Organisation.active.is_(True),
        )
        .order_by(Finding.id)
    ).all()
    sources = findings.sources_of(session, list(due))
    reminders = []
    for finding in due:
        days_left = (finding.due_on - today).days
        title = _one_line(finding.title)
        source = _source_text(sources.get(finding.id))
        context = {
            "finding": finding,
            "source": source,
            "due_on": finding.due_on,
            "days_left": days_left,
            "days_overdue": max(0, -days_left),
            "url": absolute_url("findings.detail", finding_id=finding.id),
        }
        common = {
            "item": f"finding:{finding.id}",
            "due": finding.due_on,
            "organisation_id": finding.organisation_id,
        }
        if finding.owner.active and days_left < 0:
            reminders.append(
                _message(
                    finding.owner,
                    **common,
                    stage="finding_overdue",
                    key_stage=f"finding_overdue-{_weeks_overdue(-days_left)}",
                    subject=f"【期限超過】指摘事項「{title}」の対応期限を{-days_left}日過ぎています",
                    template="reminder_finding",
                    context=context,
                )
            )
        elif finding.owner.active:
            reminders.append(
                _message(
                    finding.owner,
                    **common,
                    stage="finding_due_7",
                    subject=f"【是正措置】指摘事項「{title}」の対応期限まであと{days_left}日です",
                    template="reminder_finding",
                    context=context,
                )
            )
        if -days_left > escalation_days:
            escalation = {
                **context,
                "subject_kind": "finding",
                "what": f"指摘事項「{title}」の是正措置" + (f"（{source}）" if source else ""),
                "department": session.get(Department, finding.department_id),
                "vendor_name": "",
                "responsible": [finding.owner],
                "escalation_days": escalation_days,
            }
            reminders += [
                _message(
                    user,
                    **common,
                    stage="escalation",
                    subject=f"【エスカレーション】指摘事項「{title}」の対応が期限を"
                    f"{-days_left}日過ぎています",
                    template="reminder_escalation",
                    context=escalation,
                )
                for user in people.escalation(finding.organisation_id)
            ]
    return reminders


# ---------------------------------------------------------------------------------------------
# Confirmation requests
# ---------------------------------------------------------------------------------------------


def request_reminders(confirmation: Confirmation, people: People) -> list[Reminder]:
    """The request to answer a newly opened confirmation, one per vendor contact."""
    contacts = people.vendor_contacts(confirmation.schedule)
    if not contacts:
        log.warning(
            "confirmation %s of schedule %s: the vendor has no active contact to ask",
            confirmation.id,
            confirmation.schedule_id,
        )
    return [_request(confirmation, user) for user in contacts]


def _request(confirmation: Confirmation, user: User) -> Reminder:
    schedule = confirmation.schedule
    return _message(
        user,
        item=f"confirmation:{confirmation.id}",
        stage="request",
        due=confirmation.due_on,
        organisation_id=schedule.organisation_id,
        subject=f"【{schedule.organisation.name}】定期確認のお願い（{schedule.title}）",
        template="confirmation_request",
        context={
            "confirmation": confirmation,
            "schedule": schedule,
            "url": absolute_url("confirmations.vendor_answer", confirmation_id=confirmation.id),
        },
    )


def pending_requests(session: Session, people: People) -> list[Reminder]:
    """Requests queued or failed earlier, while the confirmation still waits for the vendor and
    the recipient is still one of its contacts (the key is kept: it is the same message)."""
    rows = _unsent(session, "request")
    ids = {_item_id(row, "confirmation") for row in rows} - {None}
    waiting = {
        c.id: c
        for c in session.scalars(
            sa.select(Confirmation)
            .options(selectinload(Confirmation.schedule))
            .where(Confirmation.id.in_(ids), Confirmation.status.in_(VENDOR_TURN))
        )
        if c.schedule.status == "active"
    }
    reminders = []
    for row in rows:
        confirmation = waiting.get(_item_id(row, "confirmation"))
        if confirmation is None:
            continue
        contacts = people.vendor_contacts(confirmation.schedule)
        user = next((u for u in contacts if u.email == row.recipient), None)
        if user is not None:
            request = _request(confirmation, user)
            request.key = row.key
            reminders.append(request)
    return reminders


def _unsent(session: Session, stage: str) -> list[ReminderLog]:
    """Rows of ``stage`` not yet sent: queued, failed, or claimed by a run that may have
    stopped (``reminders.run`` claims each before sending, and skips a fresh claim)."""
    return list(
        session.scalars(
            sa.select(ReminderLog)
            .where(ReminderLog.stage == stage, ReminderLog.status != "sent")
            .order_by(ReminderLog.id)
        )
    )


def _item_id(row: ReminderLog, kind: str) -> int | None:
    found, _, number = row.item.partition(":")
    return int(number) if found == kind and number.isdigit() else None


# ---------------------------------------------------------------------------------------------
# Alerts of vendor reports
# ---------------------------------------------------------------------------------------------


def report_alerts(session: Session, report: VendorReport) -> list[Reminder]:
    """The alert of a vendor's incident or change report, one per recipient
    (``reports.recipients``: the department's staff, the service's 外部サービス管理者 and, for
    an incident, the ネットワーク管理者 and the CISO; 9.1(3), 9.1(2)⑩, 9.2(2)②(オ))."""
    trigger = reports.trigger_of(session, report)
    return [_alert(report, trigger, user) for user in reports.recipients(session, report)]


def _alert(report: VendorReport, trigger: ReviewTrigger | None, user: User) -> Reminder:
    schedule = report.schedule
    return _message(
        user,
        item=f"report:{report.id}",
        stage="report_alert",
        due=report.reported_at.astimezone(JST).date(),
        organisation_id=report.organisation_id,
        subject=f"{ALERT_SUBJECTS[report.kind]}（{_one_line(schedule.title)}）",
        template="incident_reported" if report.kind == "incident" else "change_reported",
        context={
            "report": report,
            "schedule": schedule,
            "trigger": trigger,
            # From BASE_URL, never from the Host header of the vendor's request.
            "url": absolute_url("vendor_reports.detail", report_id=report.id),
        },
    )


def pending_alerts(session: Session) -> list[Reminder]:
    """Alerts the web could not send, to recipients who still are ones (an alert is not lost
    because someone else has acknowledged the report: the CISO must still learn of an
    incident). The key is kept: it is the same message."""
    rows = _unsent(session, "report_alert")
    ids = {_item_id(row, "report") for row in rows} - {None}
    found = {
        r.id: r
        for r in session.scalars(
            sa.select(VendorReport)
            .options(selectinload(VendorReport.schedule))
            .where(VendorReport.id.in_(ids))
        )
    }
    alerts: dict[int, dict[str, Reminder]] = {}
    reminders = []
    for row in rows:
        report = found.get(_item_id(row, "report"))
        if report is None:
            continue
        if report.id not in alerts:
            alerts[report.id] = {a.recipient: a for a in report_alerts(session, report)}
        alert = alerts[report.id].get(row.recipient)
        if alert is not None:
            alert.key = row.key
            reminders.append(alert)
    return reminders
