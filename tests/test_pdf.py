"""The one PDF render function: Japanese text and fonts, the locked-down fetcher, time and memory."""

from __future__ import annotations

import io
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from pypdf import PdfReader

from portal.pdf import render
from portal.pdf.render import AssetRefused, PdfRenderError, fetch_asset, render_pdf
from tests.pdf_helpers import pdf_attachments, pdf_fonts, pdf_text

CLAUSES_TITLE = "情報セキュリティに関する特記事項"
PARAGRAPH = (
    "<p>"
    + "委託先は、本契約の履行に当たり取り扱う情報を適切に管理しなければならない。" * 8
    + "</p>"
)
LONG_HTML = f"<html lang='ja'><body>{PARAGRAPH * 200}</body></html>"


def page(body: str, head: str = "") -> str:
    return f'<!doctype html><html lang="ja"><head>{head}</head><body>{body}</body></html>'


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port that records (in its backlog) any connection a fetch would make."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def connection_arrived(server: socket.socket) -> bool:
    readable, _, _ = select.select([server], [], [], 0.2)
    return bool(readable)


def test_japanese_text_round_trips_in_ipaex_fonts():
    pdf = render_pdf(
        page(
            f"<h1 style='font-family: IPAexGothic'>{CLAUSES_TITLE}</h1>"
            "<p>第1条 委託先は秘密を保持する。</p>"
        )
    )

    assert CLAUSES_TITLE in pdf_text(pdf)
    assert "第1条 委託先は秘密を保持する。" in pdf_text(pdf)
    fonts = pdf_fonts(pdf)
    assert any("IPAexMincho" in name for name in fonts)  # body font from print.css
    assert any("IPAexGothic" in name for name in fonts)
    assert all("IPAex" in name and "+" in name for name in fonts)  # only IPAex, subset


def test_characters_no_font_draws_become_geta_and_the_text_stays_readable():
    """Every PDF (reports too): a missing glyph would spoil the whole run's text layer."""
    pdf = render_pdf(page("<p>前の文。👩‍💻 ก 𠮷 髙﨑 é́ <b>&lt;img&gt;</b>後の文。</p>"))

    text = pdf_text(pdf)
    assert "前の文。〓〓 〓 〓 髙﨑 é́ <img>後の文。" in text.replace(
        "\u200d", ""
    )  # the joiner draws nothing
    assert "👩" not in text


def test_print_css_is_applied():
    pdf = render_pdf(page("<p>本文</p>"))

    box = PdfReader(io.BytesIO(pdf)).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # @page { size: A4 }


def test_hostile_references_fetch_nothing_and_embed_nothing(listener):
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
    head = (
        '<link rel="attachment" href="file:///etc/passwd">'
        '<link rel="attachment" href="asset:css/print.css">'
        f'<link rel="stylesheet" href="{origin}/a.css">'
        f"<style>@import url({origin}/x.css); @font-face {{ font-family: X; src: url({origin}/f.ttf) }}"
        f" body {{ background-image: url({origin}/bg.png) }}</style>"
    )
    body = (
        f"<h1>{CLAUSES_TITLE}</h1>"
        '<img src="file:///etc/passwd" alt="">'
        f'<img src="{origin}/x.png" alt="">'
        '<img src="data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E" alt="">'
        '<object data="file:///etc/passwd"></object>'
        '<img src="asset:../../etc/passwd" alt="">'
        '<a rel="attachment" href="file:///etc/passwd">passwd</a>'
        '<a rel="attachment" href="asset:css/print.css">print.css</a>'
    )

    pdf = render_pdf(page(body, head))

    assert not connection_arrived(listener)
    assert pdf_attachments(pdf) == {}
    text = pdf_text(pdf)
    assert CLAUSES_TITLE in text
    assert "root:" not in text


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:///work/main/static/css/print.css",
        "http://127.0.0.1:1/x.css",
        "https://example.com/x.css",
        "ftp://example.com/x.css",
        "data:text/css,body{}",
        "javascript:alert(1)",
        "css/print.css",  # relative: never resolved against anything
        "asset:../../etc/passwd",
        "asset:css/../../../etc/passwd",
        "asset:css/%2e%2e/%2e%2e/pyproject.toml",
        "asset:css/..%2fjs%2fautosave.js",
        "asset:img/../css/print.css",  # out of img/, even into another asset directory
        "asset:/etc/passwd",
        "asset:css/missing.css",
        "asset:css/print.css%00.png",
    ],
)
def test_fetch_asset_refuses(url):
    with pytest.raises(AssetRefused):
        fetch_asset(url)


def test_fetch_asset_serves_bundled_css():
    response = fetch_asset("asset:css/print.css")

    assert response.content_type == "text/css"
    assert response.read() == (render.PROJECT_ROOT / "static/css/print.css").read_bytes()


def test_fetch_asset_refuses_symlink_out_of_asset_dir(tmp_path: Path, monkeypatch):
    css_dir, outside = tmp_path / "css", tmp_path / "outside"
    css_dir.mkdir()
    outside.mkdir()
    (outside / "secret.css").write_text("secret")
    (css_dir / "own.css").write_text("body {}")
    (css_dir / "link.css").symlink_to(outside / "secret.css")
    monkeypatch.setitem(render.ASSET_DIRS, "css", css_dir)

    assert fetch_asset("asset:css/own.css").read() == b"body {}"
    with pytest.raises(AssetRefused):
        fetch_asset("asset:css/link.css")


def test_timeout_stops_rendering():
    with pytest.raises(PdfRenderError, match="時間がかかりすぎた"):
        render_pdf(LONG_HTML, timeout=0.01)


def test_timeout_default_comes_from_flask_config():
    app = Flask(__name__)
    app.config["PDF_TIMEOUT_SECONDS"] = 0.01

    with app.app_context(), pytest.raises(PdfRenderError, match="時間がかかりすぎた"):
        render_pdf(LONG_HTML)


def test_too_small_memory_limit_fails_cleanly():
    with pytest.raises(PdfRenderError):
        # Far more layout than one extra megabyte holds, whatever the parent already mapped.
        render_pdf(page("<p>情報セキュリティ</p>" * 20000), memory_bytes=1024 * 1024)

    assert CLAUSES_TITLE in pdf_text(render_pdf(page(CLAUSES_TITLE)))  # this process is fine


def test_missing_stylesheet_is_an_error_not_an_unstyled_pdf():
    with pytest.raises(PdfRenderError, match="PDFを作成できませんでした"):
        render_pdf(page("<p>本文</p>"), stylesheets=("css/missing.css",))
