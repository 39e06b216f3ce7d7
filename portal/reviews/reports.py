"""Incidents and changes reported by the vendor (事故発生時の報告 9.1(2)⑩⑫, 9.2(2)②(オ);
再委託先・データの保存場所の変更 9.1(2)⑧, 9.2(2)②(エ)).

- A vendor user of the contract's or service's company, given access by the organisation,
  reports an incident (what, when, which information) or a change of subcontractor or data
  location. Changes are reported while the contract or service runs; an incident also while it
  is ending (the data may still be held).
- The report brings the next 定期確認 forward (schedules.add_trigger: 7 days for an incident, 30
  for a change, counted from the day of the report and moved to a business day).
- Staff are alerted at once: the responsible department's staff and the service's 外部サービス
  管理者; for an incident also the ネットワーク管理者 and the CISO (9.1(3)). Those who answer
  for it acknowledge the report: the staff who manage the schedule (担当課の職員, the service's
  外部サービス管理者) and the organisation's CISO and ネットワーク管理者 (9.1(3)). Read-only
  roles (auditor, approver) read it but do not acknowledge it (DESIGN.md: the auditor reads
  everything, changes nothing).

Services flush, callers commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.approvals import service as approvals
from portal.audit import service as audit
from portal.permissions import ROLE_PERMISSIONS, Permission, Role, can
from portal.reviews import schedules
from portal.reviews.models import REPORT_KINDS, ReviewSchedule, ReviewTrigger, VendorReport
from portal.users.models import User, UserRole, user_department
from portal.web import JST, format_date

SUMMARY_MAX = 4000
INFORMATION_MAX = 2000
MEASURES_MAX = 4000
EARLIEST = datetime(1990, 1, 1, tzinfo=JST)
# A change is reported while the contract or service runs; an incident also while it ends.
REPORTABLE_STATUSES = {
    "incident": ("active", "ending"),
    "subcontractor_change": ("active",),
    "location_change": ("active",),
}
# Organisation-wide roles told of incidents who also acknowledge reports (9.1(3)).
ACKNOWLEDGING_ROLES = frozenset({Role.CISO, Role.NETWORK_ADMIN})
# Roles that answer for a department's contracts (their staff are told of every report).
MANAGING_ROLES = sorted(
    role.value for role, granted in ROLE_PERMISSIONS.items() if Permission.REVIEWS_MANAGE in granted
)


class ReportError(ValueError):
    """A refused report or acknowledgement, with a message in Japanese. Nothing was changed."""


@dataclass(frozen=True)
class ReportInput:
    kind: str
    occurred_at: datetime | None  # timezone-aware: when it happened / the change took effect
    summary: str
    information_affected: str = ""
    personal_data_affected: bool = False
    measures: str = ""


# ---------------------------------------------------------------------------------------------
# Who reports, who reads
# ---------------------------------------------------------------------------------------------


def can_report(actor: User, schedule: ReviewSchedule) -> bool:
    """An active vendor user of the schedule's company whom its organisation gave access."""
    return (
        actor.is_active
        and can(actor, Permission.REVIEWS_ANSWER)
        and schedules.is_vendor_of(actor, schedule)
    )


def reportable(schedule: ReviewSchedule, kind: str) -> bool:
    return schedule.status in REPORTABLE_STATUSES.get(kind, ())


def can_view_report(actor: User, report: VendorReport) -> bool:
    """Staff who see the schedule (9.1(3)); the vendor reads its own company's reports through
    :func:`vendor_can_view`."""
    return (
        not actor.is_vendor
        and can(actor, Permission.REVIEWS_VIEW)
        and report.organisation_id == actor.organisation_id
        and schedules.can_view_schedule(actor, report.schedule)
    )


def can_acknowledge(actor: User, report: VendorReport) -> bool:
    """Who may mark the report as read and in hand: among those who read it, the staff who
    manage the schedule (``schedules.can_manage_schedule``) and the organisation's CISO and
    ネットワーク管理者 (9.1(3)); not the auditor or the approver, who only read."""
    return can_view_report(actor, report) and (
        schedules.can_manage_schedule(actor, report.schedule)
        or bool(actor.role_set & ACKNOWLEDGING_ROLES)
    )


