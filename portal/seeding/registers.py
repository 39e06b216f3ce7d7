"""The register of the large dataset, as the services would have left it: an external-service
record and a 利用申請 for decided (and some reviewed) external-service assessments — approved,
with conditions, suspended, awaiting a decision, returned or rejected — with the 外部サービス管理者
and, for 約款型, the accepted terms; then the 定期確認 of every decided 業務委託 contract and every
approved service (``periodic``)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from portal.approvals.models import (
    REGISTER_STATES,
    ExternalService,
    ManagerAssignment,
    TermsVersion,
    UseApplication,
)
from portal.reviews.models import Confirmation, ConfirmationSection, Finding, ReviewSchedule
from portal.reviews.schedules import HIGH_RISK
from portal.seeding import periodic
from portal.seeding.plan import Load, Planned, day_of, moment

CONDITIONS = (
    "・稼働率の保証（SLA）を契約書に明記すること。\n"
    "・年1回、情報セキュリティ対策の実施状況を書面で報告させること。"
)
REASONS = {
    "approve": "主要な要件を満たしており、リスクは低い。",
    "conditional": "主要な要件を満たしている。不足する点は条件を付して補う。",
    "reject": "不可の要因が解消されていないため、利用を認めない。",
}
APPLICATION_REASONS = {
    "approved": "評価の結果、要件を満たしている。",
    "conditional": "評価の結果、主要な要件を満たしている。条件を付して承認する。",
    "rejected": "評価票で不可と判定されたため、承認しない。",
    "returned": "利用する業務の範囲を具体的に記載し直してください。",
}
DECISION_OF = {
    "approved": "approve",
    "conditional": "conditional",
    "rejected": "reject",
    "returned": "return",
}
DECIDED_STATUS = {"approve": "approved", "conditional": "conditional"}

LOCKED = [
    model.__table__
    for model in (ExternalService, UseApplication, ReviewSchedule, Confirmation, Finding)
]
COUNTED = (
    ("外部サービス", ExternalService.__table__),
    ("利用申請", UseApplication.__table__),
    ("定期確認の予定", ReviewSchedule.__table__),
    ("定期確認（完了）", Confirmation.__table__),
    ("指摘事項", Finding.__table__),
)


def write(load: Load) -> dict[str, int]:
    """Write the register and the schedules; returns a few figures for the summary."""
    services, applications, managers, terms = _applications(load)
    subjects = [
        (plan, None)
        for plan in load.plans
        if plan.confirmed
        and plan.template.profile.kind == "outsourcing"
        and plan.decision != "reject"
    ] + [(app["plan"], app) for app in applications if app["status"] in SCHEDULED]
    schedules, confirmations, sections, findings = periodic.build(load, subjects)
    writer = load.writer
    writer.insert_dicts(ExternalService.__table__, services)
    writer.insert_dicts(UseApplication.__table__, applications)
    writer.insert_dicts(ManagerAssignment.__table__, managers)
    writer.insert_dicts(TermsVersion.__table__, terms)
    writer.insert_dicts(ReviewSchedule.__table__, schedules)
    writer.insert_dicts(Confirmation.__table__, confirmations)
    writer.insert_dicts(ConfirmationSection.__table__, sections)
    writer.insert_dicts(Finding.__table__, findings)
    return {
        "台帳の掲載": sum(1 for app in applications if app["status"] in REGISTER_STATES),
        "期限超過の定期確認": sum(1 for row in schedules if row["due_on"] < load.today),
    }


SCHEDULED = ("approved", "conditional", "suspended")


def _status(load: Load, plan: Planned) -> str | None:
    """The application's state, or None when nobody applied (yet)."""
    draw = load.rng.random()
    if plan.state == "reviewed":  # filed while the assessment awaits its confirmation
        return "submitted" if draw < 0.3 else None
    if plan.decision == "reject":
        return "rejected" if draw < 0.5 else None
    if draw < 0.04:
        return "submitted"
    if draw < 0.06:
        return "returned"
    if draw < 0.08:
        return "suspended"
    return "approved" if plan.decision == "approve" else "conditional"


