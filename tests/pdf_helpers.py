"""Reading rendered PDFs in tests (pypdf): their text, embedded fonts and embedded files."""

from __future__ import annotations

import io

from pypdf import PdfReader


def _reader(data: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(data))


def pdf_text(data: bytes) -> str:
    """All text of the document, page after page."""
    return "\n".join(page.extract_text() for page in _reader(data).pages)


def pdf_fonts(data: bytes) -> set[str]:
    """Base names of the fonts the pages use, subset prefix kept (``"ABCDEF+IPAexMincho"``)."""
    names: set[str] = set()
    for page in _reader(data).pages:
        fonts = page.get("/Resources", {}).get_object().get("/Font", {}).get_object()
        for font in fonts.values():
            names.add(str(font.get_object()["/BaseFont"]).removeprefix("/"))
    return names


def pdf_attachments(data: bytes) -> dict[str, list[bytes]]:
    """Every embedded file: the document's (``reader.attachments``) and page annotations'."""
    reader = _reader(data)
    files = {name: list(contents) for name, contents in reader.attachments.items()}
    for number, page in enumerate(reader.pages, start=1):
        for annotation in page.get("/Annots", []) or []:
            annotation = annotation.get_object()
            if annotation.get("/Subtype") == "/FileAttachment":
                spec = annotation["/FS"].get_object()
                content = spec["/EF"]["/F"].get_object().get_data()
                files.setdefault(f"page {number}: {spec.get('/F')}", []).append(content)
    return files
