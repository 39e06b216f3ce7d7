"""Reading a filled-in workbook back: refuse what is not the downloaded workbook, else collect
every valid answer and list every other cell by row and reason (Japanese).

A cell is imported only when it holds a valid answer (``answers.validate``, the one validation)
that differs from the saved one, to a question that applies, may change, and was not changed on
the portal after the download. An empty cell changes nothing: the saved answer stays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from portal.assessments import answers
from portal.assessments import excel_layout as layout
from portal.assessments.excel_checks import WorkbookRefused, open_workbook
from portal.questionnaires.conditions import EngagementFacts, visible_questions
from portal.questionnaires.schema import Question, Questionnaire

__all__ = ["ImportResult", "WorkbookRefused", "parse_workbook"]

OTHER_WORKBOOK = (
    "この案件の評価票のファイルではありません。この画面の「Excelでダウンロード」から"
    "取得した評価票に記入して選んでください。"
)
OTHER_VERSION = (
    "評価票の版が異なります（ファイル: {found}、現在: {expected}）。"
    "評価票をダウンロードし直し、回答を写してから選んでください。"
)
NOT_CHANGEABLE = "差し戻された設問ではないため変更できません。保存済みの回答のままです。"
CHANGED_SINCE = (
    "ダウンロードした後にポータルで回答が変更されたため、上書きせずに保存済みの回答のままにしました。"
    "評価票をダウンロードし直してください。"
)
UNKNOWN_KEY = "この評価票にない設問キーです。設問キー（A列）は変更しないでください。"
OUT_OF_SCOPE = "この案件では回答の対象外の設問です。設問キー（A列）は変更しないでください。"
HIDDEN = "ほかの設問の回答により、この設問は回答の対象外です。取り込んでいません。"
TABLE_KEPT = "表の行に誤りがあるため、この表は取り込んでいません（保存済みの表のままです）。"
_ROW_PREFIX = re.compile(r"^\d+行目の")


@dataclass
class ImportResult:
    values: dict[str, Any] = field(default_factory=dict)  # valid and changed: to be saved
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    unchanged: int = 0  # filled-in cells equal to the saved answer


def parse_workbook(
    data: bytes,
    questionnaire: Questionnaire,
    questions: list[Question],
    editable_keys: set[str] | None,
    *,
    assessment_id: int | None = None,
    facts: EngagementFacts | None = None,
    saved: Mapping[str, Any] | None = None,
    revisions: Mapping[str, int] | None = None,
) -> ImportResult:
    """``questions``: those offered in the workbook; ``editable_keys``: None when every answer
    may change (a draft), else those that may (returned answers). With ``facts``, follow-ups
    are judged on the answers as they stand after the import; with ``revisions``, an answer
    changed on the portal after the download is kept."""
    book = open_workbook(data)
    control = _check_structure(book, questionnaire, questions, assessment_id)
    reader = _Reader(questionnaire, questions, editable_keys, saved or {}, revisions, control)
    reader.answer_sheet(book[layout.ANSWERS])
    for name, question in layout.table_sheets(questions):
        reader.table_sheet(book[name], name, question)
    reader.drop_hidden(facts)
    reader.result.problems.sort(key=_order)
    return reader.result


def _check_structure(
    book: Workbook, questionnaire: Questionnaire, questions: list[Question], assessment_id
) -> dict[str, int]:
    """Refuses a file that is not this assessment's workbook or was reshaped; returns the
    revisions recorded at download."""
    if layout.CONTROL not in book.sheetnames:
        raise WorkbookRefused(OTHER_WORKBOOK)
    meta, revisions = {}, {}
    for row in book[layout.CONTROL].iter_rows(values_only=True, max_col=3):
        if row[0] == "revision" and isinstance(row[2], int):
            revisions[str(row[1])] = row[2]
        elif row[0] is not None:
            meta[str(row[0])] = "" if row[1] is None else str(row[1])
    if meta.get("questionnaire") != questionnaire.key or (
        assessment_id is not None and meta.get("assessment") != str(assessment_id)
    ):
        raise WorkbookRefused(OTHER_WORKBOOK)
    if meta.get("version") != questionnaire.version:
        raise WorkbookRefused(
            OTHER_VERSION.format(found=meta.get("version"), expected=questionnaire.version)
        )
    expected = layout.expected_sheets(questions)
    extra = [name for name in book.sheetnames if name not in expected]
    missing = [name for name in expected if name not in book.sheetnames]
    if extra or missing:
        named = "、".join(
            [f"想定外のシート「{n}」があります" for n in extra]
            + [f"シート「{n}」がありません" for n in missing]
        )
        raise WorkbookRefused(
            f"{named}。シートの追加・削除・名前の変更をせずに記入したファイルを選んでください。"
        )
    for sheet in book.worksheets:
        _no_formulas(sheet)
    data_sheets = [layout.ANSWERS, *(name for name, _q in layout.table_sheets(questions))]
    for name in data_sheets:
        merged = sorted(str(r) for r in book[name].merged_cells.ranges)
        if merged:
            raise WorkbookRefused(
                f"「{name}」シートに結合されたセルがあります（{'、'.join(merged[:5])}）。"
                "セルの結合を解除してから選んでください。"
            )
    _check_header(book[layout.ANSWERS], layout.HEADERS)
    for name, question in layout.table_sheets(questions):
        _check_header(book[name], [layout.column_header(c) for c in layout.columns(question)])
    return revisions


def _no_formulas(sheet: Worksheet) -> None:
    """Refuses formula cells. A text cell starting with "=" (an answer typed as '=…, or one the
    download wrote as text) is text, not a formula, and is read as the text it is."""
    for row in sheet.iter_rows():
        for cell in row:
            if cell.data_type == "f":
                raise WorkbookRefused(
                    f"「{sheet.title}」シートの{cell.coordinate}に数式があります。"
                    "数式は使わずに、値を直接入力してから選んでください。"
                )


def _check_header(sheet: Worksheet, labels) -> None:
    found = [cell.value for cell in sheet[1]][: len(labels)]
    if found != list(labels):
        raise WorkbookRefused(
            f"「{sheet.title}」シートの見出し行（1行目）が変更されています。"
            "評価票をダウンロードし直してから記入してください。"
        )


class _Reader:
    def __init__(self, questionnaire, questions, editable_keys, saved, revisions, recorded):
        self.questionnaire = questionnaire
        self.offered = {q.key: q for q in questions}
        self.editable = editable_keys
        self.saved = saved
        self.revisions = revisions
        self.recorded = recorded
        self.result = ImportResult()
        self.where: dict[str, str] = {}

    def problem(self, where: str, reason: str) -> None:
        self.result.problems.append((where, reason))

    def answer_sheet(self, sheet: Worksheet) -> None:
        seen: set[str] = set()
        for number, row in enumerate(sheet.iter_rows(min_row=2), start=2):
            cells = {cell.column: cell.value for cell in row}
            key = cells.get(layout.KEY_COL)
            raw = cells.get(layout.ANSWER_COL)
            key = str(key).strip() if not layout.is_blank(key) else ""
            where = f"回答シート {number}行目" + (f"（{key}）" if key else "")
            if not key:
                if any(not layout.is_blank(v) for v in cells.values()):
                    self.problem(where, "設問キー（A列）が空欄のため、この行は取り込んでいません。")
                continue
            question = self.offered.get(key)
            if question is None or question.type == "table":
                known = self.questionnaire.question(key) is not None
                self.problem(where, OUT_OF_SCOPE if known else UNKNOWN_KEY)
            elif _words(cells.get(layout.LABEL_COL)) != _words(question.label):
                self.problem(where, "設問キーまたは設問文が変更されているため取り込んでいません。")
            elif key in seen:
                self.problem(where, "同じ設問キーの行がほかにもあるため取り込んでいません。")
            elif not layout.is_blank(raw):
                self.cell(where, question, raw)
            seen.add(key)
        if self.offered and not seen & self.offered.keys():
            raise WorkbookRefused(
                "「回答」シートの設問キー（A列）が変更されているため取り込めません。"
                "評価票をダウンロードし直してから記入してください。"
            )

    def cell(self, where: str, question: Question, raw: Any) -> None:
        value, unknown = layout.from_cell(question, raw)
        try:
            value = answers.validate(question, value)
        except answers.AnswerInvalid as exc:
            named = "、".join(f"「{t}」" for t in unknown)
            self.problem(where, f"{exc}" + (f"（{named}は選択肢にありません）" if named else ""))
            return
        self.accept(where, question, value)

    def accept(self, where: str, question: Question, value: Any) -> None:
        key = question.key
        if value is None or layout.same(value, self.saved.get(key)):
            self.result.unchanged += value is not None
            return
        if self.editable is not None and key not in self.editable:
            self.problem(where, NOT_CHANGEABLE)
        elif self.revisions is not None and self.revisions.get(key, 0) > self.recorded.get(key, 0):
            self.problem(where, CHANGED_SINCE)
        else:
            self.result.values[key] = value
            self.where[key] = where

    def table_sheet(self, sheet: Worksheet, name: str, question: Question) -> None:
        cols = layout.columns(question)
        rows, broken = [], False
        for number, cells in enumerate(sheet.iter_rows(min_row=2, values_only=True), start=2):
            if all(layout.is_blank(v) for v in cells):
                continue
            if number > question.max_rows + 1:
                self.problem(
                    f"{name}シート {number}行目", f"{question.max_rows}行以内で入力してください。"
                )
                broken = True
                continue
            row = {c.key: layout.from_column_cell(c, v) for c, v in zip(cols, cells, strict=False)}
            if any(not layout.is_blank(v) for v in cells[len(cols) :]):
                self.problem(f"{name}シート {number}行目", "表の範囲外の列に入力があります。")
                broken = True
                continue
            try:
                answers.validate(question, [row])
            except answers.AnswerInvalid as exc:
                self.problem(f"{name}シート {number}行目", _ROW_PREFIX.sub("", str(exc)))
                broken = True
                continue
            rows.append(row)
        if broken:
            self.problem(f"{name}シート", TABLE_KEPT)
        elif rows:
            try:
                value = answers.validate(question, rows)
            except answers.AnswerInvalid as exc:
                self.problem(f"{name}シート", str(exc))
                return
            self.accept(f"{name}シート", question, value)

    def drop_hidden(self, facts: EngagementFacts | None) -> None:
        if facts is None:
            return
        merged = {**self.saved, **self.result.values}
        shown = {q.key for q in visible_questions(self.questionnaire, facts, merged)}
        for key in [k for k in self.result.values if k not in shown]:
            del self.result.values[key]
            self.problem(self.where[key], HIDDEN)


def _words(text: Any) -> str:
    return " ".join(str(text or "").split())


def _order(problem: tuple[str, str]) -> tuple:
    where = problem[0]
    number = re.search(r"(\d+)行目", where)
    return (
        not where.startswith("回答"),
        where.split("シート")[0],
        int(number[1]) if number else 10**9,
    )
