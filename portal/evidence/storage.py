"""The evidence store on disk: ``<evidence_dir>/ab/cd/<64 hex>``, files 0600, folders 0700.

Bytes arrive in a temporary file inside the store (same file system), are counted, hashed and
synced, then renamed into place, so a file is either whole or absent — never half written.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from portal.evidence.filetypes import EMPTY, EvidenceError

CHUNK = 64 * 1024
INCOMING = ".incoming"  # temporary files, on the same file system as the store
STORED_NAME = re.compile(r"^[0-9a-f]{64}$")
INTEGRITY = (
    "保存されているファイルが登録時の内容と一致しないため、ダウンロードを止めました。"
    "システム管理者にお問い合わせください。"
)


class EvidenceIntegrityError(EvidenceError):
    """The stored bytes no longer match the SHA-256 recorded at upload (or are gone)."""


def too_large_message(max_bytes: int) -> str:
    return f"ファイルが大きすぎます。1ファイル{max_bytes // (1024 * 1024)}MBまでです。"


def stored_path(evidence_dir: Path, stored_name: str) -> Path:
    if not STORED_NAME.match(stored_name):
        raise ValueError("not a stored evidence name")
    return Path(evidence_dir) / stored_name[:2] / stored_name[2:4] / stored_name


def ensure_outside(evidence_dir: Path, public_dir: Path) -> None:
    """Refuse an evidence store inside a folder the web server publishes (``static/``)."""
    store_dir, public = Path(evidence_dir).resolve(), Path(public_dir).resolve()
    if store_dir == public or store_dir.is_relative_to(public):
        raise RuntimeError(f"the evidence store {store_dir} must not be inside {public}")


def receive(stream: BinaryIO, evidence_dir: Path, max_bytes: int) -> tuple[Path, int, str]:
    """Copy an upload to a temporary file (0600), counting and hashing; stop past the cap."""
    incoming = Path(evidence_dir) / INCOMING
    incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming)
    temporary, size, hasher = Path(name), 0, hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise EvidenceError(too_large_message(max_bytes))
                hasher.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise EvidenceError(EMPTY)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, size, hasher.hexdigest()


def place(temporary: Path, final: Path) -> None:
    """Atomic rename into the store, then sync the folder so the name survives a crash."""
    final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.replace(temporary, final)
    folder = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def discard(evidence_dir: Path, stored_names: list[str]) -> None:
    """Remove the bytes of files whose rows were rolled back (a later file or the commit failed)."""
    for stored_name in stored_names:
        stored_path(evidence_dir, stored_name).unlink(missing_ok=True)


def verified_path(evidence_dir: Path, stored_name: str, sha256: str) -> Path:
    """The stored file, after re-computing its SHA-256 (constant-time comparison)."""
    path = stored_path(evidence_dir, stored_name)
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
    except OSError as exc:
        raise EvidenceIntegrityError(INTEGRITY) from exc
    if not hmac.compare_digest(hasher.hexdigest(), sha256):
        raise EvidenceIntegrityError(INTEGRITY)
    return path
