"""Configuration from the environment: production refuses to start unless it is safe."""

from __future__ import annotations

import secrets
import stat

import pytest

from portal import create_app
from portal.config import MIN_SECRET_KEY_LENGTH, WEAK_SECRET_KEYS, ConfigError, load_config
from portal.db import engine_for

STRONG_KEY = secrets.token_urlsafe(48)

INTEGER_SETTINGS = {
    "PORTAL_MAX_UPLOAD_MB": "MAX_CONTENT_LENGTH",
    "PORTAL_SESSION_IDLE_MINUTES": "SESSION_IDLE_MINUTES",
    "PORTAL_SESSION_ABSOLUTE_HOURS": "SESSION_ABSOLUTE_HOURS",
    "PORTAL_LOGIN_MAX_FAILURES": "LOGIN_MAX_FAILURES",
    "PORTAL_LOGIN_LOCK_MINUTES": "LOGIN_LOCK_MINUTES",
    "PORTAL_LOGIN_IP_MAX_FAILURES": "LOGIN_IP_MAX_FAILURES",
    "PORTAL_LOGIN_IP_WINDOW_MINUTES": "LOGIN_IP_WINDOW_MINUTES",
    "PORTAL_INVITATION_HOURS": "INVITATION_HOURS",
    "PORTAL_RESET_HOURS": "RESET_HOURS",
    "PORTAL_ARGON2_TIME_COST": "ARGON2_TIME_COST",
    "PORTAL_ARGON2_MEMORY_COST": "ARGON2_MEMORY_COST",
    "PORTAL_ARGON2_PARALLELISM": "ARGON2_PARALLELISM",
    "PORTAL_AUDIT_RETENTION_DAYS": "AUDIT_RETENTION_DAYS",
    "PORTAL_MAIL_PORT": "MAIL_PORT",
    "PORTAL_TRUSTED_PROXIES": "TRUSTED_PROXIES",
    "PORTAL_REMINDER_ESCALATION_DAYS": "REMINDER_ESCALATION_DAYS",
}
# Settings where 0 is meaningful (no proxy in front of the app).
ZERO_ALLOWED = {"PORTAL_TRUSTED_PROXIES"}


def production(**extra: str) -> dict[str, str]:
    return {"PORTAL_ENV": "production", "PORTAL_SECRET_KEY": STRONG_KEY, **extra}


# Production and the secret key -------------------------------------------------------------------


def test_production_is_the_default_mode(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_SECRET_KEY"):
        load_config(tmp_path, {})

    assert load_config(tmp_path, {"PORTAL_SECRET_KEY": STRONG_KEY})["PORTAL_ENV"] == "production"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("x" * (MIN_SECRET_KEY_LENGTH - 1), id="short"),
        pytest.param(secrets.token_urlsafe(64)[: MIN_SECRET_KEY_LENGTH - 1], id="random-but-short"),
        *[pytest.param(weak, id=f"weak-{weak or 'blank'}") for weak in sorted(WEAK_SECRET_KEYS)],
        pytest.param("ChangeMe", id="weak-any-case"),
        pytest.param("a" * 48, id="long-but-one-character"),
        pytest.param("abcabcabcabc" * 4, id="long-but-few-characters"),
    ],
)
def test_production_refuses_a_missing_short_or_weak_secret_key(tmp_path, key):
    env = {"PORTAL_ENV": "production"}
    if key is not None:
        env["PORTAL_SECRET_KEY"] = key

    with pytest.raises(ConfigError, match="PORTAL_SECRET_KEY"):
        load_config(tmp_path, env)
    assert not (tmp_path / "secret_key").exists()  # never silently generated in production


def test_production_accepts_a_strong_key_and_secures_the_session_cookie(tmp_path):
    config = load_config(tmp_path, production())

    assert config["SECRET_KEY"] == STRONG_KEY
    assert config["TESTING"] is False
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["SESSION_COOKIE_DOMAIN"] is None
    assert config["HSTS"] is True
    assert config["WTF_CSRF_SSL_STRICT"] is True


