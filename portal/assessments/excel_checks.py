"""Is an uploaded file a workbook that may be opened at all? (SECURITY.md "Files")

The container is checked by ``portal.evidence.filetypes`` as for any Office upload (a real zip
with ``[Content_Types].xml`` and ``xl/workbook.xml``, caps on entries, size and compression ratio,
no encryption, no ``vbaProject.bin``), then by tighter caps for a questionnaire workbook and a
refusal of any XML document type declaration. Only then is it parsed by openpyxl, from memory,
without macros or external links and with formulas read as formulas (which the import refuses),
never their cached results: nothing in the file is run or evaluated.
"""

from __future__ import annotations

import tempfile
import warnings
import zipfile
from io import BytesIO
from pathlib import Path

import openpyxl
from openpyxl.workbook.workbook import Workbook

from portal.evidence import filetypes
from portal.evidence.filetypes import EvidenceError

MAX_BYTES = 5 * 1024 * 1024  # the downloaded workbook is some tens of kilobytes
MAX_UNCOMPRESSED = 20 * 1024 * 1024
MAX_ROWS, MAX_COLUMNS = 2000, 100  # per sheet, before any cell is read

NOT_XLSX = (
    "Excel形式（.xlsx）の評価票ではありません。ダウンロードした評価票をExcelで開き、"
    "「Excel ブック (*.xlsx)」形式で保存してから選んでください。"
)
TOO_LARGE = (
    "ファイルが大きすぎます（5MBまで）。ダウンロードした評価票に記入したファイルを選んでください。"
)
BROKEN = (
    "Excelファイルが壊れているため読み取れません。Excelで開いて保存し直してから選んでください。"
)
TOO_MANY_CELLS = (
    "「{sheet}」シートの想定外の範囲（{rows}行・{columns}列）にデータがあります。"
    "記入欄以外に入力した内容を削除してから選んでください。"
)
# filetypes' messages that speak of Office files in general and fit a workbook upload as well.
_PASSED_ON = {
    filetypes.EMPTY,
    filetypes.OFFICE_BROKEN,
    filetypes.OFFICE_ENCRYPTED,
    filetypes.OFFICE_MACRO,
    filetypes.OFFICE_TOO_LARGE,
}


class WorkbookRefused(ValueError):
    """The whole file is refused and nothing is imported; the message is for the vendor."""


def open_workbook(data: bytes) -> Workbook:
    if len(data) > MAX_BYTES:
        raise WorkbookRefused(TOO_LARGE)
    _check_container(data)
    _check_parts(data)
    with warnings.catch_warnings():
        # openpyxl warns about Excel features it drops (extensions, …): nothing for the vendor.
        warnings.simplefilter("ignore")
        try:
            book = openpyxl.load_workbook(
                BytesIO(data), read_only=False, data_only=False, keep_vba=False, keep_links=False
            )
        except Exception as exc:  # openpyxl raises many kinds of errors on odd input
            raise WorkbookRefused(BROKEN) from exc
    for sheet in book.worksheets:
        if sheet.max_row > MAX_ROWS or sheet.max_column > MAX_COLUMNS:
            raise WorkbookRefused(
                TOO_MANY_CELLS.format(
                    sheet=sheet.title, rows=sheet.max_row, columns=sheet.max_column
                )
            )
    return book


def _check_container(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".upload") as handle:
        handle.write(data)
        handle.flush()
        try:
            kind = filetypes.identify(Path(handle.name))
        except EvidenceError as exc:
            raise WorkbookRefused(str(exc) if str(exc) in _PASSED_ON else NOT_XLSX) from exc
    if kind.kind != "xlsx":
        raise WorkbookRefused(NOT_XLSX)


def _check_parts(data: bytes) -> None:
    """Caps the bytes really inflated (not the sizes the zip declares) and refuses a DTD: an
    Office file never has one, and entity tricks (billion laughs, XXE) need one."""
    total = 0
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            for entry in archive.infolist():
                if entry.is_dir():
                    continue
                with archive.open(entry) as member:
                    head = b""
                    while chunk := member.read(64 * 1024):
                        total += len(chunk)
                        if total > MAX_UNCOMPRESSED:
                            raise WorkbookRefused(filetypes.OFFICE_TOO_LARGE)
                        window = (head + chunk).upper()
                        if b"<!DOCTYPE" in window or b"<!ENTITY" in window:
                            raise WorkbookRefused(BROKEN)
                        head = chunk[-16:]
    except WorkbookRefused:
        raise
    except Exception as exc:  # BadZipFile, CRC errors, unsupported compression …
        raise WorkbookRefused(BROKEN) from exc
