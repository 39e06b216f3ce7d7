from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.assessments.models import Assessment
from portal.db import Base, TimestampMixin, UTCDateTime, utcnow
from portal.users.models import User


class ClauseDocument(TimestampMixin, Base):
    """The 特記事項 of one assessment (engagement × vendor): the staff's choices and the number
    every version of it carries."""

    __tablename__ = "clause_document"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    assessment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="CASCADE"), unique=True
    )
    number: Mapped[str] = mapped_column(sa.String(30), unique=True)  # 文書番号
    switched_off: Mapped[str] = mapped_column(sa.Text, default="[]")  # JSON: optional article ids
    switched_on: Mapped[str] = mapped_column(sa.Text, default="[]")
    special_terms: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)

    assessment: Mapped[Assessment] = relationship()

    __mapper_args__ = {"version_id_col": version}


class ClauseVersion(Base):
    """One generated PDF: numbered, hashed, kept as it was (never updated)."""

    __tablename__ = "clause_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        sa.ForeignKey("clause_document.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column()  # 第1版, 第2版 …
    catalogue_version: Mapped[str] = mapped_column(sa.String(20))
    questionnaire_version: Mapped[str] = mapped_column(sa.String(20))
    articles: Mapped[str] = mapped_column(sa.Text)  # JSON snapshot for the comparison
    pdf: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column()
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    document: Mapped[ClauseDocument] = relationship()
    created_by: Mapped[User] = relationship()

    __table_args__ = (
        sa.UniqueConstraint("document_id", "number"),
        sa.CheckConstraint("number >= 1", name="number"),
    )

    @property
    def label(self) -> str:
        return f"第{self.number}版"


@event.listens_for(ClauseVersion, "before_update")
def _immutable(_mapper, _connection, target: ClauseVersion) -> None:
    raise ValueError(f"clause version {target.id} is immutable")


class Contract(TimestampMixin, Base):
    """The contract the clauses belong to, and the version that was attached to it."""

    __tablename__ = "contract"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    document_id: Mapped[int] = mapped_column(
        sa.ForeignKey("clause_document.id", ondelete="CASCADE"), unique=True
    )
    contract_number: Mapped[str] = mapped_column(sa.String(50))  # 契約番号
    contract_date: Mapped[date] = mapped_column(sa.Date)  # 契約日
    period_start: Mapped[date] = mapped_column(sa.Date)
    period_end: Mapped[date] = mapped_column(sa.Date)
    amount: Mapped[int | None] = mapped_column(sa.BigInteger)  # 契約金額（円・税込）
    signatory: Mapped[str] = mapped_column(sa.String(200))  # 乙の記名者（役職・氏名）
    attached_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("clause_version.id"))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    version: Mapped[int] = mapped_column(default=1)

    document: Mapped[ClauseDocument] = relationship()
    attached_version: Mapped[ClauseVersion | None] = relationship()

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("period_end >= period_start", name="period"),
        sa.CheckConstraint("amount IS NULL OR amount >= 0", name="amount"),
    )
