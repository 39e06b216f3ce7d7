"""Login, lockout, MFA and password changes as plain functions (no ``request`` here).

Every function takes the session and the objects it works on, flushes, and leaves committing to
the caller, so that a decision and its audit row are one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal.audit import service as audit
from portal.auth import passwords, totp
from portal.auth.models import LoginAttempt, RecoveryCode
from portal.db import utcnow
from portal.users.models import User


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lock_minutes: int = 30
    ip_max_failures: int = 20
    ip_window_minutes: int = 15

    @classmethod
    def from_config(cls, config) -> LoginPolicy:
        return cls(
            max_failures=config["LOGIN_MAX_FAILURES"],
            lock_minutes=config["LOGIN_LOCK_MINUTES"],
            ip_max_failures=config["LOGIN_IP_MAX_FAILURES"],
            ip_window_minutes=config["LOGIN_IP_WINDOW_MINUTES"],
        )


class LoginRefused(Exception):
    """Wrong e-mail, wrong password, locked or disabled account: the user is told the same."""


class LoginThrottled(LoginRefused):
    """Too many failures from this address."""


class PasswordRejected(Exception):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


class CurrentPasswordWrong(PasswordRejected):
    """The current password given to change it was wrong (counts as a failed attempt)."""


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(sa.select(User).where(User.email == normalise_email(email)))


def _ip_failures(session: Session, ip: str, since: datetime) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(LoginAttempt)
            .where(
                LoginAttempt.ip == ip,
                LoginAttempt.success.is_(False),
                LoginAttempt.attempted_at >= since,
            )
        )
        or 0
    )


def register_failure(
    session: Session, user: User | None, email: str, ip: str, policy: LoginPolicy, step: str
) -> None:
    """Record a failed password or MFA attempt and count it against the account (lock at the
    limit). Attempts refused by the per-address throttle never reached the password check:
    they are recorded, but do not count, so a throttled attacker cannot keep accounts locked."""
    now = utcnow()
    session.add(
        LoginAttempt(
            email=normalise_email(email)[:254],
            ip=ip,
            user_id=getattr(user, "id", None),
            success=False,
            attempted_at=now,
        )
    )
    # Nobody is authenticated yet: no actor. The account (if any) is the object; the address
    # typed goes into the details.
    audit.record(
        session,
        "auth.login_failed",
        actor_label="",
        organisation_id=getattr(user, "organisation_id", None),
        obj=user,
        object_type="user_account",
        details={"step": step, "email": normalise_email(email)[:254]},
    )
    if user is None or step == "throttled":
        return
    # One UPDATE … RETURNING: concurrent failures each count (the row lock serialises them).
    count = session.execute(
        sa.update(User)
        .where(User.id == user.id)
        .values(failed_login_count=User.failed_login_count + 1)
        .returning(User.failed_login_count)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    set_committed_value(user, "failed_login_count", count)
    if count >= policy.max_failures and not is_locked(user, now):
        until = now + timedelta(minutes=policy.lock_minutes)
        session.execute(
            sa.update(User)
            .where(User.id == user.id)
            .values(locked_until=until)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(user, "locked_until", until)
        audit.record(
            session,
            "auth.locked",
            actor_label="",
            organisation_id=user.organisation_id,
            obj=user,
            details={"until": until.isoformat(), "failures": count},
        )
    session.flush()


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def check_password(
    session: Session, email: str, password: str, ip: str, policy: LoginPolicy
) -> User:
    """First login step. Returns the user whose password matched; raises LoginRefused."""
    now = utcnow()
    if (
        _ip_failures(session, ip, now - timedelta(minutes=policy.ip_window_minutes))
        >= policy.ip_max_failures
    ):
        register_failure(
            session, find_user_by_email(session, email), email, ip, policy, "throttled"
        )
        raise LoginThrottled
    user = find_user_by_email(session, email)
    if user is not None and user.locked_until is not None and not is_locked(user, now):
        # The lock has run out: start counting afresh.
        user.locked_until = None
        user.failed_login_count = 0
    if user is None or is_locked(user, now):
        passwords.dummy_verify(password)
        register_failure(session, user, email, ip, policy, "locked" if user else "password")
        raise LoginRefused
    matches, new_hash = passwords.verify_password(user.password_hash, password)
    if not matches or not user.active:
        register_failure(session, user, email, ip, policy, "password")
        raise LoginRefused
    if new_hash:
        user.password_hash = new_hash
    session.flush()
    return user


def complete_login(session: Session, user: User, ip: str, method: str) -> None:
    """Every step passed: record the login and what to show about the previous one (7.2(3))."""
    now = utcnow()
    since = user.last_login_at
    query = (
        sa.select(sa.func.count())
        .select_from(LoginAttempt)
        .where(LoginAttempt.user_id == user.id, LoginAttempt.success.is_(False))
    )
    if since is not None:
        query = query.where(LoginAttempt.attempted_at > since)
    user.failures_before_last_login = session.scalar(query) or 0
    user.previous_login_at = since
    user.last_login_at = now
    user.failed_login_count = 0
    user.locked_until = None
    session.add(
        LoginAttempt(email=user.email, ip=ip, user_id=user.id, success=True, attempted_at=now)
    )
    audit.record(session, "auth.login", actor=user, obj=user, details={"mfa": method})
    session.flush()


def verify_second_factor(
    session: Session, user: User, code: str, ip: str, policy: LoginPolicy
) -> str:
    """Check a TOTP or recovery code; returns "totp" or "recovery_code"; raises LoginRefused."""
    if is_locked(user):
        raise LoginRefused
    if user.totp_enabled and user.totp_secret:
        step = totp.matching_step(user.totp_secret, code, user.totp_last_step)
        if step is not None and _claim_totp_step(session, user, step):
            return "totp"
    if use_recovery_code(session, user, code):
        return "recovery_code"
    register_failure(session, user, user.email, ip, policy, "mfa")
    raise LoginRefused


def _claim_totp_step(session: Session, user: User, step: int) -> bool:
    """Record ``step`` as used unless a concurrent request used it (or a later one) first."""
    claimed = session.execute(
        sa.update(User)
        .where(User.id == user.id, User.totp_last_step < step)
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed == 1:
        set_committed_value(user, "totp_last_step", step)
    return claimed == 1


def use_recovery_code(session: Session, user: User, code: str) -> bool:
    """Spend a recovery code. The conditional UPDATE makes two simultaneous uses of the same
    code impossible: only one of them changes the row."""
    used = session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == totp.hash_recovery_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        return False
    audit.record(session, "auth.recovery_code_used", actor=user, obj=user)
    session.flush()
    return True


def enrol_totp(session: Session, user: User, secret: str, code: str) -> list[str] | None:
    """Turn TOTP on once the user proved the secret works; returns fresh recovery codes."""
    step = totp.matching_step(secret, code, 0)
    if step is None:
        return None
    user.totp_secret = secret
    user.totp_enabled = True
    user.totp_last_step = step
    codes = replace_recovery_codes(session, user)
    audit.record(session, "auth.mfa_enrolled", actor=user, obj=user)
    session.flush()
    return codes


def replace_recovery_codes(session: Session, user: User) -> list[str]:
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=totp.hash_recovery_code(c)) for c in codes
    )
    session.flush()
    return codes


def remaining_recovery_codes(session: Session, user: User) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def set_password(
    session: Session,
    user: User,
    new_password: str,
    *,
    actor: User | None,
    temporary: bool = False,
    action: str = "auth.password_changed",
) -> None:
    """Check the policy, store the hash and end every other session of the user."""
    problems = passwords.password_problems(
        new_password,
        email=user.email,
        name=user.name,
        organisation_name=user.home_name,  # the organisation, or a vendor user's company
    )
    if problems:
        raise PasswordRejected(problems)
    user.password_hash = passwords.hash_password(new_password)
    user.password_is_temporary = temporary
    user.password_changed_at = utcnow()
    end_all_sessions(user)
    audit.record(
        session, action, actor=actor or user, obj=user, organisation_id=user.organisation_id
    )
    session.flush()


def change_own_password(session: Session, user: User, current: str, new_password: str) -> None:
    matches, _ = passwords.verify_password(user.password_hash, current)
    if not matches:
        raise CurrentPasswordWrong(["現在のパスワードが正しくありません。"])
    if current == new_password:
        raise PasswordRejected(["新しいパスワードは現在のものと異なるものにしてください。"])
    set_password(session, user, new_password, actor=user)


def end_all_sessions(user: User) -> None:
    user.session_version += 1
