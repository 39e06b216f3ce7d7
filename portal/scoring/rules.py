"""Scoring rules as data: ``questionnaires/rules/*.toml`` loaded into typed, immutable objects.

Every file is checked on load: unknown questions, tests that do not fit the question's type,
values that are not among its choices and contradictory outcomes fail with the file and the rule
named. The format is described in ``questionnaires/rules/README.md``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from portal.questionnaires import loader as questionnaires
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.loader import _Checker, _cites, _condition, _version_order
from portal.questionnaires.schema import Condition, Question, Questionnaire
from portal.scoring.ismap import STATUS_LABELS as ISMAP_STATUSES

RULES_DIR = questionnaires.BANK_DIR / "rules"
RULE_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")

OUTCOMES = {
    "points": "配点",
    "finding": "指摘事項",
    "condition": "利用の条件",
    "review": "要確認（職員が判断）",
    "blocker": "不可の要因",
}
FILE_FIELDS = {"questionnaire", "version", "title", "rating", "ismap", "manual", "rule"}
RULE_FIELDS = {"id", "title", "cites", "question", "when", "if", "then", "points", "message"}
TEST_FIELDS = {"is", "is_not", "above", "at_least", "below", "at_most", "missing", "answered"}
TABLE_TEST_FIELDS = {"any_row", "no_row", "missing", "answered"}
SHARED_TEST_FIELDS = {"ismap", "answer"}  # any question type: the ISMAP status, other answers
ROW_TEST_FIELDS = {"is", "is_not", "expired", "within_days"}
CHOICE_TYPES = {"yes_no", "single", "multiple", "country"}


class RulesError(ValueError):
    """A rules file is not valid; every problem names the file and the rule at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RowTest:
    """One column of a table row: a value among / not among values, or a date passed / near."""

    column: str
    is_: frozenset[str] | None = None
    is_not: frozenset[str] | None = None
    expired: bool = False
    within_days: int | None = None


@dataclass(frozen=True)
class Test:
    """What must hold of the rule's question (all given parts), or of the ISMAP status."""

    is_: frozenset[str] | None = None
    is_not: frozenset[str] | None = None
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    missing: bool = False
    answered: bool = False
    any_row: tuple[RowTest, ...] = ()
    no_row: tuple[RowTest, ...] = ()
    ismap: frozenset[str] | None = None
    answers: tuple[tuple[str, frozenset[str]], ...] = ()  # other answers that must hold too


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    cites: tuple[str, ...]
    outcome: str  # a key of OUTCOMES
    question: str | None = None
    section: str | None = None
    when: tuple[Condition, ...] = ()  # any of them (empty: always)
    test: Test | None = None
    points: int = 0  # "points" rules: awarded when the test holds
    points_by_value: tuple[tuple[str, int], ...] = ()  # … or by the answer's value
    message: str = ""

    @property
    def max_points(self) -> int:
        if self.points_by_value:
            return max(points for _value, points in self.points_by_value)
        return self.points

    @property
    def outcome_label(self) -> str:
        return OUTCOMES[self.outcome]


@dataclass(frozen=True)
class IsmapKeys:
    registered: str
    audit_period_end: str
    renewal_pending: str
    warn_days: int = 120


