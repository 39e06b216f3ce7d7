"""Account administration: every change is checked against the object rules and audited.

Functions flush and never commit; the view commits the change and its audit row together.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal.audit import service as audit
from portal.auth import tokens
from portal.auth.models import RecoveryCode
from portal.auth.service import end_all_sessions
from portal.db import utcnow
from portal.errors import ConflictError
from portal.orgs.models import Department
from portal.permissions import Role, assignable_roles, can_invite_vendor_user, can_manage_user
from portal.users.models import User
from portal.vendors.models import VendorCompany


class UserAdminError(Exception):
    """A refused change, with a message for the user in Japanese."""


def check_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise UserAdminError("メールアドレスの形式が正しくありません。") from exc


def _departments(session: Session, organisation_id: int, ids: Iterable[int]) -> list[Department]:
    ids = set(ids)
    if not ids:
        return []
    found = session.scalars(
        sa.select(Department).where(
            Department.id.in_(ids), Department.organisation_id == organisation_id
        )
    ).all()
    if len(found) != len(ids):
        raise UserAdminError("選択された所属が見つかりません。")
    return list(found)


def _check_roles(roles: set[Role], vendor: bool) -> None:
    if not roles:
        raise UserAdminError("役割を1つ以上選択してください。")
    if not roles <= set(assignable_roles(vendor)):
        raise UserAdminError("この利用者には選択できない役割が含まれています。")


def _require_manageable(actor: User, target: User) -> None:
    if not can_manage_user(actor, target):
        raise UserAdminError("この利用者を管理する権限がありません。")


def _claim_version(session: Session, target: User, expected_version: int | None) -> None:
    """Optimistic lock for administrative edits: move ``version`` on only if nobody else has.

    The version counts administrative changes only (a login or a failed attempt leaves it
    alone), so an open form goes stale only when another administrator saved first. The
    conditional UPDATE makes the check and the claim one step, on SQLite and PostgreSQL alike.
    """
    expected = target.version if expected_version is None else expected_version
    claimed = session.execute(
        sa.update(User)
        .where(User.id == target.id, User.version == expected)
        .values(version=expected + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise ConflictError
    set_committed_value(target, "version", expected + 1)


def _active_admins(session: Session, organisation_id: int) -> int:
    from portal.users.models import UserRole

    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .join(UserRole)
            .where(
                User.organisation_id == organisation_id,
                User.active.is_(True),
                UserRole.role == Role.ADMIN.value,
            )
        )
        or 0
    )


def _keep_one_admin(session: Session, target: User, losing_admin: bool) -> None:
    if (
        losing_admin
        and target.organisation_id is not None
        and Role.ADMIN in target.role_set
        and target.active
        and _active_admins(session, target.organisation_id) <= 1
    ):
        raise UserAdminError("団体のシステム管理者が1人もいなくなるため、この変更はできません。")


def _email_free(session: Session, email: str) -> None:
    if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise UserAdminError("このメールアドレスはすでに登録されています。")


def create_staff_user(
    session: Session,
    actor: User,
    *,
    email: str,
    name: str,
    roles: set[Role],
    department_ids: Iterable[int],
) -> User:
    """A staff account of the actor's organisation, without a password until it is accepted."""
    if actor.organisation_id is None or Role.ADMIN not in actor.role_set:
        raise UserAdminError("利用者を登録する権限がありません。")
    email = check_email(email)
    _email_free(session, email)
    _check_roles(roles, vendor=False)
    user = User(email=email, name=name.strip(), organisation_id=actor.organisation_id)
    user.set_roles(roles)
    user.departments = _departments(session, actor.organisation_id, department_ids)
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.created",
        actor=actor,
        obj=user,
        details={
            "email": email,
            "roles": sorted(roles),
            "departments": [d.id for d in user.departments],
        },
    )
    return user


def create_vendor_user(
    session: Session, actor: User, company: VendorCompany, *, email: str, name: str
) -> User:
    """A user of ``company``, invited by the actor's organisation (which may manage it)."""
    if actor.organisation_id is None:
        raise UserAdminError("委託先の利用者を登録する権限がありません。")
    email = check_email(email)
    _email_free(session, email)
    user = User(
        email=email,
        name=name.strip(),
        vendor_company_id=company.id,
        invited_by_organisation_id=actor.organisation_id,
    )
    user.set_roles({Role.VENDOR})
    user.grant_vendor_access(actor.organisation_id, actor.id)
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.created",
        actor=actor,
        obj=user,
        details={"email": email, "vendor_company_id": company.id, "roles": [Role.VENDOR.value]},
    )
    return user


