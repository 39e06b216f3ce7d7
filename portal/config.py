"""Configuration from environment variables.

``PORTAL_ENV`` selects the mode: ``production`` (the default), ``development`` or ``testing``.
Everything else comes from ``PORTAL_*`` variables; see the README for the full list.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

WEAK_SECRET_KEYS = {"", "secret", "changeme", "change-me", "dev", "development", "test"}
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_DISTINCT = 12  # "a" * 40 is long but not random


def _weak_secret(key: str) -> bool:
    return (
        key.lower() in WEAK_SECRET_KEYS
        or len(key) < MIN_SECRET_KEY_LENGTH
        or len(set(key)) < MIN_SECRET_KEY_DISTINCT
    )


class ConfigError(RuntimeError):
    """The environment does not describe a configuration the portal may start with."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        # A count, duration or size of 0 or less would disable a control (lockout, timeouts …).
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _development_secret_key(instance_path: Path) -> str:
    """A random key kept under ``instance/`` so that every worker and restart shares it."""
    instance_path.mkdir(parents=True, exist_ok=True)
    key_file = instance_path / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48), encoding="ascii")
        key_file.chmod(0o600)
    return key_file.read_text(encoding="ascii").strip()


def load_config(instance_path: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    """Build the Flask config mapping from the environment. Raises ConfigError when unsafe."""
    env = dict(os.environ if env is None else env)
    mode = env.get("PORTAL_ENV", "production").strip().lower()
    if mode not in {"production", "development", "testing"}:
        raise ConfigError(f"PORTAL_ENV must be production, development or testing, got {mode!r}")
    production = mode == "production"

    secret_key = env.get("PORTAL_SECRET_KEY", "")
    if production:
        if _weak_secret(secret_key):
            raise ConfigError(
                "PORTAL_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters in production "
                '(for example: python -c "import secrets; print(secrets.token_urlsafe(48))")'
            )
    elif not secret_key:
        secret_key = _development_secret_key(instance_path)

    database_url = env.get("PORTAL_DATABASE_URL") or f"sqlite:///{instance_path / 'portal.db'}"
    evidence_dir = env.get("PORTAL_EVIDENCE_DIR") or str(instance_path / "evidence")
    outbox_dir = env.get("PORTAL_MAIL_OUTBOX") or str(instance_path / "outbox")

    return {
        "PORTAL_ENV": mode,
        "TESTING": mode == "testing",
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "EVIDENCE_DIR": evidence_dir,
        "EVIDENCE_MAX_MB": _int(env, "PORTAL_EVIDENCE_MAX_MB", 20),
        "CLAMD": env.get("PORTAL_CLAMD", "").strip(),  # unix:/path or tcp:host:port; "" = none
        "BASE_URL": env.get("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        # Number of reverse proxies in front of the app whose X-Forwarded-For/-Proto to trust.
        "TRUSTED_PROXIES": _int(env, "PORTAL_TRUSTED_PROXIES", 0, minimum=0),
        # Requests and uploads
        "MAX_CONTENT_LENGTH": _int(env, "PORTAL_MAX_UPLOAD_MB", 20) * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
        "MAX_FORM_PARTS": 1000,
        # Sessions (対策基準 7.2; SECURITY.md "Sessions")
        "SESSION_COOKIE_NAME": "portal_session",
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_DOMAIN": None,
        "REMEMBER_COOKIE_DURATION": 0,
        "SESSION_IDLE_MINUTES": _int(env, "PORTAL_SESSION_IDLE_MINUTES", 30),
        "SESSION_ABSOLUTE_HOURS": _int(env, "PORTAL_SESSION_ABSOLUTE_HOURS", 12),
        "HSTS": production,
        # Login rules (対策基準 6.4, 7.2)
        "LOGIN_MAX_FAILURES": _int(env, "PORTAL_LOGIN_MAX_FAILURES", 5),
        "LOGIN_LOCK_MINUTES": _int(env, "PORTAL_LOGIN_LOCK_MINUTES", 30),
        "LOGIN_IP_MAX_FAILURES": _int(env, "PORTAL_LOGIN_IP_MAX_FAILURES", 20),
        "LOGIN_IP_WINDOW_MINUTES": _int(env, "PORTAL_LOGIN_IP_WINDOW_MINUTES", 15),
        "INVITATION_HOURS": _int(env, "PORTAL_INVITATION_HOURS", 72),
        "RESET_HOURS": _int(env, "PORTAL_RESET_HOURS", 24),
        # Password hashing: argon2id. Tests lower the cost; production keeps the library defaults.
        "ARGON2_TIME_COST": _int(env, "PORTAL_ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_COST": _int(env, "PORTAL_ARGON2_MEMORY_COST", 65536),
        "ARGON2_PARALLELISM": _int(env, "PORTAL_ARGON2_PARALLELISM", 4),
        # Audit trail
        "AUDIT_RETENTION_DAYS": _int(env, "PORTAL_AUDIT_RETENTION_DAYS", 365 * 5, minimum=30),
        # PDF rendering (SECURITY.md "PDF rendering"): bounded per document, limited per user.
        "PDF_TIMEOUT_SECONDS": _int(env, "PORTAL_PDF_TIMEOUT_SECONDS", 60),
        "PDF_MEMORY_BYTES": _int(env, "PORTAL_PDF_MEMORY_MB", 1024) * 1024 * 1024,
        "PDF_PER_MINUTE": _int(env, "PORTAL_PDF_PER_MINUTE", 10),
        # Mail: SMTP when PORTAL_MAIL_SERVER is set, a folder of .eml files otherwise.
        "MAIL_SERVER": env.get("PORTAL_MAIL_SERVER", ""),
        "MAIL_PORT": _int(env, "PORTAL_MAIL_PORT", 587),
        "MAIL_USERNAME": env.get("PORTAL_MAIL_USERNAME", ""),
        "MAIL_PASSWORD": env.get("PORTAL_MAIL_PASSWORD", ""),
        "MAIL_STARTTLS": _bool(env, "PORTAL_MAIL_STARTTLS", True),
        "MAIL_SENDER": env.get("PORTAL_MAIL_SENDER", "portal@localhost"),
        "MAIL_OUTBOX": outbox_dir,
        # send-reminders: items overdue by more than this many days go to the ネットワーク管理者
        # and CISO (対策基準 9.1(3)).
        "REMINDER_ESCALATION_DAYS": _int(env, "PORTAL_REMINDER_ESCALATION_DAYS", 14),
        # Flask-WTF
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": production,
    }
