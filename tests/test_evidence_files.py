"""Evidence files by content, never by name (SECURITY.md "Files"): the allowed kinds, the
tricks refused with a Japanese message, file names, and the clamd INSTREAM client against a fake
clamd on 127.0.0.1 and on a UNIX socket."""

from __future__ import annotations

import hashlib
import io
import socket
import struct
import threading
import zipfile
from urllib.parse import quote

import openpyxl
import pytest
from PIL import Image
from pypdf import PdfWriter

from portal import create_app
from portal.evidence import filetypes
from portal.evidence.names import content_disposition, download_name, normalise_name
from portal.evidence.scanner import ClamdScanner, NoScanner, ScanError, from_config

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


# ---------------------------------------------------------------------------------------------
# Files of every kind
# ---------------------------------------------------------------------------------------------


def pdf_bytes(password: str | None = None) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def image_bytes(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 8), "navy").save(out, fmt)
    return out.getvalue()


def office_bytes(main_part: str = "word/document.xml", extra: dict | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr(main_part, "<document>本文</document>")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_bytes(entries: dict[str, bytes], encrypted: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    data = bytearray(out.getvalue())
    if encrypted:  # set the "encrypted" flag in every local and central header
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = data.find(signature)
            while start != -1:
                data[start + offset] |= 0x1
                start = data.find(signature, start + 4)
    return bytes(data)


def content_types(*entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="xml" ContentType="application/xml"/>' + "".join(entries) + "</Types>"
    ).encode()


def openpyxl_bytes() -> bytes:
    book = openpyxl.Workbook()
    book.active["A1"] = "一覧"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


ACCEPTED = {
    "pdf": ("登録証.pdf", pdf_bytes, "application/pdf"),
    "png": ("scan.png", lambda: image_bytes("PNG"), "image/png"),
    "jpeg": ("photo.jpg", lambda: image_bytes("JPEG"), "image/jpeg"),
    "gif": ("figure.gif", lambda: image_bytes("GIF"), "image/gif"),
    "webp": ("figure.webp", lambda: image_bytes("WEBP"), "image/webp"),
    "docx": ("報告書.docx", office_bytes, filetypes.KINDS["docx"].content_type),
    "xlsx": (
        "一覧.xlsx",
        lambda: office_bytes("xl/workbook.xml"),
        filetypes.KINDS["xlsx"].content_type,
    ),
    "pptx": (
        "説明.pptx",
        lambda: office_bytes("ppt/presentation.xml"),
        filetypes.KINDS["pptx"].content_type,
    ),
    "xlsx saved by openpyxl": ("一覧.xlsx", openpyxl_bytes, filetypes.KINDS["xlsx"].content_type),
    "text": ("メモ.txt", lambda: "消去証明書の補足\n".encode(), "text/plain; charset=utf-8"),
    "csv": ("一覧.csv", lambda: "\ufeff拠点,国\n本番,JP\n".encode(), "text/csv; charset=utf-8"),
}

REFUSED = {
    "html named .pdf": ("report.pdf", b"<!DOCTYPE html><html><script>alert(1)</script></html>"),
    "svg named .png": ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
    "markup inside text": ("note.txt", b"hello\n<script>alert(1)</script>\n"),
    "pdf header with garbage": ("cert.pdf", b"%PDF-1.7\n<html><body>not a pdf</body></html>\n"),
    "truncated pdf": ("cert.pdf", pdf_bytes()[:200]),
    "encrypted pdf": ("cert.pdf", pdf_bytes(password="secret")),
    "windows executable": ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"),
    "executable named .pdf": ("cert.pdf", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"),
    "elf binary": ("tool", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64),
    "png magic with garbage": ("scan.png", filetypes.PNG_MAGIC + b"not really an image" * 10),
    "truncated jpeg": ("photo.jpg", image_bytes("JPEG")[:60]),
    "gif polyglot": ("x.gif", b"GIF89a=alert(document.cookie)//;"),
    "plain zip": ("archive.zip", zip_bytes({"a.txt": b"a"})),
    "zip with content types only": ("doc.docx", zip_bytes({"[Content_Types].xml": b"<Types/>"})),
    "zip bomb": (
        "bomb.docx",
        zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"\0" * (20 << 20)}),
    ),
    "too many entries": (
        "many.xlsx",
        zip_bytes(
            {"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}
            | {f"xl/media/{i}.txt": b"x" for i in range(filetypes.MAX_ZIP_ENTRIES)}
        ),
    ),
    "encrypted zip entries": (
        "secret.docx",
        zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<d/>"}, True),
    ),
    "macro-enabled office": (
        "macro.docx",
        office_bytes(extra={"word/vbaProject.bin": b"\x00vba"}),
    ),
    "docx with an embedded OLE object": (
        "embedded.docx",
        office_bytes(extra={"word/embeddings/oleObject1.bin": filetypes.CFB_MAGIC + b"\x00" * 64}),
    ),
    "xlsx with an external link": (
        "linked.xlsx",
        office_bytes("xl/workbook.xml", {"xl/externalLinks/externalLink1.xml": b"<externalLink/>"}),
    ),
    "docx with an ActiveX control": (
        "control.docx",
        office_bytes(extra={"word/activeX/activeX1.xml": b"<ax:ocx/>"}),
    ),
    "macro-enabled content type": (
        "macro.xlsx",
        zip_bytes(
            {
                "[Content_Types].xml": content_types(
                    '<Override PartName="/xl/workbook.xml" '
                    'ContentType="application/vnd.ms-excel.sheet.macroEnabled.main+xml"/>'
                ),
                "xl/workbook.xml": b"<workbook/>",
            }
        ),
    ),
    "OLE object under another name": (
        "renamed.docx",
        zip_bytes(
            {
                "[Content_Types].xml": content_types(
                    '<Default Extension="dat" '
                    'ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>'
                ),
                "word/document.xml": b"<document/>",
                "word/media/image1.dat": filetypes.CFB_MAGIC + b"\x00" * 64,
            }
        ),
    ),
    "content types with a DTD": (
        "dtd.docx",
        zip_bytes(
            {
                "[Content_Types].xml": b'<!DOCTYPE Types [<!ENTITY a "a">]><Types>&a;</Types>',
                "word/document.xml": b"<document/>",
            }
        ),
    ),
    "corrupt office": ("broken.xlsx", office_bytes("xl/workbook.xml")[:-30]),
    "encrypted or legacy office": ("old.xls", filetypes.CFB_MAGIC + b"\x00" * 100),
    "shift_jis text": ("一覧.csv", "拠点,国\n本番,日本\n".encode("cp932")),
    "text with nul": ("note.txt", b"abc\x00def"),
    "text with control characters": ("note.txt", b"abc\x1b[31mdef"),
    "whitespace only": ("note.txt", b"  \n\t\n"),
    "empty file": ("empty.pdf", b""),
}


def identify(tmp_path, name: str, content: bytes) -> filetypes.FileKind:
    path = tmp_path / "upload"
    path.write_bytes(content)
    return filetypes.identify(path, name)


def japanese(message: str) -> bool:
    return any("\u3040" <= ch <= "\u30ff" for ch in message)


# ---------------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ACCEPTED))
def test_each_allowed_kind_is_recognised_by_its_content(tmp_path, kind):
    name, build, content_type = ACCEPTED[kind]
    assert identify(tmp_path, name, build()).content_type == content_type


@pytest.mark.parametrize("case", list(REFUSED))
def test_files_that_are_not_what_they_claim_are_refused_in_japanese(tmp_path, case):
    with pytest.raises(filetypes.EvidenceError) as refused:
        identify(tmp_path, *REFUSED[case])
    assert japanese(str(refused.value)), str(refused.value)


def test_specific_messages_say_what_to_do(tmp_path):
    expected = {
        "encrypted pdf": filetypes.PDF_ENCRYPTED,
        "pdf header with garbage": filetypes.PDF_BROKEN,
        "truncated pdf": filetypes.PDF_BROKEN,
        "png magic with garbage": filetypes.IMAGE_BROKEN,
        "shift_jis text": filetypes.TEXT_NOT_UTF8,
        "empty file": filetypes.EMPTY,
        "html named .pdf": filetypes.NOT_ALLOWED,
        "windows executable": filetypes.NOT_ALLOWED,
        "zip bomb": filetypes.OFFICE_TOO_LARGE,
        "too many entries": filetypes.OFFICE_TOO_LARGE,
        "encrypted zip entries": filetypes.OFFICE_ENCRYPTED,
        "encrypted or legacy office": filetypes.OFFICE_ENCRYPTED,
        "macro-enabled office": filetypes.OFFICE_MACRO,
        "docx with an embedded OLE object": filetypes.OFFICE_ACTIVE,
        "xlsx with an external link": filetypes.OFFICE_ACTIVE,
        "docx with an ActiveX control": filetypes.OFFICE_ACTIVE,
        "macro-enabled content type": filetypes.OFFICE_ACTIVE,
        "OLE object under another name": filetypes.OFFICE_ACTIVE,
        "content types with a DTD": filetypes.OFFICE_BROKEN,
        "corrupt office": filetypes.OFFICE_BROKEN,
    }
    wrong = {}
    for case, message in expected.items():
        try:
            identify(tmp_path, *REFUSED[case])
        except filetypes.EvidenceError as exc:
            if str(exc) != message:
                wrong[case] = str(exc)
        else:
            wrong[case] = "accepted"
    assert wrong == {}


def test_the_office_size_cap_counts_uncompressed_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(filetypes, "MAX_ZIP_TOTAL", 4000)
    incompressible = hashlib.sha512(b"x").digest() * 40  # 2,560 bytes that barely compress
    content = zip_bytes(
        {"[Content_Types].xml": b"<Types/>", "word/document.xml": incompressible * 2}
    )
    with pytest.raises(filetypes.EvidenceError, match=filetypes.OFFICE_TOO_LARGE):
        identify(tmp_path, "big.docx", content)


def test_an_image_with_too_many_pixels_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(filetypes, "MAX_IMAGE_PIXELS", 12 * 8 - 1)
    with pytest.raises(filetypes.EvidenceError, match=filetypes.IMAGE_TOO_LARGE):
        identify(tmp_path, "scan.png", image_bytes("PNG"))


def test_the_declared_entry_count_is_checked_before_the_zip_is_opened(tmp_path, monkeypatch):
    content = office_bytes(extra={f"word/media/{i}.txt": b"x" for i in range(20)})
    monkeypatch.setattr(filetypes, "MAX_ZIP_ENTRIES", 10)
    monkeypatch.setattr(
        filetypes.zipfile, "ZipFile", lambda *a, **k: pytest.fail("opened before the check")
    )
    with pytest.raises(filetypes.EvidenceError, match=filetypes.OFFICE_TOO_LARGE):
        identify(tmp_path, "many.docx", content)
    without_directory = content[: content.rfind(b"PK\x05\x06")]
    with pytest.raises(filetypes.EvidenceError, match=filetypes.OFFICE_BROKEN):
        identify(tmp_path, "cut.docx", without_directory)


def test_a_png_named_pdf_is_the_png_it_is(tmp_path):
    assert identify(tmp_path, "certificate.pdf", image_bytes("PNG")).kind == "png"
    assert identify(tmp_path, "scan.png", pdf_bytes()).kind == "pdf"


def test_the_name_only_tells_csv_from_plain_text(tmp_path):
    content = "拠点,国\n本番,JP\n".encode()
    assert identify(tmp_path, "list.csv", content).content_type == "text/csv; charset=utf-8"
    assert identify(tmp_path, "list.txt", content).content_type == "text/plain; charset=utf-8"
    with pytest.raises(filetypes.EvidenceError):
        identify(tmp_path, "list.csv", b"\x00" + content)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\担当\\報告書.pdf", "報告書.pdf"),
        ("\u202efdp.exe", "fdp.exe"),
        ("a\x07b\nc.pdf", "abc.pdf"),
        ("  ISMAP   登録証 .pdf ", "ISMAP 登録証 .pdf"),
        ("", "添付ファイル"),
        ("...", "添付ファイル"),
        ("長" * 300 + ".pdf", "長" * 251 + ".pdf"),
    ],
)
def test_original_names_are_cleaned_before_they_are_kept(raw, kept):
    assert normalise_name(raw) == kept