def vendor_can_view(actor: User, report: VendorReport) -> bool:
    return (
        actor.is_vendor
        and report.vendor_company_id == actor.vendor_company_id
        and schedules.is_vendor_of(actor, report.schedule)
    )


def reportable_schedules(session: Session, actor: User) -> list[ReviewSchedule]:
    """The contracts and services of the vendor's company with the organisations that gave the
    user access, on which something can still be reported."""
    if not actor.is_vendor or not actor.vendor_organisation_ids:
        return []
    return list(
        session.scalars(
            sa.select(ReviewSchedule)
            .options(selectinload(ReviewSchedule.organisation))
            .where(
                ReviewSchedule.vendor_company_id == actor.vendor_company_id,
                ReviewSchedule.organisation_id.in_(actor.vendor_organisation_ids),
                ReviewSchedule.status.in_(("active", "ending")),
            )
            .order_by(ReviewSchedule.organisation_id, ReviewSchedule.title, ReviewSchedule.id)
        )
    )


def reports_for_vendor(session: Session, actor: User) -> list[VendorReport]:
    """The reports of the user's company to the organisations that gave it access, newest first."""
    if not actor.is_vendor or not actor.vendor_organisation_ids:
        return []
    return list(
        session.scalars(
            sa.select(VendorReport)
            .options(selectinload(VendorReport.schedule).selectinload(ReviewSchedule.organisation))
            .where(
                VendorReport.vendor_company_id == actor.vendor_company_id,
                VendorReport.organisation_id.in_(actor.vendor_organisation_ids),
            )
            .order_by(VendorReport.reported_at.desc(), VendorReport.id.desc())
        )
    )


def reports_of(session: Session, schedule: ReviewSchedule) -> list[VendorReport]:
    """Every report on one contract or service, newest first (the schedule page)."""
    return list(
        session.scalars(
            sa.select(VendorReport)
            .options(selectinload(VendorReport.reported_by))
            .where(VendorReport.schedule_id == schedule.id)
            .order_by(VendorReport.reported_at.desc(), VendorReport.id.desc())
        )
    )


def trigger_of(session: Session, report: VendorReport) -> ReviewTrigger | None:
    """The trigger the report added (none when the schedule was already ending)."""
    return session.scalar(sa.select(ReviewTrigger).where(ReviewTrigger.report_id == report.id))


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def _check(schedule: ReviewSchedule, data: ReportInput, now: datetime) -> None:
    if data.kind not in REPORT_KINDS:
        raise ReportError("報告の種類を選んでください。")
    if not reportable(schedule, data.kind):
        if schedule.status == "ended":
            raise ReportError("この契約・サービスは終了しているため、報告できません。")
        raise ReportError(
            "この契約・サービスは終了手続中のため、事故（インシデント）の報告のみ受け付けます。"
        )
    if data.occurred_at is None:
        raise ReportError("発生した日（変更した日）を入力してください。")
    if data.occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if data.occurred_at > now:
        raise ReportError("発生した日時（変更した日時）に未来の日時は指定できません。")
    if data.occurred_at < EARLIEST:
        raise ReportError("発生した日（変更した日）は1990年1月1日以降を入力してください。")
    if not data.summary.strip():
        raise ReportError("報告の内容を入力してください。")
    if len(data.summary) > SUMMARY_MAX:
        raise ReportError(f"報告の内容は{SUMMARY_MAX}文字以内で入力してください。")
    if data.kind == "incident" and not data.information_affected.strip():
        raise ReportError(
            "事故の報告では、影響を受けた（又はそのおそれがある）情報を入力してください"
            "（対策基準9.1(2)⑩）。"
        )
    if len(data.information_affected) > INFORMATION_MAX:
        raise ReportError(f"影響を受けた情報は{INFORMATION_MAX}文字以内で入力してください。")
    if len(data.measures) > MEASURES_MAX:
        raise ReportError(f"実施した措置は{MEASURES_MAX}文字以内で入力してください。")


