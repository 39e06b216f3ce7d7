from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, TimestampMixin

ORGANISATION_KINDS = {
    "municipality": "市区町村",
    "prefecture": "都道府県",
    "assembly": "議会",
    "union": "一部事務組合・広域連合",
    "other": "その他",
}


class Organisation(TimestampMixin, Base):
    """A local body using the portal. How it names itself and its role holders is data."""

    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)  # 正式名称: 西原村
    kind: Mapped[str] = mapped_column(sa.String(20), default="municipality")
    self_designation: Mapped[str] = mapped_column(sa.String(20))  # 本市 / 本村 / 本組合 / 本市議会
    ciso_title: Mapped[str] = mapped_column(sa.String(100))  # 最高情報セキュリティ責任者 (CISO)
    network_admin_title: Mapped[str] = mapped_column(sa.String(100))  # ネットワーク管理者
    approver_title: Mapped[str] = mapped_column(sa.String(100))  # 許可権限者
    review_interval_months: Mapped[int] = mapped_column(default=12)
    high_risk_review_interval_months: Mapped[int] = mapped_column(default=6)
    # 兼務の禁止: a second person confirms the outcome of an assessment review.
    decision_requires_confirmation: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)

    departments: Mapped[list[Department]] = relationship(
        back_populates="organisation", order_by="Department.name"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("review_interval_months BETWEEN 1 AND 60", name="review_interval"),
        sa.CheckConstraint(
            "high_risk_review_interval_months BETWEEN 1 AND 60", name="high_risk_interval"
        ),
    )

    @property
    def kind_label(self) -> str:
        return ORGANISATION_KINDS.get(self.kind, self.kind)


class Department(TimestampMixin, Base):
    """A 課 or similar unit of an organisation."""

    __tablename__ = "department"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    code: Mapped[str | None] = mapped_column(sa.String(20))
    active: Mapped[bool] = mapped_column(default=True)

    organisation: Mapped[Organisation] = relationship(back_populates="departments")

    __table_args__ = (sa.UniqueConstraint("organisation_id", "name"),)
