from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, TimestampMixin
from portal.orgs.models import Department, Organisation
from portal.questionnaires.conditions import EngagementFacts
from portal.questionnaires.schema import KINDS, SEGMENTS


def track_for(kind: str, confidentiality: int) -> str:
    """対策基準 §9: 業務委託 → 9.1; 外部サービス with 機密性2以上 → 9.2, otherwise 約款型 9.3."""
    if kind == "outsourcing":
        return "9.1"
    return "9.2" if confidentiality >= 2 else "9.3"


class Engagement(TimestampMixin, Base):
    __tablename__ = "engagement"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("department.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))  # outsourcing | external_service
    title: Mapped[str] = mapped_column(sa.String(200))
    purpose: Mapped[str] = mapped_column(sa.Text)
    period_start: Mapped[date | None] = mapped_column(sa.Date)
    period_end: Mapped[date | None] = mapped_column(sa.Date)
    contract_amount: Mapped[int | None] = mapped_column(sa.BigInteger)  # 円（税込）
    information: Mapped[str] = mapped_column(sa.Text)  # 取り扱う情報
    confidentiality: Mapped[int] = mapped_column(sa.SmallInteger)  # 機密性 1–3
    integrity: Mapped[int] = mapped_column(sa.SmallInteger)  # 完全性 1–2
    availability: Mapped[int] = mapped_column(sa.SmallInteger)  # 可用性 1–2
    personal_data: Mapped[bool] = mapped_column(default=False)  # 個人情報
    specific_personal_data: Mapped[bool] = mapped_column(default=False)  # 特定個人情報
    sensitive_personal_data: Mapped[bool] = mapped_column(default=False)  # 要配慮個人情報
    network_segment: Mapped[str | None] = mapped_column(sa.String(20))
    version: Mapped[int] = mapped_column(default=1)

    department: Mapped[Department] = relationship()
    organisation: Mapped[Organisation] = relationship()

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("kind IN ('outsourcing', 'external_service')", name="kind"),
        sa.CheckConstraint("confidentiality BETWEEN 1 AND 3", name="confidentiality"),
        sa.CheckConstraint("integrity BETWEEN 1 AND 2", name="integrity"),
        sa.CheckConstraint("availability BETWEEN 1 AND 2", name="availability"),
        sa.CheckConstraint(
            "period_end IS NULL OR period_start IS NULL OR period_end >= period_start",
            name="period",
        ),
        sa.CheckConstraint("contract_amount IS NULL OR contract_amount >= 0", name="amount"),
        # The 案件 list: newest first within a department or the organisation.
        sa.Index("ix_engagement_department_created", "department_id", "created_at", "id"),
        sa.Index("ix_engagement_organisation_created", "organisation_id", "created_at", "id"),
    )

    @property
    def track(self) -> str:
        return track_for(self.kind, self.confidentiality)

    @property
    def kind_label(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def segment_label(self) -> str:
        return SEGMENTS.get(self.network_segment or "", "指定なし")

    @property
    def facts(self) -> EngagementFacts:
        return EngagementFacts(
            track=self.track,
            kind=self.kind,
            confidentiality=self.confidentiality,
            integrity=self.integrity,
            availability=self.availability,
            personal_data=self.personal_data
            or self.specific_personal_data
            or self.sensitive_personal_data,
            specific_personal_data=self.specific_personal_data,
            sensitive_personal_data=self.sensitive_personal_data,
            segment=self.network_segment,
        )