def test_download_names_and_the_content_disposition_header():
    kinds = filetypes.KINDS
    assert download_name("report.pdf", kinds["png"]) == "report.pdf.png"
    assert download_name("photo.JPEG", kinds["jpeg"]) == "photo.JPEG"
    assert download_name("run.bat", kinds["text"]) == "run.bat.txt"
    assert download_name("一覧.csv", kinds["csv"]) == "一覧.csv"
    assert content_disposition("ISMAP登録証 2026.pdf", 7) == (
        "attachment; filename=\"ISMAP_2026.pdf\"; filename*=UTF-8''"
        + quote("ISMAP登録証 2026.pdf", safe="")
    )
    assert content_disposition("消去証明書.pdf", 7) == (
        "attachment; filename=\"evidence-7.pdf\"; filename*=UTF-8''"
        + quote("消去証明書.pdf", safe="")
    )
    header = content_disposition('a";b\\c.pdf', 1)
    assert header.startswith('attachment; filename="a_b_c.pdf"; ')
    assert all(32 <= ord(ch) < 127 for ch in header)


# ---------------------------------------------------------------------------------------------
# clamd
# ---------------------------------------------------------------------------------------------


class FakeClamd:
    """A tiny clamd: reads one INSTREAM command and answers OK, FOUND or an error."""

    def __init__(self, family=socket.AF_INET, address=("127.0.0.1", 0), reply=None):
        self.server = socket.socket(family, socket.SOCK_STREAM)
        self.server.bind(address)
        self.server.listen(4)
        self.server.settimeout(5)
        self.reply = reply
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def tcp_address(self) -> str:
        host, port = self.server.getsockname()[:2]
        return f"tcp:{host}:{port}"

    def _serve(self) -> None:
        try:
            while True:
                connection, _ = self.server.accept()
                with connection:
                    self._answer(connection)
        except OSError:
            return  # closed by the test

    def _read(self, connection, size: int) -> bytes:
        data = b""
        while len(data) < size:
            part = connection.recv(size - len(data))
            if not part:
                raise OSError("client went away")
            data += part
        return data

    def _answer(self, connection) -> None:
        assert self._read(connection, 10) == b"zINSTREAM\0"
        stream = b""
        while length := struct.unpack("!I", self._read(connection, 4))[0]:
            stream += self._read(connection, length)
        self.received.append(stream)
        if self.reply is not None:
            connection.sendall(self.reply)
        elif EICAR in stream:
            connection.sendall(b"stream: Eicar-Test-Signature FOUND\0")
        else:
            connection.sendall(b"stream: OK\0")

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def clamd():
    server = FakeClamd()
    yield server
    server.close()


