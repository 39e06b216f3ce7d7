"""External service records, 利用申請, the approver's decision, the 外部サービス管理者 and the
accepted terms of 約款型 services (対策基準 9.2(4), 9.3, 2(6), 9.1(3)).

Application states (a transition table; every move is audited in the same transaction):
submitted → approved / conditional / rejected, or → returned (for changes) → submitted …;
approved / conditional → suspended (停止) → back; approved / conditional / suspended → ending
(廃止手続中: the approver's 廃止 opens the exit checklist of 9.2(7) and ends the periodic
confirmation) → retired (廃止) once the checklist is complete, or by the approver with a recorded
reason (``portal/lifecycle/retirement.py``). Services flush; the caller commits (one transaction
per business action)."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import flag_modified

from portal.approvals.models import (
    COURT_CHOICES,
    ENDED_STATES,
    LAW_CHOICES,
    SCOPE_CHOICES,
    ExternalService,
    ManagerAssignment,
    ServicePlan,
    TermsVersion,
    UseApplication,
)
from portal.assessments import store
from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.db import utcnow
from portal.evaluations import service as evaluations
from portal.permissions import (
    Permission,
    Role,
    can,
    can_decide_application,
    can_edit_application,
    can_view_engagement,
)
from portal.questionnaires.schema import CERTIFICATION_KINDS, SEGMENTS
from portal.reviews import exits, schedules
from portal.reviews.schedules import HIGH_RISK
from portal.users.models import User, UserRole
from portal.vendors import service as vendors
from portal.web import clean_text, today_jst

MAX_TEXT = 2000
TRANSITIONS = {
    ("submitted", "approve"): "approved",
    ("submitted", "conditional"): "conditional",
    ("submitted", "reject"): "rejected",
    ("submitted", "return"): "returned",
    ("returned", "resubmit"): "submitted",
    ("approved", "suspend"): "suspended",
    ("conditional", "suspend"): "suspended",
    ("suspended", "resume"): None,  # back to the decision's state (approved / conditional)
    # 廃止 opens the exit checklist (9.2(7)); the entry is retired when it is complete, or
    # by the approver with a recorded reason.
    ("approved", "retire"): "ending",
    ("conditional", "retire"): "ending",
    ("suspended", "retire"): "ending",
    ("ending", "retire_complete"): "retired",
    ("ending", "retire_override"): "retired",
}
STATUS_ACTIONS = {"suspend": "停止", "resume": "再開", "retire": "廃止"}


# What a list of applications shows (service, provider, plan, department, applicant, manager,
# terms): loaded with the list, not once per row.
LISTED = (
    selectinload(UseApplication.service).selectinload(ExternalService.vendor_company),
    selectinload(UseApplication.plan),
    selectinload(UseApplication.department),
    selectinload(UseApplication.applicant),
    selectinload(UseApplication.managers),
    selectinload(UseApplication.terms_versions),
)


class ApprovalError(ValueError):
    """A refused action, with a message in Japanese. Nothing has been changed."""


class Conflict(ApprovalError):
    def __init__(self) -> None:
        super().__init__(
            "この申請は、画面を表示した後に他の方が更新しました。最新の内容を確認してから、"
            "もう一度操作してください。"
        )


def _text(value: str | None, label: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    return clean_text(value, label, limit=limit, required=required, error=ApprovalError)


def require_approver(actor: User, application: UseApplication, message: str) -> None:
    """The 許可権限者 of the application's organisation (decide, designate, 停止 / 廃止)."""
    if (
        not can(actor, Permission.APPLICATIONS_DECIDE)
        or application.organisation_id != actor.organisation_id
    ):
        raise ApprovalError(message)


def check_version(row: Any, version: int) -> None:
    if row.version != version:
        raise Conflict()


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


@dataclass
class ServiceInput:
    name: str
    description: str = ""
    provider_country: str = "JP"
    contracting_party: str = ""
    ismap_kind: str = "none"
    ismap_number: str = ""
    ismap_registered_on: date | None = None
    ismap_audit_period_end: date | None = None
    ismap_renewal_pending: bool = False
    ismap_scope_covers: str | None = None
    ismap_checked_on: date | None = None
    governing_law: str | None = None
    jurisdiction: str | None = None
    sla_availability: float | None = None
    rto_hours: int | None = None
    rpo_hours: int | None = None
    backup: str = ""
    exit_plan: str = ""
    tables: dict[str, list[dict]] = field(default_factory=dict)  # prefilled from an assessment


