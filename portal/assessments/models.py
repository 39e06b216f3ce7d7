from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, TimestampMixin, UTCDateTime, utcnow
from portal.engagements.models import Engagement
from portal.vendors.models import VendorCompany

STATUS_LABELS = {
    "draft": "回答中",
    "submitted": "提出済み",
    "returned": "差戻し中",
    "reviewed": "判定の確認待ち",
    "decided": "評価完了",
}
# What a vendor is told: never the internal steps of the review.
VENDOR_STATUS_LABELS = {**STATUS_LABELS, "reviewed": "提出済み", "decided": "審査完了"}
STATUSES = tuple(STATUS_LABELS)


class Assessment(TimestampMixin, Base):
    """The questionnaire key and version are stored, so old answers keep their meaning."""

    __tablename__ = "assessment"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    engagement_id: Mapped[int] = mapped_column(sa.ForeignKey("engagement.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    questionnaire_key: Mapped[str] = mapped_column(sa.String(50))
    questionnaire_version: Mapped[str] = mapped_column(sa.String(20))
    status: Mapped[str] = mapped_column(sa.String(20), default="draft", index=True)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)

    engagement: Mapped[Engagement] = relationship()
    vendor_company: Mapped[VendorCompany] = relationship()

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('draft', 'submitted', 'returned', 'reviewed', 'decided')", name="status"
        ),
        sa.UniqueConstraint("engagement_id", "vendor_company_id"),
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def vendor_status_label(self) -> str:
        return VENDOR_STATUS_LABELS.get(self.status, self.status)

    @property
    def editable_by_vendor(self) -> bool:
        return self.status in ("draft", "returned")


class Answer(Base):
    """The current answer to one question; every change is kept in ``AnswerRevision``."""

    __tablename__ = "answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    question_key: Mapped[str] = mapped_column(sa.String(100))
    value: Mapped[str] = mapped_column(sa.Text)  # JSON
    revision: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    # Returned by staff for revision: only these can change while the assessment is returned.
    returned: Mapped[bool] = mapped_column(default=False)
    return_comment: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (sa.UniqueConstraint("assessment_id", "question_key"),)


class AnswerRevision(Base):
    __tablename__ = "answer_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(
        sa.ForeignKey("answer.id", ondelete="CASCADE"), index=True
    )
    revision: Mapped[int] = mapped_column()
    value: Mapped[str] = mapped_column(sa.Text)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    saved_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))

    __table_args__ = (sa.UniqueConstraint("answer_id", "revision"),)
