"""The offline workbook's layout, shared by writing and reading it (``excel.py``).

Which questions get a row, the sheet names and columns, the Japanese hint per type, and how an
answer is shown in a cell and read back from one. Reading a cell only maps Excel's way of
showing an answer (a label, a Japanese country name, a date cell) to the answer's own form;
whether that is a valid answer is decided by ``answers.validate`` and nothing else.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from typing import Any

from portal.questionnaires.conditions import EngagementFacts, holds, ignoring_answers
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import Column, Question, Questionnaire

INSTRUCTIONS, ANSWERS, COUNTRY_LIST, CHOICE_LIST, CONTROL = (
    "説明",
    "回答",
    "国一覧",
    "選択肢",
    "管理用",
)
TABLE_SHEETS = {
    "subcontractors": "再委託先",
    "data_locations": "データの保管場所",
    "certifications": "認証",
}
HEADERS = ("設問キー", "セクション", "設問", "必須", "回答方法", "回答", "根拠")
KEY_COL, LABEL_COL, ANSWER_COL = 1, 3, 6
FORMAT_VERSION = "1"
SEPARATORS = "、,，\n;；"
JOINER = "、"


def offered_questions(
    questionnaire: Questionnaire, facts: EngagementFacts | None
) -> list[Question]:
    """Every question the engagement can ask, follow-ups included: the vendor fills the workbook
    offline, so a follow-up must be there before its trigger is answered. Whether a follow-up
    applies is decided on import, from the answers as they then stand. Evidence is uploaded on
    the portal, never through the workbook."""
    offered = []
    for section in questionnaire.sections:
        if facts is not None and not holds(ignoring_answers(section.when), facts, {}):
            continue
        offered += [
            q
            for q in section.questions
            if q.type != "evidence"
            and (facts is None or holds(ignoring_answers(q.when), facts, {}))
        ]
    return offered


def table_sheets(questions: list[Question]) -> list[tuple[str, Question]]:
    """(sheet name, question) for each table question; a second table of a kind gets "2"."""
    sheets: list[tuple[str, Question]] = []
    for question in questions:
        if question.type == "table":
            base = TABLE_SHEETS.get(question.table or "", "表")
            name, n = base, 1
            while any(existing == name for existing, _q in sheets):
                n += 1
                name = f"{base}{n}"
            sheets.append((name, question))
    return sheets


def expected_sheets(questions: list[Question]) -> list[str]:
    tables = [name for name, _q in table_sheets(questions)]
    return [INSTRUCTIONS, ANSWERS, *tables, COUNTRY_LIST, CHOICE_LIST, CONTROL]


def columns(question: Question) -> tuple[Column, ...]:
    """A table's columns as the workbook has them: evidence is attached on the portal."""
    return tuple(c for c in question.columns if c.type != "evidence")


def column_header(column: Column) -> str:
    return f"{column.label}（必須）" if column.required else column.label


def number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def hint(question: Question) -> str:
    """How to answer, in Japanese, for the 回答方法 column."""
    labels = "／".join(c.label for c in question.choices)
    kind = question.type
    if kind == "yes_no":
        return f"{labels} から選択"
    if kind == "single":
        return f"一覧から1つ選択（{labels}）"
    if kind == "multiple":
        limits = "".join(
            (
                f"{number_text(question.min)}つ以上" if question.min else "",
                f"{number_text(question.max)}つまで" if question.max else "",
            )
        )
        note = f"、{limits}" if limits else ""
        return f"該当するものをすべて「、」で区切って入力{note}（選択肢: {labels}）"
    if kind == "number":
        unit = f"（{question.unit}）" if question.unit else ""
        low = number_text(question.min) if question.min is not None else ""
        high = number_text(question.max) if question.max is not None else ""
        span = f" {low}〜{high}" if low or high else ""
        return f"数値{unit}{span}{'、整数' if question.integer else ''}"
    if kind == "date":
        low = question.min_date.isoformat() if question.min_date else "1990-01-01"
        high = question.max_date.isoformat() if question.max_date else "2100-12-31"
        return f"YYYY-MM-DD（{low}〜{high}）"
    if kind == "country":
        return "国名（一覧から選択）"
    if kind == "url":
        return "URL（http:// または https:// で始まるもの）"
    if kind == "long_text":
        return f"文章 {question.max_length or 4000}文字以内（セル内の改行は Alt+Enter）"
    if kind == "table":
        return "別シートの表に記入"
    return f"1行の文字 {question.max_length or 200}文字以内"


