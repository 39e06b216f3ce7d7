"""Load ``questionnaires/*.toml`` into ``schema`` objects, checking everything on the way.

A broken file fails with ``QuestionnaireError`` naming the file and the key at fault; ``check``
collects every problem of every file for ``flask --app wsgi questionnaires check``.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from portal.questionnaires.schema import (
    KINDS,
    PREFILL_SOURCES,
    QUESTION_TYPES,
    SEGMENTS,
    TABLES,
    TRACKS,
    YES_NO_LABELS,
    Choice,
    Condition,
    Question,
    Questionnaire,
    Section,
)

BANK_DIR = Path(__file__).resolve().parents[2] / "questionnaires"
KEY = re.compile(r"^[a-z0-9_]+$")
QUESTION_KEY = re.compile(r"^[a-z0-9_]+\.[a-z0-9_.]+$")
# 対策基準 items as printed: 9.1(2)⑧, 9.2(2)②(エ), 9.2(5), 9.3(2), 7.2(3), 10.1(4)
POLICY_CITE = re.compile(r"^\d{1,2}\.\d{1,2}(\(\d{1,2}\))?[①-⑳]?(\([ア-ン]\))?$")
# Laws and guidelines outside the 対策基準, e.g. 個人情報保護法66条
LAW_CITE = re.compile(r"^[^\d\s].{1,40}(法|条例|ガイドライン|規則)(第?\d+条)?.*$")
DEFAULT_MAX_LENGTH = {"text": 200, "long_text": 4000, "url": 2000}
EARLIEST, LATEST = date(1990, 1, 1), date(2100, 12, 31)

QUESTION_FIELDS = {
    "key",
    "type",
    "label",
    "help",
    "cites",
    "required",
    "when",
    "prefill",
    "choices",
    "allow",
    "min",
    "max",
    "integer",
    "unit",
    "max_length",
    "max_files",
    "table",
    "min_rows",
    "max_rows",
}
SECTION_FIELDS = {"key", "title", "description", "when", "question", "cites"}
FILE_FIELDS = {"key", "version", "title", "description", "section"}
CONDITION_FIELDS = {
    "tracks",
    "kinds",
    "segments",
    "confidentiality_min",
    "integrity_min",
    "availability_min",
    "personal_data",
    "specific_personal_data",
    "sensitive_personal_data",
    "answer",
}


class QuestionnaireError(ValueError):
    """A questionnaire file is not valid; the message names the file and the key at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Checker:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}")

    def string(self, data: dict, name: str, where: str, required: bool = True) -> str:
        value = data.get(name)
        if value is None:
            if required:
                self.fail(f"{where}.{name}", "必須の項目がありません")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(f"{where}.{name}", "文字列で指定してください")
            return ""
        return value.strip()

    def unknown_fields(self, data: dict, allowed: set[str], where: str) -> None:
        for name in sorted(set(data) - allowed):
            self.fail(f"{where}.{name}", "未知の項目です")

    def number(self, data: dict, name: str, where: str) -> float | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{where}.{name}", "数値で指定してください")
            return None
        return value

    def int_at_least(self, data: dict, name: str, where: str, default: int, minimum: int) -> int:
        value = data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(f"{where}.{name}", f"{minimum}以上の整数で指定してください")
            return default
        return value


