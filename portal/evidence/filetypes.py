"""What an uploaded file is, decided by its bytes alone — never by its name (SECURITY.md "Files").

Accepted: PDF (``%PDF-`` and parsed by pypdf; not encrypted), PNG / JPEG / GIF / WebP (magic
bytes, then decoded by Pillow), Office Open XML (xlsx / docx / pptx: a zip holding
``[Content_Types].xml`` and one main part, with caps on entries, size and compression ratio, no
encryption, no macros, embedded objects, ActiveX controls or external links) and UTF-8 text (no NUL or other control characters, no markup).
Anything else raises ``EvidenceError`` with a message the vendor can act on.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from defusedxml import ElementTree as SafeElementTree
from PIL import Image
from pypdf import PdfReader


class EvidenceError(Exception):
    """A refused file or action, with a message in Japanese for the vendor."""


@dataclass(frozen=True)
class FileKind:
    kind: str
    content_type: str
    extensions: tuple[str, ...]  # the first is the one a download gets when its name has none
    label: str = ""


KINDS = {
    kind.kind: kind
    for kind in (
        FileKind("pdf", "application/pdf", (".pdf",), "PDF"),
        FileKind("png", "image/png", (".png",), "画像（PNG）"),
        FileKind("jpeg", "image/jpeg", (".jpg", ".jpeg"), "画像（JPEG）"),
        FileKind("gif", "image/gif", (".gif",), "画像（GIF）"),
        FileKind("webp", "image/webp", (".webp",), "画像（WebP）"),
        FileKind(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (".xlsx",),
            "Excel文書（xlsx）",
        ),
        FileKind(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            (".docx",),
            "Word文書（docx）",
        ),
        FileKind(
            "pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            (".pptx",),
            "PowerPoint文書（pptx）",
        ),
        FileKind("text", "text/plain; charset=utf-8", (".txt", ".csv", ".log", ".md"), "テキスト"),
        FileKind("csv", "text/csv; charset=utf-8", (".csv", ".txt"), "CSV"),
    )
}
BY_CONTENT_TYPE = {kind.content_type: kind for kind in KINDS.values()}

NOT_ALLOWED = (
    "このファイルの種類は受け付けられません。PDF、画像（PNG・JPEG・GIF・WebP）、"
    "Office文書（xlsx・docx・pptx）、テキスト（txt・csv）のファイルを選んでください。"
)
EMPTY = "ファイルが空です。内容のあるファイルを選んでください。"
PDF_ENCRYPTED = (
    "パスワードや暗号化が設定されたPDFは受け付けられません。保護を解除したPDFを選んでください。"
)
PDF_BROKEN = "PDFファイルが壊れているため読み取れません。PDFを作り直してから選んでください。"
IMAGE_BROKEN = "画像ファイルが壊れているため読み取れません。別の画像を選んでください。"
IMAGE_TOO_LARGE = "画像の画素数が大きすぎます。解像度を下げてから選んでください。"
OFFICE_BROKEN = "Office文書が壊れているため読み取れません。保存し直してから選んでください。"
OFFICE_ENCRYPTED = (
    "パスワード付きのOffice文書や旧形式（doc・xls・ppt）は受け付けられません。"
    "パスワードを解除し、xlsx・docx・pptx形式で保存し直してから選んでください。"
)
OFFICE_MACRO = (
    "マクロを含むOffice文書は受け付けられません。マクロなしの形式（xlsx・docx・pptx）で"
    "保存し直してから選んでください。"
)
OFFICE_ACTIVE = (
    "マクロや埋め込みオブジェクト、外部リンクを含むOffice文書は受け付けられません。"
    "それらを削除して保存し直してから選んでください。"
)
OFFICE_TOO_LARGE = (
    "Office文書の中身が大きすぎるか、ファイル数が多すぎます。内容を分けてから選んでください。"
)
TEXT_NOT_UTF8 = (
    "テキストファイルの文字コードがUTF-8ではありません。UTF-8で保存し直してから選んでください。"
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE: legacy Office and encrypted OOXML
MAX_IMAGE_PIXELS = 40_000_000  # an A4 page scanned at 600 dpi is about 35 million
MAX_ZIP_ENTRIES = 1000
MAX_ZIP_TOTAL = 100 * 1024 * 1024  # uncompressed
MAX_ZIP_RATIO = 100  # per entry, for entries over 1 MB uncompressed
OFFICE_MAIN_PARTS = {
    "word/document.xml": "docx",
    "xl/workbook.xml": "xlsx",
    "ppt/presentation.xml": "pptx",
}
MAX_CONTENT_TYPES = 1024 * 1024  # bytes of [Content_Types].xml; Office writes a few kilobytes
# Content types (lower case) of macros, embedded OLE objects, ActiveX controls and links to other
# workbooks, and the folders Office keeps such parts in: refused whatever the parts are named.
ACTIVE_CONTENT_TYPES = (
    "macroenabled",
    "macrosheet",
    "vbaproject",
    "vbadata",
    "oleobject",
    "activex",
    "externallink",
)
ACTIVE_PART_FOLDERS = ("/embeddings/", "/activex/")
ACTIVE_PART_PREFIXES = ("xl/externallinks/",)
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")
_MARKUP = re.compile(
    r"<\s*(?:!doctype|html|head|body|script|iframe|frame|svg|object|embed)\b", re.I
)


def identify(path: Path, name_hint: str = "") -> FileKind:
    """The kind of the file at ``path``; raises ``EvidenceError`` unless it is an allowed one.

    ``name_hint`` only chooses between ``text/plain`` and ``text/csv`` for a text file that has
    already passed the content checks; it never makes a file acceptable.
    """
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise EvidenceError(EMPTY)
    if head.startswith(b"%PDF-"):
        return _pdf(path)
    if head.startswith(PNG_MAGIC):
        return _image(path, "PNG", "png")
    if head.startswith(b"\xff\xd8\xff"):
        return _image(path, "JPEG", "jpeg")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _image(path, "GIF", "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _image(path, "WEBP", "webp")
    if head.startswith(b"PK\x03\x04"):
        return _office(path)
    if head.startswith(CFB_MAGIC):
        raise EvidenceError(OFFICE_ENCRYPTED)
    return _text(path, name_hint)


def _pdf(path: Path) -> FileKind:
    try:
        with path.open("rb") as fh:
            reader = PdfReader(fh, strict=False)
            if reader.is_encrypted:
                raise EvidenceError(PDF_ENCRYPTED)
            pages = len(reader.pages)
    except EvidenceError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on broken input
        raise EvidenceError(PDF_BROKEN) from exc
    if pages < 1:
        raise EvidenceError(PDF_BROKEN)
    return KINDS["pdf"]


def _image(path: Path, pillow_format: str, kind: str) -> FileKind:
    try:
        with Image.open(path, formats=[pillow_format]) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise EvidenceError(IMAGE_TOO_LARGE)
            image.verify()
        with Image.open(path, formats=[pillow_format]) as image:
            image.load()  # decodes the pixels: a truncated or corrupt image fails here
    except EvidenceError:
        raise
    except Exception as exc:  # includes Pillow's DecompressionBombError and its warning
        raise EvidenceError(IMAGE_BROKEN) from exc
    return KINDS[kind]


def _office(path: Path) -> FileKind:
    _check_declared_entries(path)
    try:
        with zipfile.ZipFile(path) as archive:
            kind = _office_kind(archive)
            _read_every_entry(archive)  # checks each entry's CRC, bounded by the declared sizes
    except EvidenceError:
        raise
    except Exception as exc:  # BadZipFile, unsupported compression, truncated data …
        raise EvidenceError(OFFICE_BROKEN) from exc
    return KINDS[kind]


def _check_declared_entries(path: Path) -> None:
    """Read the entry count from the end-of-central-directory record before ``zipfile`` builds
    an object per entry: a small file can declare hundreds of thousands of entries."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - (22 + 65535)))  # the record, after at most a 64 KiB comment
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise EvidenceError(OFFICE_BROKEN)
    if int.from_bytes(tail[at + 10 : at + 12], "little") > MAX_ZIP_ENTRIES:  # 0xFFFF: ZIP64
        raise EvidenceError(OFFICE_TOO_LARGE)