def test_a_key_of_exactly_the_minimum_length_is_accepted(tmp_path):
    # A fixed key of exactly the minimum length with enough distinct characters (a random
    # hex key that short can, by chance, have too few distinct characters).
    key = ("0123456789abcdefghijklmnopqrstuvwxyz" * 2)[:MIN_SECRET_KEY_LENGTH]

    assert load_config(tmp_path, production(PORTAL_SECRET_KEY=key))["SECRET_KEY"] == key


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """``create_app()`` reads the real environment: point it at a throw-away instance folder."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_DATABASE_URL", f"sqlite:///{tmp_path / 'portal.db'}")
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    return monkeypatch


@pytest.mark.parametrize("key", [None, "changeme", "short-key"])
def test_create_app_refuses_to_start_in_production_without_a_strong_key(environment, key):
    environment.setenv("PORTAL_ENV", "production")
    if key is not None:
        environment.setenv("PORTAL_SECRET_KEY", key)

    with pytest.raises(ConfigError):
        create_app()


def test_a_production_app_sends_hsts_and_secure_cookies(environment):
    environment.setenv("PORTAL_ENV", "production")
    environment.setenv("PORTAL_SECRET_KEY", STRONG_KEY)
    app = create_app()
    try:
        response = app.test_client().get("/auth/login")
    finally:
        engine_for(app).dispose()

    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("portal_session=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"secure", "httponly"} <= attributes
    assert "domain" not in attributes


# Development ---------------------------------------------------------------------------------------


def test_development_generates_a_secret_key_under_the_instance_folder_and_keeps_it(tmp_path):
    instance = tmp_path / "instance"

    first = load_config(instance, {"PORTAL_ENV": "development"})
    second = load_config(instance, {"PORTAL_ENV": "development"})

    key_file = instance / "secret_key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first["SECRET_KEY"] == second["SECRET_KEY"] == key_file.read_text().strip()
    assert len(first["SECRET_KEY"]) >= MIN_SECRET_KEY_LENGTH
    other = load_config(tmp_path / "elsewhere", {"PORTAL_ENV": "development"})
    assert other["SECRET_KEY"] != first["SECRET_KEY"]


def test_development_is_not_secure_cookie_only_and_sends_no_hsts(tmp_path):
    config = load_config(tmp_path, {"PORTAL_ENV": "development"})

    assert config["SESSION_COOKIE_SECURE"] is False
    assert config["HSTS"] is False
    assert config["TESTING"] is False


def test_development_uses_a_given_key_without_writing_one(tmp_path):
    config = load_config(tmp_path, {"PORTAL_ENV": "development", "PORTAL_SECRET_KEY": "dev"})

    assert config["SECRET_KEY"] == "dev"
    assert not (tmp_path / "secret_key").exists()


def test_development_app_reuses_its_key_across_restarts(environment, tmp_path):
    environment.setenv("PORTAL_ENV", "development")

    first, second = create_app(), create_app()

    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert (tmp_path / "instance" / "secret_key").read_text().strip() == first.config["SECRET_KEY"]
    for app in (first, second):
        engine_for(app).dispose()


# Integers and the mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INTEGER_SETTINGS))
@pytest.mark.parametrize("raw", ["abc", "1.5", "30分", "0x10", "5 minutes"])
def test_an_invalid_integer_names_the_variable(tmp_path, name, raw):
    with pytest.raises(ConfigError, match=name):
        load_config(tmp_path, production(**{name: raw}))


@pytest.mark.parametrize("name", sorted(set(INTEGER_SETTINGS) - ZERO_ALLOWED))
@pytest.mark.parametrize("raw", ["0", "-5"])
def test_a_zero_or_negative_setting_is_refused(tmp_path, name, raw):
    with pytest.raises(ConfigError, match=name):
        load_config(tmp_path, production(**{name: raw}))


def test_trusted_proxies_may_be_zero_but_not_negative(tmp_path):
    assert load_config(tmp_path, production(PORTAL_TRUSTED_PROXIES="0"))["TRUSTED_PROXIES"] == 0
    with pytest.raises(ConfigError, match="PORTAL_TRUSTED_PROXIES"):
        load_config(tmp_path, production(PORTAL_TRUSTED_PROXIES="-1"))


def test_an_audit_retention_shorter_than_30_days_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_AUDIT_RETENTION_DAYS"):
        load_config(tmp_path, production(PORTAL_AUDIT_RETENTION_DAYS="29"))
    config = load_config(tmp_path, production(PORTAL_AUDIT_RETENTION_DAYS="30"))
    assert config["AUDIT_RETENTION_DAYS"] == 30


def test_valid_integers_are_used_and_empty_ones_fall_back_to_the_default(tmp_path):
    config = load_config(
        tmp_path,
        production(
            PORTAL_SESSION_IDLE_MINUTES="15",
            PORTAL_LOGIN_MAX_FAILURES=" 7 ",
            PORTAL_MAX_UPLOAD_MB="5",
            PORTAL_SESSION_ABSOLUTE_HOURS="",
        ),
    )

    assert config["SESSION_IDLE_MINUTES"] == 15
    assert config["LOGIN_MAX_FAILURES"] == 7
    assert config["MAX_CONTENT_LENGTH"] == 5 * 1024 * 1024
    assert config["SESSION_ABSOLUTE_HOURS"] == 12
    defaults = load_config(tmp_path, production())
    assert (defaults["SESSION_IDLE_MINUTES"], defaults["LOGIN_MAX_FAILURES"]) == (30, 5)


@pytest.mark.parametrize("mode", ["prod", "staging", "", "debug", "test"])
def test_an_unknown_portal_env_is_refused(tmp_path, mode):
    with pytest.raises(ConfigError, match="PORTAL_ENV"):
        load_config(tmp_path, production(PORTAL_ENV=mode))


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("Production", "production"), (" development ", "development"), ("TESTING", "testing")],
)
def test_portal_env_ignores_case_and_spaces(tmp_path, raw, mode):
    assert load_config(tmp_path, production(PORTAL_ENV=raw))["PORTAL_ENV"] == mode


def test_create_app_refuses_an_unknown_mode(environment):
    environment.setenv("PORTAL_ENV", "staging")
    environment.setenv("PORTAL_SECRET_KEY", STRONG_KEY)

    with pytest.raises(ConfigError, match="PORTAL_ENV"):
        create_app()