SCALAR_FIELDS = tuple(f for f in ServiceInput.__dataclass_fields__ if f != "tables")


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _joined(*parts: Any) -> str:
    return "\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def prefill_from(session: Session, assessment: Assessment) -> ServiceInput:
    """What the vendor answered, as the facts of a service record (9.2(2)⑤⑦⑨, 9.2(7))."""
    return facts_from_answers(store.values(session, assessment), assessment.engagement.title)


def facts_from_answers(answers: dict[str, Any], default_name: str) -> ServiceInput:
    """Answers (of an assessment, or as a 定期確認 left them) as the facts of a service record."""
    ismap_kind = answers.get("certifications.ismap")
    registered = ismap_kind in ("ismap", "ismap_liu")
    availability = answers.get("external.sla_availability", answers.get("contract.availability"))
    return ServiceInput(
        name=(answers.get("certifications.ismap_service_name") if registered else None)
        or default_name,
        provider_country=answers.get("company.hq_country") or "JP",
        ismap_kind=ismap_kind if registered else "none",
        ismap_number=(answers.get("certifications.ismap_number") or "") if registered else "",
        ismap_registered_on=_as_date(answers.get("certifications.ismap_registered_on"))
        if registered
        else None,
        ismap_audit_period_end=_as_date(answers.get("certifications.ismap_audit_period_end"))
        if registered
        else None,
        ismap_renewal_pending=registered
        and answers.get("certifications.ismap_renewal_pending") == "yes",
        ismap_scope_covers=answers.get("certifications.ismap_scope_covers") if registered else None,
        governing_law=answers.get("external.governing_law"),
        jurisdiction=answers.get("external.jurisdiction"),
        sla_availability=float(availability) if isinstance(availability, int | float) else None,
        rto_hours=answers.get("contract.rto")
        if isinstance(answers.get("contract.rto"), int)
        else None,
        rpo_hours=answers.get("contract.rpo")
        if isinstance(answers.get("contract.rpo"), int)
        else None,
        backup=_joined(answers.get("contract.backup")),
        exit_plan=_joined(
            answers.get("external.migration_plan"),
            answers.get("external.export_format") or answers.get("contract.export_format"),
            answers.get("lifecycle.data_deletion")
            or answers.get("contract.return_deletion_method"),
        ),
        tables={
            "certificates": [
                {
                    "kind": row.get("kind", ""),
                    "label": CERTIFICATION_KINDS.get(row.get("kind", ""), "認証"),
                    "number": row.get("number", ""),
                    "body": row.get("body", ""),
                    "scope": row.get("scope", ""),
                    "expires": row.get("expires", ""),
                }
                for row in answers.get("certifications.others") or []
            ],
            "data_locations": [
                {
                    "purpose": row.get("purpose", ""),
                    "country": row.get("country", ""),
                    "region": row.get("region", ""),
                }
                for row in answers.get("external.data_locations") or []
            ],
            "subcontractors": [
                {
                    "name": row.get("name", ""),
                    "country": row.get("country", ""),
                    "role": row.get("role", ""),
                    "approved_on": "",
                }
                for row in answers.get("contract.subcontractors") or []
            ],
        },
    )


def _one_line(text: str) -> bool:
    """No line breaks, control or format characters; spaces of any width are fine (a Japanese
    name often holds a full-width space, which ``str.isprintable`` refuses)."""
    return all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in text)


def _validate_service(data: ServiceInput) -> None:
    _text(data.name, "サービス名", required=True, limit=200)
    if not _one_line(data.name.strip()):
        raise ApprovalError("サービス名に改行や制御文字は使えません。")
    if data.ismap_kind not in ("none", "ismap", "ismap_liu"):
        raise ApprovalError("ISMAPの登録区分を選んでください。")
    if data.ismap_kind != "none" and data.ismap_audit_period_end is None:
        raise ApprovalError(
            "ISMAPに登録されている場合は、監査対象期間の終了日を入力してください"
            "（有効期限の算出に使います）。"
        )
    for value, choices, label in (
        (data.governing_law, LAW_CHOICES, "準拠法"),
        (data.jurisdiction, COURT_CHOICES, "管轄裁判所"),
        (data.ismap_scope_covers, SCOPE_CHOICES, "言明の範囲"),
    ):
        if value is not None and value not in choices:
            raise ApprovalError(f"{label}の選択肢から選んでください。")
    if data.sla_availability is not None and not 0 <= data.sla_availability <= 100:
        raise ApprovalError("稼働率は0から100の範囲で入力してください。")
    for value, label in ((data.rto_hours, "目標復旧時間"), (data.rpo_hours, "目標復旧時点")):
        if value is not None and not 0 <= value <= 100_000:
            raise ApprovalError(f"{label}は0以上の時間数で入力してください。")


