"""委託先の監査 (対策基準 10.1(4)): an audit of a contractor, or of one of its subcontractors,
planned, carried out and reported. The auditor never belongs to the audited department."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, TimestampMixin
from portal.orgs.models import Department
from portal.reviews.models import METHODS, ReviewSchedule
from portal.users.models import User
from portal.vendors.models import VendorCompany

AUDIT_STATUSES = {
    "planned": "計画",
    "performed": "実施済み（報告待ち）",
    "reported": "報告済み",
}
AUDIT_METHODS = METHODS


class ContractorAudit(TimestampMixin, Base):
    __tablename__ = "contractor_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("department.id"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("review_schedule.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    subcontractor: Mapped[str] = mapped_column(sa.String(200), default="")  # audited 再委託先
    title: Mapped[str] = mapped_column(sa.String(200))
    scope: Mapped[str] = mapped_column(sa.Text)
    method: Mapped[str] = mapped_column(sa.String(20))
    auditor_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    planned_on: Mapped[date] = mapped_column(sa.Date)
    performed_on: Mapped[date | None] = mapped_column(sa.Date)
    evidence: Mapped[str] = mapped_column(sa.Text, default="")  # what was seen, where it is kept
    report: Mapped[str] = mapped_column(sa.Text, default="")  # the audit report's conclusion
    reported_on: Mapped[date | None] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(10), default="planned", index=True)
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    version: Mapped[int] = mapped_column(default=1)

    department: Mapped[Department] = relationship()
    schedule: Mapped[ReviewSchedule | None] = relationship()
    vendor_company: Mapped[VendorCompany] = relationship()
    auditor: Mapped[User] = relationship(foreign_keys=[auditor_id])

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("status IN ('planned', 'performed', 'reported')", name="status"),
        sa.CheckConstraint(
            "method IN ('document', 'onsite', 'remote', 'third_party')", name="method"
        ),
        sa.CheckConstraint("status = 'planned' OR performed_on IS NOT NULL", name="performed"),
        sa.CheckConstraint("status <> 'reported' OR reported_on IS NOT NULL", name="reported"),
    )

    @property
    def status_label(self) -> str:
        return AUDIT_STATUSES.get(self.status, self.status)

    @property
    def method_label(self) -> str:
        return AUDIT_METHODS.get(self.method, self.method)

    @property
    def audited_label(self) -> str:
        name = self.vendor_company.name if self.vendor_company else ""
        return f"{name}（再委託先: {self.subcontractor}）" if self.subcontractor else name
