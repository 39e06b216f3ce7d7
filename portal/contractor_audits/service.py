"""Planning and recording audits of contractors and of their subcontractors (再委託先)
(対策基準 10.1(4)).

- Who: the holders of ``CONTRACTOR_AUDITS_MANAGE`` (監査担当, CISO) plan audits; only the
  assigned auditor records the audit, its report, files and findings. The auditor is an active
  staff user of the organisation holding that permission and never a member of the audited
  department (10.1(2)①; SECURITY.md "an auditor cannot audit their own department") — checked
  when planning and again when recording, since memberships change.
- What: a vendor company of the organisation, optionally one of its contracts or services (a
  ReviewSchedule of that company, whose department is then the audited department) and
  optionally a named subcontractor; a title, the scope and the method (書面 / 実地 / リモート /
  第三者報告).
- When: planned today or later; performed not in the future and not before it was planned;
  reported not in the future and not before it was performed. planned → performed → reported.
- Who reads: the organisation-wide readers (the auditor role among them) everything of their
  organisation; staff their departments' audits.

Services flush, callers commit; a refusal raises ``AuditError`` and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.audit import service as audit
from portal.contractor_audits.models import AUDIT_METHODS, ContractorAudit
from portal.evidence.scanner import Scanner
from portal.evidence.service import Upload
from portal.orgs.models import Department
from portal.permissions import (
    ORGANISATION_WIDE_READERS,
    ROLE_PERMISSIONS,
    Permission,
    can,
    permissions_of,
    same_organisation,
)
from portal.reviews import files
from portal.reviews.models import ReviewFile, ReviewSchedule
from portal.users.models import User, UserRole
from portal.vendors import service as vendors
from portal.web import JST, clean_text, format_date

MAX_TITLE = 200
MAX_SUBCONTRACTOR = 200
MAX_TEXT = 4000
MAX_REPORT = 20000
FILE_PURPOSES = ("audit_report", "evidence")

# planned → performed → reported: the state a recording needs.
TRANSITIONS = {"performed": "planned", "reported": "performed"}


class AuditError(ValueError):
    """A refused change, with a message in Japanese. Nothing has been changed."""


@dataclass(frozen=True)
class AuditPlan:
    vendor_company_id: int | None
    schedule_id: int | None
    department_id: int | None
    subcontractor: str
    title: str
    scope: str
    method: str
    auditor_id: int | None
    planned_on: date | None


# ---------------------------------------------------------------------------------------------
# Who
# ---------------------------------------------------------------------------------------------


def may_manage(actor: User) -> bool:
    """Plans audits (and raises and closes their findings)."""
    return (
        not actor.is_vendor
        and actor.organisation_id is not None
        and can(actor, Permission.CONTRACTOR_AUDITS_MANAGE)
    )


def _in_department(user: User, department_id: int) -> bool:
    return department_id in {d.id for d in user.departments}


def may_record(actor: User, audit_row: ContractorAudit) -> bool:
    """The assigned auditor, still holding the permission and still outside the department."""
    return (
        may_manage(actor)
        and same_organisation(actor, audit_row.organisation_id)
        and actor.id == audit_row.auditor_id
        and not _in_department(actor, audit_row.department_id)
    )


def can_view(actor: User, audit_row: ContractorAudit) -> bool:
    if actor.is_vendor or not same_organisation(actor, audit_row.organisation_id):
        return False
    if not can(actor, Permission.REVIEWS_VIEW):
        return False
    if actor.role_set & ORGANISATION_WIDE_READERS or actor.id == audit_row.auditor_id:
        return True
    return _in_department(actor, audit_row.department_id)


def visible_query(actor: User):
    """The audits ``actor`` may read, as a select to refine."""
    if actor.is_vendor or actor.organisation_id is None:
        return sa.select(ContractorAudit).where(sa.false())
    query = sa.select(ContractorAudit).where(
        ContractorAudit.organisation_id == actor.organisation_id
    )
    if not actor.role_set & ORGANISATION_WIDE_READERS:
        query = query.where(
            sa.or_(
                ContractorAudit.department_id.in_([d.id for d in actor.departments]),
                ContractorAudit.auditor_id == actor.id,
            )
        )
    return query


_AUDITOR_ROLES = sorted(
    role.value
    for role, granted in ROLE_PERMISSIONS.items()
    if Permission.CONTRACTOR_AUDITS_MANAGE in granted
)


def auditor_candidates(session: Session, organisation_id: int) -> list[User]:
    """Active staff of the organisation who may be assigned an audit (before the department
    is known; ``plan`` refuses members of the audited department)."""
    return list(
        session.scalars(
            sa.select(User)
            .where(
                User.organisation_id == organisation_id,
                User.active.is_(True),
                User.vendor_company_id.is_(None),
                User.id.in_(sa.select(UserRole.user_id).where(UserRole.role.in_(_AUDITOR_ROLES))),
            )
            .options(selectinload(User.departments))
            .order_by(User.name, User.id)
        )
    )


def _auditor(session: Session, organisation_id: int, auditor_id: int | None, department_id: int):
    auditor = session.get(User, auditor_id) if auditor_id else None
    if auditor is None:
        raise AuditError("監査担当者を選んでください。")
    if (
        auditor.is_vendor
        or auditor.organisation_id != organisation_id
        or not auditor.active
        or Permission.CONTRACTOR_AUDITS_MANAGE not in permissions_of(auditor)
    ):
        raise AuditError(
            "監査担当者には、この団体の有効な職員で、委託先監査の権限（監査担当又はCISO）を"
            "持つ人を指定してください。"
        )
    if _in_department(auditor, department_id):
        raise AuditError(
            "監査の対象となる課に所属している職員は、その監査を担当できません"
            "（対策基準10.1(2)①: 監査人は被監査部門から独立していること）。"
        )
    return auditor


def _text(value: str | None, label: str, limit: int, *, required: bool) -> str:
    return clean_text(value, label, limit=limit, required=required, error=AuditError)


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def plan(session: Session, actor: User, data: AuditPlan, today: date) -> ContractorAudit:
    """Plan an audit of a contractor (or of its subcontractor) (10.1(4))."""
    if not may_manage(actor):
        raise AuditError("委託先監査を計画できるのは、監査担当者とCISOです。")
    organisation_id = actor.organisation_id
    company = (
        vendors.get_for_organisation(session, organisation_id, data.vendor_company_id)
        if data.vendor_company_id
        else None
    )
    if company is None:
        raise AuditError("監査する委託先（この団体の取引先事業者）を選んでください。")
    schedule = session.get(ReviewSchedule, data.schedule_id) if data.schedule_id else None
    if data.schedule_id and (schedule is None or schedule.organisation_id != organisation_id):
        raise AuditError("選んだ契約・サービスが見つかりません。")
    if schedule is not None and schedule.vendor_company_id != company.id:
        raise AuditError("選んだ契約・サービスは、監査する委託先のものではありません。")
    if schedule is not None:
        if data.department_id and data.department_id != schedule.department_id:
            raise AuditError(
                "契約・サービスを選んだ場合、監査の対象となる課はその担当課になります。"
                "課の選択を空欄にするか、担当課を選んでください。"
            )
        department_id = schedule.department_id
    else:
        department = session.get(Department, data.department_id) if data.department_id else None
        if department is None or department.organisation_id != organisation_id:
            raise AuditError("監査の対象となる課（委託している課）を選んでください。")
        if not department.active:
            raise AuditError("使用中でない課は選べません。")
        department_id = department.id
    title = _text(data.title, "監査の件名", MAX_TITLE, required=True)
    scope = _text(data.scope, "監査の範囲", MAX_TEXT, required=True)
    subcontractor = _text(data.subcontractor, "再委託先", MAX_SUBCONTRACTOR, required=False)
    if data.method not in AUDIT_METHODS:
        raise AuditError("監査の方法を選んでください。")
    if data.planned_on is None:
        raise AuditError("実施予定日を入力してください。")
    if data.planned_on < today:
        raise AuditError("実施予定日に過去の日付は指定できません。")
    auditor = _auditor(session, organisation_id, data.auditor_id, department_id)
    row = ContractorAudit(
        organisation_id=organisation_id,
        department_id=department_id,
        schedule_id=schedule.id if schedule is not None else None,
        vendor_company_id=company.id,
        subcontractor=subcontractor,
        title=title,
        scope=scope,
        method=data.method,
        auditor_id=auditor.id,
        planned_on=data.planned_on,
        created_by_id=actor.id,
    )
    session.add(row)
    session.flush()
    _record(
        session,
        "contractor_audit.planned",
        actor,
        row,
        {
            "vendor_company_id": company.id,
            "schedule_id": row.schedule_id,
            "department_id": department_id,
            "subcontractor": subcontractor,
            "title": title,
            "scope": scope,
            "method": data.method,
            "auditor_id": auditor.id,
            "planned_on": data.planned_on,
        },
    )
    return row


def planned_day(audit_row: ContractorAudit) -> date:
    """The day the audit was planned, in Japan."""
    return audit_row.created_at.astimezone(JST).date()


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------


def _may_move(audit_row: ContractorAudit, actor: User, version: int, to: str) -> None:
    if not may_record(actor, audit_row):
        if actor.id == audit_row.auditor_id and _in_department(actor, audit_row.department_id):
            raise AuditError(
                "監査の対象となる課に所属しているため、この監査を記録できません"
                "（対策基準10.1(2)①）。"
            )
        raise AuditError("監査の記録をできるのは、この監査の担当者だけです。")
    if audit_row.version != version:
        raise AuditError(
            "他の利用者が先にこの監査を変更しました。最新の内容を確認してからやり直してください。"
        )
    if audit_row.status != TRANSITIONS[to]:
        if to == "performed":
            raise AuditError("この監査は既に実施済みとして記録されています。")
        if audit_row.status == "planned":
            raise AuditError("先に監査の実施を記録してください。")
        raise AuditError("この監査は既に報告済みです。")


def record_performed(
    session: Session,
    audit_row: ContractorAudit,
    actor: User,
    *,
    performed_on: date | None,
    evidence: str,
    today: date,
    version: int,
) -> None:
    """The audit was carried out on ``performed_on``; ``evidence`` says what was seen and where
    it is kept."""
    _may_move(audit_row, actor, version, "performed")
    if performed_on is None:
        raise AuditError("実施日を入力してください。")
    if performed_on > today:
        raise AuditError("実施日に未来の日付は入力できません。")
    if performed_on < planned_day(audit_row):
        raise AuditError(
            f"実施日は、監査を計画した日（{format_date(planned_day(audit_row))}）以降にしてください。"
        )
    evidence = _text(evidence, "確認した証跡", MAX_TEXT, required=True)
    audit_row.performed_on = performed_on
    audit_row.evidence = evidence
    audit_row.status = "performed"
    session.flush()
    _record(
        session,
        "contractor_audit.performed",
        actor,
        audit_row,
        {"performed_on": performed_on, "evidence": evidence},
    )


def record_report(
    session: Session,
    audit_row: ContractorAudit,
    actor: User,
    *,
    report: str,
    reported_on: date | None,
    today: date,
    version: int,
) -> None:
    """The audit report's conclusion, on ``reported_on``."""
    _may_move(audit_row, actor, version, "reported")
    if reported_on is None:
        raise AuditError("報告日を入力してください。")
    if reported_on > today:
        raise AuditError("報告日に未来の日付は入力できません。")
    if reported_on < audit_row.performed_on:
        raise AuditError(
            f"報告日は、実施日（{format_date(audit_row.performed_on)}）以降にしてください。"
        )
    report = _text(report, "監査の結果（報告の内容）", MAX_REPORT, required=True)
    audit_row.report = report
    audit_row.reported_on = reported_on
    audit_row.status = "reported"
    session.flush()
    _record(
        session,
        "contractor_audit.reported",
        actor,
        audit_row,
        {"reported_on": reported_on, "report": report},
    )


def attach_file(
    session: Session,
    audit_row: ContractorAudit,
    actor: User,
    *,
    purpose: str,
    upload: Upload,
    evidence_dir: Path,
    scanner: Scanner,
    max_bytes: int,
) -> ReviewFile:
    """The audit report or evidence as a file (audited by ``files.store_file``)."""
    if not may_record(actor, audit_row):
        raise AuditError("監査のファイルを添付できるのは、この監査の担当者だけです。")
    if purpose not in FILE_PURPOSES:
        raise AuditError("ファイルの種類（監査報告書又は証跡）を選んでください。")
    return files.store_file(
        session,
        owner=audit_row,
        purpose=purpose,
        upload=upload,
        actor=actor,
        evidence_dir=evidence_dir,
        scanner=scanner,
        max_bytes=max_bytes,
    )


def _record(session: Session, action: str, actor: User, audit_row: ContractorAudit, details):
    audit.record(
        session,
        action,
        actor=actor,
        obj=audit_row,
        organisation_id=audit_row.organisation_id,
        details={k: (v.isoformat() if isinstance(v, date) else v) for k, v in details.items()},
    )