def update_user(
    session: Session,
    actor: User,
    target: User,
    *,
    name: str,
    roles: set[Role],
    department_ids: Iterable[int],
    expected_version: int | None,
) -> None:
    _require_manageable(actor, target)
    _check_roles(roles, vendor=target.is_vendor)
    old_roles = target.role_set
    _keep_one_admin(
        session, target, losing_admin=Role.ADMIN in old_roles and Role.ADMIN not in roles
    )
    new_departments = target.departments
    if not target.is_vendor:
        chosen = _departments(session, target.organisation_id, department_ids)
        # Retired departments are not offered on the form; memberships in them stay as they are.
        retired = [d for d in target.departments if not d.active and d not in chosen]
        new_departments = chosen + retired
    changes: dict[str, object] = {}
    if name.strip() != target.name:
        changes["name"] = [target.name, name.strip()]
    if roles != old_roles:
        changes["roles"] = [sorted(old_roles), sorted(roles)]
    if {d.id for d in new_departments} != {d.id for d in target.departments}:
        changes["departments"] = [
            sorted(d.id for d in target.departments),
            sorted(d.id for d in new_departments),
        ]
    if not changes:
        return  # nothing to save: a repeated submit is harmless
    _claim_version(session, target, expected_version)
    target.name = name.strip()
    if "roles" in changes:
        target.set_roles(roles)
        end_all_sessions(target)  # a role change ends every live session of the user
    target.departments = new_departments
    audit.record(
        session,
        "user.roles_changed" if "roles" in changes else "user.updated",
        actor=actor,
        obj=target,
        organisation_id=actor.organisation_id,
        details=changes,
    )
    session.flush()


def set_active(
    session: Session, actor: User, target: User, active: bool, expected_version: int | None = None
) -> None:
    _require_manageable(actor, target)
    if target.id == actor.id and not active:
        raise UserAdminError("自分自身のアカウントは無効にできません。")
    if not active:
        _keep_one_admin(session, target, losing_admin=True)
    if target.active == active:
        return
    _claim_version(session, target, expected_version)
    target.active = active
    end_all_sessions(target)
    audit.record(
        session,
        "user.enabled" if active else "user.disabled",
        actor=actor,
        obj=target,
        organisation_id=actor.organisation_id,
    )
    session.flush()


def unlock(session: Session, actor: User, target: User) -> None:
    _require_manageable(actor, target)
    _claim_version(session, target, None)
    target.locked_until = None
    target.failed_login_count = 0
    audit.record(
        session, "user.unlocked", actor=actor, obj=target, organisation_id=actor.organisation_id
    )
    session.flush()


def reset_credentials(
    session: Session, actor: User, target: User, *, reset_mfa: bool, valid_for: timedelta
) -> str:
    """Void the password (and MFA if asked), end all sessions, return a single-use reset token."""
    _require_manageable(actor, target)
    if not target.active:
        raise UserAdminError("無効なアカウントのパスワードは再設定できません。")
    _claim_version(session, target, None)
    target.password_hash = None
    target.password_changed_at = utcnow()  # voided now; the reset link sets the next one
    target.password_is_temporary = False
    if reset_mfa:
        target.totp_enabled = False
        target.totp_secret = None
        target.totp_last_step = 0
        session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == target.id))
    end_all_sessions(target)
    token = tokens.issue(session, target, tokens.PASSWORD_RESET, valid_for)
    audit.record(
        session,
        "user.reset",
        actor=actor,
        obj=target,
        organisation_id=actor.organisation_id,
        details={"mfa_reset": reset_mfa},
    )
    session.flush()
    return token


def issue_invitation(session: Session, actor: User, target: User, valid_for: timedelta) -> str:
    if not can_invite_vendor_user(actor, target):
        _require_manageable(actor, target)
    if target.password_hash is not None:
        raise UserAdminError("この利用者はすでに利用登録を済ませています。")
    token = tokens.issue(session, target, tokens.INVITATION, valid_for)
    audit.record(
        session, "user.invited", actor=actor, obj=target, organisation_id=actor.organisation_id
    )
    session.flush()
    return token


def users_of_organisation(session: Session, organisation_id: int) -> list[User]:
    """Staff of the organisation and the vendor users it invited."""
    return list(
        session.scalars(
            sa.select(User)
            .where(
                sa.or_(
                    User.organisation_id == organisation_id,
                    User.invited_by_organisation_id == organisation_id,
                )
            )
            .order_by(User.vendor_company_id.is_not(None), User.name)
        )
    )


def get_manageable(session: Session, actor: User, user_id: int) -> User | None:
    """The user if the actor may manage it; None (→ 404) for anyone else's."""
    target = session.get(User, user_id)
    if target is None or not can_manage_user(actor, target):
        return None
    return target