def _apply(service: ExternalService, data: ServiceInput) -> None:
    for name in SCALAR_FIELDS:
        value = getattr(data, name)
        setattr(service, name, value.strip() if isinstance(value, str) else value)
    for name, rows in data.tables.items():
        service.set_rows(name, rows)
    service.refresh_derived()


def create_service(
    session: Session,
    actor: User,
    company_id: int,
    data: ServiceInput,
    assessment: Assessment | None = None,
) -> ExternalService:
    if not can(actor, Permission.APPLICATIONS_FILE):
        raise ApprovalError("外部サービスを登録する権限がありません。")
    company = vendors.get_for_organisation(session, actor.organisation_id, company_id)
    if company is None:
        raise ApprovalError("提供者（事業者）を選んでください。")
    if assessment is not None and (
        assessment.organisation_id != actor.organisation_id
        or assessment.vendor_company_id != company.id
    ):
        raise ApprovalError("取り込む評価票は、この事業者の評価票を選んでください。")
    _validate_service(data)
    if session.scalar(
        sa.select(ExternalService.id).where(
            ExternalService.organisation_id == actor.organisation_id,
            ExternalService.vendor_company_id == company.id,
            ExternalService.name == data.name.strip(),
        )
    ):
        raise ApprovalError("この事業者の同じ名称のサービスが既に登録されています。")
    service = ExternalService(
        organisation_id=actor.organisation_id,
        vendor_company_id=company.id,
        source_assessment_id=assessment.id if assessment else None,
    )
    _apply(service, data)
    session.add(service)
    session.flush()
    audit.record(
        session,
        "service.create",
        actor=actor,
        obj=service,
        details={
            "name": service.name,
            "vendor_company_id": company.id,
            "source_assessment_id": service.source_assessment_id,
        },
    )
    return service


def update_service(
    session: Session, service: ExternalService, actor: User, data: ServiceInput, version: int
) -> None:
    if (
        not can(actor, Permission.APPLICATIONS_FILE)
        or service.organisation_id != actor.organisation_id
    ):
        raise ApprovalError("この外部サービスを編集する権限がありません。")
    check_version(service, version)
    _validate_service(data)
    clash = session.scalar(
        sa.select(ExternalService.id).where(
            ExternalService.organisation_id == service.organisation_id,
            ExternalService.vendor_company_id == service.vendor_company_id,
            ExternalService.name == data.name.strip(),
            ExternalService.id != service.id,
        )
    )
    if clash:
        raise ApprovalError("この事業者の同じ名称のサービスが既に登録されています。")
    before = {name: _plain(getattr(service, name)) for name in SCALAR_FIELDS}
    _apply(service, data)
    session.flush()
    after = {name: _plain(getattr(service, name)) for name in SCALAR_FIELDS}
    changed = {k: [before[k], after[k]] for k in SCALAR_FIELDS if before[k] != after[k]}
    if changed or data.tables:
        audit.record(
            session,
            "service.update",
            actor=actor,
            obj=service,
            details={"changed": changed, "tables": sorted(data.tables)},
        )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def add_plan(
    session: Session, service: ExternalService, actor: User, name: str, notes: str
) -> ServicePlan:
    if (
        not can(actor, Permission.APPLICATIONS_FILE)
        or service.organisation_id != actor.organisation_id
    ):
        raise ApprovalError("この外部サービスを編集する権限がありません。")
    name = _text(name, "プラン・エディションの名称", required=True, limit=100)
    if not _one_line(name):
        raise ApprovalError("プラン・エディションの名称に改行や制御文字は使えません。")
    if any(p.name == name for p in service.plans):
        raise ApprovalError("同じ名称のプラン・エディションが既にあります。")
    plan = ServicePlan(service_id=service.id, name=name, notes=_text(notes, "説明"))
    session.add(plan)
    session.flush()
    audit.record(
        session,
        "service.plan_add",
        actor=actor,
        obj=service,
        details={"plan": name, "plan_id": plan.id},
    )
    return plan


