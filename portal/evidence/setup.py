"""The evidence store's settings, read from the app once: where files go and which scanner."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from portal.evidence.scanner import Scanner, from_config
from portal.evidence.storage import ensure_outside

SCANNER_KEY = "evidence_scanner"


def init_app(app: Flask) -> None:
    """Fail at start, not at the first upload, on a bad ``PORTAL_CLAMD`` or a public store."""
    scanner_for(app)
    evidence_dir_for(app)


def evidence_dir_for(app: Flask) -> Path:
    evidence_dir = Path(app.config["EVIDENCE_DIR"])
    if app.static_folder:
        ensure_outside(evidence_dir, Path(app.static_folder))
    return evidence_dir


def scanner_for(app: Flask) -> Scanner:
    """``app.extensions["evidence_scanner"]``; tests may put their own scanner there."""
    if SCANNER_KEY not in app.extensions:
        app.extensions[SCANNER_KEY] = from_config(app.config.get("CLAMD", ""))
    return app.extensions[SCANNER_KEY]


def max_bytes_for(app: Flask) -> int:
    return int(app.config.get("EVIDENCE_MAX_MB", 20)) * 1024 * 1024