def _condition(
    check: _Checker, raw: Any, where: str, earlier: dict[str, Question]
) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        check.fail(where, "条件は空でない表（{ … }）で指定してください")
        return None
    check.unknown_fields(raw, CONDITION_FIELDS, where)

    def names(key: str, allowed: dict) -> frozenset[str] | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(v in allowed for v in value):
            check.fail(f"{where}.{key}", f"次の値のリストで指定してください: {', '.join(allowed)}")
            return None
        return frozenset(value)

    def level(key: str, top: int) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            check.fail(f"{where}.{key}", f"1から{top}の整数で指定してください")
            return None
        return value

    def flag(key: str) -> bool | None:
        value = raw.get(key)
        if value is not None and not isinstance(value, bool):
            check.fail(f"{where}.{key}", "true か false で指定してください")
            return None
        return value

    answers: list[tuple[str, frozenset[str]]] = []
    for question_key, values in (raw.get("answer") or {}).items():
        target = earlier.get(question_key)
        if target is None:
            check.fail(f"{where}.answer.{question_key}", "これより前にない設問を参照しています")
            continue
        allowed = {c.value for c in target.choices}
        if not allowed:
            check.fail(f"{where}.answer.{question_key}", "選択式でない設問は条件に使えません")
            continue
        if not isinstance(values, list) or not values or not set(values) <= allowed:
            check.fail(
                f"{where}.answer.{question_key}",
                f"この設問の選択肢の値のリストで指定してください: {', '.join(sorted(allowed))}",
            )
            continue
        answers.append((question_key, frozenset(values)))
    return Condition(
        tracks=names("tracks", TRACKS),
        kinds=names("kinds", KINDS),
        segments=names("segments", SEGMENTS),
        confidentiality_min=level("confidentiality_min", 3),
        integrity_min=level("integrity_min", 2),
        availability_min=level("availability_min", 2),
        personal_data=flag("personal_data"),
        specific_personal_data=flag("specific_personal_data"),
        sensitive_personal_data=flag("sensitive_personal_data"),
        answers=tuple(answers),
    )


def _cites(check: _Checker, raw: Any, where: str, required: bool) -> tuple[str, ...]:
    if raw is None:
        if required:
            check.fail(f"{where}.cites", "根拠となる規定（例: 9.1(2)⑧）を1つ以上指定してください")
        return ()
    if not isinstance(raw, list) or (required and not raw):
        check.fail(f"{where}.cites", "文字列のリストで指定してください")
        return ()
    for cite in raw:
        if not isinstance(cite, str) or not (POLICY_CITE.match(cite) or LAW_CITE.match(cite)):
            check.fail(
                f"{where}.cites", f"規定の書き方が正しくありません: {cite!r}（例: 9.2(2)②(エ)）"
            )
    return tuple(c for c in raw if isinstance(c, str))


def _choices(check: _Checker, raw: dict, where: str, qtype: str) -> tuple[Choice, ...]:
    if qtype == "yes_no":
        allow = raw.get("allow", list(YES_NO_LABELS))
        if not isinstance(allow, list) or len(allow) < 2 or not set(allow) <= set(YES_NO_LABELS):
            check.fail(
                f"{where}.allow", "yes, no, partly, na から2つ以上のリストで指定してください"
            )
            allow = list(YES_NO_LABELS)
        return tuple(Choice(v, YES_NO_LABELS[v]) for v in YES_NO_LABELS if v in allow)
    if qtype not in ("single", "multiple"):
        if "choices" in raw:
            check.fail(f"{where}.choices", f"{qtype} 型では使えません")
        return ()
    items = raw.get("choices")
    if not isinstance(items, list) or len(items) < 2:
        check.fail(
            f"{where}.choices", "2つ以上の選択肢を { value = …, label = … } で指定してください"
        )
        return ()
    choices: list[Choice] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"value", "label"}:
            check.fail(f"{where}.choices[{n}]", "value と label だけを指定してください")
            continue
        value, label = item["value"], item["label"]
        if (
            not isinstance(value, str)
            or not KEY.match(value)
            or not isinstance(label, str)
            or not label
        ):
            check.fail(
                f"{where}.choices[{n}]",
                "value は英小文字・数字・_、label は空でない文字列にしてください",
            )
            continue
        if value in {c.value for c in choices}:
            check.fail(f"{where}.choices[{n}]", f"値 {value!r} が重複しています")
            continue
        choices.append(Choice(value, label))
    return tuple(choices)


def _date(check: _Checker, raw: dict, name: str, where: str, default: date) -> date:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, date):
        check.fail(f"{where}.{name}", "日付（例: 2020-01-01）で指定してください")
        return default
    return value


