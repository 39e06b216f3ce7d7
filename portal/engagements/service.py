"""Create and change engagements; list what a user may see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, load_only

from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.engagements.models import Engagement, track_for
from portal.errors import ConflictError
from portal.orgs.models import Department
from portal.permissions import ORGANISATION_WIDE_READERS, Role, can_edit_engagement
from portal.questionnaires.schema import TRACKS
from portal.users.models import User
from portal.web import page_of, parse_id

FIELDS = (
    "kind",
    "title",
    "purpose",
    "department_id",
    "period_start",
    "period_end",
    "contract_amount",
    "information",
    "confidentiality",
    "integrity",
    "availability",
    "personal_data",
    "specific_personal_data",
    "sensitive_personal_data",
    "network_segment",
)

# The list: rows per page, and the columns a row shows (the track comes from kind and
# confidentiality, the department's name from its own table).
PAGE_SIZE = 50
LISTED_COLUMNS = (
    Engagement.id,
    Engagement.department_id,
    Engagement.kind,
    Engagement.title,
    Engagement.confidentiality,
    Engagement.period_start,
    Engagement.period_end,
)

# What decides which questions apply: frozen once a vendor has handed in answers.
CLASSIFICATION = {
    "kind",
    "confidentiality",
    "integrity",
    "availability",
    "personal_data",
    "specific_personal_data",
    "sensitive_personal_data",
    "network_segment",
}


class EngagementError(Exception):
    """A refused change, with a message in Japanese."""


@dataclass(frozen=True)
class EngagementInput:
    kind: str
    title: str
    purpose: str
    department_id: int
    period_start: date | None
    period_end: date | None
    contract_amount: int | None
    information: str
    confidentiality: int
    integrity: int
    availability: int
    personal_data: bool
    specific_personal_data: bool
    sensitive_personal_data: bool
    network_segment: str | None


def track_reason(kind: str, confidentiality: int) -> str:
    """Why the engagement is on its track, as the page explains it."""
    track = track_for(kind, confidentiality)
    if track == "9.1":
        return "業務委託のため、対策基準9.1（業務委託）に基づく契約項目①〜⑬を確認します。"
    if track == "9.2":
        return (
            f"外部サービスで機密性{confidentiality}の情報を取り扱うため、対策基準9.2"
            "（外部サービスの利用・機密性2以上）の選定基準を確認します。"
        )
    return (
        "外部サービスで機密性2以上の情報を取り扱わないため、対策基準9.3"
        "（約款による外部サービスの利用）の確認を行います。"
    )


def _check(actor: User, data: EngagementInput) -> None:
    if data.department_id not in {d.id for d in actor.departments if d.active}:
        raise EngagementError("所属している課等の案件だけを登録できます。")
    if data.period_start and data.period_end and data.period_end < data.period_start:
        raise EngagementError("期間の終了日は開始日以降にしてください。")
    if data.specific_personal_data and data.confidentiality < 3:
        raise EngagementError("特定個人情報を取り扱う場合、機密性は3としてください。")


def create(session: Session, actor: User, data: EngagementInput) -> Engagement:
    if Role.STAFF not in actor.role_set or actor.organisation_id is None:
        raise EngagementError("案件を登録する権限がありません。")
    _check(actor, data)
    engagement = Engagement(
        organisation_id=actor.organisation_id,
        created_by_id=actor.id,
        **{name: getattr(data, name) for name in FIELDS},
    )
    session.add(engagement)
    session.flush()
    audit.record(
        session,
        "engagement.created",
        actor=actor,
        obj=engagement,
        details={"title": engagement.title, "track": engagement.track},
    )
    return engagement


def update(
    session: Session,
    actor: User,
    engagement: Engagement,
    data: EngagementInput,
    expected_version: int,
) -> None:
    if not can_edit_engagement(actor, engagement):
        raise EngagementError("この案件を変更する権限がありません。")
    if expected_version != engagement.version:
        raise ConflictError
    _check(actor, data)
    changes = {
        name: [_plain(getattr(engagement, name)), _plain(getattr(data, name))]
        for name in FIELDS
        if getattr(engagement, name) != getattr(data, name)
    }
    if not changes:
        return
    if changes.keys() & CLASSIFICATION and _answers_handed_in(session, engagement):
        raise EngagementError(
            "回答の提出を受けた案件は、種別・情報の分類・個人情報・ネットワークの区分を変更できません"
            "（尋ねる設問が変わるため）。変更が必要な場合は、新しい案件として登録してください。"
        )
    old_track = engagement.track
    for name in changes:
        setattr(engagement, name, getattr(data, name))
    if engagement.track != old_track:
        changes["track"] = [old_track, engagement.track]
    audit.record(session, "engagement.updated", actor=actor, obj=engagement, details=changes)
    session.flush()


def _answers_handed_in(session: Session, engagement: Engagement) -> bool:
    return session.scalar(
        sa.select(
            sa.exists().where(
                Assessment.engagement_id == engagement.id, Assessment.status != "draft"
            )
        )
    )


def _plain(value):
    return value.isoformat() if isinstance(value, date) else value


def track_condition(track: str) -> sa.ColumnElement[bool]:
    """``Engagement.track == track`` in SQL: the same rule as ``models.track_for``."""
    outsourcing = Engagement.kind == "outsourcing"
    if track == "9.1":
        return outsourcing
    if track == "9.2":
        return sa.and_(sa.not_(outsourcing), Engagement.confidentiality >= 2)
    return sa.and_(sa.not_(outsourcing), Engagement.confidentiality < 2)


@dataclass(frozen=True)
class EngagementFilter:
    """The list's filter as the query string gives it; anything the list does not offer (an
    unknown track, a department the reader cannot choose) filters nothing."""

    track: str | None = None
    text: str | None = None
    department_id: int | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str], departments: Mapping[int, str]) -> EngagementFilter:
        track = args.get("track")
        department_id = parse_id(args.get("department_id"))
        return cls(
            track=track if track in TRACKS else None,
            text=(args.get("q") or "").strip()[:100] or None,
            department_id=department_id if department_id in departments else None,
        )

    def as_args(self) -> dict[str, str]:
        """The filter as query-string arguments (page links keep it)."""
        args = {"q": self.text, "track": self.track, "department_id": self.department_id}
        return {key: str(value) for key, value in args.items() if value}


@dataclass(frozen=True)
class EngagementPage:
    """One page of the list: its rows, the total it is taken from and where it sits."""

    rows: list[Engagement]
    total: int
    page: int
    pages: int

    @property
    def first(self) -> int:
        """The position of the first row shown (0 when there is none)."""
        return (self.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return (self.page - 1) * PAGE_SIZE + len(self.rows)


def department_choices(session: Session, actor: User) -> dict[int, str]:
    """id → name of the departments the reader can narrow the list to: the organisation's for
    organisation-wide readers, their own for staff."""
    if actor.role_set & ORGANISATION_WIDE_READERS:
        return dict(
            session.execute(
                sa.select(Department.id, Department.name)
                .where(Department.organisation_id == actor.organisation_id)
                .order_by(Department.name, Department.id)
            ).all()
        )
    return {d.id: d.name for d in sorted(actor.departments, key=lambda d: (d.name, d.id))}


def _visible(actor: User, filters: EngagementFilter) -> list[sa.ColumnElement[bool]]:
    """The conditions of the engagements the actor may see (the whole organisation for
    organisation-wide readers, their own departments' for staff), narrowed by the filter."""
    conditions = [Engagement.organisation_id == actor.organisation_id]
    if not actor.role_set & ORGANISATION_WIDE_READERS:
        conditions.append(Engagement.department_id.in_([d.id for d in actor.departments]))
    if filters.department_id:
        conditions.append(Engagement.department_id == filters.department_id)
    if filters.track:
        conditions.append(track_condition(filters.track))
    if filters.text:
        conditions.append(Engagement.title.contains(filters.text, autoescape=True))
    return conditions


def visible_page(
    session: Session, actor: User, filters: EngagementFilter, raw_page: str | None = None
) -> EngagementPage:
    """One page (``PAGE_SIZE`` rows, newest first) of the engagements the actor may see, the
    ``?page=`` read as every list reads it (``web.page_of``). Two statements: the count, then
    the rows with the columns the list shows and their department's name."""
    conditions = _visible(actor, filters)
    total = session.scalar(sa.select(sa.func.count(Engagement.id)).where(*conditions)) or 0
    page, pages = page_of(raw_page, total, PAGE_SIZE)
    rows = []
    if total:
        rows = list(
            session.scalars(
                sa.select(Engagement)
                .where(*conditions)
                .options(
                    load_only(*LISTED_COLUMNS),
                    joinedload(Engagement.department, innerjoin=True).load_only(Department.name),
                )
                .order_by(Engagement.created_at.desc(), Engagement.id.desc())
                .limit(PAGE_SIZE)
                .offset((page - 1) * PAGE_SIZE)
            )
        )
    return EngagementPage(rows=rows, total=total, page=page, pages=pages)