def services_of(session: Session, organisation_id: int) -> list[ExternalService]:
    return list(
        session.scalars(
            sa.select(ExternalService)
            .options(
                selectinload(ExternalService.vendor_company), selectinload(ExternalService.plans)
            )
            .where(ExternalService.organisation_id == organisation_id)
            .order_by(ExternalService.name, ExternalService.id)
        )
    )


# ---------------------------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------------------------


@dataclass
class TermsInput:
    """約款型 (9.3): where the terms are, and the text (uploaded or pasted) of the version
    accepted, of which the SHA-256 is kept."""

    url: str = ""
    content: bytes = b""
    source: str = ""  # the uploaded file's name, or 貼り付け
    risks_confirmed: bool = False


@dataclass
class ApplicationInput:
    department_id: int
    service_id: int
    plan_id: int | None
    assessment_id: int | None
    purpose: str
    business: str
    network_segment: str
    max_confidentiality: int
    personal_data: bool
    specific_personal_data: bool
    sensitive_personal_data: bool
    terms: TermsInput = field(default_factory=TermsInput)


def _resolve(session: Session, actor: User, data: ApplicationInput):
    if data.department_id not in {d.id for d in actor.departments}:
        raise ApprovalError("申請できるのは、あなたが所属する課の利用だけです。")
    service = session.get(ExternalService, data.service_id)
    if service is None or service.organisation_id != actor.organisation_id:
        raise ApprovalError("利用する外部サービスを選んでください。")
    plan = None
    if data.plan_id is not None:
        plan = session.get(ServicePlan, data.plan_id)
        if plan is None or plan.service_id != service.id:
            raise ApprovalError("プラン・エディションは、選んだサービスのものを選んでください。")
    assessment = None
    if data.assessment_id is not None:
        assessment = session.get(Assessment, data.assessment_id)
        if (
            assessment is None
            or assessment.organisation_id != actor.organisation_id
            or not can_view_engagement(actor, assessment.engagement)
        ):
            raise ApprovalError("紐づける評価を選んでください。")
        if assessment.vendor_company_id != service.vendor_company_id:
            raise ApprovalError(
                "紐づける評価は、このサービスの提供者に対する評価を選んでください。"
            )
    return service, plan, assessment


def _check_scope(data: ApplicationInput, assessment: Assessment | None) -> str:
    """The category of the application, and whether the permitted scope stays within what was
    assessed (9.2(1), 9.3(1))."""
    if data.network_segment not in SEGMENTS:
        raise ApprovalError("利用するネットワークの区分を選んでください。")
    if data.max_confidentiality not in (1, 2, 3):
        raise ApprovalError("取り扱う情報の最高の機密性を選んでください。")
    personal = data.personal_data or data.specific_personal_data or data.sensitive_personal_data
    if assessment is None:
        if data.max_confidentiality >= 2:
            raise ApprovalError(
                "機密性2以上の情報を取り扱う場合は、提供者の評価（評価完了のもの）を紐づけてください"
                "（対策基準9.2(1)）。"
            )
        category = "9.3"
    else:
        engagement = assessment.engagement
        category = engagement.track
        if data.max_confidentiality > engagement.confidentiality:
            raise ApprovalError(
                f"評価の対象は機密性{engagement.confidentiality}までの情報です。"
                "それを超える情報の取扱いは申請できません。"
            )
        facts = engagement.facts
        if (
            (data.specific_personal_data and not facts.specific_personal_data)
            or (data.sensitive_personal_data and not facts.sensitive_personal_data)
            or (personal and not facts.personal_data)
        ):
            raise ApprovalError("評価の対象としていない種類の個人情報は、申請できません。")
    if category == "9.3":
        if data.max_confidentiality != 1:
            raise ApprovalError(
                "約款型の外部サービスでは、機密性2以上の情報を取り扱うことはできません"
                "（対策基準9.3(1)）。"
            )
        if data.network_segment == "mynumber" or data.specific_personal_data:
            raise ApprovalError(
                "約款型の外部サービスは、マイナンバー利用事務系や特定個人情報には利用できません。"
            )
    return category


