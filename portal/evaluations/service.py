"""Review a submitted assessment: score it by the rules, record each answer's review, and finish
with an outcome. Services flush; the caller commits (one transaction per business action)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.assessments import service as assessments
from portal.assessments import store
from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.db import utcnow
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.evidence.service import files_by_question
from portal.permissions import can_confirm, can_review
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_questions
from portal.reviews import schedules
from portal.scoring import engine, rules
from portal.scoring.engine import DECISIONS, ScoreCard
from portal.users.models import User

SCORED_STATES = ("submitted", "reviewed", "decided")
MAX_TEXT = 2000


class EvaluationError(Exception):
    """A refused action, with a message in Japanese."""


class ReviewConflict(Exception):
    """Someone saved this answer's review since the form was shown."""

    def __init__(self, current: AnswerReview | None):
        super().__init__("conflict")
        self.current = current


def reviews_of(
    session: Session, assessment: Assessment, *, authors: bool = False
) -> dict[str, AnswerReview]:
    """The reviews by question key; ``authors``: with who last saved each (one query more,
    however many reviewers)."""
    query = sa.select(AnswerReview).where(AnswerReview.assessment_id == assessment.id)
    if authors:
        query = query.options(selectinload(AnswerReview.updated_by))
    return {row.question_key: row for row in session.scalars(query)}


def vendor_comments(session: Session, assessment: Assessment) -> dict[str, str]:
    """The reviewers' comments addressed to the vendor — and nothing else of the review."""
    rows = session.execute(
        sa.select(AnswerReview.question_key, AnswerReview.vendor_comment).where(
            AnswerReview.assessment_id == assessment.id, AnswerReview.vendor_comment.is_not(None)
        )
    )
    return {key: comment for key, comment in rows}


def evidence_counts(session: Session, assessment: Assessment) -> dict[str, int]:
    return answering_files(files_by_question(session, assessment))


def answering_files(files_by_key: dict) -> dict[str, int]:
    """Files that answer their question: clean, or still being scanned (as for the vendor)."""
    return {
        key: sum(1 for f in files if f.scan_status in ("clean", "pending"))
        for key, files in files_by_key.items()
    }


def card_for(
    session: Session,
    assessment: Assessment,
    today: date,
    *,
    with_reviews: bool = True,
    reviews: dict[str, AnswerReview] | None = None,
    values: dict | None = None,
    evidence: dict[str, int] | None = None,
) -> ScoreCard:
    """The score card of an assessment now, by the newest rules of its questionnaire.
    A caller that already loaded the answers, evidence counts or reviews passes them in."""
    if assessment.status not in SCORED_STATES:
        raise EvaluationError("提出されていない評価票は採点できません。")
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    if with_reviews and reviews is None:
        reviews = reviews_of(session, assessment)
    return engine.score(
        questionnaire,
        store.values(session, assessment) if values is None else values,
        assessment.engagement.facts,
        rules.latest(assessment.questionnaire_key),
        today,
        evidence=evidence_counts(session, assessment) if evidence is None else evidence,
        reviews={k: r.as_manual for k, r in (reviews or {}).items()} if with_reviews else None,
    )


def record_score(
    session: Session, assessment: Assessment, card: ScoreCard, kind: str, actor: User | None
) -> Score:
    score = Score(
        assessment_id=assessment.id,
        kind=kind,
        questionnaire_version=card.questionnaire_version,
        rules_version=card.rules_version,
        scored_on=card.scored_on,
        rating=card.rating,
        percent=card.percent,
        summary=json.dumps(card.summary(), ensure_ascii=False, sort_keys=True),
        created_by_id=actor.id if actor else None,
    )
    session.add(score)
    session.flush()
    audit.record(
        session,
        "assessment.scored",
        actor=actor,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "kind": kind,
            "score_id": score.id,
            "rules_version": card.rules_version,
            "rating": card.rating,
            "percent": card.percent,
            "blockers": [r.rule.id for r in card.blockers],
        },
    )
    return score


