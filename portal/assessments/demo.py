"""Demo engagements and assessments for ``seed-demo``, in every state the portal shows:
not started, partly answered (draft), submitted (scored by the rules, partly reviewed), returned
for revision, recommended and awaiting a second person's confirmation, and decided."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.assessments import service, store
from portal.assessments.answers import validate
from portal.assessments.models import Assessment
from portal.engagements.models import Engagement
from portal.evaluations import service as evaluations
from portal.orgs.models import Organisation
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_questions
from portal.questionnaires.schema import PREFILL_SOURCES, Question
from portal.users.models import User, UserRole, user_department
from portal.vendors.models import VendorCompany

TABLE_ROWS = {
    "subcontractors": [
        {
            "name": "さくらデータセンター株式会社",
            "identifier": "",
            "country": "JP",
            "role": "データセンターの運用",
            "wholly_owned": "yes",
        },
    ],
    "data_locations": [
        {"purpose": "primary", "country": "JP", "region": "東京都"},
        {"purpose": "backup", "country": "JP", "region": "大阪府"},
    ],
    "certifications": [
        {
            "kind": "iso27001",
            "number": "IS 000000",
            "body": "デモ認証機構",
            "scope": "クラウドサービスの提供",
            "issued": "2024-04-01",
            "expires": "2027-03-31",
        },
    ],
}

# Answers that read well in the generated 特記事項 (the rest come from ``sample_answer``).
DEMO_ANSWERS = {
    "contract.manager_name": "公共システム事業部　第一課長　佐藤一郎",
    "contract.work_sites": "本社（東京都千代田区）の開発室。在宅勤務では本件の作業を行わない。",
    "contract.availability": 99.5,
    "contract.rto": 4,
    "contract.rpo": 24,
    "contract.return_deletion_method": (
        "電子データはNIST SP 800-88に準拠したツールで消去し、紙媒体は溶解処理する。"
    ),
    "contract.deletion_deadline_days": 30,
    "contract.export_format": "CSV（UTF-8、項目定義書を添付）",
    "contract.emergency_notice_hours": 2,
    "external.sla_availability": 99.9,
    "external.incident_notice_hours": 2,
    "external.incident_contact": "セキュリティ窓口（security@example.com、03-0000-0000、24時間受付）",
    "external.export_format": "CSV及びJSON（管理画面から一括出力）",
}

ENGAGEMENTS = [
    # (title, department, kind, confidentiality, integrity, availability, personal data,
    #  specific personal data, sensitive personal data, network segment, company, state,
    #  share of the visible questions answered)
    (
        "住民基本台帳システム保守業務委託",
        "市民課",
        "outsourcing",
        3,
        2,
        2,
        True,
        True,
        False,
        "mynumber",
        "みなと情報システム株式会社",
        "submitted",
        1.0,
    ),
    (
        "電子申請サービスの利用",
        "情報政策課",
        "external_service",
        2,
        2,
        1,
        True,
        False,
        False,
        "internet",
        "株式会社さくらクラウドサービス",
        "draft",
        0.4,
    ),
    (
        "職員向け研修動画配信サービスの利用",
        "情報政策課",
        "external_service",
        1,
        1,
        1,
        False,
        False,
        False,
        "internet",
        "株式会社さくらクラウドサービス",
        "returned",
        1.0,
    ),
    (
        "アンケート集計データ入力業務委託",
        "市民課",
        "outsourcing",
        2,
        1,
        1,
        True,
        False,
        True,
        None,
        "有限会社データ入力センター",
        "draft",
        0.0,
    ),
    (
        "庁内グループウェアの利用",
        "情報政策課",
        "external_service",
        2,
        2,
        2,
        False,
        False,
        False,
        "lgwan",
        "株式会社さくらクラウドサービス",
        "decided",
        1.0,
    ),
    (
        "ふるさと納税返礼品受付業務委託",
        "市民課",
        "outsourcing",
        2,
        1,
        1,
        True,
        False,
        False,
        None,
        "有限会社データ入力センター",
        "reviewed",
        1.0,
    ),
]
# Decided 業務委託 contracts whose 定期確認 the demo shows (``portal.reviews.demo``).
ENGAGEMENTS += [
    (
        "庁舎ネットワーク運用保守業務委託",
        "情報政策課",
        "outsourcing",
        2,
        2,
        2,
        False,
        False,
        False,
        "lgwan",
        "みなと情報システム株式会社",
        "decided",
        1.0,
    ),
    (
        "税務システム運用支援業務委託",
        "市民課",
        "outsourcing",
        3,
        2,
        2,
        True,
        True,
        False,
        "mynumber",
        "みなと情報システム株式会社",
        "decided",
        1.0,
    ),
    (
        "会議録作成業務委託",
        "情報政策課",
        "outsourcing",
        2,
        1,
        1,
        False,
        False,
        False,
        None,
        "有限会社データ入力センター",
        "decided",
        1.0,
    ),
    (
        "旧文書管理システム保守業務委託",
        "情報政策課",
        "outsourcing",
        2,
        1,
        1,
        False,
        False,
        False,
        None,
        "みなと情報システム株式会社",
        "decided",
        1.0,
    ),
]
DEMO_TODAY = date(2026, 11, 20)


def sample_answer(question: Question, company: VendorCompany | None = None) -> Any:
    """A plausible answer for demo data, valid for the question's type."""
    if question.prefill and company is not None:
        return getattr(company, PREFILL_SOURCES[question.prefill])
    if question.key in DEMO_ANSWERS:
        return DEMO_ANSWERS[question.key]
    kind = question.type
    if kind in ("yes_no", "single"):
        values = [c.value for c in question.choices]
        return "yes" if "yes" in values else values[0]
    if kind == "multiple":
        return [question.choices[0].value]
    if kind == "number":
        low = question.min if question.min is not None else 0
        high = question.max if question.max is not None else 100
        return int(min(max(24, low), high))
    if kind == "date":
        return "2027-03-31"
    if kind == "country":
        return "JP"
    if kind == "url":
        return "https://www.example.com/terms"
    if kind == "table":
        return TABLE_ROWS[question.table]
    if kind in ("text", "long_text"):
        return "デモ回答: 当社の規程に基づき対応しています。"[: question.max_length or 200]
    return None


