"""Which sections and questions apply: a pure function of the engagement and the answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from portal.questionnaires.schema import Condition, Question, Questionnaire, Section


@dataclass(frozen=True)
class EngagementFacts:
    """What the conditions may look at about an engagement (案件)."""

    track: str
    kind: str
    confidentiality: int
    integrity: int
    availability: int
    personal_data: bool = False
    specific_personal_data: bool = False
    sensitive_personal_data: bool = False
    segment: str | None = None


def _answer_values(value: Any) -> set[str]:
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return {value} if isinstance(value, str) else set()


def holds(condition: Condition | None, facts: EngagementFacts, answers: Mapping[str, Any]) -> bool:
    if condition is None:
        return True
    checks = (
        condition.tracks is None or facts.track in condition.tracks,
        condition.kinds is None or facts.kind in condition.kinds,
        condition.segments is None or facts.segment in condition.segments,
        condition.confidentiality_min is None
        or facts.confidentiality >= condition.confidentiality_min,
        condition.integrity_min is None or facts.integrity >= condition.integrity_min,
        condition.availability_min is None or facts.availability >= condition.availability_min,
        condition.personal_data is None or facts.personal_data == condition.personal_data,
        condition.specific_personal_data is None
        or facts.specific_personal_data == condition.specific_personal_data,
        condition.sensitive_personal_data is None
        or facts.sensitive_personal_data == condition.sensitive_personal_data,
    )
    if not all(checks):
        return False
    return all(_answer_values(answers.get(key)) & accepted for key, accepted in condition.answers)


def visible_sections(
    questionnaire: Questionnaire, facts: EngagementFacts, answers: Mapping[str, Any]
) -> list[tuple[Section, list[Question]]]:
    """Sections that apply, each with its questions that apply, in order.

    A question whose condition refers to a hidden question is hidden too: answers of hidden
    questions are ignored, so a condition never sees them.
    """
    shown: dict[str, Any] = {}
    result: list[tuple[Section, list[Question]]] = []
    for section in questionnaire.sections:
        if not holds(section.when, facts, shown):
            continue
        questions = []
        for question in section.questions:
            if holds(question.when, facts, shown):
                questions.append(question)
                if question.key in answers:
                    shown[question.key] = answers[question.key]
        if questions:
            result.append((section, questions))
    return result


def visible_questions(
    questionnaire: Questionnaire, facts: EngagementFacts, answers: Mapping[str, Any]
) -> list[Question]:
    return [
        q
        for _section, questions in visible_sections(questionnaire, facts, answers)
        for q in questions
    ]


def applicable_by_engagement(
    questionnaire: Questionnaire, facts: EngagementFacts
) -> list[tuple[Section, int, int]]:
    """Per section that the engagement makes applicable: (section, questions that apply,
    of which asked only after a certain answer). Explains on the engagement page what will be
    asked and why, before anything is answered."""
    summary = []
    for section in questionnaire.sections:
        if not holds(ignoring_answers(section.when), facts, {}):
            continue
        applying = [q for q in section.questions if holds(ignoring_answers(q.when), facts, {})]
        if applying:
            follow_ups = sum(1 for q in applying if q.when and q.when.depends_on_answers)
            summary.append((section, len(applying), follow_ups))
    return summary


def ignoring_answers(condition: Condition | None) -> Condition | None:
    """The condition's engagement part only (what applies before anything is answered)."""
    if condition is None or not condition.answers:
        return condition
    return replace(condition, answers=())
