from __future__ import annotations

import json
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, utcnow
from portal.scoring.engine import DECISIONS, RATINGS, ManualReview
from portal.users.models import User


class AnswerReview(Base):
    """A reviewer's judgement of one answer. ``vendor_comment`` is shown to the vendor; the
    points, the override and ``internal_note`` never are."""

    __tablename__ = "answer_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    question_key: Mapped[str] = mapped_column(sa.String(100))
    checked: Mapped[bool] = mapped_column(default=False)  # 確認済み
    manual_points: Mapped[int | None] = mapped_column()
    dismissed_rules: Mapped[str] = mapped_column(sa.Text, default="[]")  # JSON list of rule ids
    override_reason: Mapped[str | None] = mapped_column(sa.Text)
    vendor_comment: Mapped[str | None] = mapped_column(sa.Text)
    internal_note: Mapped[str | None] = mapped_column(sa.Text)
    updated_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    updated_by: Mapped[User] = relationship()

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.UniqueConstraint("assessment_id", "question_key"),
        sa.CheckConstraint("manual_points IS NULL OR manual_points >= 0", name="points"),
    )

    @property
    def dismissed(self) -> frozenset[str]:
        return frozenset(json.loads(self.dismissed_rules or "[]"))

    @property
    def as_manual(self) -> ManualReview:
        return ManualReview(points=self.manual_points, dismissed=self.dismissed)


class Score(Base):
    """A score card as computed at one moment, with the versions that produced it."""

    __tablename__ = "assessment_score"

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(20))  # automatic | final
    questionnaire_version: Mapped[str] = mapped_column(sa.String(20))
    rules_version: Mapped[str] = mapped_column(sa.String(20))
    scored_on: Mapped[date] = mapped_column(sa.Date)
    rating: Mapped[str] = mapped_column(sa.String(20))
    percent: Mapped[int | None] = mapped_column()
    summary: Mapped[str] = mapped_column(sa.Text)  # JSON, ScoreCard.summary()
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("kind IN ('automatic', 'final')", name="kind"),
        sa.CheckConstraint("rating IN ('low', 'medium', 'high', 'unacceptable')", name="rating"),
    )

    @property
    def rating_label(self) -> str:
        return RATINGS.get(self.rating, self.rating)

    @property
    def details(self) -> dict:
        return json.loads(self.summary)


class Outcome(Base):
    """How the review ended: the recommended decision and its conditions, and — where the
    organisation requires it — the confirmation by a second person (兼務の禁止)."""

    __tablename__ = "assessment_outcome"

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="CASCADE"), unique=True
    )
    decision: Mapped[str] = mapped_column(sa.String(20))  # approve | conditional | reject
    conditions: Mapped[str] = mapped_column(sa.Text, default="")
    reasoning: Mapped[str] = mapped_column(sa.Text, default="")
    score_id: Mapped[int] = mapped_column(sa.ForeignKey("assessment_score.id"))
    recommended_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    recommended_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)

    score: Mapped[Score] = relationship()
    recommended_by: Mapped[User] = relationship(foreign_keys=[recommended_by_id])
    confirmed_by: Mapped[User | None] = relationship(foreign_keys=[confirmed_by_id])

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("decision IN ('approve', 'conditional', 'reject')", name="decision"),
        sa.CheckConstraint(
            "confirmed_by_id IS NULL OR confirmed_by_id <> recommended_by_id",
            name="second_person",
        ),
    )

    @property
    def decision_label(self) -> str:
        return DECISIONS.get(self.decision, self.decision)
