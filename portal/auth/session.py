"""The login session: Flask-Login wiring, a fresh session at every login, session versions."""

from __future__ import annotations

from flask import Flask, session
from flask_login import login_user, logout_user

from portal.db import get_session, utcnow
from portal.extensions import login_manager
from portal.users.models import User


def init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = None  # our own idle / absolute / version checks apply
    login_manager.login_view = "auth.login"
    login_manager.login_message = "このページを表示するにはログインしてください。"
    login_manager.login_message_category = "info"
    login_manager.user_loader(load_user)


def load_user(token: str) -> User | None:
    """``token`` is "id:session_version"; an older version means that session was ended."""
    user_id, _, version = token.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = get_session().get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def begin_pending(user: User) -> None:
    """Password accepted, second factor still to come: a new session holding only that."""
    session.clear()
    now = utcnow().timestamp()
    session["pending_login"] = {"uid": user.id, "sv": user.session_version}
    session["login_at"] = session["seen_at"] = now


def pending_user() -> User | None:
    pending = session.get("pending_login")
    if not isinstance(pending, dict):
        return None
    user = get_session().get(User, pending.get("uid"))
    if user is None or not user.active or user.session_version != pending.get("sv"):
        return None
    return user


def start(user: User) -> None:
    """Log ``user`` in on a brand-new session (no data carried over from before)."""
    session.clear()
    login_user(user)
    now = utcnow().timestamp()
    session["login_at"] = session["seen_at"] = now


def end() -> None:
    logout_user()
    session.clear()
