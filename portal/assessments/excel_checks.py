"""Is an uploaded file a workbook that may be opened at all? (SECURITY.md "Files")

The container is checked by ``portal.evidence.filetypes`` as for any Office upload (a real zip
with ``[Content_Types].xml`` and ``xl/workbook.xml``, caps on entries, size and compression ratio,
no encryption, no macros, embedded objects or external links), then by tighter caps for a
questionnaire workbook: the bytes inflated, the rows and cells counted in the XML before any is
built, no XML part in another encoding than UTF-8 and no XML document type declaration. Only
then is it parsed by openpyxl (through defusedxml, which refuses entity declarations), from
memory, without macros or external links and with formulas read as formulas (which the import
refuses), never their cached results: nothing in the file is run or evaluated.
"""

from __future__ import annotations

import re
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
MAX_CELLS = MAX_ROWS * MAX_COLUMNS  # in the whole workbook, counted in the XML before loading

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
TOO_MANY_ROWS = (
    "評価票の想定を超える範囲（1シート{rows}行・{columns}列まで）にデータがあります。"
    "記入欄以外に入力した内容を削除してから選んでください。"
)
NOT_UTF8 = (
    "Excelファイルの中に、文字コードがUTF-8ではない部分があるため読み取れません。"
    "Excelで開き、「Excel ブック (*.xlsx)」形式で保存し直してから選んでください。"
)
# filetypes' messages that speak of Office files in general and fit a workbook upload as well.
_PASSED_ON = {
    filetypes.EMPTY,
    filetypes.OFFICE_BROKEN,
    filetypes.OFFICE_ENCRYPTED,
    filetypes.OFFICE_MACRO,
    filetypes.OFFICE_ACTIVE,
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
    """Before openpyxl builds anything: caps the bytes really inflated (not the sizes the zip
    declares); refuses an XML part not in UTF-8 (a UTF-16/32 byte order mark or layout, or
    another ``encoding=``), which would hide a declaration from the byte scan below; refuses a
    DTD (an Office file never has one, and entity tricks, billion laughs or XXE, need one);
    and counts the row and cell elements, so that a sheet far over the caps is refused before
    a cell object exists. Every part is scanned, not only ``xl/worksheets/``: the workbook's
    relationships may place a sheet anywhere."""
    total = cells = 0
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            for entry in archive.infolist():
                if entry.is_dir():
                    continue
                rows, pending, first = 0, b"", True
                with archive.open(entry) as member:
                    while True:
                        chunk = member.read(64 * 1024)
                        total += len(chunk)
                        if total > MAX_UNCOMPRESSED:
                            raise WorkbookRefused(filetypes.OFFICE_TOO_LARGE)
                        if first:
                            _check_encoding(chunk)
                            first = False
                        text, pending = _split_at_last_tag(pending + chunk, final=not chunk)
                        found_rows, found_cells = _scan(text)
                        rows, cells = rows + found_rows, cells + found_cells
                        if rows > MAX_ROWS or cells > MAX_CELLS:
                            raise WorkbookRefused(
                                TOO_MANY_ROWS.format(rows=MAX_ROWS, columns=MAX_COLUMNS)
                            )
                        if not chunk:
                            break
    except WorkbookRefused:
        raise
    except Exception as exc:  # BadZipFile, CRC errors, unsupported compression …
        raise WorkbookRefused(BROKEN) from exc


# A UTF-16/32 byte order mark, or "<" as UTF-16/32 without one (how expat detects them).
_WIDE_STARTS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\x00<", b"<\x00", b"\x00\x00\x00<")
_DECLARATION = re.compile(rb"<\?xml\b[^>]*?\?>", re.S)
_ENCODING = re.compile(rb"\bencoding\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.I)
_ROW = re.compile(rb"<(?:[A-Za-z_][\w.\-]{0,30}:)?row[\s/>]")
_CELL = re.compile(rb"<(?:[A-Za-z_][\w.\-]{0,30}:)?c[\s/>]")
_TAG_WINDOW = 64  # longer than any pattern above


def _check_encoding(head: bytes) -> None:
    if head.startswith(_WIDE_STARTS):
        raise WorkbookRefused(NOT_UTF8)
    head = head.removeprefix(b"\xef\xbb\xbf")
    if not head.startswith(b"<?xml"):
        return
    declaration = _DECLARATION.match(head)
    if declaration is None:
        raise WorkbookRefused(BROKEN)
    encoding = _ENCODING.search(declaration[0])
    if encoding is not None:
        name = (encoding[1] if encoding[1] is not None else encoding[2]).strip().lower()
        if name not in (b"utf-8", b"utf8"):
            raise WorkbookRefused(NOT_UTF8)
    elif b"encoding" in declaration[0]:
        raise WorkbookRefused(NOT_UTF8)


def _split_at_last_tag(buffer: bytes, final: bool) -> tuple[bytes, bytes]:
    """(what can be scanned now, what is kept for the next chunk): a tag cut by the chunk
    boundary starts at the last "<", and no pattern holds a second "<"."""
    at = -1 if final else buffer.rfind(b"<", max(0, len(buffer) - _TAG_WINDOW))
    return (buffer, b"") if at < 0 else (buffer[:at], buffer[at:])


def _scan(text: bytes) -> tuple[int, int]:
    """(row elements, cell elements) in ``text``; refuses a document type declaration."""
    if _DTD.search(text):
        raise WorkbookRefused(BROKEN)
    return len(_ROW.findall(text)), len(_CELL.findall(text))
