"""The portal's single PDF render function and the locked-down URL fetcher it uses.

Templates reference bundled assets by absolute ``asset:`` URLs — ``asset:css/print.css``,
``asset:img/logo.svg``, ``asset:contracts/print.css`` (also inside CSS: ``url(asset:img/x.png)``).
Relative URLs do not resolve to anything. Nothing else is fetched: ``file:``, ``http(s):``,
``data:`` and every other scheme are refused, and ``rel=attachment`` never embeds a file.
Fonts come from fontconfig (``"IPAexMincho"`` / ``"IPAexGothic"``); no font file is fetched.

Rendering runs in a forked child, killed after ``PDF_TIMEOUT_SECONDS`` (Flask config, default 60)
and limited by ``RLIMIT_AS`` to the address space inherited from the parent plus
``PDF_MEMORY_BYTES`` (Flask config, default 1 GiB). Outside an app context the defaults apply.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

from flask import current_app, has_app_context
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from portal.pdf.glyphs import printable

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEME = "asset"
# First path segment of an asset URL → the directory it is served from.
ASSET_DIRS = {
    "css": PROJECT_ROOT / "static" / "css",
    "img": PROJECT_ROOT / "static" / "img",
    "contracts": PROJECT_ROOT / "contracts",
}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MEMORY_BYTES = 1024**3

TIMEOUT_MESSAGE = "PDFの作成に時間がかかりすぎたため中止しました。"
MEMORY_MESSAGE = "PDFの作成に必要なメモリが上限を超えたため中止しました。"
FAILURE_MESSAGE = "PDFを作成できませんでした。"


class PdfRenderError(RuntimeError):
    """Rendering failed, took too long or needed too much memory; ``str()`` is for the user."""


class AssetRefused(ValueError):
    """A URL that is not one of the project's own bundled assets."""


def asset_path(url: str) -> Path:
    """The file behind ``asset:<dir>/<name>``; raises AssetRefused for anything else."""
    scheme, _, rest = url.partition(":")
    top, _, name = unquote(rest.split("#")[0].split("?")[0]).partition("/")
    base = ASSET_DIRS.get(top)
    if scheme.lower() == SCHEME and base is not None and name and "\0" not in name:
        path = (base / name).resolve()  # follows symlinks: a link out of `base` is refused
        inside = path.is_relative_to(base.resolve())
        if inside and path.suffix.lower() in MEDIA_TYPES and path.is_file():
            return path
    raise AssetRefused(f"not a bundled asset: {url[:200]!r}")


def fetch_asset(url: str) -> URLFetcherResponse:
    """Serve ``url`` from the bundled assets or raise (WeasyPrint then skips it and logs)."""
    path = asset_path(url)
    headers = {"Content-Type": MEDIA_TYPES[path.suffix.lower()]}
    return URLFetcherResponse(url, body=path.read_bytes(), headers=headers)


class AssetFetcher(URLFetcher):
    """WeasyPrint wants a URLFetcher instance; this one only ever calls ``fetch_asset``."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=(), allow_redirects=False)

    def fetch(self, url: str, headers: dict[str, str] | None = None) -> URLFetcherResponse:
        return fetch_asset(url)


def _render_in_process(html: str, stylesheets: Sequence[str]) -> bytes:
    fetcher = AssetFetcher()
    fonts = FontConfiguration()
    css = [CSS(url=f"{SCHEME}:{n}", url_fetcher=fetcher, font_config=fonts) for n in stylesheets]
    document = HTML(string=html, base_url=f"{SCHEME}:", url_fetcher=fetcher).render(
        stylesheets=css, font_config=fonts
    )
    # <link rel=attachment> and <a rel=attachment> would embed files: drop them before writing.
    document.metadata.attachments = []
    for page in document.pages:
        page.links = [link for link in page.links if link[0] != "attachment"]
    return document.write_pdf()


def _child(
    write_fd: int, html: str, stylesheets: Sequence[str], timeout: float, memory_bytes: int
) -> None:
    """Runs in the forked child; never returns (os._exit: no atexit, no inherited flushes)."""
    status = 1
    try:
        gc.freeze()  # leave inherited objects (DB connections …) alone
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(math.ceil(timeout) + 1)  # dies on its own should the parent vanish
        pages = int(Path("/proc/self/statm").read_text().split()[0])  # inherited address space
        limit = pages * os.sysconf("SC_PAGE_SIZE") + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        try:
            reply = b"ok:" + _render_in_process(html, stylesheets)
        except MemoryError:
            reply = b"memory:"
        except Exception as exc:
            reply = f"error:{type(exc).__name__}: {exc}".encode(errors="replace")[:2000]
        for part in (len(reply).to_bytes(8, "big"), reply):
            view = memoryview(part)
            while view:
                view = view[os.write(write_fd, view) :]
        status = 0
    finally:
        os._exit(status)


def _read_reply(read_fd: int, deadline: float) -> bytes | None:
    """The child's length-prefixed reply; None if it died first; PdfRenderError on timeout."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    received = bytearray()
    while len(received) < 8 or len(received) < 8 + int.from_bytes(received[:8], "big"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PdfRenderError(TIMEOUT_MESSAGE)
        if poller.poll(remaining * 1000):
            if not (chunk := os.read(read_fd, 1 << 20)):
                return None
            received += chunk
    return bytes(received[8:])


def render_pdf(
    html: str,
    *,
    stylesheets: Sequence[str] = ("css/print.css",),
    timeout: float | None = None,
    memory_bytes: int | None = None,
) -> bytes:
    """Render ``html`` (already autoescaped) with the named bundled stylesheets to PDF bytes.
    Characters no bundled font can draw become 〓 (``glyphs.printable``): markup is ASCII, so
    only text changes, and the PDF's text layer stays readable."""
    html = printable(html)
    config = current_app.config if has_app_context() else {}
    if timeout is None:
        timeout = float(config.get("PDF_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))
    if memory_bytes is None:
        memory_bytes = int(config.get("PDF_MEMORY_BYTES", DEFAULT_MEMORY_BYTES))
    deadline = time.monotonic() + timeout
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:  # process or memory limits of the server itself
        os.close(read_fd)
        os.close(write_fd)
        log.error("PDF rendering could not fork: %s", exc)
        raise PdfRenderError(FAILURE_MESSAGE) from exc
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, html, stylesheets, timeout, memory_bytes)
    os.close(write_fd)
    try:
        reply = _read_reply(read_fd, deadline)
    except BaseException as exc:  # timeout, or the parent interrupted: never leave the child
        os.kill(pid, signal.SIGKILL)
        if isinstance(exc, PdfRenderError):
            log.warning("PDF rendering killed after %s s", timeout)
        raise
    finally:
        os.close(read_fd)
        _, wait_status = os.waitpid(pid, 0)
    kind, _, payload = (reply or b"died:").partition(b":")
    if kind == b"ok":
        return payload
    # A negative exit code is the signal that killed the child: under RLIMIT_AS that is most
    # often a C library (GLib, cairo) failing to allocate rather than raising MemoryError.
    exit_code = os.waitstatus_to_exitcode(wait_status)
    detail = payload.decode(errors="replace")
    log.error("PDF rendering failed (%r, exit code %s): %s", kind, exit_code, detail)
    raise PdfRenderError(MEMORY_MESSAGE if kind == b"memory" else FAILURE_MESSAGE)
