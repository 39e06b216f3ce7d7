"""The score card: a pure function of (questionnaire, answers, engagement, rules, today, and the
reviewers' manual scores). No database, no Flask — the same inputs always give the same card.

Scoring: "points" rules give each question its points (the sum of their maxima is what the
question can earn); a reviewer may set a question's points by hand — for a rule-scored question
that is an override, for any other question the reviewer's own score out of ``manual_max``.
A section's score is earned / possible over its scored questions; the total likewise.
Rating (低 / 中 / 高 / 不可): any blocker left → 不可; otherwise by the total against the rule
set's thresholds. A reviewer may dismiss a rule's outcome (with a reason, kept by the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from portal.assessments.answers import is_answered
from portal.questionnaires.conditions import EngagementFacts, holds, visible_sections
from portal.questionnaires.schema import CERTIFICATION_KINDS, Question, Questionnaire
from portal.scoring import ismap
from portal.scoring.rules import RowTest, Rule, RuleSet, Test

RATINGS = {"low": "低", "medium": "中", "high": "高", "unacceptable": "不可"}
DECISIONS = {"approve": "可", "conditional": "条件付き可", "reject": "不可"}


@dataclass(frozen=True)
class ManualReview:
    """What a reviewer decided about one answer."""

    points: int | None = None
    dismissed: frozenset[str] = frozenset()  # rule ids whose outcome the reviewer set aside


@dataclass(frozen=True)
class Result:
    rule: Rule
    points: int | None = None  # "points" rules: what the rule gave
    dismissed: bool = False

    @property
    def kind(self) -> str:
        return self.rule.outcome


@dataclass(frozen=True)
class QuestionScore:
    question: Question
    results: tuple[Result, ...]
    rule_points: int | None  # None: no rule scores this question
    possible: int
    manual: int | None

    @property
    def earned(self) -> int | None:
        return self.manual if self.manual is not None else self.rule_points

    @property
    def overridden(self) -> bool:
        return (
            self.rule_points is not None
            and self.manual is not None
            and (self.manual != self.rule_points)
        )

    @property
    def scored(self) -> bool:
        return self.earned is not None


@dataclass(frozen=True)
class SectionScore:
    key: str
    title: str
    earned: int
    possible: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.earned / self.possible) if self.possible else None


@dataclass(frozen=True)
class Expiry:
    label: str
    until: date
    question_key: str


@dataclass(frozen=True)
class ScoreCard:
    questionnaire_key: str
    questionnaire_version: str
    rules_version: str
    scored_on: date
    sections: tuple[SectionScore, ...]
    questions: Mapping[str, QuestionScore]
    results: tuple[Result, ...]  # every outcome that fired, dismissed ones included
    ismap: ismap.IsmapStatus
    expiries: tuple[Expiry, ...]
    rating: str
    earned: int
    possible: int

    def outcomes(self, kind: str) -> list[Result]:
        return [r for r in self.results if r.kind == kind and not r.dismissed]

    @property
    def blockers(self) -> list[Result]:
        return self.outcomes("blocker")

    @property
    def findings(self) -> list[Result]:
        return self.outcomes("finding")

    @property
    def conditions(self) -> list[Result]:
        return self.outcomes("condition")

    @property
    def reviews(self) -> list[Result]:
        return self.outcomes("review")

    @property
    def dismissed(self) -> list[Result]:
        return [r for r in self.results if r.dismissed]

    @property
    def percent(self) -> int | None:
        return round(100 * self.earned / self.possible) if self.possible else None

    @property
    def rating_label(self) -> str:
        return RATINGS[self.rating]

    @property
    def suggested_decision(self) -> str:
        if self.blockers:
            return "reject"
        return "conditional" if self.conditions else "approve"

    def summary(self) -> dict[str, Any]:
        """What is stored with a score (JSON): enough to show and audit it later."""
        return {
            "rating": self.rating,
            "percent": self.percent,
            "earned": self.earned,
            "possible": self.possible,
            "sections": {s.key: [s.earned, s.possible] for s in self.sections},
            "blockers": [r.rule.id for r in self.blockers],
            "findings": [r.rule.id for r in self.findings],
            "conditions": [r.rule.id for r in self.conditions],
            "reviews": [r.rule.id for r in self.reviews],
            "dismissed": [r.rule.id for r in self.dismissed],
            "overridden": sorted(k for k, q in self.questions.items() if q.overridden),
            "ismap": {
                "status": self.ismap.status,
                "valid_until": self.ismap.valid_until.isoformat()
                if self.ismap.valid_until
                else None,
            },
        }


# ---------------------------------------------------------------------------------------------


def _as_date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _selected(value: Any) -> set[str]:
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return {value} if isinstance(value, str) else set()


def _row_holds(row: Mapping[str, Any], tests: tuple[RowTest, ...], today: date) -> bool:
    for test in tests:
        cell = row.get(test.column)
        if test.is_ is not None and cell not in test.is_:
            return False
        if test.is_not is not None and (cell in (None, "") or cell in test.is_not):
            return False
        when = _as_date(cell)
        if test.expired and (when is None or when >= today):
            return False
        if test.within_days is not None and (
            when is None or not today <= when <= today + timedelta(days=test.within_days)
        ):
            return False
    return True


def _test_holds(
    test: Test,
    question: Question | None,
    shown: Mapping[str, Any],
    evidence: int,
    status: ismap.IsmapStatus,
    today: date,
) -> bool:
    if test.ismap is not None and status.status not in test.ismap:
        return False
    if any(not _selected(shown.get(key)) & accepted for key, accepted in test.answers):
        return False
    value = shown.get(question.key) if question is not None else None
    if question is None:
        return True
    answered = is_answered(question, value, evidence)
    if test.missing and answered:
        return False
    if test.answered and not answered:
        return False
    chosen = _selected(value)
    if test.is_ is not None and not chosen & test.is_:
        return False
    if test.is_not is not None and (not chosen or chosen & test.is_not):
        return False
    bounds = (test.above, test.at_least, test.below, test.at_most)
    if any(b is not None for b in bounds):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if (test.above is not None and not value > test.above) or (
            test.at_least is not None and not value >= test.at_least
        ):
            return False
        if (test.below is not None and not value < test.below) or (
            test.at_most is not None and not value <= test.at_most
        ):
            return False
    rows = value if isinstance(value, list) and question.type == "table" else []
    if test.any_row and not any(_row_holds(r, test.any_row, today) for r in rows):
        return False
    return not (test.no_row and any(_row_holds(r, test.no_row, today) for r in rows))


def _ismap_status(rules: RuleSet, shown: Mapping[str, Any], today: date) -> ismap.IsmapStatus:
    keys = rules.ismap
    return ismap.status(
        registered=shown.get(keys.registered) not in (None, "none"),
        audit_period_end=_as_date(shown.get(keys.audit_period_end)),
        renewal_pending=shown.get(keys.renewal_pending) == "yes",
        today=today,
        warn_days=keys.warn_days,
    )


def _expiries(
    questions: list[Question], shown: Mapping[str, Any], status: ismap.IsmapStatus, key: str
) -> tuple[Expiry, ...]:
    found = []
    if status.valid_until is not None:
        found.append(Expiry("ISMAP登録", status.valid_until, key))
    for question in questions:
        if question.table != "certifications":
            continue
        for row in shown.get(question.key) or []:
            until = _as_date(row.get("expires"))
            if until is not None:
                kind = CERTIFICATION_KINDS.get(row.get("kind", ""), "認証")
                number = row.get("number") or ""
                found.append(Expiry(f"{kind} {number}".strip(), until, question.key))
    return tuple(sorted(found, key=lambda e: e.until))


def score(
    questionnaire: Questionnaire,
    answers: Mapping[str, Any],
    facts: EngagementFacts,
    rules: RuleSet,
    today: date,
    *,
    evidence: Mapping[str, int] | None = None,
    reviews: Mapping[str, ManualReview] | None = None,
) -> ScoreCard:
    """Apply every rule to the answers of the questions that apply; see the module docstring."""
    evidence = evidence or {}
    reviews = reviews or {}
    sections = visible_sections(questionnaire, facts, answers)
    questions = [q for _s, qs in sections for q in qs]
    visible = {q.key: q for q in questions}
    shown = {k: v for k, v in answers.items() if k in visible}
    status = _ismap_status(rules, shown, today)

    results_by_question: dict[str | None, list[Result]] = {}
    for rule in rules.rules:
        question = visible.get(rule.question) if rule.question else None
        if rule.question and question is None:
            continue  # the question does not apply to this engagement / these answers
        if rule.when and not any(holds(c, facts, shown) for c in rule.when):
            continue
        value = shown.get(rule.question) if rule.question else None
        count = evidence.get(rule.question, 0) if rule.question else 0
        holds_test = rule.test is None or _test_holds(
            rule.test, question, shown, count, status, today
        )
        dismissed = rule.id in reviews.get(rule.question or "", ManualReview()).dismissed
        if rule.outcome == "points":
            if rule.points_by_value:
                chosen = _selected(value)
                given = max((p for v, p in rule.points_by_value if v in chosen), default=0)
            else:
                given = rule.points if holds_test else 0
            results_by_question.setdefault(rule.question, []).append(Result(rule, given))
        elif holds_test:
            results_by_question.setdefault(rule.question, []).append(
                Result(rule, dismissed=dismissed)
            )

    scored: dict[str, QuestionScore] = {}
    section_scores = []
    for section, section_questions in sections:
        earned = possible = 0
        for question in section_questions:
            results = tuple(results_by_question.get(question.key, ()))
            pointed = [r for r in results if r.kind == "points"]
            review = reviews.get(question.key, ManualReview())
            top = sum(r.rule.max_points for r in pointed) if pointed else rules.manual_max
            manual = None if review.points is None else max(0, min(review.points, top))
            entry = QuestionScore(
                question=question,
                results=results,
                rule_points=sum(r.points or 0 for r in pointed) if pointed else None,
                possible=top,
                manual=manual,
            )
            scored[question.key] = entry
            if entry.scored:
                earned += entry.earned or 0
                possible += entry.possible
        section_scores.append(SectionScore(section.key, section.title, earned, possible))

    fired = tuple(r for rs in results_by_question.values() for r in rs if r.kind != "points")
    earned = sum(s.earned for s in section_scores)
    possible = sum(s.possible for s in section_scores)
    percent = round(100 * earned / possible) if possible else 100  # as the card shows it
    if any(r.kind == "blocker" and not r.dismissed for r in fired):
        rating = "unacceptable"
    elif percent >= rules.rating_low:
        rating = "low"
    elif percent >= rules.rating_medium:
        rating = "medium"
    else:
        rating = "high"
    return ScoreCard(
        questionnaire_key=questionnaire.key,
        questionnaire_version=questionnaire.version,
        rules_version=rules.version,
        scored_on=today,
        sections=tuple(section_scores),
        questions=scored,
        results=fired,
        ismap=status,
        expiries=_expiries(questions, shown, status, rules.ismap.registered),
        rating=rating,
        earned=earned,
        possible=possible,
    )
