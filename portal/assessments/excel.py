"""The questionnaire as an Excel workbook to fill offline, and reading it back (SECURITY.md
"Files", "Input and output"). Pure functions: no Flask, no database.

``build_workbook`` writes 「説明」, 「回答」 (one row per question, the 回答 column the only one to
fill, checked by Excel data validation where Excel can), one sheet per table question and the
hidden lists. ``parse_workbook`` (in ``excel_import``) refuses a file that is not this workbook
and otherwise returns every valid answer and every problem by row and reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from io import BytesIO
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.workbook.protection import WorkbookProtection
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.protection import SheetProtection
from openpyxl.worksheet.worksheet import Worksheet

from portal.assessments import excel_layout as layout
from portal.assessments.excel_import import ImportResult, WorkbookRefused, parse_workbook
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import Column, Question, Questionnaire

__all__ = ["ImportResult", "WorkbookRefused", "build_workbook", "parse_workbook"]

HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
ANSWER_FILL = PatternFill("solid", fgColor="FFF7D6")
WRAP = Alignment(wrap_text=True, vertical="top")
UNLOCKED = Protection(locked=False)
EXCEL_EPOCH = date(1899, 12, 30)
INSTRUCTION_LINES = (
    "1. 「回答」シートの「回答」列（黄色のセル）にだけ記入してください。ほかの列やシートは変更しないでください。",
    "2. 選択式の設問は、セルを選ぶと表示される一覧から選んでください。複数選択の設問は、選択肢の文言を「、」で区切って入力してください。",
    "3. 日付は「2026-04-01」の形で、数値は数字だけで入力してください（単位は不要です）。",
    "4. 「※ …の場合のみ回答」とある設問は、その条件に当てはまるときだけ回答してください。当てはまらない設問への回答は取り込みません。",
    "5. 表形式の設問は、それぞれのシートに1件ずつ1行で記入してください。記入した行の内容で、保存済みの表を置き換えます。",
    "6. 空欄のセルは取り込みません（保存済みの回答は消えません）。回答を消すときは、ポータルの画面で操作してください。",
    "7. 証明書などの添付ファイルは、ポータルの画面からアップロードしてください。",
    "8. 数式、セルの結合、シートの追加・削除・名前の変更はしないでください。含まれていると、ファイル全体を取り込めません。",
    "9. 記入後は「Excel ブック (*.xlsx)」形式で保存し、ポータルの「Excelファイルを取り込む」からアップロードしてください。"
    "誤りのある回答は取り込まずに行と理由を一覧で示し、正しい回答だけを保存します。",
    "10. ダウンロードした後にポータルの画面で変更した回答は、上書きしないよう取り込みません。"
    "画面で回答したときは、評価票をダウンロードし直してください。",
)


def build_workbook(
    questionnaire: Questionnaire,
    questions: list[Question],
    values: Mapping[str, Any],
    *,
    title: str,
    company_name: str,
    assessment_id: int | None = None,
    revisions: Mapping[str, int] | None = None,
) -> bytes:
    """The workbook as .xlsx bytes. ``questions`` are the questions offered (see
    ``excel_layout.offered_questions``); ``revisions`` the saved revision of each answer, kept
    in the hidden 管理用 sheet so that an import never overwrites a later change."""
    book = Workbook()
    book.remove(book.active)
    rows = [q for q in questions if q.type not in ("table", "evidence")]
    tables = layout.table_sheets(questions)
    instructions = book.create_sheet(layout.INSTRUCTIONS)
    answers = book.create_sheet(layout.ANSWERS)
    table_sheets = [(book.create_sheet(name), question) for name, question in tables]
    lists = _Lists(book)
    _instructions(instructions, questionnaire, title, company_name, tables)
    _answers(answers, questionnaire, rows, values, lists)
    for sheet, question in table_sheets:
        _table(sheet, question, values.get(question.key) or [], lists)
    lists.finish()
    _control(book.create_sheet(layout.CONTROL), questionnaire, assessment_id, revisions or {})
    for sheet in book.worksheets:
        _text_stays_text(sheet)
        sheet.protection = SheetProtection(sheet=True, formatColumns=False, formatRows=False)
    book.security = WorkbookProtection(lockStructure=True)
    book.properties.title = title
    book.properties.subject = questionnaire.title
    book.properties.creator = "委託先・外部サービス リスク評価ポータル"
    book.properties.keywords = f"{questionnaire.key} {questionnaire.version}"
    out = BytesIO()
    book.save(out)
    return out.getvalue()


FORMULA_STARTS = ("=", "+", "-", "@")


def _text_stays_text(sheet: Worksheet) -> None:
    """Every text written is a string cell, never a formula: openpyxl makes a value starting
    with "=" a formula, and an answer, a table cell, the company name or the title is the
    vendor's or staff's text. Text Excel would read as a formula when the cell is edited gets
    the quote prefix (shown as '=…), so that it stays text in Excel too."""
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str):
                cell.data_type = "s"
                if cell.value.startswith(FORMULA_STARTS):
                    cell.quotePrefix = True


