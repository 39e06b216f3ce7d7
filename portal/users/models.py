from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, TimestampMixin, UTCDateTime
from portal.orgs.models import Department, Organisation
from portal.permissions import Role
from portal.vendors.models import VendorAccess, VendorCompany

user_department = sa.Table(
    "user_department",
    Base.metadata,
    sa.Column("user_id", sa.ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("department_id", sa.ForeignKey("department.id"), primary_key=True, index=True),
)


class UserRole(Base):
    __tablename__ = "user_role"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(sa.String(30), primary_key=True)


class User(TimestampMixin, Base):
    """An account. Exactly one of ``organisation_id`` (staff) or ``vendor_company_id`` is set."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    organisation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("organisation.id"), index=True
    )
    vendor_company_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("vendor_company.id"), index=True
    )
    # For vendor users: the organisation whose staff invited them (and may manage the account).
    invited_by_organisation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("organisation.id"))
    active: Mapped[bool] = mapped_column(default=True)

    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    password_is_temporary: Mapped[bool] = mapped_column(default=False)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Raised by logout, password change, role change and disabling: ends every live session.
    session_version: Mapped[int] = mapped_column(default=1)

    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    failed_login_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Shown after login (対策基準 7.2(3)): the login before this one and the failures since it.
    previous_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failures_before_last_login: Mapped[int] = mapped_column(default=0)

    # Counts administrative edits only (users.service._claim_version), not logins.
    version: Mapped[int] = mapped_column(default=1)

    organisation: Mapped[Organisation | None] = relationship(foreign_keys=[organisation_id])
    vendor_company: Mapped[VendorCompany | None] = relationship()
    roles: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by=UserRole.role
    )
    departments: Mapped[list[Department]] = relationship(
        secondary=user_department, lazy="selectin", order_by=Department.name
    )
    vendor_access: Mapped[list[VendorAccess]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", foreign_keys=[VendorAccess.user_id]
    )

    __table_args__ = (
        sa.CheckConstraint(
            "(organisation_id IS NULL) <> (vendor_company_id IS NULL)", name="one_home"
        ),
    )

    # Flask-Login -------------------------------------------------------------------------
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        # The session version travels with the id: raising it invalidates every session.
        return f"{self.id}:{self.session_version}"

    # Roles -------------------------------------------------------------------------------
    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(Role(r.role) for r in self.roles if r.role in Role._value2member_map_)

    def set_roles(self, roles: set[Role]) -> None:
        wanted = {str(r) for r in roles}
        self.roles = [r for r in self.roles if r.role in wanted] + [
            UserRole(role=r) for r in sorted(wanted - {r.role for r in self.roles})
        ]

    @property
    def vendor_organisation_ids(self) -> frozenset[int]:
        """The bodies whose requests this vendor user may see."""
        return frozenset(a.organisation_id for a in self.vendor_access)

    def grant_vendor_access(self, organisation_id: int, granted_by_id: int | None) -> bool:
        if organisation_id in self.vendor_organisation_ids:
            return False
        self.vendor_access.append(
            VendorAccess(organisation_id=organisation_id, granted_by_id=granted_by_id)
        )
        return True

    @property
    def is_vendor(self) -> bool:
        return self.vendor_company_id is not None

    @property
    def home_name(self) -> str:
        if self.organisation is not None:
            return self.organisation.name
        return self.vendor_company.name if self.vendor_company else ""