def _terms_version(actor: User, terms: TermsInput) -> TermsVersion:
    url = _text(terms.url, "利用規約のURL", required=True, limit=500)
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise ApprovalError("利用規約のURLは http:// 又は https:// で始まる形で入力してください。")
    if not terms.content.strip():
        raise ApprovalError(
            "同意した版の利用規約を、ファイルで添付するか本文を貼り付けてください（ハッシュ値を記録します）。"
        )
    return TermsVersion(
        url=url,
        sha256=hashlib.sha256(terms.content).hexdigest(),
        source=(terms.source or "貼り付け")[:300],
        recorded_by_id=actor.id,
    )


def _fill(application: UseApplication, data: ApplicationInput, category: str) -> None:
    application.department_id = data.department_id
    application.service_id = data.service_id
    application.plan_id = data.plan_id
    application.assessment_id = data.assessment_id
    application.category = category
    application.purpose = _text(data.purpose, "利用目的", required=True)
    application.business = _text(data.business, "利用する業務", required=True)
    application.network_segment = data.network_segment
    application.max_confidentiality = data.max_confidentiality
    application.personal_data = data.personal_data
    application.specific_personal_data = data.specific_personal_data
    application.sensitive_personal_data = data.sensitive_personal_data


def _with_terms(
    session: Session, application: UseApplication, actor: User, data: ApplicationInput
) -> TermsVersion | None:
    """For 約款型: the accepted terms and the 9.3(2) risk confirmation."""
    if application.category != "9.3":
        return None
    if not data.terms.risks_confirmed:
        raise ApprovalError(
            "約款型サービスの利用に伴うリスク（規約の一方的な変更、情報の取扱い、代替手段の確保等）"
            "を確認したことにチェックしてください（対策基準9.3(2)）。"
        )
    version = _terms_version(actor, data.terms)
    current = application.accepted_terms
    if current is not None and current.sha256 == version.sha256 and current.url == version.url:
        return None
    version.confirmed_by_id = actor.id
    version.confirmed_at = utcnow()
    application.terms_versions.append(version)
    return version


def file(session: Session, actor: User, data: ApplicationInput) -> UseApplication:
    """Staff apply to use a service (利用申請)."""
    if not can(actor, Permission.APPLICATIONS_FILE):
        raise ApprovalError("利用申請を行う権限がありません。")
    service, _plan, assessment = _resolve(session, actor, data)
    category = _check_scope(data, assessment)
    application = UseApplication(organisation_id=actor.organisation_id, applicant_id=actor.id)
    _fill(application, data, category)
    session.add(application)
    terms = _with_terms(session, application, actor, data)
    session.flush()
    audit.record(
        session,
        "application.file",
        actor=actor,
        obj=application,
        details={
            "service_id": service.id,
            "category": category,
            "assessment_id": data.assessment_id,
            "max_confidentiality": data.max_confidentiality,
            "network_segment": data.network_segment,
            "terms_sha256": terms.sha256 if terms else None,
        },
    )
    return application


def revise(
    session: Session, application: UseApplication, actor: User, data: ApplicationInput, version: int
) -> None:
    """The applying department revises an application returned for changes and hands it in."""
    if not can_edit_application(actor, application) or actor.id != application.applicant_id:
        raise ApprovalError(
            "差し戻された申請を修正できるのは申請者本人だけです（他の職員が修正すると、"
            "その職員が判断できてしまうため）。"
        )
    if application.status != "returned":
        raise ApprovalError("修正できるのは、差し戻された申請だけです。")
    check_version(application, version)
    _service, _plan, assessment = _resolve(session, actor, data)
    category = _check_scope(data, assessment)
    _fill(application, data, category)
    terms = _with_terms(session, application, actor, data)
    move(
        session,
        application,
        "resubmit",
        actor,
        details={"terms_sha256": terms.sha256 if terms else None},
    )
    application.submitted_at = utcnow()


def move(
    session: Session, application: UseApplication, action: str, actor: User, details=None
) -> None:
    """Apply ``action`` if the transition table allows it from the current state."""
    key = (application.status, action)
    if key not in TRANSITIONS:
        raise ApprovalError("現在の状態ではこの操作はできません。")
    target = TRANSITIONS[key] or (
        "conditional" if application.decision == "conditional" else "approved"
    )
    before = application.status
    application.status = target
    session.flush()
    audit.record(
        session,
        f"application.{action}",
        actor=actor,
        obj=application,
        details={"from": before, "to": target, **(details or {})},
    )


