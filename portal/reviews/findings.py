"""指摘事項 (findings) with their 是正措置 (corrective actions): raised on a 定期確認 (9.1(3),
9.2(6)) or on an audit of a contractor (10.1(4)), each with a severity, an owner and a due date,
and closed with a note on what was done.

- A confirmation's findings are raised by the staff who manage its schedule
  (``schedules.can_manage_schedule``); an audit's only by the audit's assigned auditor, still
  holding ``CONTRACTOR_AUDITS_MANAGE`` and not a member of the audited department
  (``contractor_audits.service.may_record``; 10.1(2)①, 10.1(4), SECURITY.md "an auditor
  cannot audit their own department"), once the audit has been carried out.
- The owner is an active staff user of the organisation who can act on a corrective action:
  holding REVIEWS_MANAGE (担当職員) or LIFECYCLE_RECORD (外部サービス管理者) — never an
  auditor, approver or CISO who only reads (DESIGN.md: the auditor reads everything, changes
  nothing); the due date is between today and two years ahead.
- A confirmation's finding is closed, with a note, by its owner or by the staff who manage the
  schedule. An audit's finding only by the auditor who may record the audit (``may_record``):
  its owner carries out the corrective action and the auditor confirms it (10.1(4)).
- Staff read their departments' findings and those they own; the organisation-wide readers
  (approver, 外部サービス管理者, CISO, ネットワーク管理者, auditor) read them all.

Services flush, callers commit; a refusal raises ``FindingError`` and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.audit import service as audit
from portal.contractor_audits import service as contractor_audits
from portal.contractor_audits.models import ContractorAudit
from portal.permissions import (
    ORGANISATION_WIDE_READERS,
    ROLE_PERMISSIONS,
    Permission,
    permissions_of,
    same_organisation,
)
from portal.reviews import schedules
from portal.reviews.models import SEVERITIES, Confirmation, Finding
from portal.users.models import User, UserRole
from portal.web import clean_text, format_date

MAX_TITLE = 200
MAX_TEXT = 4000
MAX_NOTE = 2000
MAX_YEARS_AHEAD = 2

STATUS_FILTERS = {
    "open": "対応中",
    "overdue": "期限超過",
    "closed": "完了",
    "all": "すべて",
}

Source = Confirmation | ContractorAudit


class FindingError(ValueError):
    """A refused change, with a message in Japanese. Nothing has been changed."""


@dataclass(frozen=True)
class FindingInput:
    severity: str
    title: str
    description: str
    corrective_action: str
    owner_id: int | None
    due_on: date | None


@dataclass(frozen=True)
class SourceInfo:
    """Where a finding comes from, for lists and links: ``kind`` is confirmation | audit."""

    kind: str
    id: int
    label: str  # 第2回 定期確認 / the audit's title
    subject: str  # the contract or service, or the audited company


# ---------------------------------------------------------------------------------------------
# Dates, owners
# ---------------------------------------------------------------------------------------------


def latest_due(today: date) -> date:
    """Two years from today (29 February → 28 February)."""
    try:
        return today.replace(year=today.year + MAX_YEARS_AHEAD)
    except ValueError:
        return today.replace(year=today.year + MAX_YEARS_AHEAD, day=28)


# Who can carry out a corrective action: the department's staff (REVIEWS_MANAGE) and the
# 外部サービス管理者 (LIFECYCLE_RECORD). Read-only roles (auditor, approver, CISO, ネットワーク
# 管理者) are not owners.
OWNER_PERMISSIONS = frozenset({Permission.REVIEWS_MANAGE, Permission.LIFECYCLE_RECORD})
_OWNER_ROLES = sorted(
    role.value for role, granted in ROLE_PERMISSIONS.items() if granted & OWNER_PERMISSIONS
)


def eligible_owners(session: Session, organisation_id: int) -> list[User]:
    """Active staff of the organisation who can act on a corrective action (REVIEWS_MANAGE or
    LIFECYCLE_RECORD): the owner choices."""
    return list(
        session.scalars(
            sa.select(User)
            .where(
                User.organisation_id == organisation_id,
                User.active.is_(True),
                User.vendor_company_id.is_(None),
                User.id.in_(sa.select(UserRole.user_id).where(UserRole.role.in_(_OWNER_ROLES))),
            )
            .options(selectinload(User.departments))
            .order_by(User.name, User.id)
        )
    )


def _owner(session: Session, organisation_id: int, owner_id: int | None) -> User:
    owner = session.get(User, owner_id) if owner_id else None
    if owner is None:
        raise FindingError("是正措置の担当者を選んでください。")
    if (
        owner.is_vendor
        or owner.organisation_id != organisation_id
        or not owner.active
        or not permissions_of(owner) & OWNER_PERMISSIONS
    ):
        raise FindingError(
            "是正措置の担当者には、この団体の有効な職員で、是正措置を行う担当職員又は"
            "外部サービス管理者を指定してください（事業者、他団体の利用者、無効なアカウント、"
            "閲覧のみの監査担当・許可権限者・CISO等は指定できません）。"
        )
    return owner


def _text(value: str | None, label: str, limit: int, *, required: bool) -> str:
    return clean_text(value, label, limit=limit, required=required, error=FindingError)


# ---------------------------------------------------------------------------------------------
# Who raises, closes and reads
# ---------------------------------------------------------------------------------------------


def can_raise(actor: User, source: Source) -> bool:
    """A confirmation's: the staff who manage its schedule (9.1(3), 9.2(6)). An audit's: only
    the assigned auditor outside the audited department (10.1(2)①, 10.1(4))."""
    if isinstance(source, Confirmation):
        return schedules.can_manage_schedule(actor, source.schedule)
    return contractor_audits.may_record(actor, source)


def source_of(session: Session, finding: Finding) -> Source:
    if finding.confirmation_id is not None:
        return session.get(Confirmation, finding.confirmation_id)
    return session.get(ContractorAudit, finding.audit_id)


def can_close(session: Session, actor: User, finding: Finding) -> bool:
    """A confirmation's finding: its owner or the staff who manage the schedule (9.2(6)). An
    audit's finding: only the auditor who may record the audit (``may_record``: assigned, not
    in the audited department) — the owner acts, the auditor confirms the closure (10.1(2)①,
    10.1(4))."""
    if actor.is_vendor or not same_organisation(actor, finding.organisation_id):
        return False
    source = source_of(session, finding)
    if isinstance(source, ContractorAudit):
        return contractor_audits.may_record(actor, source)
    if finding.owner_id == actor.id:
        return True
    return source is not None and schedules.can_manage_schedule(actor, source.schedule)


def who_closes(finding: Finding) -> str:
    """Who may close ``finding``, for the refusal and the finding's page."""
    if finding.audit_id is not None:
        return (
            "委託先監査の指摘事項を完了にできるのは、この監査の担当者（監査の対象となる課に"
            "所属しない者）だけです。是正措置の担当者が対応し、監査担当者が確認して完了にします"
            "（対策基準10.1(2)①、10.1(4)）。"
        )
    return (
        "この指摘事項を完了にできるのは、是正措置の担当者又は担当課の職員"
        "（外部サービスでは、その外部サービス管理者も）です。"
    )


