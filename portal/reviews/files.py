"""Files kept as evidence of confirmations, exits (消去証明書), contractor audits and vendor
reports — checked, stored, scanned and verified exactly as assessment evidence is
(``portal.evidence``: type by content, random stored name, SHA-256 re-checked on download, a file
is downloadable only once scanned clean). Services flush, callers commit."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import service as audit
from portal.contractor_audits.models import ContractorAudit
from portal.db import utcnow
from portal.evidence import storage
from portal.evidence.filetypes import BY_CONTENT_TYPE, EvidenceError, identify
from portal.evidence.names import normalise_name
from portal.evidence.scanner import CLEAN, INFECTED, Scanner
from portal.evidence.service import DEFAULT_MAX_BYTES, Upload
from portal.evidence.storage import EvidenceIntegrityError, discard
from portal.permissions import ORGANISATION_WIDE_READERS, same_organisation
from portal.reviews import schedules
from portal.reviews.models import (
    FILE_PURPOSES,
    Confirmation,
    ReviewFile,
    ReviewSchedule,
    VendorReport,
)
from portal.users.models import User

__all__ = [
    "EvidenceIntegrityError",
    "FileError",
    "can_read",
    "discard",
    "files_of",
    "open_verified",
    "store_file",
]

log = logging.getLogger(__name__)

MAX_FILES_PER_OWNER = 20


class FileError(EvidenceError):
    """A refused upload or download, with a message in Japanese."""


Owner = ReviewSchedule | Confirmation | ContractorAudit | VendorReport

_OWNER_COLUMNS = {
    ReviewSchedule: "schedule_id",
    Confirmation: "confirmation_id",
    ContractorAudit: "audit_id",
    VendorReport: "report_id",
}


def _column(owner: Owner) -> str:
    for cls, column in _OWNER_COLUMNS.items():
        if isinstance(owner, cls):
            return column
    raise TypeError(f"not a file owner: {owner!r}")


def files_of(session: Session, owner: Owner) -> list[ReviewFile]:
    """The owner's files not deleted, oldest first (quarantined ones included)."""
    column = getattr(ReviewFile, _column(owner))
    return list(
        session.scalars(
            sa.select(ReviewFile)
            .where(column == owner.id, ReviewFile.deleted_at.is_(None))
            .order_by(ReviewFile.uploaded_at, ReviewFile.id)
        )
    )


def store_file(
    session: Session,
    *,
    owner: Owner,
    purpose: str,
    upload: Upload,
    actor: User,
    evidence_dir: Path,
    scanner: Scanner,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ReviewFile:
    """Check, keep and scan one file of ``owner``. The caller has checked that ``actor`` may
    add it; on any error after the bytes were placed, the caller discards ``stored_name``."""
    if purpose not in FILE_PURPOSES:
        raise ValueError(purpose)
    if len(files_of(session, owner)) >= MAX_FILES_PER_OWNER:
        raise FileError(f"添付できるファイルは{MAX_FILES_PER_OWNER}件までです。")
    original_name = normalise_name(upload.filename)
    evidence_dir = Path(evidence_dir)
    try:  # an empty or oversized file is refused like any other bad file, never a 500
        temporary, size, sha256 = storage.receive(upload.stream, evidence_dir, max_bytes)
    except EvidenceError as exc:
        raise FileError(str(exc)) from exc
    try:
        kind = identify(temporary, original_name)
        stored_name = secrets.token_hex(32)
        final = storage.stored_path(evidence_dir, stored_name)
        storage.place(temporary, final)
    except EvidenceError as exc:
        raise FileError(str(exc)) from exc
    finally:
        temporary.unlink(missing_ok=True)
    try:
        verdict = _scan(scanner, final)
        row = ReviewFile(
            organisation_id=owner.organisation_id,
            purpose=purpose,
            original_name=original_name,
            stored_name=stored_name,
            content_type=kind.content_type,
            size=size,
            sha256=sha256,
            scan_status=verdict,
            uploaded_by_id=actor.id,
            uploaded_at=utcnow(),
        )
        setattr(row, _column(owner), owner.id)
        session.add(row)
        session.flush()
        audit.record(
            session,
            "review_file.uploaded",
            actor=actor,
            organisation_id=row.organisation_id,
            obj=row,
            details={
                "owner": f"{owner.__tablename__}:{owner.id}",
                "purpose": purpose,
                "name": original_name,
                "content_type": kind.content_type,
                "sha256": sha256,
                "size": size,
                "scan": verdict,
            },
        )
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return row


def _scan(scanner: Scanner, path: Path) -> str:
    try:
        verdict = scanner.scan(path)
    except Exception:
        log.exception("virus scan failed for %s", path.name)
        return "error"
    return verdict if verdict in (CLEAN, INFECTED) else "error"


def kind_of(row: ReviewFile):
    return BY_CONTENT_TYPE.get(row.content_type)


def schedule_of(session: Session, row: ReviewFile) -> ReviewSchedule | None:
    """The contract or service a file belongs to (an audit may have none)."""
    if row.schedule_id:
        return session.get(ReviewSchedule, row.schedule_id)
    if row.confirmation_id:
        return session.get(Confirmation, row.confirmation_id).schedule
    if row.report_id:
        return session.get(VendorReport, row.report_id).schedule
    audit_row = session.get(ContractorAudit, row.audit_id) if row.audit_id else None
    return audit_row.schedule if audit_row is not None else None


def can_read(session: Session, actor: User, row: ReviewFile) -> bool:
    """Staff who see the contract or service (audit files: the audited department and the
    organisation-wide readers); the vendor only files of its own confirmations and reports."""
    if not actor.is_vendor and not same_organisation(actor, row.organisation_id):
        return False
    schedule = schedule_of(session, row)
    if actor.is_vendor:
        return (
            schedule is not None
            and (row.confirmation_id is not None or row.report_id is not None)
            and schedules.is_vendor_of(actor, schedule)
        )
    if schedule is not None:
        return schedules.can_view_schedule(actor, schedule)
    if actor.role_set & ORGANISATION_WIDE_READERS:
        return True
    audit_row = session.get(ContractorAudit, row.audit_id)
    return audit_row is not None and audit_row.department_id in {d.id for d in actor.departments}


def open_verified(row: ReviewFile, evidence_dir: Path) -> Path:
    if not row.downloadable:
        raise FileError("このファイルは現在ダウンロードできません。")
    return storage.verified_path(evidence_dir, row.stored_name, row.sha256)


def record_download(session: Session, row: ReviewFile, actor: User) -> None:
    audit.record(
        session,
        "review_file.downloaded",
        actor=actor,
        organisation_id=row.organisation_id,
        obj=row,
        details={"sha256": row.sha256, "purpose": row.purpose},
    )
