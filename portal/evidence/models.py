from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow

SCAN_STATUSES = ("pending", "clean", "infected", "error")

SCAN_LABELS = {
    "pending": "ウイルス検査待ち",
    "clean": "検査済み",
    "infected": "ウイルスを検出（隔離中）",
    "error": "検査できず（隔離中）",
}


class EvidenceFile(Base):
    """One uploaded file. The bytes live in the evidence store under ``stored_name``; the name the
    vendor gave it is metadata only. Deleting sets ``deleted_at`` (the file stays for the record)."""

    __tablename__ = "evidence_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    assessment_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    question_key: Mapped[str] = mapped_column(sa.String(100))
    original_name: Mapped[str] = mapped_column(sa.String(255))
    stored_name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(sa.String(64))
    scan_status: Mapped[str] = mapped_column(sa.String(10), default="pending", index=True)
    uploaded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.CheckConstraint(
            "scan_status IN ('pending', 'clean', 'infected', 'error')", name="scan_status"
        ),
        sa.CheckConstraint("size > 0", name="size"),
    )

    @property
    def downloadable(self) -> bool:
        return self.scan_status == "clean" and self.deleted_at is None

    @property
    def scan_label(self) -> str:
        return SCAN_LABELS.get(self.scan_status, self.scan_status)
