"""Roles, the permissions they grant, and the object rules — the one place access is decided.

Every view declares what it needs with ``@require(PERMISSION)`` (or ``@public`` /
``@authenticated``); ``tests/test_routes.py`` walks ``app.url_map`` and fails on any view that
declares nothing. Templates ask the same question through ``can()``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import TYPE_CHECKING, Any

from flask import abort
from flask_login import current_user

if TYPE_CHECKING:
    from portal.users.models import User


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    APPROVER = "approver"
    SERVICE_MANAGER = "service_manager"
    CISO = "ciso"
    NETWORK_ADMIN = "network_admin"
    AUDITOR = "auditor"
    VENDOR = "vendor"


ROLE_LABELS: dict[Role, str] = {
    Role.ADMIN: "システム管理者",
    Role.STAFF: "担当職員",
    Role.APPROVER: "許可権限者",
    Role.SERVICE_MANAGER: "外部サービス管理者",
    Role.CISO: "CISO（最高情報セキュリティ責任者）",
    Role.NETWORK_ADMIN: "ネットワーク管理者",
    Role.AUDITOR: "監査担当",
    Role.VENDOR: "委託先・事業者",
}

STAFF_ROLES = frozenset(Role) - {Role.VENDOR}


class Permission(StrEnum):
    DASHBOARD = "dashboard.view"
    USERS_MANAGE = "users.manage"
    DEPARTMENTS_MANAGE = "departments.manage"
    ORGANISATION_MANAGE = "organisation.manage"
    VENDORS_VIEW = "vendors.view"
    VENDORS_MANAGE = "vendors.manage"
    AUDIT_READ = "audit.read"
    VENDOR_PROFILE = "vendor.profile"
    ENGAGEMENTS_VIEW = "engagements.view"
    ENGAGEMENTS_MANAGE = "engagements.manage"
    ASSESSMENTS_ANSWER = "assessments.answer"
    EVIDENCE_READ = "evidence.read"
    ASSESSMENTS_REVIEW = "assessments.review"
    ASSESSMENTS_CONFIRM = "assessments.confirm"
    CLAUSES_MANAGE = "clauses.manage"
    REGISTER_VIEW = "register.view"  # 承認済み外部サービス台帳 and the service records
    APPLICATIONS_FILE = "applications.file"  # 利用申請 (and the service records behind it)
    APPLICATIONS_DECIDE = "applications.decide"  # 許可権限者: decide, designate, 停止 / 廃止
    LIFECYCLE_RECORD = "lifecycle.record"  # 外部サービス管理者: build / operation / exit checks
    REVIEWS_VIEW = "reviews.view"  # 定期確認: schedules, confirmations, findings, dashboards
    REVIEWS_MANAGE = "reviews.manage"  # open and review confirmations, findings, exit, schedules
    REVIEWS_ANSWER = "reviews.answer"  # vendor: answer confirmations, report incidents / changes
    CONTRACTOR_AUDITS_MANAGE = "contractor_audits.manage"  # 10.1(4): plan and record audits


_ALL_STAFF = set(STAFF_ROLES)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(
        {
            Permission.DASHBOARD,
            Permission.USERS_MANAGE,
            Permission.DEPARTMENTS_MANAGE,
            Permission.ORGANISATION_MANAGE,
            Permission.VENDORS_VIEW,
            Permission.VENDORS_MANAGE,
        }
    ),
    Role.STAFF: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.VENDORS_MANAGE,
            Permission.ENGAGEMENTS_VIEW,
            Permission.ENGAGEMENTS_MANAGE,
            Permission.EVIDENCE_READ,
            Permission.ASSESSMENTS_REVIEW,
            Permission.ASSESSMENTS_CONFIRM,
            Permission.CLAUSES_MANAGE,
            Permission.REGISTER_VIEW,
            Permission.APPLICATIONS_FILE,
            Permission.REVIEWS_VIEW,
            Permission.REVIEWS_MANAGE,
        }
    ),
    Role.APPROVER: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.ENGAGEMENTS_VIEW,
            Permission.EVIDENCE_READ,
            Permission.ASSESSMENTS_CONFIRM,
            Permission.REGISTER_VIEW,
            Permission.APPLICATIONS_DECIDE,
            Permission.REVIEWS_VIEW,
        }
    ),
    Role.SERVICE_MANAGER: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.ENGAGEMENTS_VIEW,
            Permission.EVIDENCE_READ,
            Permission.REGISTER_VIEW,
            Permission.LIFECYCLE_RECORD,
            Permission.REVIEWS_VIEW,
        }
    ),
    Role.CISO: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.AUDIT_READ,
            Permission.ENGAGEMENTS_VIEW,
            Permission.EVIDENCE_READ,
            Permission.ASSESSMENTS_CONFIRM,
            Permission.REGISTER_VIEW,
            Permission.REVIEWS_VIEW,
            Permission.CONTRACTOR_AUDITS_MANAGE,
        }
    ),
    Role.NETWORK_ADMIN: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.AUDIT_READ,
            Permission.ENGAGEMENTS_VIEW,
            Permission.EVIDENCE_READ,
            Permission.ASSESSMENTS_CONFIRM,
            Permission.REGISTER_VIEW,
            Permission.REVIEWS_VIEW,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDORS_VIEW,
            Permission.AUDIT_READ,
            Permission.ENGAGEMENTS_VIEW,
            Permission.EVIDENCE_READ,
            Permission.REGISTER_VIEW,
            Permission.REVIEWS_VIEW,
            Permission.CONTRACTOR_AUDITS_MANAGE,
        }
    ),
    Role.VENDOR: frozenset(
        {
            Permission.DASHBOARD,
            Permission.VENDOR_PROFILE,
            Permission.ASSESSMENTS_ANSWER,
            Permission.EVIDENCE_READ,
            Permission.REVIEWS_ANSWER,
        }
    ),
}

# Markers read by the route walker test.
PUBLIC = "public"
AUTHENTICATED = "authenticated"


def permissions_of(user: User) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in user.role_set:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


def can(user: Any, permission: Permission | str) -> bool:
    """True when ``user`` is an active, logged-in account holding ``permission``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return Permission(permission) in permissions_of(user)