@dataclass(frozen=True)
class RuleSet:
    questionnaire: str
    version: str
    title: str
    rules: tuple[Rule, ...]
    ismap: IsmapKeys
    rating_low: int = 80  # percent at or above: 低
    rating_medium: int = 60  # at or above: 中; below: 高
    manual_max: int = 5  # points a reviewer may give a question no rule scores
    source: str = ""

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def cited_items(self) -> set[str]:
        return {cite for rule in self.rules for cite in rule.cites}


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _values(check: _Checker, raw: Any, where: str, allowed: set[str] | None) -> frozenset[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        check.fail(where, "値の空でないリストで指定してください")
        return frozenset()
    if allowed is not None and not set(raw) <= allowed:
        unknown = ", ".join(sorted(set(raw) - allowed))
        check.fail(where, f"この設問にない値です: {unknown}")
    return frozenset(raw)


def _allowed_values(question: Question) -> set[str] | None:
    if question.type == "country":
        return set(COUNTRIES)
    return {c.value for c in question.choices} or None


def _row_tests(check: _Checker, raw: Any, where: str, question: Question) -> tuple[RowTest, ...]:
    if not isinstance(raw, dict) or not raw:
        check.fail(where, "{ 列名 = { … } } の形で指定してください")
        return ()
    columns = {c.key: c for c in question.columns}
    tests = []
    for name, spec in raw.items():
        column = columns.get(name)
        at = f"{where}.{name}"
        if column is None:
            check.fail(at, f"この表にない列です（{', '.join(columns)}）")
            continue
        if not isinstance(spec, dict) or not spec:
            check.fail(at, "{ is = [...] } などの表で指定してください")
            continue
        check.unknown_fields(spec, ROW_TEST_FIELDS, at)
        allowed = set(COUNTRIES) if column.type == "country" else {v for v, _ in column.choices}
        is_dated = column.type == "date"
        if ("expired" in spec or "within_days" in spec) and not is_dated:
            check.fail(at, "expired / within_days は日付の列でだけ使えます")
        if "expired" in spec and spec["expired"] is not True:
            check.fail(f"{at}.expired", "true で指定してください（条件にしない場合は書かない）")
        within = spec.get("within_days")
        if within is not None and (isinstance(within, bool) or not isinstance(within, int)):
            check.fail(f"{at}.within_days", "日数を整数で指定してください")
            within = None
        tests.append(
            RowTest(
                column=name,
                is_=_values(check, spec["is"], f"{at}.is", allowed or None)
                if "is" in spec
                else None,
                is_not=_values(check, spec["is_not"], f"{at}.is_not", allowed or None)
                if "is_not" in spec
                else None,
                expired=spec.get("expired") is True,
                within_days=within,
            )
        )
    return tuple(tests)


def _other_answers(
    check: _Checker, raw: Any, where: str, questionnaire: Questionnaire
) -> tuple[tuple[str, frozenset[str]], ...]:
    """``answer = { "key" = ["value", …] }``: the same as a condition's answer part."""
    if raw is None:
        return ()
    condition = _condition(
        check, {"answer": raw}, where, {q.key: q for q in questionnaire.questions}
    )
    return condition.answers if condition else ()


def _test(
    check: _Checker, raw: Any, where: str, question: Question | None, questionnaire: Questionnaire
) -> Test | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        check.fail(where, "条件は空でない表（{ … }）で指定してください")
        return None
    if question is None:
        check.unknown_fields(raw, SHARED_TEST_FIELDS, where)
        if not set(raw) & SHARED_TEST_FIELDS:
            check.fail(where, "question のない規則では ismap と answer だけを条件にできます")
    elif question.type == "table":
        check.unknown_fields(raw, TABLE_TEST_FIELDS | SHARED_TEST_FIELDS, where)
    else:
        check.unknown_fields(raw, TEST_FIELDS | SHARED_TEST_FIELDS, where)
        allowed_here = set(TEST_FIELDS)
        if question.type not in CHOICE_TYPES:
            allowed_here -= {"is", "is_not"}
        if question.type != "number":
            allowed_here -= {"above", "at_least", "below", "at_most"}
        for name in sorted((set(raw) & TEST_FIELDS) - allowed_here):
            check.fail(f"{where}.{name}", f"{question.type} 型の設問には使えません")
    for flag in ("missing", "answered"):
        if flag in raw and raw[flag] is not True:
            check.fail(f"{where}.{flag}", "true で指定してください（条件にしない場合は書かない）")
    allowed = _allowed_values(question) if question is not None else None
    bounds = {}
    for name in ("above", "at_least", "below", "at_most"):
        bounds[name] = check.number(raw, name, where)
    return Test(
        is_=_values(check, raw["is"], f"{where}.is", allowed) if "is" in raw else None,
        is_not=_values(check, raw["is_not"], f"{where}.is_not", allowed)
        if "is_not" in raw
        else None,
        missing=raw.get("missing") is True,
        answered=raw.get("answered") is True,
        any_row=_row_tests(check, raw["any_row"], f"{where}.any_row", question)
        if "any_row" in raw and question is not None
        else (),
        no_row=_row_tests(check, raw["no_row"], f"{where}.no_row", question)
        if "no_row" in raw and question is not None
        else (),
        ismap=_values(check, raw["ismap"], f"{where}.ismap", set(ISMAP_STATUSES))
        if "ismap" in raw
        else None,
        answers=_other_answers(check, raw.get("answer"), where, questionnaire),
        **bounds,
    )


def _when(check: _Checker, raw: Any, where: str, questionnaire: Questionnaire):
    if raw is None:
        return ()
    everything = {q.key: q for q in questionnaire.questions}
    parts = raw if isinstance(raw, list) else [raw]
    if not parts:
        check.fail(where, "条件のリストが空です")
    conditions = [
        _condition(check, part, f"{where}[{n}]" if isinstance(raw, list) else where, everything)
        for n, part in enumerate(parts)
    ]
    return tuple(c for c in conditions if c is not None)


def _points(check: _Checker, raw: Any, where: str, question: Question | None):
    """``points = 10`` (when the test holds) or ``points = { yes = 10, partly = 5 }``."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw <= 100:
        return raw, ()
    if isinstance(raw, dict) and raw:
        allowed = _allowed_values(question) if question is not None else None
        if question is None or question.type not in CHOICE_TYPES - {"country"} or not allowed:
            check.fail(where, "値ごとの配点は選択式の設問でだけ使えます")
            return 0, ()
        if not set(raw) <= allowed:
            check.fail(where, f"この設問にない値です: {', '.join(sorted(set(raw) - allowed))}")
        if not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 100 for p in raw.values()
        ) or not any(raw.values()):
            check.fail(where, "0から100の整数で、1つ以上は正の値を指定してください")
            return 0, ()
        return 0, tuple(sorted(raw.items()))
    check.fail(where, "1から100の整数、又は { 値 = 点数 } で指定してください")
    return 0, ()


def _rule(check: _Checker, raw: Any, n: int, questionnaire: Questionnaire) -> Rule | None:
    if not isinstance(raw, dict):
        check.fail(f"rule[{n}]", "規則は表で指定してください")
        return None
    rule_id = check.string(raw, "id", f"rule[{n}]")
    where = f"rule[{rule_id or n}]"
    check.unknown_fields(raw, RULE_FIELDS, where)
    if rule_id and not RULE_ID.match(rule_id):
        check.fail(f"{where}.id", "「分類.名前」の形（英小文字・数字・_）にしてください")
    question = None
    question_key = raw.get("question")
    if question_key is not None:
        question = questionnaire.question(question_key) if isinstance(question_key, str) else None
        if question is None:
            check.fail(
                f"{where}.question",
                f"評価票 {questionnaire.key} {questionnaire.version} にない設問です: {question_key!r}",
            )
    has_then, has_points = "then" in raw, "points" in raw
    if has_then == has_points:
        check.fail(where, "then（結果）と points（配点）のどちらか一方だけを指定してください")
    outcome, points, by_value, message = "points", 0, (), ""
    if has_then:
        outcome = raw.get("then")
        if outcome not in OUTCOMES or outcome == "points":
            check.fail(
                f"{where}.then", "finding, condition, review, blocker のいずれかにしてください"
            )
            outcome = "finding"
        message = check.string(raw, "message", where)
    elif has_points:
        if question is None and question_key is None:
            check.fail(f"{where}.question", "配点の規則には設問（question）が必要です")
        points, by_value = _points(check, raw["points"], f"{where}.points", question)
        if points and "if" not in raw:
            check.fail(f"{where}.if", "固定の配点には、配点する条件（if）が必要です")
        if by_value and "if" in raw:
            check.fail(f"{where}.if", "値ごとの配点と if は同時に使えません")
        message = check.string(raw, "message", where, required=False)
    return Rule(
        id=rule_id,
        title=check.string(raw, "title", where),
        cites=_cites(check, raw.get("cites"), where, required=True),
        outcome=outcome,
        question=question.key if question is not None else None,
        section=question.section_key if question is not None else None,
        when=_when(check, raw.get("when"), f"{where}.when", questionnaire),
        test=_test(check, raw.get("if"), f"{where}.if", question, questionnaire),
        points=points,
        points_by_value=by_value,
        message=message,
    )


def _ismap_keys(check: _Checker, raw: Any, questionnaire: Questionnaire) -> IsmapKeys:
    expected = {"registered": "single", "audit_period_end": "date", "renewal_pending": "yes_no"}
    if not isinstance(raw, dict):
        check.fail(
            "ismap", "[ismap] に registered, audit_period_end, renewal_pending を指定してください"
        )
        raw = {}
    check.unknown_fields(raw, set(expected) | {"warn_days"}, "ismap")
    for name, qtype in expected.items():
        target = questionnaire.question(raw.get(name, ""))
        if target is None or target.type != qtype:
            check.fail(f"ismap.{name}", f"{qtype} 型の設問のキーを指定してください")
    return IsmapKeys(
        registered=raw.get("registered", ""),
        audit_period_end=raw.get("audit_period_end", ""),
        renewal_pending=raw.get("renewal_pending", ""),
        warn_days=check.int_at_least(raw, "warn_days", "ismap", 120, 1),
    )


def _region(rule: Rule, question: Question) -> tuple[str, Any] | None:
    """The answers a rule is about, to find contradictions: ("values", set) or ("range", lo, hi)."""
    test = rule.test
    if rule.points_by_value:
        best = rule.max_points
        return "values", {v for v, p in rule.points_by_value if p == best}
    if test is None:
        return None
    if test.is_ is not None and question.type in CHOICE_TYPES:
        return "values", set(test.is_)
    if question.type == "number" and any(
        b is not None for b in (test.above, test.at_least, test.below, test.at_most)
    ):
        low = max((b for b in (test.above, test.at_least) if b is not None), default=float("-inf"))
        high = min((b for b in (test.below, test.at_most) if b is not None), default=float("inf"))
        return "range", (low, test.above is not None, high, test.below is not None)
    return None


def _overlap(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "values":
        return bool(a[1] & b[1])
    low = max(a[1][0], b[1][0])
    high = min(a[1][2], b[1][2])
    if low < high:
        return True
    if low > high:
        return False
    open_low = (a[1][1] and a[1][0] == low) or (b[1][1] and b[1][0] == low)
    open_high = (a[1][3] and a[1][2] == high) or (b[1][3] and b[1][2] == high)
    return not (open_low or open_high)


def _contradictions(check: _Checker, rules: list[Rule], questionnaire: Questionnaire) -> None:
    """Two rules that say opposite things of the same answer: the same trigger with different
    outcomes, or full points for an answer that another rule calls a blocker."""
    seen: dict[tuple, Rule] = {}
    for rule in rules:
        if rule.outcome != "points":
            trigger = (rule.question, rule.when, rule.test)
            other = seen.get(trigger)
            if other is not None and other.outcome != rule.outcome:
                check.fail(
                    f"rule[{rule.id}]",
                    f"rule[{other.id}] と同じ条件で異なる結果（{other.outcome_label} と "
                    f"{rule.outcome_label}）になっています",
                )
            seen.setdefault(trigger, rule)
    for scorer in (r for r in rules if r.outcome == "points" and r.question):
        question = questionnaire.question(scorer.question)
        best = _region(scorer, question) if question else None
        if best is None:
            continue
        for blocker in rules:
            if blocker.outcome != "blocker" or blocker.question != scorer.question:
                continue
            if blocker.when and scorer.when and blocker.when != scorer.when:
                continue  # they apply to different engagements
            blocked = _region(blocker, question)
            if blocked is not None and _overlap(best, blocked):
                check.fail(
                    f"rule[{blocker.id}]",
                    f"rule[{scorer.id}] が満点とする回答を不可の要因としています",
                )


def parse(data: dict, source: str, questionnaire: Questionnaire | None = None) -> RuleSet:
    check = _Checker(source)
    check.unknown_fields(data, FILE_FIELDS, "(file)")
    key = check.string(data, "questionnaire", "(file)")
    version = check.string(data, "version", "(file)")
    if questionnaire is None and key:
        try:
            questionnaire = questionnaires.latest(key)
        except KeyError:
            check.fail("questionnaire", f"評価票 {key!r} がありません")
    if questionnaire is None:
        raise RulesError(check.problems or [f"{source}: questionnaire: 必須の項目がありません"])
    raw_rules = data.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        check.fail("rule", "規則を1つ以上指定してください")
        raw_rules = []
    rules: list[Rule] = []
    for n, raw in enumerate(raw_rules):
        rule = _rule(check, raw, n, questionnaire)
        if rule is None:
            continue
        if any(r.id == rule.id for r in rules):
            check.fail(f"rule[{rule.id}].id", "同じIDの規則がすでにあります")
        rules.append(rule)
    _contradictions(check, rules, questionnaire)
    rating = data.get("rating", {})
    manual = data.get("manual", {})
    if not isinstance(rating, dict) or not isinstance(manual, dict):
        check.fail("rating", "[rating] と [manual] は表で指定してください")
        rating, manual = {}, {}
    check.unknown_fields(rating, {"low", "medium"}, "rating")
    check.unknown_fields(manual, {"max_points"}, "manual")
    low = check.int_at_least(rating, "low", "rating", 80, 1)
    medium = check.int_at_least(rating, "medium", "rating", 60, 1)
    if not medium < low <= 100:
        check.fail("rating", "medium < low ≦ 100 となるように指定してください")
    ismap_keys = _ismap_keys(check, data.get("ismap"), questionnaire)
    manual_max = check.int_at_least(manual, "max_points", "manual", 5, 1)
    title = check.string(data, "title", "(file)", required=False)
    if check.problems:
        raise RulesError(check.problems)
    return RuleSet(
        questionnaire=key,
        version=version,
        title=title,
        rules=tuple(rules),
        ismap=ismap_keys,
        rating_low=low,
        rating_medium=medium,
        manual_max=manual_max,
        source=source,
    )


def load_file(path: Path, questionnaire: Questionnaire | None = None) -> RuleSet:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError([f"rules/{path.name}: TOMLとして読めません: {exc}"]) from exc
    return parse(data, f"rules/{path.name}", questionnaire)


def check(directory: Path = RULES_DIR) -> tuple[list[RuleSet], list[str]]:
    loaded: list[RuleSet] = []
    problems: list[str] = []
    for path in sorted(directory.rglob("*.toml")):
        try:
            loaded.append(load_file(path))
        except RulesError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for rules in loaded:
        ident = (rules.questionnaire, rules.version)
        if ident in seen:
            problems.append(f"{rules.source}: version: {seen[ident]} と重複しています")
        seen[ident] = rules.source
    return loaded, problems


@cache
def all_rules(directory: Path = RULES_DIR) -> dict[tuple[str, str], RuleSet]:
    loaded, problems = check(directory)
    if problems:
        raise RulesError(problems)
    return {(r.questionnaire, r.version): r for r in loaded}


def latest(questionnaire_key: str, directory: Path = RULES_DIR) -> RuleSet:
    """The newest rule set for a questionnaire: new scores always use it."""
    candidates = [r for (k, _v), r in all_rules(directory).items() if k == questionnaire_key]
    if not candidates:
        raise KeyError(questionnaire_key)
    return max(candidates, key=lambda r: _version_order(r.version))


def get(questionnaire_key: str, version: str, directory: Path = RULES_DIR) -> RuleSet:
    return all_rules(directory)[(questionnaire_key, version)]
