"""File names: what the vendor called a file is metadata only, cleaned before it is kept, and
given back on download as an RFC 6266 / RFC 5987 ``Content-Disposition`` header."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

from portal.evidence.filetypes import FileKind

MAX_NAME_LENGTH = 255
DEFAULT_NAME = "添付ファイル"
_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def normalise_name(raw: str | None) -> str:
    """The last path component, NFC, without control or bidi-format characters, ≤ 255 chars."""
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: control characters; Cf: format characters (U+202E would show "exe.pdf" as "fdp.exe").
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    name = " ".join(name.split()).strip(" .")
    if not name:
        return DEFAULT_NAME
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10 and stem:
            name = f"{stem[: MAX_NAME_LENGTH - len(ext) - 1]}.{ext}"
        else:
            name = name[:MAX_NAME_LENGTH]
    return name


def download_name(original_name: str, kind: FileKind | None) -> str:
    """The original name, ending in an extension that matches the content.

    A PNG that was called ``report.pdf`` downloads as ``report.pdf.png``: the name a browser
    saves never promises another type than the one that was checked.
    """
    name = normalise_name(original_name)
    if kind is not None and not name.lower().endswith(kind.extensions):
        name = f"{name}{kind.extensions[0]}"
    return name


def content_disposition(
    name: str, object_id: int, fallback_prefix: str = "evidence", kind: str = "attachment"
) -> str:
    """``attachment`` (or ``inline``) with an ASCII fallback and the UTF-8 name (RFC 5987).
    A name with no ASCII letters or digits falls back to ``<prefix>-<id>.<ext>``."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ascii_stem = _ASCII_SAFE.sub("_", unicodedata.normalize("NFKD", stem)).strip("._")
    ascii_ext = _ASCII_SAFE.sub("", ext)[:10]
    if not re.search(r"[A-Za-z0-9]", ascii_stem):
        ascii_stem = f"{fallback_prefix}-{object_id}"
    fallback = ascii_stem[:100] + (f".{ascii_ext}" if ascii_ext else "")
    encoded = quote(name, safe="")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
