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

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload

from portal.approvals.models import UseApplication
from portal.assessments.models import Answer
from portal.audit import service as audit
from portal.orgs.models import Department
from portal.permissions import ORGANISATION_WIDE_READERS
from portal.register import exports
from portal.reports.columns import COLUMNS
from portal.reviews import findings, schedules
from portal.reviews.models import (
    Confirmation,
    ConfirmationSection,
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
    "ExpiringRow",
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
    "export",
    "figures",
    "incident_count",
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

# The answers ``schedules.expiries_from_answers`` reads: only these are loaded for the figures.
CERTIFICATION_KEYS = "certifications."


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


def _confirmed_answers(session: Session, actor: User) -> dict[int, dict[str, Any]]:
    """schedule id → the certification answers of its 業務委託 assessment as confirmed so far:
    ``schedules.current_values`` for every visible active contractor in two queries."""
    subjects = _visible_ids(actor).where(
        ReviewSchedule.status == "active", ReviewSchedule.assessment_id.is_not(None)
    )
    found: dict[int, dict[str, Any]] = {}
    base = session.execute(
        sa.select(ReviewSchedule.id, Answer.question_key, Answer.value)
        .join(Answer, Answer.assessment_id == ReviewSchedule.assessment_id)
        .where(
            ReviewSchedule.id.in_(subjects),
            Answer.question_key.startswith(CERTIFICATION_KEYS, autoescape=True),
        )
    )
    for schedule_id, key, value in base:
        found.setdefault(schedule_id, {})[key] = json.loads(value)
    changed = session.execute(
        sa.select(Confirmation.schedule_id, ConfirmationSection.values)
        .join(ConfirmationSection, ConfirmationSection.confirmation_id == Confirmation.id)
        .where(
            Confirmation.schedule_id.in_(subjects),
            Confirmation.status == "completed",
            ConfirmationSection.changed == sa.true(),
        )
        .order_by(Confirmation.schedule_id, Confirmation.number, ConfirmationSection.id)
    )
    for schedule_id, values in changed:
        found.setdefault(schedule_id, {}).update(json.loads(values or "{}"))
    return found


def expiring(
    session: Session, actor: User, today: date, kind: str | None = None
) -> list[ExpiringRow]:
    """Every dated certificate (``kind`` "certificate") or ISMAP registration ("ismap") of a
    visible active schedule that expires within 120 days or has expired, earliest first — the
    expiries the daily job turns into triggers (``schedules.expiry_triggers``)."""
    wanted = {EXPIRY_KINDS[kind][0]} if kind else {k for k, _label in EXPIRY_KINDS.values()}
    limit = today + timedelta(days=EXPIRY_DAYS)
    answers = _confirmed_answers(session, actor)
    found = []
    for schedule in _active_subjects(session, actor):
        if schedule.application_id is not None:
            items = schedules.expiries(session, schedule)  # the service record: no query
        else:
            items = schedules.expiries_from_answers(answers.get(schedule.id, {}))
        found.extend(
            ExpiringRow(schedule, item, today)
            for item in items
            if item.kind in wanted and item.until <= limit
        )
    return sorted(found, key=lambda r: (r.expiry.until, r.schedule.title, r.schedule.id))


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
    departments', the organisation-wide readers the organisation's. Seven queries, whatever
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
    expiries = expiring(session, actor, today)
    return Figures(
        organisation_wide=organisation_wide(actor),
        scope=scope_label(actor),
        overdue=int(overdue),
        due_soon=int(due_soon),
        certificates_expiring=sum(r.expiry.kind == "certificate_expiry" for r in expiries),
        ismap_expiring=sum(r.expiry.kind == "ismap_expiry" for r in expiries),
        open_findings=int(open_findings),
        overdue_findings=int(overdue_findings),
        unacknowledged_incidents=incident_count(session, actor),
        ending=int(ending),
        risks=tuple(
            RiskCount(key, label, by_risk.get(None if key == "none" else key, 0))
            for key, label in RISK_FILTERS.items()
        ),
    )
