"""Address a questionnaire to a vendor company for an engagement, and move it through its states.

States (a transition table; every move is audited in the same transaction):
draft → submitted (vendor submits) → returned (staff return chosen answers) → submitted …
submitted → decided (staff finish the review) or, where the organisation wants a second person,
submitted → reviewed (recommended) → decided (confirmed) / → submitted (sent back); see
``portal/evaluations``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload, selectinload

from portal.assessments import answers, store
from portal.assessments.models import Answer, Assessment
from portal.audit import service as audit
from portal.auth.service import normalise_email
from portal.db import utcnow
from portal.engagements.models import Engagement
from portal.permissions import Role, can_edit_engagement
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_questions
from portal.questionnaires.schema import Questionnaire
from portal.users import service as users
from portal.users.models import User
from portal.vendors import service as vendors
from portal.vendors.models import VendorCompany

TRANSITIONS = {
    ("draft", "submit"): "submitted",
    ("returned", "submit"): "submitted",
    ("submitted", "return"): "returned",
    ("submitted", "decide"): "decided",
    ("submitted", "recommend"): "reviewed",
    ("reviewed", "confirm"): "decided",
    ("reviewed", "reopen"): "submitted",
}


class AssessmentError(Exception):
    """A refused action, with a message in Japanese."""


@dataclass
class Invitation:
    assessment: Assessment
    contact: User
    new_contact: bool


def move(session: Session, assessment: Assessment, action: str, actor: User, details=None) -> None:
    """Apply ``action`` if the transition table allows it from the current state."""
    target = TRANSITIONS.get((assessment.status, action))
    if target is None:
        raise AssessmentError("現在の状態ではこの操作はできません。")
    before = assessment.status
    assessment.status = target
    audit.record(
        session,
        f"assessment.{action}",
        actor=actor,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={"from": before, "to": target, **(details or {})},
    )
    session.flush()


def _company(
    session: Session,
    actor: User,
    *,
    company_id: int | None,
    corporate_number: str,
    company_name: str,
) -> VendorCompany:
    if company_id:
        company = vendors.get_for_organisation(session, actor.organisation_id, company_id)
        if company is None:
            raise AssessmentError("選択された事業者が見つかりません。")
        return company
    if not corporate_number or not company_name:
        raise AssessmentError(
            "登録済みの事業者を選ぶか、新しい事業者の法人番号と名称を入力してください。"
        )
    try:
        company, _created = vendors.register_company(
            session, actor, number=corporate_number, name=company_name, linked_ok=True
        )
    except vendors.VendorError as exc:
        raise AssessmentError(str(exc)) from exc
    return company


def _contact(
    session: Session, actor: User, company: VendorCompany, email: str, name: str
) -> tuple[User, bool]:
    existing = session.scalar(sa.select(User).where(User.email == normalise_email(email)))
    if existing is None:
        try:
            return users.create_vendor_user(session, actor, company, email=email, name=name), True
        except users.UserAdminError as exc:
            raise AssessmentError(str(exc)) from exc
    if existing.vendor_company_id != company.id or not existing.active:
        raise AssessmentError(
            "このメールアドレスは別の利用者が使用しているため、担当者に指定できません。別のメールアドレスを指定してください。"
        )
    if existing.grant_vendor_access(actor.organisation_id, actor.id):
        audit.record(
            session,
            "vendor.access_granted",
            actor=actor,
            obj=existing,
            details={"vendor_company_id": company.id},
        )
    return existing, False


def invite(
    session: Session,
    actor: User,
    engagement: Engagement,
    questionnaire: Questionnaire,
    *,
    company_id: int | None,
    corporate_number: str,
    company_name: str,
    contact_name: str,
    contact_email: str,
) -> Invitation:
    """Create the assessment for a company (existing, or registered now by 法人番号) and make
    sure a contact of that company can reach it."""
    if not can_edit_engagement(actor, engagement) or Role.STAFF not in actor.role_set:
        raise AssessmentError("この案件で回答を依頼する権限がありません。")
    company = _company(
        session,
        actor,
        company_id=company_id,
        corporate_number=corporate_number,
        company_name=company_name,
    )
    duplicate = session.scalar(
        sa.select(Assessment.id).where(
            Assessment.engagement_id == engagement.id, Assessment.vendor_company_id == company.id
        )
    )
    if duplicate is not None:
        raise AssessmentError("この事業者にはすでにこの案件の回答を依頼しています。")
    contact, new_contact = _contact(session, actor, company, contact_email, contact_name)
    assessment = Assessment(
        organisation_id=engagement.organisation_id,
        engagement_id=engagement.id,
        vendor_company_id=company.id,
        questionnaire_key=questionnaire.key,
        questionnaire_version=questionnaire.version,
        created_by_id=actor.id,
    )
    session.add(assessment)
    session.flush()
    audit.record(
        session,
        "assessment.created",
        actor=actor,
        obj=assessment,
        details={
            "engagement_id": engagement.id,
            "vendor_company_id": company.id,
            "questionnaire": f"{questionnaire.key} {questionnaire.version}",
            "contact": contact.email,
        },
    )
    return Invitation(assessment, contact, new_contact)


def submit(session: Session, assessment: Assessment, actor: User) -> None:
    """The vendor hands in its answers; returned answers are closed again."""
    move(session, assessment, "submit", actor)
    assessment.submitted_at = utcnow()
    session.execute(
        sa.update(Answer)
        .where(Answer.assessment_id == assessment.id, Answer.returned.is_(True))
        .values(returned=False)
    )
    session.flush()


def return_answers(
    session: Session,
    assessment: Assessment,
    actor: User,
    comments: dict[str, str],
    visible_keys: set[str],
) -> int:
    """Send chosen answers back to the vendor, each with a comment; only those may change."""
    if not can_edit_engagement(actor, assessment.engagement):
        raise AssessmentError("この評価の回答を差し戻す権限がありません。")
    chosen = {key: comment.strip() for key, comment in comments.items() if key in visible_keys}
    if not chosen:
        raise AssessmentError("差し戻す設問を1つ以上選んでください。")
    if any(not comment for comment in chosen.values()):
        raise AssessmentError("差し戻す設問それぞれに、修正を依頼する内容を入力してください。")
    if any(len(comment) > 2000 for comment in chosen.values()):
        raise AssessmentError("コメントは2000文字以内で入力してください。")
    existing = {
        a.question_key: a
        for a in session.scalars(sa.select(Answer).where(Answer.assessment_id == assessment.id))
    }
    for key, comment in chosen.items():
        answer = existing.get(key)
        if answer is None:
            answer = Answer(assessment_id=assessment.id, question_key=key, value="null", revision=0)
            session.add(answer)
        answer.returned = True
        answer.return_comment = comment
    # The comments go into the audit trail too: a later return replaces them on the answers.
    move(session, assessment, "return", actor, details={"comments": chosen})
    return len(chosen)


def copy_answers(
    session: Session, target: Assessment, source: Assessment, actor: User
) -> tuple[int, int]:
    """Copy answers of an earlier assessment of the same company into the empty answers of
    this one: only questions that exist and apply here (follow-up questions as their triggers
    arrive), each value re-validated against this questionnaire, nothing already answered
    overwritten. Returns (copied, skipped as no longer valid)."""
    if source.vendor_company_id != target.vendor_company_id or source.id == target.id:
        raise AssessmentError("転記できるのは、同じ事業者の以前の評価票からのみです。")
    if target.status != "draft":
        raise AssessmentError("回答中の評価票にだけ転記できます。")
    questionnaire = loader.get(target.questionnaire_key, target.questionnaire_version)
    earlier = store.values(session, source)
    current = {k: v for k, v in store.values(session, target).items() if v is not None}
    copied, skipped, tried = 0, 0, set()
    while True:
        pending = [
            q
            for q in visible_questions(questionnaire, target.engagement.facts, current)
            if q.type != "evidence"
            and q.key in earlier
            and q.key not in current
            and q.key not in tried
        ]
        if not pending:
            break
        for question in pending:
            tried.add(question.key)
            try:
                value = answers.validate(question, earlier[question.key])
            except answers.AnswerInvalid:
                skipped += 1
                continue
            if value is not None:
                store.save(session, target, question.key, value, actor)
                current[question.key] = value
                copied += 1
    audit.record(
        session,
        "assessment.copied",
        actor=actor,
        obj=target,
        organisation_id=target.organisation_id,
        details={"from_assessment": source.id, "copied": copied, "skipped": skipped},
    )
    return copied, skipped


def for_vendor_user(session: Session, user: User) -> list[Assessment]:
    """What is addressed to the user's company by the bodies that granted the user access."""
    return list(
        session.scalars(
            sa.select(Assessment)
            .options(joinedload(Assessment.engagement).joinedload(Engagement.organisation))
            .where(
                Assessment.vendor_company_id == user.vendor_company_id,
                Assessment.organisation_id.in_(user.vendor_organisation_ids),
            )
            .order_by(Assessment.created_at.desc(), Assessment.id.desc())
        )
    )


def for_engagement(session: Session, engagement_id: int) -> list[Assessment]:
    return list(
        session.scalars(
            sa.select(Assessment)
            .options(selectinload(Assessment.vendor_company))
            .where(Assessment.engagement_id == engagement_id)
            .order_by(Assessment.id)
        )
    )
