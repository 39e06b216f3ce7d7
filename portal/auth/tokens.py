"""Single-use, expiring links (invitations, password resets).

The link carries a signed, purpose-salted payload; the nonce inside it is recorded in
``action_token`` and consumed on use, so a link works once and only for its purpose.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from portal.auth.models import ActionToken
from portal.db import utcnow
from portal.users.models import User

INVITATION = "invitation"
PASSWORD_RESET = "reset"  # noqa: S105 (a token purpose)
PURPOSES = {INVITATION, PASSWORD_RESET}


class TokenError(Exception):
    """The link is invalid, expired, used already or meant for something else."""


def _serializer(purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"portal.{purpose}")


def issue(session: Session, user: User, purpose: str, valid_for: timedelta) -> str:
    """Create a token for ``user``; earlier unused tokens of the same purpose stop working."""
    if purpose not in PURPOSES:
        raise ValueError(purpose)
    now = utcnow()
    session.execute(
        sa.update(ActionToken)
        .where(
            ActionToken.user_id == user.id,
            ActionToken.purpose == purpose,
            ActionToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    nonce = secrets.token_urlsafe(32)
    session.add(
        ActionToken(nonce=nonce, purpose=purpose, user_id=user.id, expires_at=now + valid_for)
    )
    session.flush()
    return _serializer(purpose).dumps({"n": nonce, "u": user.id})


def peek(session: Session, token: str, purpose: str) -> tuple[ActionToken, User]:
    """Check ``token`` without using it up; raises TokenError."""
    try:
        data = _serializer(purpose).loads(token)
    except BadSignature as exc:
        raise TokenError from exc
    if not isinstance(data, dict):
        raise TokenError
    record = session.get(ActionToken, str(data.get("n", "")))
    if (
        record is None
        or record.purpose != purpose
        or record.user_id != data.get("u")
        or record.used_at is not None
        or record.expires_at <= utcnow()
    ):
        raise TokenError
    user = session.get(User, record.user_id)
    if user is None or not user.active:
        raise TokenError
    return record, user


def consume(session: Session, token: str, purpose: str) -> User:
    """Use the token up. The conditional UPDATE lets only one of two concurrent uses win."""
    record, user = peek(session, token, purpose)
    used = session.execute(
        sa.update(ActionToken)
        .where(ActionToken.nonce == record.nonce, ActionToken.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1:
        raise TokenError
    session.expire(record)
    return user