class _Lists:
    """The hidden sheets the list validations refer to: 国一覧 and 選択肢 (one column a list)."""

    def __init__(self, book: Workbook):
        self.countries = book.create_sheet(layout.COUNTRY_LIST)
        self.choices = book.create_sheet(layout.CHOICE_LIST)
        for row, name in enumerate(COUNTRIES.values(), start=1):
            self.countries.cell(row=row, column=1, value=name)
        self.columns: dict[tuple[str, ...], str] = {}

    def country_range(self) -> str:
        return f"{quote_sheetname(layout.COUNTRY_LIST)}!$A$1:$A${len(COUNTRIES)}"

    def choice_range(self, labels: tuple[str, ...]) -> str:
        if labels not in self.columns:
            letter = get_column_letter(len(self.columns) + 1)
            for row, label in enumerate(labels, start=1):
                self.choices[f"{letter}{row}"] = label
            self.columns[labels] = letter
        letter = self.columns[labels]
        return f"{quote_sheetname(layout.CHOICE_LIST)}!${letter}$1:${letter}${len(labels)}"

    def finish(self) -> None:
        self.countries.sheet_state = "hidden"
        self.choices.sheet_state = "hidden"


def _validation(kind: str, lists: _Lists, **spec: Any) -> DataValidation | None:
    """The Excel data validation of a question or column type (None: Excel has none)."""
    common = {"allow_blank": True, "showErrorMessage": True, "errorTitle": "入力できない値です"}
    if kind in ("yes_no", "single"):
        return DataValidation(
            type="list",
            formula1=lists.choice_range(spec["labels"]),
            error="一覧から選んでください。",
            **common,
        )
    if kind == "country":
        return DataValidation(
            type="list",
            formula1=lists.country_range(),
            error="国名を一覧から選んでください。",
            **common,
        )
    if kind == "number":
        low, high = spec["low"], spec["high"]
        return DataValidation(
            type="whole" if spec["integer"] else "decimal",
            operator="between",
            formula1=layout.number_text(low if low is not None else -(10**12)),
            formula2=layout.number_text(high if high is not None else 10**12),
            error="範囲内の数値を入力してください。",
            **common,
        )
    if kind == "date":
        return DataValidation(
            type="date",
            operator="between",
            formula1=str((spec["low"] - EXCEL_EPOCH).days),
            formula2=str((spec["high"] - EXCEL_EPOCH).days),
            error=f"{spec['low'].isoformat()}から{spec['high'].isoformat()}までの日付を入力してください。",
            **common,
        )
    if kind in ("text", "long_text", "url", "corporate_id"):
        return DataValidation(
            type="textLength",
            operator="lessThanOrEqual",
            formula1=str(spec["max_length"]),
            error=f"{spec['max_length']}文字以内で入力してください。",
            **common,
        )
    return None


def _question_validation(question: Question, lists: _Lists) -> DataValidation:
    validation = _validation(
        question.type,
        lists,
        labels=tuple(c.label for c in question.choices),
        low=question.min if question.type == "number" else question.min_date or date(1990, 1, 1),
        high=question.max if question.type == "number" else question.max_date or date(2100, 12, 31),
        integer=question.integer,
        max_length=question.max_length or (4000 if question.type == "long_text" else 200),
    ) or DataValidation(allow_blank=True)
    validation.showInputMessage = True
    validation.promptTitle = "回答方法"
    validation.prompt = f"{layout.hint(question)}\n{question.help}"[:250]
    return validation


def _answers(sheet: Worksheet, questionnaire: Questionnaire, rows, values, lists) -> None:
    _header(sheet, layout.HEADERS, (24, 22, 50, 6, 32, 50, 22))
    sheet.column_dimensions["A"].width = 22
    row_of = {q.key: n for n, q in enumerate(rows, start=2)}
    for n, question in enumerate(rows, start=2):
        section = questionnaire.section(question.section_key)
        how = layout.hint(question) + _condition_note(questionnaire, question, row_of)
        cells = (
            question.key,
            section.title if section else question.section_key,
            question.label,
            "必須" if question.required else "任意",
            how,
            layout.to_cell(question, values.get(question.key)),
            "、".join(question.cites),
        )
        for col, value in enumerate(cells, start=1):
            cell = sheet.cell(row=n, column=col, value=value)
            cell.alignment = WRAP
        sheet.cell(row=n, column=layout.KEY_COL).font = Font(color="808080", size=8)
        answer = sheet.cell(row=n, column=layout.ANSWER_COL)
        answer.protection, answer.fill = UNLOCKED, ANSWER_FILL
        answer.number_format = _number_format(question.type)
        validation = _question_validation(question, lists)
        sheet.add_data_validation(validation)
        validation.add(answer)
    sheet.freeze_panes = "A2"


