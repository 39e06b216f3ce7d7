"""Store, scan, verify and delete evidence files — plain functions, no ``request``.

Services flush, callers commit. ``store`` checks the bytes (``filetypes``), keeps them under a
random name (``storage``), scans them and records the row with its SHA-256, which every download
re-computes. A file is downloadable only once scanned ``clean``; ``infected`` and ``error`` stay
quarantined (``flask --app wsgi evidence rescan`` retries ``pending`` and ``error``).
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.db import utcnow
from portal.evidence import storage
from portal.evidence.filetypes import BY_CONTENT_TYPE, EvidenceError, identify
from portal.evidence.models import EvidenceFile
from portal.evidence.names import normalise_name
from portal.evidence.scanner import CLEAN, INFECTED, Scanner
from portal.evidence.storage import EvidenceIntegrityError, discard, stored_path
from portal.permissions import can_answer

__all__ = [
    "EvidenceError",
    "EvidenceIntegrityError",
    "delete",
    "discard",
    "open_verified",
    "store",
    "stored_path",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_FILES = 5
QUESTION_KEY = re.compile(r"^[a-z0-9_]+\.[a-z0-9_.]+$")
RESCANNABLE = ("pending", "error")

NOT_EDITABLE = "提出済みのため、ファイルの追加や削除はできません。"
NOT_YOURS = "このファイルは操作できません。"


class Upload(Protocol):
    """What ``store`` needs of an upload (a Werkzeug ``FileStorage`` fits)."""

    filename: str | None
    stream: BinaryIO


def kind_of(evidence: EvidenceFile):
    return BY_CONTENT_TYPE.get(evidence.content_type)


# ---------------------------------------------------------------------------------------------
# Upload
# ---------------------------------------------------------------------------------------------


def store(
    session: Session,
    *,
    assessment: Assessment,
    question_key: str,
    upload: Upload,
    actor,
    evidence_dir: Path,
    scanner: Scanner,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> EvidenceFile:
    """Check, keep and scan one uploaded file for ``question_key`` of ``assessment``."""
    if not can_answer(actor, assessment):
        raise EvidenceError(NOT_YOURS)
    if not assessment.editable_by_vendor:
        raise EvidenceError(NOT_EDITABLE)
    if len(question_key) > 100 or not QUESTION_KEY.match(question_key):
        raise EvidenceError("設問が正しくありません。ページを読み込み直してください。")
    if counts_by_question(session, assessment).get(question_key, 0) >= max_files:
        raise EvidenceError(f"この設問に添付できるファイルは{max_files}件までです。")
    original_name = normalise_name(upload.filename)
    evidence_dir = Path(evidence_dir)
    temporary, size, sha256 = storage.receive(upload.stream, evidence_dir, max_bytes)
    try:
        kind = identify(temporary, original_name)
        stored_name = secrets.token_hex(32)
        final = storage.stored_path(evidence_dir, stored_name)
        storage.place(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    try:
        # Scanned before any row is written, so no lock is held while the scanner works.
        verdict = _scan(scanner, final)
        evidence = EvidenceFile(
            organisation_id=assessment.organisation_id,
            assessment_id=assessment.id,
            vendor_company_id=assessment.vendor_company_id,
            question_key=question_key,
            original_name=original_name,
            stored_name=stored_name,
            content_type=kind.content_type,
            size=size,
            sha256=sha256,
            scan_status="pending",
            uploaded_by_id=actor.id,
            uploaded_at=utcnow(),
        )
        session.add(evidence)
        session.flush()
        audit.record(
            session,
            "evidence.uploaded",
            actor=actor,
            organisation_id=evidence.organisation_id,
            obj=evidence,
            details={
                "assessment_id": assessment.id,
                "question_key": question_key,
                "name": original_name,
                "content_type": kind.content_type,
                "sha256": sha256,
                "size": size,
            },
        )
        apply_verdict(session, evidence, verdict)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return evidence


# ---------------------------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------------------------


def _scan(scanner: Scanner, path: Path) -> str:
    try:
        verdict = scanner.scan(path)
    except Exception:
        log.exception("virus scan failed for %s", path.name)
        return "error"
    if verdict not in (CLEAN, INFECTED):
        log.error("virus scanner answered %r for %s", verdict, path.name)
        return "error"
    return verdict


def scan_file(scanner: Scanner, evidence_dir: Path, evidence: EvidenceFile) -> str:
    """A verdict for a stored file; ``error`` when it is missing or no longer matches."""
    try:
        path = storage.verified_path(evidence_dir, evidence.stored_name, evidence.sha256)
    except EvidenceIntegrityError:
        log.error("evidence %s is missing or changed; not scanned", evidence.id)
        return "error"
    return _scan(scanner, path)


def apply_verdict(session: Session, evidence: EvidenceFile, verdict: str) -> None:
    evidence.scan_status = verdict
    if verdict == INFECTED:
        audit.record(
            session,
            "evidence.infected",
            actor_label="system",
            organisation_id=evidence.organisation_id,
            obj=evidence,
            details={"question_key": evidence.question_key, "sha256": evidence.sha256},
        )
    session.flush()


def rescannable_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            sa.select(EvidenceFile.id)
            .where(
                EvidenceFile.scan_status.in_(RESCANNABLE),
                EvidenceFile.deleted_at.is_(None),
            )
            .order_by(EvidenceFile.id)
        )
    )


# ---------------------------------------------------------------------------------------------
# Download, delete, lists
# ---------------------------------------------------------------------------------------------


def open_verified(evidence: EvidenceFile, evidence_dir: Path) -> Path:
    """The stored file, after re-computing its SHA-256; refuses a file that is not clean."""
    if not evidence.downloadable:
        raise EvidenceError("このファイルは現在ダウンロードできません。")
    return storage.verified_path(evidence_dir, evidence.stored_name, evidence.sha256)


def record_download(
    session: Session, evidence: EvidenceFile, actor, *, inline: bool = False
) -> None:
    """Every download is audited; a view in the browser adds ``"inline": true``."""
    _record(session, "evidence.downloaded", evidence, actor, {"inline": True} if inline else {})


def record_integrity_failure(session: Session, evidence: EvidenceFile, actor) -> None:
    log.error("evidence %s failed its integrity check", evidence.id)
    _record(session, "evidence.integrity_failed", evidence, actor)


def delete(session: Session, evidence: EvidenceFile, actor) -> None:
    """Soft delete by the uploading company while the vendor may still edit (idempotent)."""
    if evidence.deleted_at is not None:
        return
    assessment = session.get(Assessment, evidence.assessment_id)
    if (
        assessment is None
        or not can_answer(actor, assessment)
        or actor.vendor_company_id != evidence.vendor_company_id
    ):
        raise EvidenceError(NOT_YOURS)
    if not assessment.editable_by_vendor:
        raise EvidenceError(NOT_EDITABLE)
    evidence.deleted_at = utcnow()
    _record(session, "evidence.deleted", evidence, actor)


def _record(
    session: Session, action: str, evidence: EvidenceFile, actor, extra: dict | None = None
) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        organisation_id=evidence.organisation_id,
        obj=evidence,
        details={
            "assessment_id": evidence.assessment_id,
            "question_key": evidence.question_key,
            "sha256": evidence.sha256,
            "size": evidence.size,
            **(extra or {}),
        },
    )


def files_by_question(session: Session, assessment: Assessment) -> dict[str, list[EvidenceFile]]:
    """The files not deleted, per question, oldest first (quarantined ones included)."""
    grouped: dict[str, list[EvidenceFile]] = {}
    for evidence in session.scalars(
        sa.select(EvidenceFile)
        .where(EvidenceFile.assessment_id == assessment.id, EvidenceFile.deleted_at.is_(None))
        .order_by(EvidenceFile.uploaded_at, EvidenceFile.id)
    ):
        grouped.setdefault(evidence.question_key, []).append(evidence)
    return grouped


def counts_by_question(session: Session, assessment: Assessment) -> dict[str, int]:
    """Files that answer each question: not deleted and not found infected."""
    rows = session.execute(
        sa.select(EvidenceFile.question_key, sa.func.count())
        .where(
            EvidenceFile.assessment_id == assessment.id,
            EvidenceFile.deleted_at.is_(None),
            EvidenceFile.scan_status != INFECTED,
        )
        .group_by(EvidenceFile.question_key)
    )
    return {key: count for key, count in rows}
