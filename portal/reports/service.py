"""Dashboards of 定期確認 (対策基準 9.1(3), 9.2(6)): confirmations overdue or due within 90
days, certificates and ISMAP registrations running out within 120 days, open and overdue
findings, incident reports nobody has acknowledged, contracts and services in exit, and the
risk distribution of what is confirmed — and the lists behind each figure, which show exactly
the rows it counts.

Scope: staff see their departments' schedules, the organisation-wide readers (ネットワーク管理者,
CISO, 許可権限者, 監査担当, 外部サービス管理者) the whole organisation's
(``schedules.visible_query``; findings as their list shows them, ``findings.visible_query``:
the same rule on their department, plus those the user owns). Every function
runs a fixed number of queries whatever the number of schedules. Services flush, views commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload

from portal.approvals.models import ExternalService, UseApplication
from portal.audit import service as audit
from portal.orgs.models import Department
from portal.permissions import ORGANISATION_WIDE_READERS
from portal.register import exports
from portal.reports.columns import (
    COLUMNS,
    EXPIRING_COLUMNS,
    FINDING_COLUMNS,
    INCIDENT_COLUMNS,
)
from portal.reviews import findings, schedules
from portal.reviews.models import (
    SEVERITIES,
    Finding,
    ReviewSchedule,
    VendorReport,
)
from portal.scoring.engine import RATINGS
from portal.users.models import User
from portal.vendors.models import VendorCompany
from portal.web import parse_id

__all__ = [
    "COLUMNS",
    "EXPIRY_DAYS",
    "EXPIRY_KINDS",
    "EXPIRING_COLUMNS",
    "ExpiringRow",
    "FINDING_COLUMNS",
    "FindingFilter",
    "FindingRow",
    "INCIDENT_COLUMNS",
    "Figures",
    "INCIDENT_FILTERS",
    "KIND_FILTERS",
    "PAGE_SIZE",
    "RISK_FILTERS",
    "ReviewFilter",
    "ReviewRow",
    "RiskCount",
    "STATE_FILTERS",
    "count",
    "departments_in_scope",
    "expiring",
    "expiry_kind",
    "export",
    "export_expiring",
    "export_findings",
    "export_incidents",
    "finding_rows",
    "figures",
    "incident_count",
    "incident_state",
    "incidents",
    "organisation_wide",
    "rows",
    "scope_label",
]

PAGE_SIZE = 50
KEYWORD_LIMIT = 100
DUE_SOON_DAYS = schedules.DUE_SOON_DAYS  # 90
EXPIRY_DAYS = schedules.EXPIRY_TRIGGER_DAYS  # 120: warned, and the confirmation brought forward

# "" is what is being confirmed now (契約・利用中).
STATE_FILTERS = {
    "": "確認中（契約・利用中）のすべて",
    **{
        key: schedules.STATE_LABELS[key]
        for key in ("overdue", "due_soon", "scheduled", "ending", "ended")
    },
    "all": "すべて（終了したものを含む）",
}
RISK_FILTERS = {**RATINGS, "none": "評価なし"}
KIND_FILTERS = {"assessment": "業務委託", "application": "外部サービス"}
# list kind → (Expiry.kind, what the figure and the list call it)
EXPIRY_KINDS = {
    "certificate": ("certificate_expiry", "認証（ISMS等）"),
    "ismap": ("ismap_expiry", "ISMAP登録"),
}
INCIDENT_FILTERS = {"": "未確認のもの", "all": "すべて（確認済みを含む）"}


# ---------------------------------------------------------------------------------------------
# Scope
# ---------------------------------------------------------------------------------------------


def organisation_wide(actor: User) -> bool:
    """The roles that read every schedule of their organisation."""
    return bool(actor.role_set & ORGANISATION_WIDE_READERS)


def departments_in_scope(session: Session, actor: User) -> dict[int, str]:
    """id → name of the departments whose schedules ``actor`` sees (the filter's choices)."""
    if organisation_wide(actor):
        return dict(
            session.execute(
                sa.select(Department.id, Department.name)
                .where(Department.organisation_id == actor.organisation_id)
                .order_by(Department.name, Department.id)
            ).all()
        )
    return {d.id: d.name for d in sorted(actor.departments, key=lambda d: (d.name, d.id))}


def scope_label(actor: User) -> str:
    if organisation_wide(actor):
        return "団体全体"
    names = "、".join(sorted(d.name for d in actor.departments))
    return f"{names}の担当分" if names else "担当している課なし"


def _visible_ids(actor: User) -> sa.Select:
    return schedules.visible_query(actor).with_only_columns(ReviewSchedule.id)


# ---------------------------------------------------------------------------------------------
# The list of schedules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewFilter:
    """What the list is narrowed to, from query (or form) arguments; a value that is not one of
    the offered choices is ignored, never an error."""

    state: str = ""
    risk: str = ""
    kind: str = ""
    department_id: int | None = None
    keyword: str = ""

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> ReviewFilter:
        def pick(name: str, choices) -> str:
            value = (args.get(name) or "").strip()
            return value if value in choices else ""

        return cls(
            state=pick("state", STATE_FILTERS),
            risk=pick("risk", RISK_FILTERS),
            kind=pick("kind", KIND_FILTERS),
            department_id=parse_id(args.get("department_id")),
            keyword=" ".join((args.get("keyword") or "").split())[:KEYWORD_LIMIT],
        )

    def as_args(self) -> dict[str, str]:
        """The filter as query arguments (only what is set), for links and export forms."""
        return {
            spec.name: str(getattr(self, spec.name))
            for spec in fields(self)
            if getattr(self, spec.name) not in (None, "")
        }

    def described(self, departments: Mapping[int, str]) -> list[tuple[str, str]]:
        """(label, value) of every condition, in words."""
        found = [("状態", STATE_FILTERS[self.state])]
        if self.risk:
            found.append(("リスク評価", RISK_FILTERS[self.risk]))
        if self.kind:
            found.append(("区分", KIND_FILTERS[self.kind]))
        if self.department_id is not None:
            found.append(("担当課", departments.get(self.department_id, "（該当する課なし）")))
        if self.keyword:
            found.append(("対象・委託先の名称", self.keyword))
        return found


def _state_condition(state: str, today: date) -> sa.ColumnElement[bool]:
    """The SQL form of ``schedules.state_of`` (plus "" = active and "all")."""
    active = ReviewSchedule.status == "active"
    due = ReviewSchedule.due_on
    soon = today + timedelta(days=DUE_SOON_DAYS)
    return {
        "": active,
        "overdue": sa.and_(active, due < today),
        "due_soon": sa.and_(active, due >= today, due <= soon),
        "scheduled": sa.and_(active, due > soon),
        "ending": ReviewSchedule.status == "ending",
        "ended": ReviewSchedule.status == "ended",
        "all": sa.true(),
    }[state]


def _like(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filtered(actor: User, filters: ReviewFilter, today: date) -> sa.Select:
    query = (
        schedules.visible_query(actor)
        .join(ReviewSchedule.vendor_company)
        .where(_state_condition(filters.state, today))
    )
    if filters.risk == "none":
        query = query.where(ReviewSchedule.risk_rating.is_(None))
    elif filters.risk:
        query = query.where(ReviewSchedule.risk_rating == filters.risk)
    if filters.kind == "assessment":
        query = query.where(ReviewSchedule.assessment_id.is_not(None))
    elif filters.kind == "application":
        query = query.where(ReviewSchedule.application_id.is_not(None))
    if filters.department_id is not None:
        query = query.where(ReviewSchedule.department_id == filters.department_id)
    if filters.keyword:
        pattern = _like(filters.keyword)
        query = query.where(
            sa.or_(
                ReviewSchedule.title.ilike(pattern, escape="\\"),
                VendorCompany.name.ilike(pattern, escape="\\"),
            )
        )
    return query


def count(session: Session, actor: User, filters: ReviewFilter, today: date) -> int:
    query = _filtered(actor, filters, today).with_only_columns(sa.func.count(ReviewSchedule.id))
    return session.scalar(query) or 0


@dataclass(frozen=True)
class ReviewRow:
    """One schedule as the list shows it."""

    schedule: ReviewSchedule
    today: date

    @property
    def state(self) -> str:
        return schedules.state_of(self.schedule, self.today)

    @property
    def state_label(self) -> str:
        return schedules.STATE_LABELS[self.state]

    @property
    def overdue(self) -> bool:
        return self.state == "overdue"


def rows(
    session: Session,
    actor: User,
    filters: ReviewFilter,
    today: date,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[ReviewRow]:
    """The schedules the filter finds — being confirmed, then in exit, then ended; each
    earliest due first — with what the columns read."""
    stage = sa.case({"active": 0, "ending": 1}, value=ReviewSchedule.status, else_=2)
    query = (
        _filtered(actor, filters, today)
        .options(
            contains_eager(ReviewSchedule.vendor_company),
            joinedload(ReviewSchedule.department),
            selectinload(ReviewSchedule.triggers),
        )
        .order_by(stage, ReviewSchedule.due_on, ReviewSchedule.id)
    )
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [ReviewRow(schedule, today) for schedule in session.scalars(query)]


def export(
    session: Session, actor: User, filters: ReviewFilter, today: date, kind: str
) -> tuple[bytes, int]:
    """The filtered list as CSV or XLSX (every column of ``COLUMNS``), audited with its size
    and filter. Returns (data, number of rows)."""
    if kind not in ("csv", "xlsx"):
        raise ValueError(kind)
    found = rows(session, actor, filters, today)
    if kind == "csv":
        data = exports.to_csv(found, COLUMNS)
    else:
        data = exports.to_xlsx(
            found,
            title=f"定期確認の一覧（{actor.organisation.name}）",
            columns=COLUMNS,
            sheet_title="定期確認",
        )
    audit.record(
        session,
        "reviews.export",
        actor=actor,
        details={"format": kind, "count": len(found), "filters": filters.as_args()},
    )
    return data, len(found)


# ---------------------------------------------------------------------------------------------
# Certificates and ISMAP registrations running out
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiringRow:
    schedule: ReviewSchedule
    expiry: schedules.Expiry
    today: date

    @property
    def days_left(self) -> int:
        return (self.expiry.until - self.today).days

    @property
    def expired(self) -> bool:
        return self.days_left < 0


def _active_subjects(session: Session, actor: User) -> list[ReviewSchedule]:
    """The visible active schedules with the service record of each application loaded."""
    return list(
        session.scalars(
            schedules.visible_query(actor)
            .where(ReviewSchedule.status == "active")
            .options(
                joinedload(ReviewSchedule.application).joinedload(UseApplication.service),
                joinedload(ReviewSchedule.vendor_company),
                joinedload(ReviewSchedule.department),
            )
            .order_by(ReviewSchedule.id)
        ).unique()
    )


def expiring(
    session: Session, actor: User, today: date, kind: str | None = None
) -> list[ExpiringRow]:
    """Every dated certificate (``kind`` "certificate") or ISMAP registration ("ismap") of a
    visible active schedule that expires within 120 days or has expired, earliest first — the
    expiries the daily job turns into triggers (``schedules.expiry_triggers``)."""
    wanted = {EXPIRY_KINDS[kind][0]} if kind else {k for k, _label in EXPIRY_KINDS.values()}
    limit = today + timedelta(days=EXPIRY_DAYS)
    subjects = _active_subjects(session, actor)
    # The contractors' certification answers in two queries; the services' records as loaded.
    every = schedules.expiries_many(session, subjects)
    found = []
    for schedule in subjects:
        found.extend(
            ExpiringRow(schedule, item, today)
            for item in every[schedule.id]
            if item.kind in wanted and item.until <= limit
        )
    return sorted(found, key=lambda r: (r.expiry.until, r.schedule.title, r.schedule.id))


def expiring_counts(session: Session, actor: User, today: date) -> Counter[str]:
    """How many rows ``expiring`` lists, by ``Expiry.kind`` — for the figures, without loading
    every schedule: a service's record is read only when its ``earliest_expiry`` (the earliest
    of the dates ``ExternalService.expiries`` lists, derived on every save) is within the
    window, and of the contractors only the certification answers. Four queries (per
    ``IN_BATCH`` contractors), whatever the number of schedules."""
    limit = today + timedelta(days=EXPIRY_DAYS)
    scope = schedules.visible_query(actor).where(ReviewSchedule.status == "active").whereclause
    services = session.execute(
        sa.select(ReviewSchedule.id, ExternalService)
        .join(UseApplication, UseApplication.id == ReviewSchedule.application_id)
        .join(ExternalService, ExternalService.id == UseApplication.service_id)
        .where(scope, ExternalService.earliest_expiry <= limit)
    )
    items = [item for _id, service in services for item in schedules.service_expiries(service)]
    contractors = session.scalars(
        sa.select(ReviewSchedule.id).where(scope, ReviewSchedule.application_id.is_(None))
    ).all()
    answers = schedules.current_values_by_id(
        session, contractors, keys_prefix=schedules.CERTIFICATION_KEYS
    )
    for values in answers.values():
        items += schedules.expiries_from_answers(values)
    return Counter(item.kind for item in items if item.until <= limit)


# ---------------------------------------------------------------------------------------------
# Incident reports
# ---------------------------------------------------------------------------------------------


def _incident_conditions(actor: User, show_all: bool) -> list[sa.ColumnElement[bool]]:
    found = [
        VendorReport.organisation_id == actor.organisation_id,
        VendorReport.kind == "incident",
        VendorReport.schedule_id.in_(_visible_ids(actor)),
    ]
    if not show_all:
        found.append(VendorReport.acknowledged_at.is_(None))
    return found


def incident_count(session: Session, actor: User, *, show_all: bool = False) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count(VendorReport.id)).where(*_incident_conditions(actor, show_all))
        )
        or 0
    )