# ---------------------------------------------------------------------------------------------
# Decision and 外部サービス管理者
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssessmentState:
    """What the approver must know about the linked assessment."""

    decided: bool
    rating: str | None
    decision: str | None  # the review's outcome: approve | conditional | reject
    conditions: str
    blockers: tuple[str, ...]

    @property
    def needs_override(self) -> bool:
        return bool(self.blockers) or self.decision == "reject"


def assessment_state(session: Session, assessment: Assessment | None) -> AssessmentState | None:
    if assessment is None:
        return None
    score = evaluations.latest_score(session, assessment)
    outcome = evaluations.outcome_of(session, assessment)
    return AssessmentState(
        decided=assessment.status == "decided",
        rating=score.rating if score else None,
        decision=outcome.decision if outcome else None,
        conditions=outcome.conditions if outcome else "",
        blockers=tuple(score.details.get("blockers", ())) if score else (),
    )


def eligible_managers(session: Session, organisation_id: int) -> list[User]:
    """Active staff of the organisation holding the 外部サービス管理者 role."""
    return list(
        session.scalars(
            sa.select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.organisation_id == organisation_id,
                User.active.is_(True),
                UserRole.role == Role.SERVICE_MANAGER.value,
            )
            .order_by(User.name, User.id)
        )
    )


def _manager(session: Session, application: UseApplication, user_id: int | None) -> User:
    user = session.get(User, user_id) if user_id else None
    if user is None:
        raise ApprovalError("外部サービス管理者を選んでください。")
    if user.is_vendor or user.organisation_id != application.organisation_id:
        raise ApprovalError(
            "外部サービス管理者には、この団体の職員を指定してください（事業者や他団体の利用者は指定できません）。"
        )
    if not user.active or Role.SERVICE_MANAGER not in user.role_set:
        raise ApprovalError(
            "外部サービス管理者には、「外部サービス管理者」の役割を持つ有効な職員を指定してください。"
        )
    return user


def review_interval_months(application: UseApplication) -> int:
    """The organisation's interval, shorter for high risk; personal data at least yearly."""
    return schedules.default_interval(
        application.organisation,
        application.risk_rating,
        application.personal_data
        or application.specific_personal_data
        or application.sensitive_personal_data,
    )


@dataclass
class DecisionInput:
    decision: str  # approve | conditional | reject | return
    reason: str
    conditions: str = ""
    override_reason: str = ""
    manager_id: int | None = None
    version: int = 0


def decide(
    session: Session, application: UseApplication, actor: User, data: DecisionInput, today: date
) -> bool:
    """The 許可権限者 decides. Returns True when the decision must be reported to the
    ネットワーク管理者 and CISO (conditional or high-risk approvals, 9.1(3))."""
    require_approver(actor, application, "利用申請を許可する権限がありません。")
    if actor.id == application.applicant_id or not can_decide_application(actor, application):
        raise ApprovalError("自分が行った申請は、自分で判断できません（兼務の禁止）。")
    if application.status != "submitted":
        raise ApprovalError("この申請は既に判断されているか、修正待ちのため判断できません。")
    check_version(application, data.version)
    if data.decision not in ("approve", "conditional", "reject", "return"):
        raise ApprovalError("判断（承認・条件付承認・却下・差戻し）を選んでください。")
    reason = _text(data.reason, "判断の理由", required=True)
    details: dict[str, Any] = {"reason": reason}
    if data.decision in ("reject", "return"):
        application.decision_reason = reason
        if data.decision == "reject":
            application.decision = "reject"
            application.decided_by_id = actor.id
            application.decided_at = utcnow()
        move(session, application, data.decision, actor, details=details)
        return False

    state = assessment_state(session, application.assessment)
    if application.category in ("9.1", "9.2") and state is None:
        raise ApprovalError("この区分の利用には、提供者の評価の紐づけが必要です。")
    if state is not None and not state.decided:
        raise ApprovalError(
            "紐づけた評価が完了していないため、承認できません。評価の完了を待ってください。"
        )
    override = _text(data.override_reason, "不可の要因を承知で承認する理由")
    if state is not None and state.needs_override and not override:
        raise ApprovalError(
            "紐づけた評価に不可の要因（"
            + ("、".join(state.blockers) or "評価の判定が「不可」")
            + "）があります。承認する場合は、その理由を入力してください。"
        )
    if data.decision == "approve" and state is not None and state.decision == "conditional":
        raise ApprovalError(
            "紐づけた評価の判定は「条件付き可」です。評価の条件を引き継いで「条件付承認」を選んでください。"
        )
    conditions = _text(data.conditions, "利用の条件")
    if data.decision == "conditional" and not conditions:
        raise ApprovalError("条件付承認では、利用の条件を入力してください。")
    manager = _manager(session, application, data.manager_id)

    application.decision = data.decision
    application.decided_by_id = actor.id
    application.decided_at = utcnow()
    application.decision_reason = reason
    application.conditions = conditions if data.decision == "conditional" else ""
    application.override_reason = override if state is not None and state.needs_override else ""
    application.risk_rating = state.rating if state else None
    application.reported = (
        data.decision == "conditional"
        or application.risk_rating in HIGH_RISK
        or bool(application.override_reason)
    )
    application.next_review_on = schedules.regular_due(today, review_interval_months(application))
    service = application.service
    service.set_rows(
        "subcontractors",
        [
            {**row, "approved_on": row.get("approved_on") or today.isoformat()}
            for row in service.rows("subcontractors")
        ],
    )
    details.update(
        conditions=application.conditions,
        override_reason=application.override_reason,
        risk_rating=application.risk_rating,
        blockers=list(state.blockers) if state else [],
        reported=application.reported,
        next_review_on=application.next_review_on.isoformat(),
        manager_id=manager.id,
    )
    move(session, application, data.decision, actor, details=details)
    _designate(session, application, actor, manager, today, "承認時に指定")
    schedules.open_for_application(session, application, actor, today)
    return application.reported


