from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, TimestampMixin, UTCDateTime, utcnow


class VendorCompany(TimestampMixin, Base):
    """One company profile, reused across every assessment and every body it works with."""

    __tablename__ = "vendor_company"

    id: Mapped[int] = mapped_column(primary_key=True)
    corporate_number: Mapped[str] = mapped_column(sa.String(13), unique=True)  # 法人番号
    name: Mapped[str] = mapped_column(sa.String(200))
    address: Mapped[str | None] = mapped_column(sa.String(300))
    representative: Mapped[str | None] = mapped_column(sa.String(100))


class OrganisationVendor(TimestampMixin, Base):
    """A vendor company known to an organisation; staff see only the companies linked to theirs."""

    __tablename__ = "organisation_vendor"

    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), primary_key=True)
    vendor_company_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendor_company.id"), primary_key=True, index=True
    )


class VendorAccess(Base):
    """Which bodies' requests a vendor user may see. A body grants access to its own requests
    only (by inviting the user), so no body can open another body's data to anyone."""

    __tablename__ = "vendor_access"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("organisation.id"), primary_key=True, index=True
    )
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