def _applications(load: Load) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    writer, rng = load.writer, load.rng
    candidates = [
        (plan, status)
        for plan in load.plans
        if plan.template.profile.kind == "external_service" and plan.recommended
        if (status := _status(load, plan)) is not None
    ]
    service_ids = writer.ids(ExternalService.__table__, len(candidates))
    application_ids = writer.ids(UseApplication.__table__, len(candidates))
    services, applications, managers, terms = [], [], [], []
    for (plan, status), service_id, application_id in zip(
        candidates, service_ids, application_ids, strict=True
    ):
        profile, template = plan.template.profile, plan.template
        staff = load.staff[plan.department]
        filed = moment(rng, day_of(plan.confirmed or plan.recommended) + timedelta(days=1))
        decided = (
            moment(rng, day_of(filed) + timedelta(days=rng.randint(1, 10)))
            if status != "submitted"
            else None
        )
        name = plan.service_name
        services.append(
            {
                **template.service,
                "id": service_id,
                "organisation_id": load.org_id,
                "vendor_company_id": load.company_ids[plan.company],
                "name": name,
                "source_assessment_id": plan.id,
                "version": 1,
                "created_at": filed,
            }
        )
        risk = template.card.rating if decided else None
        decision = DECISION_OF.get(status) or plan.decision
        conditional = decision == "conditional"
        app = {
            "id": application_id,
            "organisation_id": load.org_id,
            "department_id": load.departments[plan.department],
            "service_id": service_id,
            "plan_id": None,
            "assessment_id": plan.id,
            "applicant_id": staff[0],
            "category": profile.track,
            "purpose": f"{profile.stem.removesuffix('の利用')}を業務に用いるため。",
            "business": f"{profile.information}の取扱い（機密性{profile.confidentiality}まで）",
            "network_segment": profile.segment,
            "max_confidentiality": profile.confidentiality,
            "personal_data": profile.personal,
            "specific_personal_data": profile.specific,
            "sensitive_personal_data": profile.sensitive,
            "status": status,
            "submitted_at": filed,
            "decision": decision if decided else None,
            "decided_by_id": load.approver[0] if decided else None,
            "decided_at": decided,
            "decision_reason": APPLICATION_REASONS.get(status, APPLICATION_REASONS["approved"])
            if decided
            else "",
            "conditions": CONDITIONS if conditional and decided else "",
            "override_reason": "",
            "risk_rating": risk,
            "reported": status in SCHEDULED and (conditional or risk in HIGH_RISK),
            "next_review_on": None,
            "status_reason": "委託先で障害が続いているため、原因が報告されるまで停止する。"
            if status == "suspended"
            else "",
            "exit_override_reason": "",
            "version": 1,
            "created_at": filed,
            "plan": plan,
        }
        applications.append(app)
        load.event(
            filed,
            "service.create",
            staff,
            "external_service",
            service_id,
            name=name,
            source_assessment_id=plan.id,
            vendor_company_id=load.company_ids[plan.company],
        )
        load.event(
            filed,
            "application.file",
            staff,
            "use_application",
            application_id,
            assessment_id=plan.id,
            category=profile.track,
            max_confidentiality=profile.confidentiality,
            network_segment=profile.segment,
            service_id=service_id,
            terms_sha256=None,
        )
        if profile.track == "9.3":
            terms.append(_terms(template, name, application_id, staff, filed))
        if decided:
            load.event(
                decided,
                f"application.{decision}",
                load.approver,
                "use_application",
                application_id,
                reason=app["decision_reason"],
                risk_rating=risk,
                **{"from": "submitted", "to": DECIDED_STATUS.get(decision, status)},
            )
        if status in SCHEDULED:
            manager = load.managers[plan.number % len(load.managers)]
            managers.append(
                {
                    "application_id": application_id,
                    "user_id": manager[0],
                    "appointed_on": day_of(decided),
                    "ended_on": None,
                    "appointed_by_id": load.approver[0],
                    "note": "承認時に指定",
                    "created_at": decided,
                }
            )
            load.event(
                decided,
                "application.manager_designate",
                load.approver,
                "use_application",
                application_id,
                manager_id=manager[0],
                appointed_on=day_of(decided),
                note="承認時に指定",
            )
        if status == "suspended":
            load.event(
                decided + timedelta(days=rng.randint(1, 10)),
                "application.suspend",
                load.approver,
                "use_application",
                application_id,
                reason=app["status_reason"],
                **{"from": DECIDED_STATUS[decision], "to": "suspended"},
            )
    # The register's "next review" follows the schedule: filled in by ``_schedules``.
    return services, applications, managers, terms


def _terms(template, name: str, application_id: int, staff, filed) -> dict:
    text = f"{name} 利用規約（{day_of(filed):%Y年%m月%d日}版）"
    return {
        "application_id": application_id,
        "url": template.values.get("terms.terms_url", "https://www.example.com/terms"),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "source": "貼り付け",
        "recorded_by_id": staff[0],
        "recorded_at": filed,
        "confirmed_by_id": staff[0],
        "confirmed_at": filed,
    }
