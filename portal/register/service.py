"""The 承認済み外部サービス台帳 (対策基準 9.2(4), 9.3): the register entries of an organisation,
filtered in SQL, each with its contract, attached 特記事項 version and checklist states.

An entry is a ``UseApplication`` in ``REGISTER_STATES``; entries are read organisation-wide by
everyone holding ``REGISTER_VIEW``. Applications still in progress or rejected are listed only
when the filter asks for them and only to those ``can_view_application`` lets read them.

The columns every output shares (list, CSV, XLSX, printable view) are ``COLUMNS``
(``portal/register/columns.py``): one definition of the register's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, defer, joinedload, selectinload

from portal.approvals.models import (
    CLASSIFICATION_LABELS,
    ENDED_STATES,
    REGISTER_STATES,
    STATUS_LABELS,
    ExternalService,
    ManagerAssignment,
    UseApplication,
)
from portal.clauses.models import ClauseDocument, ClauseVersion, Contract
from portal.clauses.service import contracts_for
from portal.lifecycle.service import LifecycleState, states_for
from portal.orgs.models import Department
from portal.permissions import ORGANISATION_WIDE_READERS
from portal.questionnaires.schema import SEGMENTS
from portal.register.columns import COLUMNS, Column
from portal.scoring import ismap
from portal.scoring.ismap import IsmapStatus
from portal.users.models import User
from portal.vendors.models import VendorCompany
from portal.web import parse_id

__all__ = [
    "COLUMNS",
    "CERTIFICATE_WARN_DAYS",
    "CLASSIFICATION_FILTERS",
    "Column",
    "ISMAP_FILTERS",
    "ISMAP_WARN_DAYS",
    "PAGE_SIZE",
    "REVIEW_FILTERS",
    "REVIEW_WARN_DAYS",
    "RegisterFilter",
    "RegisterRow",
    "STATUS_FILTERS",
    "count",
    "departments_of",
    "page_ids",
    "register_query",
    "rows",
]

PAGE_SIZE = 50
ISMAP_WARN_DAYS = 120  # as the scoring warns (DOMAIN: "warn well before (e.g. 120 days)")
CERTIFICATE_WARN_DAYS = 120
REVIEW_WARN_DAYS = 90
KEYWORD_LIMIT = 100

# "" is the register itself (承認・条件付承認・停止・廃止手続中・廃止). 廃止手続中 (the exit
# checklist of 9.2(7) open) is a status of its own: the 廃止 filter does not find it.
STATUS_FILTERS = {
    "": "台帳の掲載分（承認・条件付承認・停止・廃止手続中・廃止）",
    "all": "すべて（申請中・差戻し・却下を含む）",
    **STATUS_LABELS,
}
ISMAP_FILTERS = {
    key: ismap.STATUS_LABELS[key]
    for key in ("valid", "expiring", "renewal_pending", "expired", "none", "unknown")
}
REVIEW_FILTERS = {
    "overdue": "期限を過ぎている",
    "soon": f"{REVIEW_WARN_DAYS}日以内に期限が来る",
}
CLASSIFICATION_FILTERS = CLASSIFICATION_LABELS


@dataclass(frozen=True)
class RegisterFilter:
    """What the register is narrowed to. Built from query (or form) arguments by ``parse``;
    a value that is not one of the offered choices is ignored, never an error."""

    status: str = ""
    department_id: int | None = None
    max_classification: int | None = None  # 取り扱う情報の最高の機密性 (1–3)
    segment: str = ""
    ismap: str = ""
    review: str = ""
    expiring_certificates: bool = False
    keyword: str = ""

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> RegisterFilter:
        def pick(name: str, choices) -> str:
            value = (args.get(name) or "").strip()
            return value if value in choices else ""

        classification = pick("max_classification", {"1", "2", "3"})
        keyword = " ".join((args.get("keyword") or "").split())[:KEYWORD_LIMIT]
        return cls(
            status=pick("status", STATUS_FILTERS),
            department_id=parse_id(args.get("department_id")),
            max_classification=int(classification) if classification else None,
            segment=pick("segment", SEGMENTS),
            ismap=pick("ismap", ISMAP_FILTERS),
            review=pick("review", REVIEW_FILTERS),
            expiring_certificates=(args.get("expiring_certificates") or "") in ("1", "y", "on"),
            keyword=keyword,
        )

    def as_args(self) -> dict[str, str]:
        """The filter as query arguments (only what is set), for links and export forms."""
        args: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is True:
                args[spec.name] = "1"
            elif value not in (None, "", False):
                args[spec.name] = str(value)
        return args

    def statuses(self) -> tuple[str, ...]:
        if self.status == "all":
            return tuple(STATUS_LABELS)
        return (self.status,) if self.status else REGISTER_STATES

    def described(self, departments: Mapping[int, str]) -> list[tuple[str, str]]:
        """(label, value) of every condition, in words (the printable view lists them)."""
        found = [("状態", STATUS_FILTERS[self.status])]
        if self.department_id is not None:
            found.append(("利用課", departments.get(self.department_id, "（該当する課なし）")))
        if self.max_classification is not None:
            found.append(
                ("取り扱う情報の最高の機密性", CLASSIFICATION_FILTERS[self.max_classification])
            )
        if self.segment:
            found.append(("利用するネットワーク", SEGMENTS[self.segment]))
        if self.ismap:
            found.append(("ISMAPの状態", ISMAP_FILTERS[self.ismap]))
        if self.review:
            found.append(("定期確認", REVIEW_FILTERS[self.review]))
        if self.expiring_certificates:
            found.append(
                ("証明書", f"有効期限が{CERTIFICATE_WARN_DAYS}日以内又は期限切れのものがある")
            )
        if self.keyword:
            found.append(("サービス名・提供者名", self.keyword))
        return found


def _like(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ismap_condition(status: str, today: date) -> sa.ColumnElement[bool]:
    """The SQL form of ``ismap.status``: the same six answers for the same day."""
    service = ExternalService
    registered = service.ismap_kind != "none"
    until = service.ismap_valid_until
    warn = today + timedelta(days=ISMAP_WARN_DAYS)
    past = sa.and_(registered, until < today)
    return {
        "none": service.ismap_kind == "none",
        "unknown": sa.and_(registered, until.is_(None)),
        "valid": sa.and_(registered, until > warn),
        "expiring": sa.and_(registered, until >= today, until <= warn),
        "expired": sa.and_(past, sa.not_(service.ismap_renewal_pending)),
        "renewal_pending": sa.and_(past, service.ismap_renewal_pending),
    }[status]


def _visible(organisation_id: int, viewer: User | None) -> sa.ColumnElement[bool]:
    """``can_view_application`` in SQL. Without a viewer: the register entries only."""
    own = UseApplication.organisation_id == organisation_id
    in_register = UseApplication.status.in_(REGISTER_STATES)
    if viewer is None or viewer.organisation_id != organisation_id:
        return sa.and_(own, in_register)
    if viewer.role_set & ORGANISATION_WIDE_READERS:
        return own
    departments = [d.id for d in viewer.departments]
    return sa.and_(own, sa.or_(in_register, UseApplication.department_id.in_(departments)))


def _conditions(
    organisation_id: int, filters: RegisterFilter, today: date, viewer: User | None
) -> list[sa.ColumnElement[bool]]:
    found = [_visible(organisation_id, viewer), UseApplication.status.in_(filters.statuses())]
    if filters.department_id is not None:
        found.append(UseApplication.department_id == filters.department_id)
    if filters.max_classification is not None:
        found.append(UseApplication.max_confidentiality == filters.max_classification)
    if filters.segment:
        found.append(UseApplication.network_segment == filters.segment)
    if filters.ismap:
        found.append(_ismap_condition(filters.ismap, today))
    if filters.review:
        # An entry being retired or retired (廃止手続中・廃止) is no longer reviewed.
        due = UseApplication.next_review_on
        found.append(UseApplication.status.not_in(ENDED_STATES))
        if filters.review == "overdue":
            found.append(due < today)
        else:
            found.append(due.between(today, today + timedelta(days=REVIEW_WARN_DAYS)))
    if filters.expiring_certificates:
        found.append(
            ExternalService.earliest_expiry <= today + timedelta(days=CERTIFICATE_WARN_DAYS)
        )
    if filters.keyword:
        pattern = _like(filters.keyword)
        found.append(
            sa.or_(
                ExternalService.name.ilike(pattern, escape="\\"),
                VendorCompany.name.ilike(pattern, escape="\\"),
            )
        )
    return found


def _needs_service(filters: RegisterFilter) -> bool:
    return bool(filters.ismap or filters.expiring_certificates or filters.keyword)


def _joined(query: sa.Select, filters: RegisterFilter) -> sa.Select:
    """``query`` joined to the service (and to its provider when the keyword looks there)."""
    query = query.join(UseApplication.service)
    if filters.keyword:
        query = query.join(ExternalService.vendor_company)
    return query


def _filtered(
    query: sa.Select,
    organisation_id: int,
    filters: RegisterFilter,
    today: date,
    viewer: User | None,
) -> sa.Select:
    return _joined(query, filters).where(*_conditions(organisation_id, filters, today, viewer))


ORDER = (ExternalService.name, UseApplication.id)

# What the list page shows of its 50 entries (``register/index.html``): joined where it can be,
# without the services' long texts (the list shows none of them) and without the managers'
# roles and departments (it shows their names). The exports and the printable view read every
# column of ``COLUMNS`` of every entry and also need the applicant and the approver: many
# entries share a department, a plan or a person, so those are loaded once each (``User``
# brings its roles and departments with it).
_LIST_OPTIONS = (
    joinedload(UseApplication.service).options(
        joinedload(ExternalService.vendor_company),
        defer(ExternalService.description),
        defer(ExternalService.certificates),
        defer(ExternalService.data_locations),
        defer(ExternalService.subcontractors),
        defer(ExternalService.backup),
        defer(ExternalService.exit_plan),
    ),
    joinedload(UseApplication.plan),
    joinedload(UseApplication.department),
    selectinload(UseApplication.managers).joinedload(ManagerAssignment.user).lazyload("*"),
    selectinload(UseApplication.terms_versions),
)
_FULL_OPTIONS = (
    selectinload(UseApplication.plan),
    selectinload(UseApplication.department),
    selectinload(UseApplication.managers).joinedload(ManagerAssignment.user),
    selectinload(UseApplication.terms_versions),
    selectinload(UseApplication.applicant),
    selectinload(UseApplication.decided_by),
)


def register_query(
    organisation_id: int, filters: RegisterFilter, today: date, viewer: User | None = None
) -> sa.Select:
    """The entries, ordered by service name, with everything the columns read loaded eagerly
    (a constant number of queries whatever the number of entries). ``viewer`` widens the
    result to the applications in progress or rejected that this user may read."""
    service = contains_eager(UseApplication.service)
    return (
        _filtered(sa.select(UseApplication), organisation_id, filters, today, viewer)
        .options(
            service.contains_eager(ExternalService.vendor_company)
            if filters.keyword
            else service.joinedload(ExternalService.vendor_company),
            *_FULL_OPTIONS,
        )
        .order_by(*ORDER)
    )


def page_ids(
    session: Session,
    organisation_id: int,
    filters: RegisterFilter,
    today: date,
    viewer: User | None = None,
    *,
    limit: int,
    offset: int = 0,
) -> list[int]:
    """The ids of one page of entries, in the register's order: filtered and sorted in SQL
    on narrow index entries only (no row of the page is loaded yet)."""
    query = _filtered(sa.select(UseApplication.id), organisation_id, filters, today, viewer)
    return list(session.scalars(query.order_by(*ORDER).limit(limit).offset(offset)))


def count(
    session: Session,
    organisation_id: int,
    filters: RegisterFilter,
    today: date,
    viewer: User | None = None,
) -> dict[str, int]:
    """How many entries the filter finds: in all, by status, and how many need attention
    (review overdue, a certificate expired). One grouped query; the services are joined only
    when a filter reads them (an expired certificate is found through the services' expiry
    index), so the usual count reads the applications' index alone."""
    overdue = sa.and_(
        UseApplication.status.not_in(ENDED_STATES), UseApplication.next_review_on < today
    )
    expired = UseApplication.service_id.in_(
        sa.select(ExternalService.id).where(ExternalService.earliest_expiry < today)
    )
    query = sa.select(
        UseApplication.status,
        sa.func.count(UseApplication.id),
        sa.func.sum(sa.case((overdue, 1), else_=0)),
        sa.func.sum(sa.case((expired, 1), else_=0)),
    )
    if _needs_service(filters):
        query = _joined(query, filters)
    query = query.where(*_conditions(organisation_id, filters, today, viewer)).group_by(
        UseApplication.status
    )
    totals = {"total": 0, "review_overdue": 0, "certificate_expired": 0}
    for status, number, late, lapsed in session.execute(query):
        totals[status] = number
        totals["total"] += number
        totals["review_overdue"] += int(late or 0)
        totals["certificate_expired"] += int(lapsed or 0)
    return totals