def _question(
    check: _Checker, raw: Any, section_key: str, where: str, earlier: dict[str, Question]
) -> Question | None:
    if not isinstance(raw, dict):
        check.fail(where, "設問は表で指定してください")
        return None
    key = check.string(raw, "key", where)
    where = f"{section_key}.question[{key or '?'}]"
    check.unknown_fields(raw, QUESTION_FIELDS, where)
    if key and not (QUESTION_KEY.match(key) and key.startswith(f"{section_key}.")):
        check.fail(f"{where}.key", f"「{section_key}.名前」の形（英小文字・数字・_）にしてください")
    if key in earlier:
        check.fail(f"{where}.key", "同じキーの設問がすでにあります")
    qtype = check.string(raw, "type", where)
    if qtype and qtype not in QUESTION_TYPES:
        check.fail(f"{where}.type", f"次のいずれかにしてください: {', '.join(QUESTION_TYPES)}")
        return None
    required = raw.get("required", True)
    if not isinstance(required, bool):
        check.fail(f"{where}.required", "true か false で指定してください")
        required = True
    prefill = raw.get("prefill")
    if prefill is not None and prefill not in PREFILL_SOURCES:
        check.fail(f"{where}.prefill", f"次のいずれかにしてください: {', '.join(PREFILL_SOURCES)}")
        prefill = None
    table = raw.get("table")
    if qtype == "table" and table not in TABLES:
        check.fail(f"{where}.table", f"次のいずれかにしてください: {', '.join(TABLES)}")
        return None
    if qtype != "table" and table is not None:
        check.fail(f"{where}.table", "table 型の設問でだけ使えます")
    numeric = qtype in ("number", "multiple")
    minimum = check.number(raw, "min", where) if numeric else None
    maximum = check.number(raw, "max", where) if numeric else None
    if qtype == "number" and minimum is not None and maximum is not None and minimum > maximum:
        check.fail(f"{where}.min", "min が max より大きくなっています")
    min_date = _date(check, raw, "min", where, EARLIEST) if qtype == "date" else None
    max_date = _date(check, raw, "max", where, LATEST) if qtype == "date" else None
    max_length = raw.get("max_length", DEFAULT_MAX_LENGTH.get(qtype))
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        check.fail(f"{where}.max_length", "1以上の整数で指定してください")
        max_length = DEFAULT_MAX_LENGTH.get(qtype)
    question = Question(
        key=key,
        section_key=section_key,
        type=qtype,
        label=check.string(raw, "label", where),
        help=check.string(raw, "help", where),
        cites=_cites(check, raw.get("cites"), where, required=True),
        required=required,
        when=_condition(check, raw.get("when"), f"{where}.when", earlier),
        prefill=prefill,
        choices=_choices(check, raw, where, qtype),
        min=minimum,
        max=maximum,
        integer=bool(raw.get("integer", False)),
        unit=raw.get("unit") if isinstance(raw.get("unit"), str) else None,
        max_length=max_length,
        min_date=min_date,
        max_date=max_date,
        max_files=check.int_at_least(raw, "max_files", where, 5, 1),
        table=table if qtype == "table" else None,
        min_rows=check.int_at_least(raw, "min_rows", where, 0, 0),
        max_rows=check.int_at_least(raw, "max_rows", where, 50, 1),
    )
    return question