def score_on_submission(
    session: Session, assessment: Assessment, actor: User, today: date
) -> Score:
    """The automatic first score, from the rules alone, when the vendor hands in."""
    return record_score(
        session,
        assessment,
        card_for(session, assessment, today, with_reviews=False),
        "automatic",
        actor,
    )


def latest_score(session: Session, assessment: Assessment, kind: str | None = None) -> Score | None:
    query = sa.select(Score).where(Score.assessment_id == assessment.id)
    if kind:
        query = query.where(Score.kind == kind)
    return session.scalar(query.order_by(Score.id.desc()).limit(1))


@dataclass
class ReviewInput:
    checked: bool
    manual_points: int | None
    dismissed: set[str]
    override_reason: str
    vendor_comment: str
    internal_note: str
    version: int  # of the review the form showed; 0 when there was none


def _text(value: str, label: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise EvaluationError(f"{label}は{MAX_TEXT}文字以内で入力してください。")
    return value or None


def save_review(
    session: Session,
    assessment: Assessment,
    actor: User,
    question_key: str,
    data: ReviewInput,
    today: date,
) -> AnswerReview:
    """Record the review of one answer. A manual score that differs from the rules' and a
    dismissed rule outcome are overrides: they need a reason. Optimistic locking: the form's
    version must still be the stored one, else ReviewConflict (nothing is written)."""
    if not can_review(actor, assessment):
        raise EvaluationError("この評価を審査する権限がありません。")
    if assessment.status != "submitted":
        raise EvaluationError("審査できるのは、提出済みで判定前の評価票だけです。")
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    values = store.values(session, assessment)
    visible = {q.key for q in visible_questions(questionnaire, assessment.engagement.facts, values)}
    if question_key not in visible:
        raise EvaluationError("この設問は審査の対象ではありません。")
    existing = reviews_of(session, assessment)
    row = existing.get(question_key)
    if (row.version if row else 0) != data.version:
        raise ReviewConflict(row)
    card = card_for(session, assessment, today, with_reviews=False)
    entry = card.questions[question_key]
    fired = {r.rule.id for r in entry.results if r.kind != "points"}
    if not data.dismissed <= fired:
        raise EvaluationError("取り消せるのは、この回答に対して判定された結果だけです。")
    if data.manual_points is not None and not 0 <= data.manual_points <= entry.possible:
        raise EvaluationError(f"点数は0から{entry.possible}の整数で入力してください。")
    overrides = bool(data.dismissed) or (
        data.manual_points is not None
        and entry.rule_points is not None
        and data.manual_points != entry.rule_points
    )
    reason = _text(data.override_reason, "変更の理由")
    if overrides and not reason:
        raise EvaluationError(
            "ルールによる点数や判定を変更するときは、変更の理由を入力してください。"
        )
    before = _snapshot(row)
    if row is None:
        row = AnswerReview(assessment_id=assessment.id, question_key=question_key)
        session.add(row)
    row.checked = data.checked
    row.manual_points = data.manual_points
    row.dismissed_rules = json.dumps(sorted(data.dismissed))
    row.override_reason = reason if overrides else None
    row.vendor_comment = _text(data.vendor_comment, "事業者へのコメント")
    row.internal_note = _text(data.internal_note, "内部メモ")
    row.updated_by_id = actor.id
    row.updated_at = utcnow()
    session.flush()
    after = _snapshot(row)
    if before != after:
        audit.record(
            session,
            "assessment.override" if overrides else "assessment.reviewed",
            actor=actor,
            obj=assessment,
            organisation_id=assessment.organisation_id,
            details={"question": question_key, "before": before, "after": after},
        )
    return row


def _snapshot(row: AnswerReview | None) -> dict | None:
    if row is None:
        return None
    return {
        "checked": row.checked,
        "manual_points": row.manual_points,
        "dismissed": sorted(row.dismissed),
        "override_reason": row.override_reason,
        "vendor_comment": row.vendor_comment,
        "internal_note": row.internal_note,
    }


@dataclass(frozen=True)
class ReviewProgress:
    checked: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else round(100 * self.checked / self.total)

    @property
    def complete(self) -> bool:
        return self.checked >= self.total


def review_progress(card: ScoreCard, reviews: dict[str, AnswerReview]) -> ReviewProgress:
    keys = set(card.questions)
    checked = sum(1 for key, row in reviews.items() if key in keys and row.checked)
    return ReviewProgress(checked, len(keys))


def finish(
    session: Session,
    assessment: Assessment,
    actor: User,
    *,
    decision: str,
    conditions: str,
    reasoning: str,
    today: date,
) -> Outcome:
    """Finish the review with a recommended decision. Where the organisation wants a second
    person, the outcome waits for confirmation; otherwise it is the decision."""
    if not can_review(actor, assessment):
        raise EvaluationError("この評価を判定する権限がありません。")
    if assessment.status != "submitted":
        raise EvaluationError("判定できるのは、提出済みで判定前の評価票だけです。")
    if decision not in DECISIONS:
        raise EvaluationError("判定（可・条件付き可・不可）を選んでください。")
    reviews = reviews_of(session, assessment)
    card = card_for(session, assessment, today, reviews=reviews)
    progress = review_progress(card, reviews)
    if not progress.complete:
        raise EvaluationError(
            f"すべての回答を確認してから判定してください（未確認 {progress.total - progress.checked} 件）。"
        )
    conditions_text = _text(conditions, "利用の条件") or ""
    reasoning_text = _text(reasoning, "判定の理由") or ""
    if card.blockers and decision != "reject":
        raise EvaluationError(
            "不可の要因が残っているため、「不可」以外は選べません。要因を取り消す場合は、"
            "該当する回答の審査で理由を記録してください。"
        )
    if decision == "approve" and card.conditions:
        raise EvaluationError("利用の条件があるため、「条件付き可」を選んでください。")
    if decision == "conditional" and not conditions_text:
        raise EvaluationError("「条件付き可」では、利用の条件を入力してください。")
    if decision == "reject" and not reasoning_text:
        raise EvaluationError("「不可」とする理由を入力してください。")
    score = record_score(session, assessment, card, "final", actor)
    outcome = Outcome(
        assessment_id=assessment.id,
        decision=decision,
        conditions=conditions_text if decision != "approve" else "",
        reasoning=reasoning_text,
        score_id=score.id,
        recommended_by_id=actor.id,
    )
    session.add(outcome)
    session.flush()
    confirm_needed = assessment.engagement.organisation.decision_requires_confirmation
    assessments.move(
        session,
        assessment,
        "recommend" if confirm_needed else "decide",
        actor,
        details={"decision": decision, "score_id": score.id, "rating": card.rating},
    )
    schedules.open_for_assessment(session, assessment, actor)
    return outcome


def outcome_of(session: Session, assessment: Assessment) -> Outcome | None:
    return session.scalar(sa.select(Outcome).where(Outcome.assessment_id == assessment.id))


def confirm(
    session: Session, assessment: Assessment, actor: User, *, accept: bool, comment: str
) -> None:
    """The second person confirms the recommended outcome, or sends the review back."""
    outcome = outcome_of(session, assessment)
    if assessment.status != "reviewed" or outcome is None:
        raise EvaluationError("確認を待っている判定はありません。")
    if actor.id == outcome.recommended_by_id:
        raise EvaluationError("判定を行った本人は確認できません（兼務の禁止）。")
    if not can_confirm(actor, assessment, outcome.recommended_by_id):
        raise EvaluationError("この判定を確認する権限がありません。")
    comment_text = _text(comment, "コメント") or ""
    if accept:
        outcome.confirmed_by_id = actor.id
        outcome.confirmed_at = utcnow()
        assessments.move(
            session,
            assessment,
            "confirm",
            actor,
            details={"decision": outcome.decision, "comment": comment_text},
        )
        schedules.open_for_assessment(session, assessment, actor)
        return
    if not comment_text:
        raise EvaluationError("差し戻す理由を入力してください。")
    assessments.move(
        session,
        assessment,
        "reopen",
        actor,
        details={"decision": outcome.decision, "comment": comment_text},
    )
    session.delete(outcome)  # the audit trail keeps what was recommended
    session.flush()
