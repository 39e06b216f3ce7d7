"""Read and write answers; every change of value becomes a new revision in the history."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.db import utcnow
from portal.users.models import User


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def values(session: Session, assessment: Assessment) -> dict[str, Any]:
    rows = session.execute(
        sa.select(Answer.question_key, Answer.value).where(Answer.assessment_id == assessment.id)
    )
    return {key: json.loads(value) for key, value in rows}


def answers(session: Session, assessment: Assessment) -> dict[str, Answer]:
    rows = session.scalars(sa.select(Answer).where(Answer.assessment_id == assessment.id))
    return {row.question_key: row for row in rows}


_LOOK_UP = object()


def save(
    session: Session,
    assessment: Assessment,
    question_key: str,
    value: Any,
    actor: User,
    current: Answer | None | object = _LOOK_UP,
) -> bool:
    """Store ``value`` (already validated; None clears it). Returns False when nothing changed.

    ``current``: the answer row (or None: there is none) when the caller has just read it in
    this transaction; otherwise it is looked up."""
    if current is _LOOK_UP:
        answer = session.scalar(
            sa.select(Answer).where(
                Answer.assessment_id == assessment.id, Answer.question_key == question_key
            )
        )
    else:
        answer = current  # type: ignore[assignment]
    encoded = _dump(value)
    if answer is not None and answer.value == encoded:
        return False
    if answer is None:
        if value is None:
            return False
        answer = Answer(
            assessment_id=assessment.id,
            question_key=question_key,
            value=encoded,
            revision=1,
            updated_by_id=actor.id,
            updated_at=utcnow(),
        )
        session.add(answer)
    else:
        answer.value = encoded
        answer.revision += 1
        answer.updated_by_id = actor.id
        answer.updated_at = utcnow()
    session.flush()
    session.add(
        AnswerRevision(
            answer_id=answer.id,
            revision=answer.revision,
            value=encoded,
            saved_by_id=actor.id,
            saved_at=answer.updated_at,
        )
    )
    session.flush()
    return True


def history(session: Session, assessment: Assessment, question_key: str) -> list[AnswerRevision]:
    return list(
        session.scalars(
            sa.select(AnswerRevision)
            .join(Answer, Answer.id == AnswerRevision.answer_id)
            .where(Answer.assessment_id == assessment.id, Answer.question_key == question_key)
            .order_by(AnswerRevision.revision)
        )
    )


def histories(session: Session, assessment: Assessment) -> dict[str, list[AnswerRevision]]:
    """Every answer's revisions, oldest first, by question (one query for the whole page)."""
    grouped: dict[str, list[AnswerRevision]] = {}
    rows = session.execute(
        sa.select(Answer.question_key, AnswerRevision)
        .join(Answer, Answer.id == AnswerRevision.answer_id)
        .where(Answer.assessment_id == assessment.id)
        .order_by(Answer.question_key, AnswerRevision.revision)
    )
    for key, revision in rows:
        grouped.setdefault(key, []).append(revision)
    return grouped


def decode(revision: AnswerRevision) -> Any:
    return json.loads(revision.value)