def submit_report(
    session: Session,
    actor: User,
    schedule: ReviewSchedule,
    data: ReportInput,
    now: datetime,
) -> VendorReport:
    """Record the vendor's report and bring the next confirmation forward (9.1(2)⑩,
    9.2(2)②(オ)). Refused: not a vendor user of the schedule's company with access to its
    organisation, an ended schedule (a change also while it is ending), an unknown kind, a
    time in the future or before 1990, an empty summary, an incident without the information
    affected, text beyond the limits."""
    if not can_report(actor, schedule):
        raise ReportError("この契約・サービスについて報告する権限がありません。")
    _check(schedule, data, now)
    report = VendorReport(
        organisation_id=schedule.organisation_id,
        schedule_id=schedule.id,
        vendor_company_id=schedule.vendor_company_id,
        kind=data.kind,
        occurred_at=data.occurred_at.astimezone(UTC),
        summary=data.summary.strip(),
        information_affected=data.information_affected.strip(),
        personal_data_affected=bool(data.personal_data_affected),
        measures=data.measures.strip(),
        reported_by_id=actor.id,
        reported_at=now,
    )
    report.schedule = schedule
    session.add(report)
    session.flush()
    occurred_on = data.occurred_at.astimezone(JST).date()
    trigger = schedules.add_trigger(
        session,
        schedule,
        data.kind,
        key=f"report:{report.id}",
        occurred_on=now.astimezone(JST).date(),  # the response time runs from the report
        detail=f"{report.kind_label}の報告（第{report.id}号、発生 {format_date(occurred_on)}）",
        report=report,
        actor=actor,
    )
    audit.record(
        session,
        "report.submitted",
        actor=actor,
        organisation_id=schedule.organisation_id,
        obj=report,
        details={
            "schedule_id": schedule.id,
            "kind": data.kind,
            "occurred_at": report.occurred_at.isoformat(),
            "personal_data_affected": report.personal_data_affected,
            "confirmation_due_on": trigger.due_on.isoformat() if trigger else None,
        },
    )
    return report


def acknowledge(
    session: Session, report: VendorReport, actor: User, now: datetime | None = None
) -> bool:
    """The staff who manage the schedule, the CISO or the ネットワーク管理者 acknowledge the
    report (:func:`can_acknowledge`, 9.1(3)). Idempotent: False (and nothing recorded) when it
    was acknowledged already."""
    if not can_acknowledge(actor, report):
        raise ReportError(
            "この報告を確認済みにできるのは、担当課の職員、外部サービス管理者、CISO及び"
            "ネットワーク管理者です。"
        )
    if report.acknowledged_at is not None:
        return False
    report.acknowledged_by_id = actor.id
    report.acknowledged_at = now or datetime.now(UTC)
    session.flush()
    audit.record(
        session,
        "report.acknowledged",
        actor=actor,
        organisation_id=report.organisation_id,
        obj=report,
        details={"kind": report.kind, "schedule_id": report.schedule_id},
    )
    return True


# ---------------------------------------------------------------------------------------------
# Who is told
# ---------------------------------------------------------------------------------------------


def recipients(session: Session, report: VendorReport) -> list[User]:
    """Who is alerted at once: the active staff of the schedule's department who manage its
    confirmations, the service's current 外部サービス管理者, and for an incident the
    organisation's ネットワーク管理者 and CISO (9.1(3))."""
    schedule = report.schedule
    found: dict[int, User] = {}
    department_staff = session.scalars(
        sa.select(User)
        .join(user_department, user_department.c.user_id == User.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(
            user_department.c.department_id == schedule.department_id,
            User.organisation_id == schedule.organisation_id,
            User.active.is_(True),
            UserRole.role.in_(MANAGING_ROLES),
        )
        .distinct()
    )
    for user in department_staff:
        found[user.id] = user
    application = schedule.application
    assignment = application.current_manager if application is not None else None
    if assignment is not None and assignment.user.active:
        found[assignment.user.id] = assignment.user
    if report.kind == "incident":
        for user in approvals.report_recipients(session, schedule.organisation_id):
            found[user.id] = user
    return [found[key] for key in sorted(found)]
