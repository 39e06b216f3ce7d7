"""What the 外部サービス管理者 recorded for each item of the build, operation and exit
checklists (対策基準 9.2(5)–(7)). Append-only: a new record supersedes the item's previous one,
which stays as history."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, utcnow
from portal.users.models import User

if TYPE_CHECKING:
    from portal.reviews.models import ReviewFile

RESULTS = {
    "done": "実施済み（問題なし）",
    "issue": "実施済み（要対応事項あり）",
    "not_applicable": "該当なし",
}


class LifecycleCheck(Base):
    __tablename__ = "lifecycle_check"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        sa.ForeignKey("use_application.id", ondelete="CASCADE"), index=True
    )
    phase: Mapped[str] = mapped_column(sa.String(10))  # build | operation | exit
    item_key: Mapped[str] = mapped_column(sa.String(100))
    checklist_version: Mapped[str] = mapped_column(sa.String(20))
    result: Mapped[str] = mapped_column(sa.String(20))
    checked_on: Mapped[date] = mapped_column(sa.Date)
    evidence: Mapped[str] = mapped_column(sa.Text, default="")  # 証跡: what shows it, where kept
    note: Mapped[str] = mapped_column(sa.Text, default="")
    # The uploaded proof where the item needs one (the 消去証明書 of the exit checklist): a file
    # of the entry's review schedule.
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("review_file.id"))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    recorded_by: Mapped[User] = relationship()
    file: Mapped[ReviewFile | None] = relationship("ReviewFile")

    __table_args__ = (
        sa.CheckConstraint("phase IN ('build', 'operation', 'exit')", name="phase"),
        sa.CheckConstraint("result IN ('done', 'issue', 'not_applicable')", name="result"),
    )

    @property
    def result_label(self) -> str:
        return RESULTS.get(self.result, self.result)