def _designate(
    session: Session, application: UseApplication, actor: User, user: User, on: date, note: str
) -> ManagerAssignment:
    assignment = ManagerAssignment(
        application_id=application.id,
        user_id=user.id,
        appointed_on=on,
        appointed_by_id=actor.id,
        note=note,
    )
    application.managers.append(assignment)
    session.flush()
    audit.record(
        session,
        "application.manager_designate",
        actor=actor,
        obj=application,
        details={
            "manager_id": user.id,
            "manager": user.name,
            "appointed_on": on.isoformat(),
            "note": note,
        },
    )
    return assignment


def hand_over(
    session: Session,
    application: UseApplication,
    actor: User,
    *,
    user_id: int | None,
    on: date,
    note: str,
    version: int,
    today: date,
) -> ManagerAssignment:
    """A new 外部サービス管理者 from ``on``; the previous one's term ends the day before."""
    require_approver(actor, application, "外部サービス管理者を指定する権限がありません。")
    if not application.active and application.status not in ("suspended", "ending"):
        raise ApprovalError(
            "外部サービス管理者を引き継げるのは、利用中（承認・条件付承認・停止）又は"
            "廃止手続中のサービスだけです。"
        )
    check_version(application, version)
    user = _manager(session, application, user_id)
    current = application.current_manager
    if current is not None and current.user_id == user.id:
        raise ApprovalError("現在の外部サービス管理者と同じ職員です。")
    if on > today:
        raise ApprovalError(
            "引継ぎ日に未来の日付は指定できません。引継ぎの当日以降に記録してください。"
        )
    if current is not None and on <= current.appointed_on:
        raise ApprovalError("引継ぎ日は、現在の管理者の指定日より後の日付にしてください。")
    note = _text(note, "引継ぎの内容")
    if current is not None:
        current.ended_on = on - timedelta(days=1)
    flag_modified(application, "status")  # a change of the entry: its version goes up
    session.flush()
    return _designate(session, application, actor, user, on, note or "引継ぎ")


def change_status(
    session: Session,
    application: UseApplication,
    actor: User,
    action: str,
    reason: str,
    version: int,
    today: date | None = None,
) -> None:
    """停止 / 再開 / 廃止 of a register entry, with a reason. 廃止 opens the exit checklist
    (9.2(7)): the entry is 廃止手続中 and its periodic confirmation ends (the schedule is
    ``ending``) until the 外部サービス管理者 has recorded the exit checks."""
    require_approver(actor, application, "台帳の状態を変更する権限がありません。")
    if action not in STATUS_ACTIONS:
        raise ApprovalError("操作を選んでください。")
    check_version(application, version)
    reason = _text(reason, f"{STATUS_ACTIONS[action]}の理由", required=True)
    move(session, application, action, actor, details={"reason": reason})
    application.status_reason = reason
    if action == "retire":
        schedule = schedules.schedule_of_application(session, application)
        if schedule is not None and schedule.status == "active":
            exits.begin(session, schedule, actor, ending_on=today or today_jst(), reason=reason)


