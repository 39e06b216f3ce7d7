"""The 定期確認票 as data: ``questionnaires/confirmations/*.toml`` (format in
``questionnaires/confirmations/README.md``), sections of questions of the assessment's question
bank, reused by key with their type, label, choices and limits (対策基準 9.1(3), 9.2(6)).

Checked on load and by ``flask --app wsgi questionnaires check``: unknown fields, malformed or
duplicate keys, citations, questions that do not exist in the base questionnaire, evidence
questions (files are attached to the confirmation itself) and questions asked twice. Problems
name the file and the section.

Which questions a confirmation shows is a pure function of the subject's facts and the values
(``applicable`` / ``visible``): a question shows when its section's and its own ``when`` hold,
exactly as in the assessment."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, holds, ignoring_answers
from portal.questionnaires.loader import KEY, QuestionnaireError, _Checker, _cites
from portal.questionnaires.schema import Question, Questionnaire

CONFIRMATIONS_DIR = loader.BANK_DIR / "confirmations"
DEFAULT_KEY = "periodic"
FILE_FIELDS = {"key", "version", "questionnaire", "title", "description", "section"}
SECTION_FIELDS = {"key", "title", "description", "cites", "questions"}


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    description: str
    cites: tuple[str, ...]
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class ConfirmationQuestionnaire:
    key: str
    version: str
    title: str
    description: str
    base: Questionnaire  # the question bank the questions come from
    sections: tuple[Section, ...]
    source: str = ""

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    @property
    def questions(self) -> list[Question]:
        return [q for s in self.sections for q in s.questions]


def parse(data: dict, source: str, bases: Mapping[str, Questionnaire]) -> ConfirmationQuestionnaire:
    """Build a confirmation questionnaire from parsed TOML against the question banks
    (key → newest version); raises QuestionnaireError listing every problem."""
    check = _Checker(source)
    check.unknown_fields(data, FILE_FIELDS, "(file)")
    key = check.string(data, "key", "(file)")
    if key and not KEY.match(key):
        check.fail("key", "英小文字・数字・_ で指定してください")
    version = check.string(data, "version", "(file)")
    title = check.string(data, "title", "(file)")
    description = check.string(data, "description", "(file)", required=False)
    base_key = data.get("questionnaire", "assessment")
    base = bases.get(base_key) if isinstance(base_key, str) else None
    if base is None:
        check.fail("questionnaire", f"設問ファイルが見つかりません: {base_key!r}")
    raw_sections = data.get("section")
    if not isinstance(raw_sections, list) or not raw_sections:
        check.fail("section", "セクションを1つ以上指定してください")
        raw_sections = []
    sections: list[Section] = []
    asked: dict[str, str] = {}
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
        questions: list[Question] = []
        raw_questions = raw.get("questions")
        if not isinstance(raw_questions, list) or not raw_questions:
            check.fail(f"{where}.questions", "設問のキーを1つ以上のリストで指定してください")
            raw_questions = []
        for question_key in raw_questions:
            if not isinstance(question_key, str):
                check.fail(
                    f"{where}.questions", f"設問のキーは文字列で指定してください: {question_key!r}"
                )
                continue
            question = base.question(question_key) if base is not None else None
            if base is not None and question is None:
                check.fail(
                    f"{where}.questions",
                    f"{base.source} にない設問を参照しています: {question_key}",
                )
                continue
            if question_key in asked:
                check.fail(
                    f"{where}.questions",
                    f"設問 {question_key} はセクション {asked[question_key]} でも尋ねています",
                )
                continue
            asked[question_key] = section_key
            if question is not None and question.type == "evidence":
                check.fail(
                    f"{where}.questions",
                    f"添付ファイルの設問は使えません（ファイルは定期確認に添付します）: {question_key}",
                )
                continue
            if question is not None:
                questions.append(question)
        cites = _cites(check, raw.get("cites"), where, required=True)
        sections.append(
            Section(
                key=section_key,
                title=check.string(raw, "title", where),
                description=check.string(raw, "description", where, required=False),
                cites=cites,
                questions=tuple(questions),
            )
        )
    if check.problems:
        raise QuestionnaireError(check.problems)
    assert base is not None
    return ConfirmationQuestionnaire(
        key=key,
        version=version,
        title=title,
        description=description,
        base=base,
        sections=tuple(sections),
        source=source,
    )


def _bases(bank_dir: Path) -> dict[str, Questionnaire]:
    keys = {k for k, _v in loader.bank(bank_dir)}
    return {k: loader.latest(k, bank_dir) for k in keys}


def check(
    directory: Path = CONFIRMATIONS_DIR, bank_dir: Path = loader.BANK_DIR
) -> tuple[list[ConfirmationQuestionnaire], list[str]]:
    """Every confirmation questionnaire that loads, and every problem of those that do not
    (file names relative to ``questionnaires/``)."""
    loaded: list[ConfirmationQuestionnaire] = []
    problems: list[str] = []
    try:
        bases = _bases(bank_dir)
    except QuestionnaireError as exc:
        return [], list(exc.problems)
    for path in sorted(directory.glob("*.toml")):
        source = f"{directory.name}/{path.name}"
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{source}: TOMLとして読めません: {exc}")
            continue
        try:
            loaded.append(parse(data, source, bases))
        except QuestionnaireError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for item in loaded:
        ident = (item.key, item.version)
        if ident in seen:
            problems.append(
                f"{item.source}: key: {item.key} {item.version} は {seen[ident]} と重複しています"
            )
        seen[ident] = item.source
    return loaded, problems


@cache
def bank(directory: Path = CONFIRMATIONS_DIR) -> dict[tuple[str, str], ConfirmationQuestionnaire]:
    loaded, problems = check(directory)
    if problems:
        raise QuestionnaireError(problems)
    return {(q.key, q.version): q for q in loaded}


def latest(key: str = DEFAULT_KEY) -> ConfirmationQuestionnaire:
    versions = [q for (k, _v), q in bank().items() if k == key]
    if not versions:
        raise KeyError(key)
    return max(versions, key=lambda q: loader._version_order(q.version))


def get(key: str, version: str) -> ConfirmationQuestionnaire:
    return bank()[(key, version)]


# ---------------------------------------------------------------------------------------------
# Which questions show
# ---------------------------------------------------------------------------------------------


def _section_condition(questionnaire: ConfirmationQuestionnaire, question: Question):
    base_section = questionnaire.base.section(question.section_key)
    return base_section.when if base_section is not None else None


def applicable(
    questionnaire: ConfirmationQuestionnaire, section: Section, facts: EngagementFacts
) -> list[Question]:
    """The section's questions the subject's facts make applicable, whatever the answers (the
    fields of the answer form, and the values a changed section keeps)."""
    return [
        q
        for q in section.questions
        if holds(ignoring_answers(_section_condition(questionnaire, q)), facts, {})
        and holds(ignoring_answers(q.when), facts, {})
    ]


def visible(
    questionnaire: ConfirmationQuestionnaire,
    section: Section,
    facts: EngagementFacts,
    values: Mapping[str, Any],
) -> list[Question]:
    """The section's questions that apply given the facts and the (current) values."""
    return [
        q
        for q in section.questions
        if holds(_section_condition(questionnaire, q), facts, values)
        and holds(q.when, facts, values)
    ]


def sections_for(
    questionnaire: ConfirmationQuestionnaire, facts: EngagementFacts
) -> list[tuple[Section, list[Question]]]:
    """The sections a subject is asked (those with at least one applicable question)."""
    result = []
    for section in questionnaire.sections:
        questions = applicable(questionnaire, section, facts)
        if questions:
            result.append((section, questions))
    return result
