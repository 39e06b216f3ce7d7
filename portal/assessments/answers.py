"""Answer values per question type: parse from a form, validate, decide what is answered.

Values are JSON-able: text types are strings (dates as YYYY-MM-DD), ``multiple`` a list of
strings, ``number`` an int or float, ``table`` a list of row dicts. Evidence questions have no
value here: they are answered by their uploaded files (``portal/evidence``).
Everything here is pure: no database, no Flask.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import Column, Question
from portal.vendors import corporate_number

EMPTY = None
DATE_FLOOR, DATE_CEILING = date(1990, 1, 1), date(2100, 12, 31)


class AnswerInvalid(ValueError):
    """The message is shown beside the field, in Japanese."""


def field_name(question_key: str) -> str:
    return f"a:{question_key}"


def cell_name(question_key: str, row: int, column: str) -> str:
    return f"a:{question_key}:{row}:{column}"


def _clean_text(value: str, max_length: int, multiline: bool) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    allowed = {"\n", "\t"} if multiline else set()
    if any(
        unicodedata.category(ch) == "Cc" and ch not in allowed for ch in value.replace("\r\n", "\n")
    ):
        raise AnswerInvalid("制御文字は入力できません。")
    if len(value) > max_length:
        raise AnswerInvalid(f"{max_length}文字以内で入力してください（現在{len(value)}文字）。")
    return value.replace("\r\n", "\n")


def _number(raw: Any, question: Question | None = None) -> int | float:
    if isinstance(raw, bool):
        raise AnswerInvalid("数値を入力してください。")
    if isinstance(raw, int | float):
        number = raw
    else:
        text = unicodedata.normalize("NFKC", str(raw)).replace(",", "").strip()
        try:
            number = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError as exc:
            raise AnswerInvalid("数値を半角数字で入力してください。") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise AnswerInvalid("数値を入力してください。")
    if question is not None:
        if question.integer and number != int(number):
            raise AnswerInvalid("整数で入力してください。")
        if question.min is not None and number < question.min:
            raise AnswerInvalid(f"{_fmt(question.min)}以上の値を入力してください。")
        if question.max is not None and number > question.max:
            raise AnswerInvalid(f"{_fmt(question.max)}以下の値を入力してください。")
        if question.integer:
            number = int(number)
    return number


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _date(raw: Any, floor: date = DATE_FLOOR, ceiling: date = DATE_CEILING) -> str:
    if isinstance(raw, date):
        value = raw
    else:
        text = unicodedata.normalize("NFKC", str(raw)).strip().replace("/", "-")
        try:
            value = date.fromisoformat(text)
        except ValueError as exc:
            raise AnswerInvalid("日付を「2026-04-01」の形で入力してください。") from exc
    if not floor <= value <= ceiling:
        raise AnswerInvalid(
            f"{floor.isoformat()}から{ceiling.isoformat()}までの日付を入力してください。"
        )
    return value.isoformat()


def _choice(raw: Any, allowed: set[str]) -> str:
    if not isinstance(raw, str) or raw not in allowed:
        raise AnswerInvalid("選択肢の中から選んでください。")
    return raw


def _country(raw: Any) -> str:
    code = str(raw).strip().upper()
    if code not in COUNTRIES:
        raise AnswerInvalid("国を一覧から選んでください。")
    return code


def _url(raw: Any, max_length: int) -> str:
    text = _clean_text(str(raw), max_length, multiline=False)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. "https://[" (an unclosed IPv6 address)
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise AnswerInvalid("http:// または https:// で始まるURLを入力してください。")
    return text


def _cell(column: Column, raw: Any) -> str:
    if column.type == "country":
        return _country(raw)
    if column.type in ("single", "yes_no"):
        return _choice(raw, {value for value, _label in column.choices})
    if column.type == "date":
        return _date(raw)
    if column.type == "corporate_id":
        text = _clean_text(str(raw), column.max_length, multiline=False)
        digits = corporate_number.normalise(text)
        if len(digits) == 13 and digits.isdigit() and not corporate_number.is_valid(digits):
            raise AnswerInvalid("法人番号のチェックデジットが一致しません。")
        return digits if len(digits) == 13 and digits.isdigit() else text
    return _clean_text(str(raw), column.max_length, multiline=False)


def validate(question: Question, value: Any) -> Any:
    """The normalised value, EMPTY for "no answer", or AnswerInvalid."""
    if value is None or value == "" or value == []:
        return EMPTY
    kind = question.type
    if kind in ("yes_no", "single"):
        return _choice(value, {c.value for c in question.choices})
    if kind == "multiple":
        values = value if isinstance(value, list) else [value]
        allowed = {c.value for c in question.choices}
        if not all(isinstance(v, str) and v in allowed for v in values):
            raise AnswerInvalid("選択肢の中から選んでください。")
        chosen = [c.value for c in question.choices if c.value in values]
        if question.min is not None and len(chosen) < question.min:
            raise AnswerInvalid(f"{_fmt(question.min)}つ以上選んでください。")
        if question.max is not None and len(chosen) > question.max:
            raise AnswerInvalid(f"{_fmt(question.max)}つまで選べます。")
        return chosen
    if kind in ("text", "long_text"):
        text = _clean_text(str(value), question.max_length or 200, multiline=kind == "long_text")
        return text or EMPTY
    if kind == "number":
        return _number(value, question)
    if kind == "date":
        return _date(value, question.min_date or DATE_FLOOR, question.max_date or DATE_CEILING)
    if kind == "country":
        return _country(value)
    if kind == "url":
        return _url(value, question.max_length or 2000)
    if kind == "table":
        return _table(question, value)
    raise AnswerInvalid("この設問にはファイルを添付してください。")


def _table(question: Question, rows: Any) -> list[dict[str, str]] | None:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AnswerInvalid("表の形式が正しくありません。")
    cleaned: list[dict[str, str]] = []
    for number, row in enumerate(rows, start=1):
        if all(v in (None, "") for v in row.values()):
            continue  # an empty row is no row
        values: dict[str, str] = {}
        for column in question.columns:
            raw = row.get(column.key)
            if raw in (None, ""):
                if column.required:
                    raise AnswerInvalid(f"{number}行目の「{column.label}」を入力してください。")
                continue
            try:
                values[column.key] = _cell(column, raw)
            except AnswerInvalid as exc:
                raise AnswerInvalid(f"{number}行目の「{column.label}」: {exc}") from exc
        cleaned.append(values)
    if len(cleaned) > question.max_rows:
        raise AnswerInvalid(f"{question.max_rows}行以内で入力してください。")
    return cleaned or EMPTY


def from_form(question: Question, form: Mapping[str, Any]) -> Any:
    """Read the question's fields from a submitted form (a MultiDict) into a raw value."""
    name = field_name(question.key)
    if question.type == "multiple":
        return form.getlist(name)
    if question.type == "table":
        try:
            count = min(int(form.get(f"{name}:rows", "0")), question.max_rows + 1)
        except ValueError:
            count = 0
        rows = []
        for row in range(count):
            if form.get(cell_name(question.key, row, "_delete")):
                continue
            rows.append(
                {c.key: form.get(cell_name(question.key, row, c.key), "") for c in question.columns}
            )
        return rows
    return form.get(name, "")


def is_answered(question: Question, value: Any, evidence_count: int = 0) -> bool:
    if question.type == "evidence":
        return evidence_count > 0
    if question.type == "table":
        return isinstance(value, list) and len(value) >= max(question.min_rows, 1)
    return value not in (None, "", [])


@dataclass(frozen=True)
class Progress:
    answered: int
    total: int
    missing: list[Question]

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else round(100 * self.answered / self.total)

    @property
    def complete(self) -> bool:
        return not self.missing


def progress(
    questions: list[Question], values: Mapping[str, Any], evidence_counts: Mapping[str, int]
) -> Progress:
    """Over the visible questions: how many are answered, and which required ones are not."""
    answered = [
        q for q in questions if is_answered(q, values.get(q.key), evidence_counts.get(q.key, 0))
    ]
    done = {q.key for q in answered}
    missing = [q for q in questions if q.required and q.key not in done]
    return Progress(answered=len(answered), total=len(questions), missing=missing)
