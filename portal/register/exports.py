"""The register as CSV (UTF-8 with BOM, CRLF, so that Excel opens it) and as an XLSX workbook,
both with every column of ``COLUMNS``. Pure functions of the rows: no Flask, no database.

Nothing written can act as a formula: in the CSV a cell starting with = + - @, a tab or a
carriage return gets a leading apostrophe; in the workbook every text is a string cell (never a
formula) and such text also gets Excel's quote prefix, so it stays text when edited."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from copy import copy
from datetime import date

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter

from portal.register.columns import COLUMNS, Column, Value
from portal.web import format_date

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
XLSX_CELL_LIMIT = 32_767
HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
WRAP = Alignment(wrap_text=True, vertical="top")
SHEET_TITLE = "外部サービス台帳"


def neutralised(text: str) -> str:
    """Text a spreadsheet would read as a formula, made plain text (OWASP CSV injection)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def as_text(value: Value) -> str:
    """A cell as text: dates as 2026年4月1日, nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, date):
        return format_date(value)
    return str(value)


def to_csv(rows: Iterable, columns: Sequence[Column] = COLUMNS) -> bytes:
    """The rows under ``columns`` (the register's unless another list is given, e.g. the
    定期確認 list of ``portal/reports/columns.py``)."""
    buffer = io.StringIO(newline="")
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(column.header for column in columns)
    for row in rows:
        writer.writerow(neutralised(as_text(column.value(row))) for column in columns)
    return buffer.getvalue().encode("utf-8")


def _xlsx_text(value: str) -> str:
    # Control characters cannot be stored in a workbook; a cell holds at most 32,767.
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:XLSX_CELL_LIMIT]


def to_xlsx(
    rows: Iterable,
    *,
    title: str,
    columns: Sequence[Column] = COLUMNS,
    sheet_title: str = SHEET_TITLE,
) -> bytes:
    """One sheet: the header row bold, shaded and frozen (with the first two columns: the
    number and the name), an autofilter, column widths; dates as date cells, everything else
    as text."""
    book = Workbook()
    sheet = book.active
    sheet.title = sheet_title
    sheet.append([column.header for column in columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = HEADER_FILL
        cell.alignment = WRAP
    for row in rows:
        values = []
        for column in columns:
            value = column.value(row)
            if isinstance(value, str):
                value = _xlsx_text(value)
            values.append(value)
        sheet.append(values)
    # Setting a style looks it up in the workbook's style list (slow for 300,000 cells): each
    # kind of cell is styled once, and the others of that kind take a copy of its style ids.
    styles: dict[str, StyleArray] = {}
    for line in sheet.iter_rows(min_row=2):
        for cell in line:
            value = cell.value
            if isinstance(value, str):
                cell.data_type = "s"  # never a formula
                kind = "quoted" if value.startswith(FORMULA_STARTS) else "text"
            else:
                kind = "date" if isinstance(value, date) else "other"
            style = styles.get(kind)
            if style is not None:
                cell._style = copy(style)
                continue
            cell.alignment = WRAP
            if kind == "quoted":
                cell.quotePrefix = True
            elif kind == "date":
                cell.number_format = "yyyy/mm/dd"
            styles[kind] = cell._style
    for index, column in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = "C2"
    sheet.auto_filter.ref = sheet.dimensions
    book.properties.title = title
    book.properties.creator = "委託先・外部サービス リスク評価ポータル"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
