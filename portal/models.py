"""Imports every model so that ``Base.metadata`` knows every table (Alembic, tests)."""

from portal.approvals.models import (
    ExternalService,
    ManagerAssignment,
    ServicePlan,
    TermsVersion,
    UseApplication,
)
from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.audit.models import AuditChain, AuditEvent
from portal.auth.models import ActionToken, LoginAttempt, RecoveryCode
from portal.clauses.models import ClauseDocument, ClauseVersion, Contract
from portal.contractor_audits.models import ContractorAudit
from portal.engagements.models import Engagement
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.evidence.models import EvidenceFile
from portal.lifecycle.models import LifecycleCheck
from portal.orgs.models import Department, Organisation
from portal.reviews.models import (
    Confirmation,
    ConfirmationSection,
    ExitCheck,
    Finding,
    ReminderLog,
    ReviewFile,
    ReviewSchedule,
    ReviewTrigger,
    VendorReport,
)
from portal.users.models import User, UserRole, user_department
from portal.vendors.models import OrganisationVendor, VendorAccess, VendorCompany

__all__ = [
    "ActionToken",
    "Answer",
    "AnswerReview",
    "AnswerRevision",
    "Assessment",
    "AuditChain",
    "AuditEvent",
    "ClauseDocument",
    "ClauseVersion",
    "Confirmation",
    "ConfirmationSection",
    "Contract",
    "ContractorAudit",
    "Department",
    "Engagement",
    "EvidenceFile",
    "ExitCheck",
    "ExternalService",
    "Finding",
    "LifecycleCheck",
    "LoginAttempt",
    "ManagerAssignment",
    "Organisation",
    "OrganisationVendor",
    "Outcome",
    "RecoveryCode",
    "ReminderLog",
    "ReviewFile",
    "ReviewSchedule",
    "ReviewTrigger",
    "Score",
    "ServicePlan",
    "TermsVersion",
    "UseApplication",
    "User",
    "UserRole",
    "VendorAccess",
    "VendorCompany",
    "VendorReport",
    "user_department",
]