def _answer_all(session: Session, assessment: Assessment, contact: User, fraction: float) -> None:
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    answered: dict[str, Any] = {}
    questions = visible_questions(questionnaire, assessment.engagement.facts, answered)
    # Answer in order so that follow-up questions appear as their conditions are met.
    index = 0
    while index < len(questions):
        question = questions[index]
        value = sample_answer(question, assessment.vendor_company)
        if value is not None and len(answered) < fraction * len(questions):
            value = validate(question, value)
            answered[question.key] = value
            store.save(session, assessment, question.key, value, contact)
            questions = visible_questions(questionnaire, assessment.engagement.facts, answered)
        index += 1


def _staff_of(session: Session, org: Organisation, department_id: int) -> User:
    """An active staff member of the department (who may edit its engagements)."""
    return session.scalar(
        sa.select(User)
        .join(user_department, user_department.c.user_id == User.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(
            User.organisation_id == org.id,
            User.active.is_(True),
            User.password_hash.is_not(None),
            user_department.c.department_id == department_id,
            UserRole.role == "staff",
        )
        .order_by(User.id)
    )


def _review(session: Session, assessment: Assessment, staff: User, fraction: float) -> None:
    """Mark a share of the answers as checked; the first gets a comment to the vendor and an
    internal note, the first rule-scored one an override with its reason."""
    card = evaluations.card_for(session, assessment, DEMO_TODAY, with_reviews=False)
    keys = list(card.questions)
    overridden = False
    for index, key in enumerate(keys[: max(1, round(fraction * len(keys)))]):
        entry = card.questions[key]
        override = not overridden and entry.rule_points is not None and entry.rule_points > 0
        overridden = overridden or override
        evaluations.save_review(
            session,
            assessment,
            staff,
            key,
            evaluations.ReviewInput(
                checked=True,
                manual_points=entry.rule_points - 1 if override else None,
                dismissed=set(),
                override_reason="根拠資料の版が古いため1点減じた。" if override else "",
                vendor_comment="次回の定期確認では最新の資料を添付してください。"
                if index == 0
                else "",
                internal_note="担当者に電話で確認済み（内部メモ）。" if index == 0 else "",
                version=0,
            ),
            DEMO_TODAY,
        )


def seed(session: Session, org: Organisation, companies: dict[str, VendorCompany]) -> None:
    """Idempotent: an engagement with the same title is not created twice."""
    questionnaire = loader.latest("assessment")
    departments = {d.name: d for d in org.departments}
    for (
        title,
        department,
        kind,
        conf,
        integ,
        avail,
        personal,
        specific,
        sensitive,
        segment,
        company_name,
        state,
        fraction,
    ) in ENGAGEMENTS:
        if session.scalar(
            sa.select(Engagement.id).where(
                Engagement.organisation_id == org.id, Engagement.title == title
            )
        ):
            continue
        staff = _staff_of(session, org, departments[department].id)
        engagement = Engagement(
            organisation_id=org.id,
            department_id=departments[department].id,
            created_by_id=staff.id,
            kind=kind,
            title=title,
            purpose=f"{title}に係る{org.self_designation}の業務。",
            period_start=date(2026, 4, 1),
            period_end=date(2027, 3, 31),
            contract_amount=None,
            information="住民の氏名・住所等" if personal else "公開予定の研修資料",
            confidentiality=conf,
            integrity=integ,
            availability=avail,
            personal_data=personal,
            specific_personal_data=specific,
            sensitive_personal_data=sensitive,
            network_segment=segment,
        )
        session.add(engagement)
        session.flush()
        company = companies[company_name]
        assessment = Assessment(
            organisation_id=org.id,
            engagement_id=engagement.id,
            vendor_company_id=company.id,
            questionnaire_key=questionnaire.key,
            questionnaire_version=questionnaire.version,
            created_by_id=staff.id,
        )
        session.add(assessment)
        session.flush()
        contact = session.scalar(
            sa.select(User).where(User.vendor_company_id == company.id).order_by(User.id)
        )
        if fraction:
            _answer_all(session, assessment, contact, fraction)
        if state != "draft":
            service.submit(session, assessment, contact)
            evaluations.score_on_submission(session, assessment, contact, DEMO_TODAY)
        if state == "submitted":
            _review(session, assessment, staff, fraction=0.3)
        if state in ("reviewed", "decided"):
            _review(session, assessment, staff, fraction=1.0)
            evaluations.finish(
                session,
                assessment,
                staff,
                decision="conditional",
                conditions="・稼働率の保証（SLA）を契約書に明記すること。\n・年1回、情報セキュリティ対策の実施状況を書面で報告させること。",
                reasoning="主要な要件を満たしている。稼働率の保証が低いため条件を付す。",
                today=DEMO_TODAY,
            )
        if state == "decided" and assessment.status == "reviewed":
            confirmer = session.scalar(
                sa.select(User)
                .join(UserRole, UserRole.user_id == User.id)
                .where(User.organisation_id == org.id, UserRole.role == "approver")
                .order_by(User.id)
            )
            evaluations.confirm(
                session, assessment, confirmer, accept=True, comment="確認しました。"
            )
        if state == "returned":
            first = next(iter(store.answers(session, assessment)))
            service.return_answers(
                session,
                assessment,
                staff,
                {first: "根拠となる資料の名称と版数を追記してください。"},
                {first},
            )