def _office_kind(archive: zipfile.ZipFile) -> str:
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise EvidenceError(OFFICE_TOO_LARGE)
    names = [entry.filename for entry in entries]
    if len(set(names)) != len(names):
        raise EvidenceError(OFFICE_BROKEN)
    if "[Content_Types].xml" not in names:
        raise EvidenceError(NOT_ALLOWED)
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise EvidenceError(OFFICE_ENCRYPTED)
    if any(name.lower().endswith("vbaproject.bin") for name in names):
        raise EvidenceError(OFFICE_MACRO)
    if sum(entry.file_size for entry in entries) > MAX_ZIP_TOTAL:
        raise EvidenceError(OFFICE_TOO_LARGE)
    for entry in entries:
        if entry.file_size > 1024 * 1024 and (
            entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1)
        ):
            raise EvidenceError(OFFICE_TOO_LARGE)
    kinds = [kind for part, kind in OFFICE_MAIN_PARTS.items() if part in names]
    if len(kinds) != 1:
        raise EvidenceError(NOT_ALLOWED)
    if any(_active_part(name) for name in names):
        raise EvidenceError(OFFICE_ACTIVE)
    _check_content_types(archive)
    return kinds[0]


def _active_part(name: str) -> bool:
    name = "/" + name.lower().lstrip("/")
    return any(folder in name for folder in ACTIVE_PART_FOLDERS) or any(
        name.startswith("/" + prefix) for prefix in ACTIVE_PART_PREFIXES
    )