def to_cell(question: Question, value: Any) -> Any:
    """An answer as the 回答 cell shows it."""
    if value is None or value == "" or value == []:
        return None
    kind = question.type
    if kind in ("yes_no", "single"):
        return question.choice_label(value)
    if kind == "multiple":
        return JOINER.join(question.choice_label(v) for v in value)
    if kind == "date":
        return _as_date(value)
    if kind == "country":
        return COUNTRIES.get(value, value)
    if kind == "number":
        return value
    return str(value)


def to_column_cell(column: Column, value: Any) -> Any:
    if value in (None, ""):
        return None
    if column.type == "country":
        return COUNTRIES.get(value, value)
    if column.choices:
        return dict(column.choices).get(value, value)
    if column.type == "date":
        return _as_date(value)
    return str(value)


def _as_date(value: Any) -> Any:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return str(value)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


_DATE_PARTS = re.compile(r"^(\d{4})[/\-.](\d{1,2})[/\-.](\d{1,2})$")
_COUNTRY_CODES = {_norm(name): code for code, name in COUNTRIES.items()}


def is_blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _plain(raw: Any) -> Any:
    """Excel's number, date and boolean cells as the portal's raw answer values."""
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, datetime):
        return raw.date()
    return raw


def _text(raw: Any) -> str:
    raw = _plain(raw)
    return raw.isoformat() if isinstance(raw, date) else str(raw)


def _choice(raw: Any, choices: list[tuple[str, str]]) -> str:
    text = _norm(_text(raw))
    by_label = {_norm(label): value for value, label in choices}
    return by_label.get(text, text)


def _several(raw: Any, choices: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Labels (or values) written in one cell, split on 「、」 and the like. Labels may contain
    「、」 themselves, so the longest known label at each place is taken first."""
    text = _norm(_text(raw))
    known = sorted(
        [(_norm(label), value) for value, label in choices] + [(v, v) for v, _ in choices],
        key=lambda pair: -len(pair[0]),
    )
    chosen: list[str] = []
    unknown: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] in SEPARATORS or text[pos].isspace():
            pos += 1
            continue
        for label, value in known:
            end = pos + len(label)
            if text.startswith(label, pos) and (end == len(text) or _separates(text[end])):
                chosen.append(value)
                break
        else:
            end = _next_separator(text, pos)
            token = text[pos:end].strip()
            unknown.append(token)
            chosen.append(token)
        pos = end
    return chosen, unknown


def _separates(char: str) -> bool:
    return char in SEPARATORS or char.isspace()


def _next_separator(text: str, pos: int) -> int:
    ends = [i for i in (text.find(sep, pos) for sep in SEPARATORS) if i >= 0]
    return min(ends) if ends else len(text)


def from_cell(question: Question, raw: Any) -> tuple[Any, list[str]]:
    """(the raw answer for ``answers.validate``, tokens that matched no choice)."""
    kind = question.type
    choices = [(c.value, c.label) for c in question.choices]
    if kind in ("yes_no", "single"):
        value = _choice(raw, choices)
        return value, [] if value in dict(choices) else [_norm(_text(raw))]
    if kind == "multiple":
        return _several(raw, choices)
    if kind == "number":
        raw = _plain(raw)
        return (raw if isinstance(raw, int | float) else _text(raw)), []
    if kind == "date":
        return _date(raw), []
    if kind == "country":
        text = _norm(_text(raw))
        return _COUNTRY_CODES.get(text, text), []
    return _text(raw), []


def from_column_cell(column: Column, raw: Any) -> Any:
    if is_blank(raw):
        return ""
    if column.type == "country":
        text = _norm(_text(raw))
        return _COUNTRY_CODES.get(text, text)
    if column.choices:
        return _choice(raw, list(column.choices))
    if column.type == "date":
        return _date(raw)
    return _text(raw)


def _date(raw: Any) -> Any:
    """A date cell as a date; text as typed, "2026/4/1" padded to "2026-04-01" (Excel's way of
    writing a date in Japan). ``answers.validate`` decides whether it is a valid date."""
    raw = _plain(raw)
    if isinstance(raw, date):
        return raw
    text = _norm(_text(raw))
    parts = _DATE_PARTS.match(text)
    return f"{parts[1]}-{int(parts[2]):02d}-{int(parts[3]):02d}" if parts else text


def same(a: Any, b: Any) -> bool:
    """Equal as stored (``store`` compares the JSON encoding)."""
    return json.dumps(a, ensure_ascii=False, sort_keys=True) == json.dumps(
        b, ensure_ascii=False, sort_keys=True
    )
