"""What every request passes through: request ID, audit context, write intent, session
timeouts, forced password change, and the security headers on every response."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timedelta, timezone

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    request,
    session,
    url_for,
)
from flask_login import current_user, logout_user
from werkzeug.routing import IntegerConverter

from portal.audit.service import AuditContext, audit_context
from portal.db import defers_write, reset_write_intent, set_write_intent, utcnow
from portal.permissions import ROLE_LABELS, Role, can

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Endpoints an account with a temporary password may still reach.
TEMPORARY_PASSWORD_ALLOWED = {
    "auth.change_password",
    "auth.logout",
    "auth.new_recovery_codes",  # shown once right after enrolment; must not be lost
    "static",
    "main.healthz",
}


MAX_ID = 2**31 - 1


def current_actor():
    """The logged-in user itself (not the proxy), as services take it."""
    return current_user._get_current_object()


def flash_form_errors(form) -> None:
    """Every error of a refused form as a flash message with its field's label; a stale
    version or a missing CSRF token asks the user to reload the page instead."""
    for name, errors in form.errors.items():
        if name in ("version", "csrf_token"):
            flash("画面を読み込み直してから、もう一度操作してください。", "error")
            continue
        label = form[name].label.text if name in form else ""
        for error in errors:
            flash(f"{label}: {error}" if label else error, "error")


def clean_text(
    value: str | None, label: str, *, limit: int, required: bool, error: type[Exception]
) -> str:
    """A text field as services store it: stripped, line ends normalised, within ``limit``
    characters; refused with ``error`` and a Japanese message naming ``label``."""
    text = (value or "").replace("\r\n", "\n").strip()
    if required and not text:
        raise error(f"{label}を入力してください。")
    if len(text) > limit:
        raise error(f"{label}は{limit}文字以内で入力してください。")
    return text


def parse_id(raw: str | None, minimum: int = 1) -> int | None:
    """A decimal id (``minimum=0`` for a version) from a form or query string: ASCII digits
    within ``minimum``..MAX_ID, else None — never ``int()`` of arbitrary text."""
    raw = (raw or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if minimum <= value <= MAX_ID else None


MAX_PAGE = 100_000


def page_of(raw: str | None, total: int, page_size: int) -> tuple[int, int]:
    """(page, pages) of ``?page=`` for a list of ``total`` rows shown ``page_size`` at a time:
    read like an id; anything that is not a page number (text, 0, beyond MAX_PAGE) is the
    first page, a page past the end the last one."""
    pages = max((total + page_size - 1) // page_size, 1)
    number = parse_id(raw)
    return min(number if number is not None and number <= MAX_PAGE else 1, pages), pages


class IdConverter(IntegerConverter):
    """``<int:…>`` in every route: 1 … 2³¹−1, so an absurd id is a plain 404 on every database
    (SQLite and PostgreSQL both fail on integers beyond their column type)."""

    def __init__(self, url_map, *args, **kwargs) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter
    app.before_request(_start_request)
    app.before_request(_check_request_body)
    app.before_request(_enforce_session_lifetime)
    app.before_request(_enforce_password_change)
    app.after_request(_security_headers)
    app.teardown_request(_reset_context)
    app.context_processor(_template_helpers)
    app.add_template_filter(format_jst, "jst")
    app.add_template_filter(format_date, "jdate")


JST = timezone(timedelta(hours=9), "JST")


def today_jst() -> date:
    """Today's date in Japan: due dates, expiry and scoring are counted in local days."""
    return utcnow().astimezone(JST).date()


def format_jst(value: datetime | None) -> str:
    """A UTC time as Japanese users read it: 2026年11月21日 09:05（日本時間）."""
    if value is None:
        return ""
    local = value.astimezone(JST)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def format_date(value: date | None) -> str:
    """2026年4月1日 (contracts, due dates)."""
    return f"{value.year}年{value.month}月{value.day}日" if value else ""


def _template_helpers() -> dict:
    return {
        "can": lambda permission: can(current_user, permission),
        "role_label": lambda role: ROLE_LABELS.get(Role(role), role),
        "now": utcnow,
    }


def _start_request() -> None:
    # Only a trusted reverse proxy sets X-Request-ID; a client's own value is never kept.
    incoming = (
        request.headers.get("X-Request-ID", "") if current_app.config["TRUSTED_PROXIES"] else ""
    )
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.context_tokens = (
        audit_context.set(AuditContext(ip=request.remote_addr or "", request_id=g.request_id)),
        set_write_intent(
            request.method not in SAFE_METHODS
            and not defers_write(current_app.view_functions.get(request.endpoint or ""))
        ),
    )


def _check_request_body() -> None:
    """No browser sends U+0000 and PostgreSQL cannot store it: refuse it anywhere (400).

    Also bounds ordinary (urlencoded) form bodies, which Werkzeug reads whole into memory and
    limits only by MAX_CONTENT_LENGTH: they get the multipart form limit too (413).
    """
    if (
        request.mimetype == "application/x-www-form-urlencoded"
        and (request.content_length or 0) > current_app.config["MAX_FORM_MEMORY_SIZE"]
    ):
        abort(413)
    values = [v for _key, vs in request.args.lists() for v in vs]
    if request.method not in SAFE_METHODS:
        values += [v for _key, vs in request.form.lists() for v in vs]
        values += [f.filename or "" for f in request.files.values()]
    if any("\x00" in value for value in values):
        abort(400)


def _reset_context(_exc: BaseException | None) -> None:
    tokens = g.pop("context_tokens", None)
    if tokens:
        audit_context.reset(tokens[0])
        reset_write_intent(tokens[1])


def _enforce_session_lifetime():
    """Idle timeout and absolute lifetime (対策基準 7.2; SECURITY.md "Sessions")."""
    if request.endpoint == "static":
        return None
    started, seen = session.get("login_at"), session.get("seen_at")
    if not current_user.is_authenticated and "pending_login" not in session:
        return None
    now = utcnow().timestamp()
    idle = timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"]).total_seconds()
    absolute = timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"]).total_seconds()
    if started is None or seen is None or now - seen > idle or now - started > absolute:
        logout_user()
        session.clear()
        flash(
            "一定時間操作がなかったか、ログインの有効時間を過ぎたため、ログアウトしました。", "info"
        )
        return redirect(url_for("auth.login"))
    session["seen_at"] = now
    return None


def _enforce_password_change():
    if (
        current_user.is_authenticated
        and current_user.password_is_temporary
        and request.endpoint not in TEMPORARY_PASSWORD_ALLOWED
    ):
        flash("仮パスワードでログインしています。新しいパスワードを設定してください。", "warning")
        return redirect(url_for("auth.change_password"))
    return None


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_app.config["HSTS"]:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    if request.endpoint != "static":
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    headers["X-Request-ID"] = g.get("request_id", "")
    return response