@dataclass(frozen=True)
class RegisterRow:
    """One entry as the register shows it, with what every output reads worked out once
    (``of``): the ISMAP status, the current 外部サービス管理者 and the review and certificate
    marks of ``today``."""

    application: UseApplication
    service: ExternalService
    document: ClauseDocument | None
    contract: Contract | None
    attached_version: ClauseVersion | None  # the 特記事項 version attached to the contract
    lifecycle: LifecycleState | None
    today: date
    ismap: IsmapStatus
    manager: ManagerAssignment | None  # the current 外部サービス管理者
    review_overdue: bool
    review_soon: bool
    certificate_expired: bool
    certificate_expiring: bool

    @classmethod
    def of(
        cls,
        application: UseApplication,
        contract_of: tuple[ClauseDocument | None, Contract | None],
        lifecycle: LifecycleState | None,
        today: date,
    ) -> RegisterRow:
        service = application.service
        document, contract = contract_of
        due = application.next_review_on
        reviewed = application.status not in ENDED_STATES
        review_overdue = bool(due and reviewed and due < today)
        expiry = service.earliest_expiry
        certificate_expired = bool(expiry and expiry < today)
        return cls(
            application=application,
            service=service,
            document=document,
            contract=contract,
            attached_version=contract.attached_version if contract else None,
            lifecycle=lifecycle,
            today=today,
            ismap=service.ismap_status(today, ISMAP_WARN_DAYS),
            manager=application.current_manager,
            review_overdue=review_overdue,
            review_soon=bool(
                due
                and reviewed
                and not review_overdue
                and due <= today + timedelta(days=REVIEW_WARN_DAYS)
            ),
            certificate_expired=certificate_expired,
            certificate_expiring=bool(
                expiry
                and not certificate_expired
                and expiry <= today + timedelta(days=CERTIFICATE_WARN_DAYS)
            ),
        )