def can_view(actor: User, finding: Finding) -> bool:
    if actor.is_vendor or not same_organisation(actor, finding.organisation_id):
        return False
    if actor.role_set & ORGANISATION_WIDE_READERS or finding.owner_id == actor.id:
        return True
    return finding.department_id in {d.id for d in actor.departments}


def visible_query(actor: User):
    """The findings ``actor`` may read, as a select to refine (like ``schedules.visible_query``,
    plus the findings the actor owns)."""
    if actor.is_vendor or actor.organisation_id is None:
        return sa.select(Finding).where(sa.false())
    query = sa.select(Finding).where(Finding.organisation_id == actor.organisation_id)
    if not actor.role_set & ORGANISATION_WIDE_READERS:
        query = query.where(
            sa.or_(
                Finding.department_id.in_([d.id for d in actor.departments]),
                Finding.owner_id == actor.id,
            )
        )
    return query


# ---------------------------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------------------------


def overdue_condition(today: date):
    """Open and past its due date."""
    return sa.and_(Finding.status == "open", Finding.due_on < today)


def overdue(query, today: date):
    """``query`` narrowed to the overdue findings."""
    return query.where(overdue_condition(today))


def is_overdue(finding: Finding, today: date) -> bool:
    return finding.status == "open" and finding.due_on < today


def filtered(query, *, status: str, severity: str, today: date):
    """``status`` one of STATUS_FILTERS (unknown → all); ``severity`` one of SEVERITIES or ""."""
    if status == "open":
        query = query.where(Finding.status == "open")
    elif status == "overdue":
        query = overdue(query, today)
    elif status == "closed":
        query = query.where(Finding.status == "closed")
    if severity in SEVERITIES:
        query = query.where(Finding.severity == severity)
    return query


def findings_of(session: Session, source: Source) -> list[Finding]:
    column = Finding.confirmation_id if isinstance(source, Confirmation) else Finding.audit_id
    return list(
        session.scalars(
            sa.select(Finding)
            .options(selectinload(Finding.owner))
            .where(column == source.id)
            .order_by(Finding.id)
        )
    )


def findings_of_schedule(session: Session, schedule) -> list[Finding]:
    """Every finding of a contract or service: of its confirmations and of its audits."""
    from portal.contractor_audits.models import ContractorAudit

    return list(
        session.scalars(
            sa.select(Finding)
            .options(selectinload(Finding.owner))
            .outerjoin(Confirmation, Finding.confirmation_id == Confirmation.id)
            .outerjoin(ContractorAudit, Finding.audit_id == ContractorAudit.id)
            .where(
                sa.or_(
                    Confirmation.schedule_id == schedule.id,
                    ContractorAudit.schedule_id == schedule.id,
                )
            )
            .order_by(Finding.status.desc(), Finding.due_on, Finding.id)
        )
    )


