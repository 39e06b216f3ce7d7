"""Imports every model so that ``Base.metadata`` knows every table (Alembic, tests)."""

from portal.audit.models import AuditChain, AuditEvent
from portal.auth.models import ActionToken, LoginAttempt, RecoveryCode
from portal.orgs.models import Department, Organisation
from portal.users.models import User, UserRole, user_department
from portal.vendors.models import OrganisationVendor, VendorCompany

__all__ = [
    "ActionToken",
    "AuditChain",
    "AuditEvent",
    "Department",
    "LoginAttempt",
    "Organisation",
    "OrganisationVendor",
    "RecoveryCode",
    "User",
    "UserRole",
    "VendorCompany",
    "user_department",
]