def manager_of(application: UseApplication, user: User) -> bool:
    current = application.current_manager
    return current is not None and current.user_id == user.id


# ---------------------------------------------------------------------------------------------
# 約款型: terms changes (9.3)
# ---------------------------------------------------------------------------------------------


def record_terms(
    session: Session, application: UseApplication, actor: User, terms: TermsInput
) -> TermsVersion | None:
    """A new version of the terms: when its hash differs from the accepted one, the service is
    marked for re-confirmation. Returns None when the text is the accepted version."""
    if application.category != "9.3":
        raise ApprovalError("利用規約の版を記録するのは、約款型の外部サービスだけです。")
    if not (can_edit_application(actor, application) or manager_of(application, actor)):
        raise ApprovalError("この外部サービスの利用規約を記録する権限がありません。")
    if not application.in_register or application.status in ENDED_STATES:
        raise ApprovalError("利用規約の変更を記録できるのは、利用中のサービスだけです。")
    version = _terms_version(actor, terms)
    latest = application.terms_versions[-1] if application.terms_versions else None
    if latest is not None and latest.sha256 == version.sha256:
        return None
    application.terms_versions.append(version)
    session.flush()
    audit.record(
        session,
        "application.terms_changed",
        actor=actor,
        obj=application,
        details={
            "sha256": version.sha256,
            "previous_sha256": latest.sha256 if latest else None,
            "url": version.url,
            "source": version.source,
        },
    )
    schedule = schedules.schedule_of_application(session, application)
    if schedule is not None:
        today = today_jst()
        schedules.add_trigger(
            session,
            schedule,
            "terms_change",
            key=f"terms_change:{version.sha256}",
            occurred_on=today,
            detail=f"利用規約の新しい版（SHA-256 {version.sha256[:12]}…）",
            actor=actor,
        )
    return version


def confirm_terms(
    session: Session, application: UseApplication, actor: User, terms_id: int
) -> None:
    """The 9.3(2) risks are confirmed again for the new terms: the mark is cleared."""
    if not (can_edit_application(actor, application) or manager_of(application, actor)):
        raise ApprovalError("この外部サービスの利用規約を確認する権限がありません。")
    pending = application.pending_terms
    if pending is None or pending.id != terms_id:
        raise ApprovalError("再確認を待っている利用規約の版はありません。")
    pending.confirmed_by_id = actor.id
    pending.confirmed_at = utcnow()
    session.flush()
    audit.record(
        session,
        "application.terms_confirmed",
        actor=actor,
        obj=application,
        details={"sha256": pending.sha256},
    )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def report_recipients(session: Session, organisation_id: int) -> list[User]:
    """The ネットワーク管理者 and CISO, who hear of conditional and high-risk approvals."""
    return list(
        session.scalars(
            sa.select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.organisation_id == organisation_id,
                User.active.is_(True),
                UserRole.role.in_([Role.CISO.value, Role.NETWORK_ADMIN.value]),
            )
            .distinct()
            .order_by(User.id)
        )
    )


def reported_since(session: Session, organisation_id: int, since: datetime) -> list[UseApplication]:
    """Approvals reported to the ネットワーク管理者 and CISO, newest first (their dashboard)."""
    return list(
        session.scalars(
            sa.select(UseApplication)
            .options(*LISTED)
            .where(
                UseApplication.organisation_id == organisation_id,
                UseApplication.reported.is_(True),
                UseApplication.decided_at >= since,
            )
            .order_by(UseApplication.decided_at.desc())
        )
    )


def managed_by(session: Session, user: User) -> list[UseApplication]:
    """ "My services": the entries whose current 外部サービス管理者 is ``user``."""
    return list(
        session.scalars(
            sa.select(UseApplication)
            .options(*LISTED)
            .join(ManagerAssignment, ManagerAssignment.application_id == UseApplication.id)
            .where(
                ManagerAssignment.user_id == user.id,
                ManagerAssignment.ended_on.is_(None),
                UseApplication.organisation_id == user.organisation_id,
            )
            .order_by(UseApplication.next_review_on, UseApplication.id)
        )
    )