def _mark(view: Callable, requirement: str) -> Callable:
    view.required_permission = requirement  # type: ignore[attr-defined]
    return view


def public(view: Callable) -> Callable:
    """Reachable without logging in (login page, invitation links, health check)."""
    return _mark(view, PUBLIC)


def authenticated(view: Callable) -> Callable:
    """Any logged-in account (logout, own password, own MFA)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            from portal.auth.views import login_redirect

            return login_redirect()
        return view(*args, **kwargs)

    return _mark(wrapper, AUTHENTICATED)


def require(permission: Permission) -> Callable[[Callable], Callable]:
    """The view needs ``permission``; anonymous users go to the login page, others get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                from portal.auth.views import login_redirect

                return login_redirect()
            if not can(current_user, permission):
                abort(403)
            return view(*args, **kwargs)

        return _mark(wrapper, str(permission))

    return decorator


# ---------------------------------------------------------------------------------------------
# Object rules
# ---------------------------------------------------------------------------------------------


def same_organisation(actor: User, organisation_id: int | None) -> bool:
    """Staff see their own organisation's objects only."""
    return actor.organisation_id is not None and actor.organisation_id == organisation_id


def can_manage_user(actor: User, target: User) -> bool:
    """An admin manages the staff of its organisation and the vendor users it invited."""
    if Role.ADMIN not in actor.role_set or actor.organisation_id is None:
        return False
    if target.organisation_id is not None:
        return target.organisation_id == actor.organisation_id
    return target.invited_by_organisation_id == actor.organisation_id


def can_invite_vendor_user(actor: User, target: User) -> bool:
    """Staff who manage vendors invite the vendor users their organisation registered."""
    return (
        target.is_vendor
        and actor.organisation_id is not None
        and target.invited_by_organisation_id == actor.organisation_id
        and can(actor, Permission.VENDORS_MANAGE)
    )


# Roles that read every engagement of their organisation; staff see their departments' only.
ORGANISATION_WIDE_READERS = frozenset(
    {Role.APPROVER, Role.SERVICE_MANAGER, Role.CISO, Role.NETWORK_ADMIN, Role.AUDITOR}
)