def test_clamd_scanner_over_tcp(tmp_path, clamd):
    scanner = ClamdScanner(clamd.tcp_address, timeout=5)
    clean, infected = tmp_path / "clean.bin", tmp_path / "eicar.txt"
    clean.write_bytes(bytes(range(256)) * 1000)  # several INSTREAM chunks
    infected.write_bytes(EICAR)
    assert scanner.scan(clean) == "clean"
    assert scanner.scan(infected) == "infected"
    assert clamd.received == [clean.read_bytes(), EICAR]


def test_clamd_errors_and_silence_raise(tmp_path, clamd):
    path = tmp_path / "a.txt"
    path.write_bytes(b"a")
    clamd.reply = b"INSTREAM size limit exceeded. ERROR\0"
    with pytest.raises(ScanError):
        ClamdScanner(clamd.tcp_address, timeout=5).scan(path)
    clamd.reply = b""
    with pytest.raises(ScanError):
        ClamdScanner(clamd.tcp_address, timeout=5).scan(path)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ScanError):
        ClamdScanner(f"tcp:127.0.0.1:{port}", timeout=5).scan(path)


def test_clamd_scanner_over_a_unix_socket(tmp_path):
    server = FakeClamd(socket.AF_UNIX, str(tmp_path / "clamd.ctl"))
    try:
        path = tmp_path / "eicar.com"
        path.write_bytes(EICAR)
        assert ClamdScanner(f"unix:{tmp_path / 'clamd.ctl'}", timeout=5).scan(path) == "infected"
    finally:
        server.close()


def test_the_clamd_setting(app, database_url):
    assert isinstance(from_config(""), NoScanner)
    assert isinstance(from_config("tcp:[::1]:3310"), ClamdScanner)
    for bad in ("clamd", "unix:relative", "tcp:host", "tcp:host:99999", "http://x:3310"):
        with pytest.raises(ValueError, match="PORTAL_CLAMD"):
            from_config(bad)
    with pytest.raises(ValueError, match="PORTAL_CLAMD"):
        create_app({"DATABASE_URL": database_url, "CLAMD": "clamd.example:3310"})