def _condition_note(questionnaire: Questionnaire, question: Question, row_of) -> str:
    section = questionnaire.section(question.section_key)
    parts = [
        *(section.when.answers if section and section.when else ()),
        *(question.when.answers if question.when else ()),
    ]
    notes = []
    for key, accepted in parts:
        trigger = questionnaire.question(key)
        if trigger is None:
            continue
        labels = "／".join(c.label for c in trigger.choices if c.value in accepted)
        where = f"{row_of[key]}行目の回答" if key in row_of else f"「{trigger.label}」"
        notes.append(f"{where}が「{labels}」")
    return f"\n※ {'、かつ'.join(notes)}の場合のみ回答" if notes else ""


def _number_format(kind: str) -> str:
    return {"date": "yyyy-mm-dd", "number": "General"}.get(kind, "@")


def _table(sheet: Worksheet, question: Question, rows: list, lists: _Lists) -> None:
    cols = layout.columns(question)
    _header(sheet, [layout.column_header(c) for c in cols], [30] * len(cols))
    last = question.max_rows + 1
    for index, column in enumerate(cols, start=1):
        letter = get_column_letter(index)
        validation = _column_validation(column, lists)
        if validation is not None:
            sheet.add_data_validation(validation)
            validation.add(f"{letter}2:{letter}{last}")
        for n in range(2, last + 1):
            cell = sheet.cell(row=n, column=index)
            cell.protection, cell.alignment = UNLOCKED, WRAP
            cell.number_format = _number_format(column.type)
        for n, row in enumerate(rows[: question.max_rows], start=2):
            sheet.cell(row=n, column=index).value = layout.to_column_cell(
                column, row.get(column.key)
            )
    sheet.freeze_panes = "A2"


def _column_validation(column: Column, lists: _Lists) -> DataValidation | None:
    return _validation(
        "single" if column.choices else column.type,
        lists,
        labels=tuple(label for _value, label in column.choices),
        low=date(1990, 1, 1),
        high=date(2100, 12, 31),
        max_length=column.max_length,
    )


def _header(sheet: Worksheet, labels, widths) -> None:
    for col, (label, width) in enumerate(zip(labels, widths, strict=True), start=1):
        cell = sheet.cell(row=1, column=col, value=label)
        cell.font, cell.fill, cell.alignment = Font(bold=True), HEADER_FILL, WRAP
        sheet.column_dimensions[get_column_letter(col)].width = width


def _instructions(sheet, questionnaire, title, company_name, tables) -> None:
    sheet.column_dimensions["A"].width = 120
    lines = [
        (title, Font(bold=True, size=14)),
        (f"会社名: {company_name}", None),
        (f"評価票: {questionnaire.title}（版 {questionnaire.version}）", None),
        ("", None),
        ("記入のしかた", Font(bold=True)),
        *((line, None) for line in INSTRUCTION_LINES),
        ("", None),
        ("シートの一覧", Font(bold=True)),
        ("「回答」: 設問ごとに1行。「回答」列に記入します。", None),
        *((f"「{name}」: {q.label}", None) for name, q in tables),
        ("", None),
        (f"評価票の識別: {questionnaire.key} / {questionnaire.version}", Font(color="808080")),
    ]
    for row, (text, font) in enumerate(lines, start=1):
        cell = sheet.cell(row=row, column=1, value=text or None)
        cell.alignment = WRAP
        if font is not None:
            cell.font = font


def _control(sheet, questionnaire: Questionnaire, assessment_id, revisions) -> None:
    """What the import checks the file against: never shown (veryHidden)."""
    rows = [
        ("format", layout.FORMAT_VERSION),
        ("questionnaire", questionnaire.key),
        ("version", questionnaire.version),
        ("assessment", str(assessment_id or "")),
        *(("revision", key, int(n)) for key, n in sorted(revisions.items())),
    ]
    for n, row in enumerate(rows, start=1):
        for col, value in enumerate(row, start=1):
            sheet.cell(row=n, column=col, value=value)
    sheet.sheet_state = "veryHidden"