def _check_content_types(archive: zipfile.ZipFile) -> None:
    """Refuses the content types of macros and active content, whatever their parts are named.
    Parsed by defusedxml with no DTD allowed: an Office file never has one."""
    with archive.open("[Content_Types].xml") as member:
        data = member.read(MAX_CONTENT_TYPES + 1)
    if len(data) > MAX_CONTENT_TYPES:
        raise EvidenceError(OFFICE_TOO_LARGE)
    try:
        root = SafeElementTree.fromstring(data, forbid_dtd=True)
    except Exception as exc:  # ParseError, and defusedxml's DTDForbidden and the like
        raise EvidenceError(OFFICE_BROKEN) from exc
    for element in root.iter():
        content_type = element.get("ContentType", "").lower()
        if any(word in content_type for word in ACTIVE_CONTENT_TYPES) or _active_part(
            element.get("PartName", "")
        ):
            raise EvidenceError(OFFICE_ACTIVE)


def _read_every_entry(archive: zipfile.ZipFile) -> None:
    total = 0
    for entry in archive.infolist():
        if entry.is_dir():
            continue
        with archive.open(entry) as member:
            while chunk := member.read(64 * 1024):
                total += len(chunk)
                if total > MAX_ZIP_TOTAL:
                    raise EvidenceError(OFFICE_TOO_LARGE)


def _text(path: Path, name_hint: str) -> FileKind:
    data = path.read_bytes()  # bounded: the store caps the size before identifying
    if b"\x00" in data:
        raise EvidenceError(NOT_ALLOWED)
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvidenceError(TEXT_NOT_UTF8 if _legacy_japanese(data) else NOT_ALLOWED) from None
    if _CONTROL.search(text) or text.lstrip().startswith("<") or _MARKUP.search(text):
        raise EvidenceError(NOT_ALLOWED)
    if not text.strip():
        raise EvidenceError(EMPTY)
    return KINDS["csv"] if name_hint.lower().endswith(".csv") else KINDS["text"]


def _legacy_japanese(data: bytes) -> bool:
    """Shift_JIS (cp932) text, as Excel saves CSV: worth a specific message."""
    try:
        text = data.decode("cp932")
    except UnicodeDecodeError:
        return False
    return not _CONTROL.search(text)