def parse(data: dict, source: str) -> Questionnaire:
    """Build a questionnaire from parsed TOML; raises QuestionnaireError listing every problem."""
    check = _Checker(source)
    check.unknown_fields(data, FILE_FIELDS, "(file)")
    key = check.string(data, "key", "(file)")
    if key and not KEY.match(key):
        check.fail("key", "英小文字・数字・_ で指定してください")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        check.fail("version", '必須の項目です（例: "2026.11"）')
        version = ""
    raw_sections = data.get("section")
    if not isinstance(raw_sections, list) or not raw_sections:
        check.fail("section", "セクションを1つ以上指定してください")
        raw_sections = []
    earlier: dict[str, Question] = {}
    sections: list[Section] = []
    for n, raw in enumerate(raw_sections):
        if not isinstance(raw, dict):
            check.fail(f"section[{n}]", "セクションは表で指定してください")
            continue
        section_key = check.string(raw, "key", f"section[{n}]")
        where = f"section[{section_key or n}]"
        check.unknown_fields(raw, SECTION_FIELDS, where)
        if section_key and not KEY.match(section_key):
            check.fail(f"{where}.key", "英小文字・数字・_ で指定してください")
        if any(s.key == section_key for s in sections):
            check.fail(f"{where}.key", "同じキーのセクションがすでにあります")
        when = _condition(check, raw.get("when"), f"{where}.when", earlier)
        questions: list[Question] = []
        raw_questions = raw.get("question")
        if not isinstance(raw_questions, list) or not raw_questions:
            check.fail(f"{where}.question", "設問を1つ以上指定してください")
            raw_questions = []
        for m, raw_question in enumerate(raw_questions):
            question = _question(
                check, raw_question, section_key, f"{where}.question[{m}]", earlier
            )
            if question is not None:
                questions.append(question)
                earlier.setdefault(question.key, question)
        sections.append(
            Section(
                key=section_key,
                title=check.string(raw, "title", where),
                description=check.string(raw, "description", where, required=False),
                questions=tuple(questions),
                when=when,
                cites=_cites(check, raw.get("cites"), where, required=False),
            )
        )
    if check.problems:
        raise QuestionnaireError(check.problems)
    return Questionnaire(
        key=key,
        version=version.strip(),
        title=check.string(data, "title", "(file)"),
        description=check.string(data, "description", "(file)", required=False),
        sections=tuple(sections),
        source=source,
    )


def load_file(path: Path) -> Questionnaire:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise QuestionnaireError([f"{path.name}: TOMLとして読めません: {exc}"]) from exc
    return parse(data, path.name)


def check(directory: Path = BANK_DIR) -> tuple[list[Questionnaire], list[str]]:
    """Every questionnaire that loads, and every problem of those that do not."""
    loaded: list[Questionnaire] = []
    problems: list[str] = []
    for path in sorted(directory.rglob("*.toml")):  # archive/ keeps earlier versions
        if {"rules", "checklists", "confirmations"} & set(path.relative_to(directory).parts[:-1]):
            continue  # scoring rules, lifecycle checklists and 定期確認票 have loaders of their own
        try:
            loaded.append(load_file(path))
        except QuestionnaireError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for questionnaire in loaded:
        ident = (questionnaire.key, questionnaire.version)
        if ident in seen:
            problems.append(
                f"{questionnaire.source}: key: {questionnaire.key} {questionnaire.version} は "
                f"{seen[ident]} と重複しています"
            )
        seen[ident] = questionnaire.source
    return loaded, problems


@cache
def bank(directory: Path = BANK_DIR) -> dict[tuple[str, str], Questionnaire]:
    """Every questionnaire by (key, version); raises QuestionnaireError if any file is broken."""
    loaded, problems = check(directory)
    if problems:
        raise QuestionnaireError(problems)
    return {(q.key, q.version): q for q in loaded}


def latest(key: str, directory: Path = BANK_DIR) -> Questionnaire:
    """The newest version of ``key`` (versions compare as strings, e.g. "2026.11")."""
    versions = [q for (k, _v), q in bank(directory).items() if k == key]
    if not versions:
        raise KeyError(key)
    return max(versions, key=lambda q: _version_order(q.version))


def _version_order(version: str) -> tuple:
    """ "2026.11" after "2026.9", "2026.11-10" after "2026.11-9": numeric parts (split at
    "." and "-") compare as numbers, others as text."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"[.-]", version)
    )


def get(key: str, version: str, directory: Path = BANK_DIR) -> Questionnaire:
    return bank(directory)[(key, version)]