def incidents(
    session: Session,
    actor: User,
    *,
    show_all: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[VendorReport]:
    """The incident reports of the visible schedules, newest first (only those nobody has
    acknowledged yet unless ``show_all``)."""
    query = (
        sa.select(VendorReport)
        .where(*_incident_conditions(actor, show_all))
        .options(
            joinedload(VendorReport.schedule).joinedload(ReviewSchedule.department),
            joinedload(VendorReport.schedule).joinedload(ReviewSchedule.vendor_company),
        )
        .order_by(VendorReport.reported_at.desc(), VendorReport.id.desc())
    )
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return list(session.scalars(query))


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskCount:
    key: str  # a RISK_FILTERS key: the list's ?risk=
    label: str
    count: int


@dataclass(frozen=True)
class Figures:
    """What needs attention in ``scope``; each figure has a list with exactly its rows."""

    organisation_wide: bool
    scope: str
    overdue: int
    due_soon: int
    certificates_expiring: int
    ismap_expiring: int
    open_findings: int
    overdue_findings: int
    unacknowledged_incidents: int
    ending: int
    risks: tuple[RiskCount, ...]

    @property
    def active(self) -> int:
        return sum(risk.count for risk in self.risks)


def _sum(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def figures(session: Session, actor: User, today: date) -> Figures:
    """The dashboard of 定期確認 for ``actor`` (対策基準 9.1(3), 9.2(6)): staff their
    departments', the organisation-wide readers the organisation's. Eight queries, whatever
    the number of schedules."""
    overdue, due_soon, ending = session.execute(
        schedules.visible_query(actor).with_only_columns(
            _sum(_state_condition("overdue", today)),
            _sum(_state_condition("due_soon", today)),
            _sum(_state_condition("ending", today)),
        )
    ).one()
    by_risk = dict(
        session.execute(
            schedules.visible_query(actor)
            .where(ReviewSchedule.status == "active")
            .with_only_columns(ReviewSchedule.risk_rating, sa.func.count(ReviewSchedule.id))
            .group_by(ReviewSchedule.risk_rating)
        ).all()
    )
    # The findings list's own scope and conditions: its ?status=open / overdue show these rows.
    open_findings, overdue_findings = session.execute(
        findings.visible_query(actor).with_only_columns(
            _sum(Finding.status == "open"), _sum(findings.overdue_condition(today))
        )
    ).one()
    expiries = expiring_counts(session, actor, today)
    return Figures(
        organisation_wide=organisation_wide(actor),
        scope=scope_label(actor),
        overdue=int(overdue),
        due_soon=int(due_soon),
        certificates_expiring=expiries["certificate_expiry"],
        ismap_expiring=expiries["ismap_expiry"],
        open_findings=int(open_findings),
        overdue_findings=int(overdue_findings),
        unacknowledged_incidents=incident_count(session, actor),
        ending=int(ending),
        risks=tuple(
            RiskCount(key, label, by_risk.get(None if key == "none" else key, 0))
            for key, label in RISK_FILTERS.items()
        ),
    )


# ---------------------------------------------------------------------------------------------
# The findings list (``findings.index``) as rows for its exports
# ---------------------------------------------------------------------------------------------


FINDING_DEFAULT_STATUS = "open"


@dataclass(frozen=True)
class FindingFilter:
    """The findings list's ?status= (one of ``findings.STATUS_FILTERS``, "open" when missing or
    unknown) and ?severity= (one of SEVERITIES or ""), parsed exactly as the page does."""

    status: str = FINDING_DEFAULT_STATUS
    severity: str = ""

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> FindingFilter:
        status = args.get("status", FINDING_DEFAULT_STATUS)
        severity = args.get("severity", "")
        return cls(
            status=status if status in findings.STATUS_FILTERS else FINDING_DEFAULT_STATUS,
            severity=severity if severity in SEVERITIES else "",
        )

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in (("status", self.status), ("severity", self.severity)) if v}


@dataclass(frozen=True)
class FindingRow:
    """One finding as its list and exports show it (``FINDING_COLUMNS``)."""

    finding: Finding
    source: findings.SourceInfo | None
    department: str
    today: date

    @property
    def overdue(self) -> bool:
        return findings.is_overdue(self.finding, self.today)


def finding_rows(
    session: Session, actor: User, filters: FindingFilter, today: date
) -> list[FindingRow]:
    """Every finding the findings list shows ``actor`` with ``filters`` (its scope:
    ``findings.visible_query``, the department's and those the actor owns), in its order — open
    first, earliest due first. Four queries whatever the number of findings."""
    query = (
        findings.filtered(
            findings.visible_query(actor),
            status=filters.status,
            severity=filters.severity,
            today=today,
        )
        .options(selectinload(Finding.owner))
        .order_by(Finding.status.desc(), Finding.due_on, Finding.id)
    )
    found = list(session.scalars(query))
    sources = findings.sources_of(session, found)
    names = dict(
        session.execute(
            sa.select(Department.id, Department.name).where(
                Department.id.in_(sorted({f.department_id for f in found}))
            )
        ).all()
    )
    return [FindingRow(f, sources.get(f.id), names.get(f.department_id, ""), today) for f in found]


# ---------------------------------------------------------------------------------------------
# Exports of the lists behind the figures (9.1(3), 9.2(6), 10.1(4))
# ---------------------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "xlsx")


def expiry_kind(raw: str | None) -> str:
    """The expiring list's ?kind=: "certificate" unless it is another of EXPIRY_KINDS."""
    return raw if raw in EXPIRY_KINDS else "certificate"


def incident_state(raw: str | None) -> str:
    """The incident list's ?state=: "" (not acknowledged) or "all"."""
    return raw if raw in INCIDENT_FILTERS else ""


def _export_rows(
    session: Session,
    actor: User,
    *,
    action: str,
    fmt: str,
    found: list,
    columns,
    title: str,
    sheet_title: str,
    filters: dict[str, str],
) -> tuple[bytes, int]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(fmt)
    if fmt == "csv":
        data = exports.to_csv(found, columns)
    else:
        data = exports.to_xlsx(
            found,
            title=f"{title}（{actor.organisation.name}）",
            columns=columns,
            sheet_title=sheet_title,
        )
    audit.record(
        session,
        action,
        actor=actor,
        details={"format": fmt, "count": len(found), "filters": filters},
    )
    return data, len(found)


def export_expiring(
    session: Session, actor: User, today: date, kind: str, fmt: str
) -> tuple[bytes, int]:
    """The expiring certificates (``kind`` "certificate") or ISMAP registrations ("ismap") the
    list shows, as CSV or XLSX (``EXPIRING_COLUMNS``), audited as
    ``reviews.export_expiring`` with the kind and the number of rows."""
    kind = expiry_kind(kind)
    label = EXPIRY_KINDS[kind][1]
    return _export_rows(
        session,
        actor,
        action="reviews.export_expiring",
        fmt=fmt,
        found=expiring(session, actor, today, kind),
        columns=EXPIRING_COLUMNS,
        title=f"有効期限が{EXPIRY_DAYS}日以内の{label}",
        sheet_title=f"有効期限が近い{label}",
        filters={"kind": kind},
    )


def export_incidents(session: Session, actor: User, state: str, fmt: str) -> tuple[bytes, int]:
    """The incident reports the list shows (``state`` "" the unacknowledged, "all" every one),
    every page of them, as CSV or XLSX (``INCIDENT_COLUMNS``), audited as
    ``reviews.export_incidents``."""
    state = incident_state(state)
    return _export_rows(
        session,
        actor,
        action="reviews.export_incidents",
        fmt=fmt,
        found=incidents(session, actor, show_all=state == "all"),
        columns=INCIDENT_COLUMNS,
        title=f"事故報告の一覧（{INCIDENT_FILTERS[state]}）",
        sheet_title="事故報告",
        filters={"state": state} if state else {},
    )


def export_findings(
    session: Session, actor: User, filters: FindingFilter, today: date, fmt: str
) -> tuple[bytes, int]:
    """The findings the list shows with ``filters``, every page of them, as CSV or XLSX
    (``FINDING_COLUMNS``: with the corrective action and how it was closed), audited as
    ``findings.export``."""
    return _export_rows(
        session,
        actor,
        action="findings.export",
        fmt=fmt,
        found=finding_rows(session, actor, filters, today),
        columns=FINDING_COLUMNS,
        title=f"指摘事項の一覧（{findings.STATUS_FILTERS[filters.status]}）",
        sheet_title="指摘事項",
        filters=filters.as_args(),
    )