def can_view_engagement(actor: User, engagement) -> bool:
    if not same_organisation(actor, engagement.organisation_id):
        return False
    if actor.role_set & ORGANISATION_WIDE_READERS:
        return True
    return Role.STAFF in actor.role_set and engagement.department_id in {
        d.id for d in actor.departments
    }


def can_edit_engagement(actor: User, engagement) -> bool:
    """Staff of the engagement's own department (対策基準 9.1(1): 情報セキュリティ・システム管理者)."""
    return (
        Role.STAFF in actor.role_set
        and same_organisation(actor, engagement.organisation_id)
        and engagement.department_id in {d.id for d in actor.departments}
    )


def can_answer(actor: User, assessment) -> bool:
    """Vendor users answer what is addressed to their own company by a body that granted them
    access (by inviting them) — never what another body sent to the same company."""
    return (
        Role.VENDOR in actor.role_set
        and actor.vendor_company_id is not None
        and actor.vendor_company_id == assessment.vendor_company_id
        and assessment.organisation_id in actor.vendor_organisation_ids
    )


def can_review(actor: User, assessment) -> bool:
    """Staff of the engagement's department score and judge its assessments."""
    return can(actor, Permission.ASSESSMENTS_REVIEW) and can_edit_engagement(
        actor, assessment.engagement
    )


def can_confirm(actor: User, assessment, recommended_by_id: int | None) -> bool:
    """A second person confirms a recommended outcome — never the one who recommended it
    (兼務の禁止, 対策基準 2(6))."""
    return (
        can(actor, Permission.ASSESSMENTS_CONFIRM)
        and can_view_engagement(actor, assessment.engagement)
        and actor.id != recommended_by_id
    )


def can_read_evidence(actor: User, evidence, assessment) -> bool:
    """An evidence file is read by the vendor users who may answer its assessment (of the
    uploading company), and by the staff of its organisation who may view the engagement."""
    if assessment.id != evidence.assessment_id:
        return False
    if Role.VENDOR in actor.role_set:
        return (
            can_answer(actor, assessment) and actor.vendor_company_id == evidence.vendor_company_id
        )
    return (
        same_organisation(actor, evidence.organisation_id)
        and assessment.organisation_id == evidence.organisation_id
        and can_view_engagement(actor, assessment.engagement)
    )


def can_view_application(actor: User, application) -> bool:
    """Entries of the register (approved, suspended, retired) are read organisation-wide by
    everyone holding the register permission; applications still in progress or rejected only
    by the applying department's staff, the organisation-wide readers and the designated
    外部サービス管理者."""
    if not same_organisation(actor, application.organisation_id):
        return False
    if not can(actor, Permission.REGISTER_VIEW):
        return False
    if application.in_register or actor.role_set & ORGANISATION_WIDE_READERS:
        return True
    return application.department_id in {d.id for d in actor.departments}


def can_edit_application(actor: User, application) -> bool:
    """The applying department's staff revise an application returned for changes and record
    new versions of a 約款型 service's terms (9.3)."""
    return (
        can(actor, Permission.APPLICATIONS_FILE)
        and same_organisation(actor, application.organisation_id)
        and application.department_id in {d.id for d in actor.departments}
    )


def can_decide_application(actor: User, application) -> bool:
    """The 許可権限者 of the organisation — never the applicant (兼務の禁止, 対策基準 2(6))."""
    return (
        can(actor, Permission.APPLICATIONS_DECIDE)
        and same_organisation(actor, application.organisation_id)
        and actor.id != application.applicant_id
    )


def assignable_roles(target_is_vendor: bool) -> list[Role]:
    """Vendor accounts hold only the vendor role; staff accounts any role but vendor."""
    return [Role.VENDOR] if target_is_vendor else [r for r in Role if r is not Role.VENDOR]


def requires_mfa(user: User) -> bool:
    """TOTP is mandatory for every staff role; vendors may enrol voluntarily."""
    return bool(user.role_set & STAFF_ROLES) or user.totp_enabled