def sources_of(session: Session, findings: list[Finding]) -> dict[int, SourceInfo]:
    """finding id → where it comes from, in two queries whatever the number of findings."""
    confirmation_ids = {f.confirmation_id for f in findings if f.confirmation_id}
    audit_ids = {f.audit_id for f in findings if f.audit_id}
    confirmations = {
        c.id: c
        for c in session.scalars(
            sa.select(Confirmation)
            .options(selectinload(Confirmation.schedule))
            .where(Confirmation.id.in_(confirmation_ids))
        )
    }
    audits = {
        a.id: a
        for a in session.scalars(
            sa.select(ContractorAudit)
            .options(selectinload(ContractorAudit.vendor_company))
            .where(ContractorAudit.id.in_(audit_ids))
        )
    }
    found: dict[int, SourceInfo] = {}
    for finding in findings:
        if finding.confirmation_id in confirmations:
            confirmation = confirmations[finding.confirmation_id]
            found[finding.id] = SourceInfo(
                "confirmation", confirmation.id, confirmation.label, confirmation.schedule.title
            )
        elif finding.audit_id in audits:
            audit_row = audits[finding.audit_id]
            found[finding.id] = SourceInfo(
                "audit", audit_row.id, audit_row.title, audit_row.audited_label
            )
    return found


# ---------------------------------------------------------------------------------------------
# Raising and closing
# ---------------------------------------------------------------------------------------------


def raise_finding(
    session: Session, actor: User, *, source: Source, data: FindingInput, today: date
) -> Finding:
    """Raise a finding with its corrective action on a confirmation (9.1(3), 9.2(6)) or on a
    contractor audit (10.1(4))."""
    if not can_raise(actor, source):
        if isinstance(source, Confirmation):
            raise FindingError(
                "この定期確認の指摘事項を登録できるのは、担当課の職員（又は外部サービス管理者）です。"
            )
        raise FindingError(
            "委託先監査の指摘事項を登録できるのは、この監査の担当者（監査の対象となる課に"
            "所属しない者）だけです（対策基準10.1(2)①、10.1(4)）。"
        )
    if isinstance(source, ContractorAudit):
        if source.status == "planned":
            raise FindingError("監査の実施を記録してから、指摘事項を登録してください。")
        department_id = source.department_id
    else:
        department_id = source.schedule.department_id
    if data.severity not in SEVERITIES:
        raise FindingError("重要度を選んでください。")
    title = _text(data.title, "指摘事項", MAX_TITLE, required=True)
    description = _text(data.description, "指摘の内容", MAX_TEXT, required=False)
    corrective_action = _text(data.corrective_action, "是正措置", MAX_TEXT, required=True)
    if data.due_on is None:
        raise FindingError("是正の期限を入力してください。")
    if data.due_on < today:
        raise FindingError("是正の期限に過去の日付は指定できません。")
    if data.due_on > latest_due(today):
        raise FindingError(
            f"是正の期限は2年以内（{format_date(latest_due(today))}まで）で指定してください。"
        )
    owner = _owner(session, source.organisation_id, data.owner_id)
    finding = Finding(
        organisation_id=source.organisation_id,
        department_id=department_id,
        confirmation_id=source.id if isinstance(source, Confirmation) else None,
        audit_id=source.id if isinstance(source, ContractorAudit) else None,
        severity=data.severity,
        title=title,
        description=description,
        corrective_action=corrective_action,
        owner_id=owner.id,
        due_on=data.due_on,
        created_by_id=actor.id,
    )
    session.add(finding)
    session.flush()
    audit.record(
        session,
        "finding.raised",
        actor=actor,
        obj=finding,
        organisation_id=finding.organisation_id,
        details={
            "source": f"{source.__tablename__}:{source.id}",
            "severity": finding.severity,
            "title": title,
            "corrective_action": corrective_action,
            "owner_id": owner.id,
            "due_on": finding.due_on.isoformat(),
        },
    )
    return finding


def close(
    session: Session, finding: Finding, actor: User, *, note: str, today: date, version: int
) -> None:
    """Close a finding once its corrective action is done; the note says what was done."""
    if not can_close(session, actor, finding):
        raise FindingError(who_closes(finding))
    if finding.version != version:
        raise FindingError(
            "他の利用者が先にこの指摘事項を変更しました。最新の内容を確認してからやり直してください。"
        )
    if finding.status != "open":
        raise FindingError("この指摘事項は既に完了しています。")
    note = _text(note, "対応の内容", MAX_NOTE, required=True)
    finding.status = "closed"
    finding.closed_on = today
    finding.closed_by_id = actor.id
    finding.closing_note = note
    session.flush()
    audit.record(
        session,
        "finding.closed",
        actor=actor,
        obj=finding,
        organisation_id=finding.organisation_id,
        details={
            "closed_on": today.isoformat(),
            "note": note,
            "overdue": finding.due_on < today,
        },
    )