def rows(
    session: Session,
    organisation_id: int,
    filters: RegisterFilter,
    today: date,
    viewer: User | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[RegisterRow]:
    """The entries as ``RegisterRow``s: the applications, their contracts and attached
    versions, the managers' departments and the checklist states, in a fixed number of
    queries. With ``limit`` (one page of the list): the page's ids first (``page_ids``), then
    only those entries, with what the list page shows."""
    if limit is None:
        query = register_query(organisation_id, filters, today, viewer)
        applications = list(session.scalars(query).unique())
    else:
        ids = page_ids(session, organisation_id, filters, today, viewer, limit=limit, offset=offset)
        applications = _loaded(session, ids)
    # The contracts come with their attached versions (one query).
    contracts = contracts_for(session, [a.assessment_id for a in applications if a.assessment_id])
    states = states_for(session, applications, today)
    return [
        RegisterRow.of(
            a, contracts.get(a.assessment_id or 0, (None, None)), states.get(a.id), today
        )
        for a in applications
    ]


def _loaded(session: Session, ids: list[int]) -> list[UseApplication]:
    """The entries ``ids`` in that order, with what the list page shows (a fixed number of
    queries)."""
    if not ids:
        return []
    query = sa.select(UseApplication).where(UseApplication.id.in_(ids)).options(*_LIST_OPTIONS)
    found = {a.id: a for a in session.scalars(query).unique()}
    return [found[i] for i in ids if i in found]


def departments_of(session: Session, organisation_id: int) -> dict[int, str]:
    """id → name of the organisation's departments (the filter's choices)."""
    return dict(
        session.execute(
            sa.select(Department.id, Department.name)
            .where(Department.organisation_id == organisation_id)
            .order_by(Department.name, Department.id)
        ).all()
    )
