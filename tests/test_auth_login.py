"""Login: attempt limits, lockout, per-IP throttling, one message for every refusal, the previous
login shown after login (対策基準 7.2(3)), and no default administrator.

SECURITY.md "Authentication".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from portal.audit.models import AuditEvent
from portal.auth.views import LOGIN_FAILED
from portal.cli import upgrade
from portal.db import make_engine
from portal.permissions import Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, flashes, logged_in, reload, soup, text_of

WRONG = "まちがったパスワードを入れてみる"
THROTTLED = "ログインの試行が多すぎます。しばらく待ってからお試しください。"
T0 = datetime(2027, 1, 14, 16, 5, 0, tzinfo=UTC)  # 2027年1月15日 01:05 JST


def _attempt(browser, email: str, password: str):
    return browser.submit("/auth/login", {"email": email, "password": password})


def _from_ip(browser, ip: str):
    browser.client.environ_base["REMOTE_ADDR"] = ip
    return browser


@pytest.fixture
def vendor(make, org):
    """An account without a second factor: the password decides alone."""
    return make.user(company=make.company(org))


@pytest.fixture
def staff(make, org):
    return make.user(org, roles={Role.STAFF})


# ---------------------------------------------------------------------------------------------
# Plain login
# ---------------------------------------------------------------------------------------------


def test_a_correct_password_logs_a_vendor_in(browser, vendor):
    response = _attempt(browser, vendor.email, PASSWORD)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert logged_in(browser)


def test_the_email_address_is_matched_case_insensitively(browser, vendor):
    response = _attempt(browser, f"  {vendor.email.upper()} ", PASSWORD)

    assert response.status_code == 302
    assert logged_in(browser)


def test_a_wrong_password_is_refused(browser, db, vendor):
    response = _attempt(browser, vendor.email, WRONG)

    assert response.status_code == 200
    assert flashes(response) == [LOGIN_FAILED]
    assert not logged_in(browser)
    assert reload(db, vendor).failed_login_count == 1


# ---------------------------------------------------------------------------------------------
# One message for every refusal
# ---------------------------------------------------------------------------------------------


def test_unknown_email_wrong_password_locked_and_disabled_accounts_look_the_same(
    browser, db, make, org, vendor
):
    disabled = make.user(company=make.company(org), active=False)
    locked = make.user(company=make.company(org))
    for _ in range(5):
        _attempt(browser, locked.email, WRONG)
    assert reload(db, locked).locked_until is not None

    responses = {
        "unknown": _attempt(browser, "nobody@example.jp", WRONG),
        "wrong password": _attempt(browser, vendor.email, WRONG),
        "locked, right password": _attempt(browser, locked.email, PASSWORD),
        "disabled, right password": _attempt(browser, disabled.email, PASSWORD),
    }

    for label, response in responses.items():
        assert response.status_code == 200, label
        assert flashes(response) == [LOGIN_FAILED], label
    pages = {label: text_of(r, "main") for label, r in responses.items()}
    assert len(set(pages.values())) == 1, pages
    assert not logged_in(browser)


# ---------------------------------------------------------------------------------------------
# Lockout after 5 failures
# ---------------------------------------------------------------------------------------------


def test_four_failures_do_not_lock_the_account(app, browser, db, vendor):
    assert app.config["LOGIN_MAX_FAILURES"] == 5
    for _ in range(4):
        _attempt(browser, vendor.email, WRONG)

    assert reload(db, vendor).locked_until is None
    assert _attempt(browser, vendor.email, PASSWORD).status_code == 302
    assert logged_in(browser)


def test_five_failures_lock_the_account_and_the_sixth_try_with_the_right_password_is_refused(
    app, browser, db, vendor
):
    with time_machine.travel(T0, tick=False):
        for _ in range(5):
            response = _attempt(browser, vendor.email, WRONG)
            assert flashes(response) == [LOGIN_FAILED]

        user = reload(db, vendor)
        assert user.failed_login_count == 5
        assert user.locked_until == T0 + timedelta(minutes=app.config["LOGIN_LOCK_MINUTES"])

        response = _attempt(browser, vendor.email, PASSWORD)

        assert response.status_code == 200
        assert flashes(response) == [LOGIN_FAILED]
        assert not logged_in(browser)


def test_a_success_before_the_limit_starts_the_count_again(browser, db, vendor):
    for _ in range(4):
        _attempt(browser, vendor.email, WRONG)
    _attempt(browser, vendor.email, PASSWORD)
    assert logged_in(browser)
    browser.logout()

    for _ in range(4):
        _attempt(browser, vendor.email, WRONG)

    assert reload(db, vendor).locked_until is None
    assert _attempt(browser, vendor.email, PASSWORD).status_code == 302


def test_a_new_ip_address_does_not_reset_the_account_counter(browser, db, vendor):
    _from_ip(browser, "10.0.0.1")
    for _ in range(4):
        _attempt(browser, vendor.email, WRONG)

    _from_ip(browser, "10.0.0.2")
    _attempt(browser, vendor.email, WRONG)

    assert reload(db, vendor).locked_until is not None
    _from_ip(browser, "10.0.0.3")
    response = _attempt(browser, vendor.email, PASSWORD)
    assert flashes(response) == [LOGIN_FAILED]
    assert not logged_in(browser)


def test_the_lock_runs_out_after_login_lock_minutes(app, browser, vendor):
    lock = timedelta(minutes=app.config["LOGIN_LOCK_MINUTES"])
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            _attempt(browser, vendor.email, WRONG)

        clock.move_to(T0 + lock - timedelta(seconds=1))
        assert flashes(_attempt(browser, vendor.email, PASSWORD)) == [LOGIN_FAILED]

        clock.move_to(T0 + lock + timedelta(seconds=1))
        response = _attempt(browser, vendor.email, PASSWORD)
        assert response.status_code == 302
        assert logged_in(browser)


def test_after_the_lock_runs_out_the_count_starts_again(app, browser, db, vendor):
    lock = timedelta(minutes=app.config["LOGIN_LOCK_MINUTES"])
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            _attempt(browser, vendor.email, WRONG)

        clock.move_to(T0 + lock + timedelta(seconds=1))
        _attempt(browser, vendor.email, WRONG)

        user = reload(db, vendor)
        assert user.failed_login_count == 1
        assert user.locked_until is None
        assert _attempt(browser, vendor.email, PASSWORD).status_code == 302


def test_the_lock_time_is_configurable(app, browser, vendor):
    app.config["LOGIN_LOCK_MINUTES"] = 7
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            _attempt(browser, vendor.email, WRONG)

        clock.shift(timedelta(minutes=6))
        assert flashes(_attempt(browser, vendor.email, PASSWORD)) == [LOGIN_FAILED]

        clock.shift(timedelta(minutes=1, seconds=1))
        assert _attempt(browser, vendor.email, PASSWORD).status_code == 302


def test_failures_against_a_locked_account_do_not_extend_the_lock(app, browser, db, vendor):
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(5):
            _attempt(browser, vendor.email, WRONG)
        clock.shift(timedelta(minutes=10))
        _attempt(browser, vendor.email, WRONG)

        lock = timedelta(minutes=app.config["LOGIN_LOCK_MINUTES"])
        assert reload(db, vendor).locked_until == T0 + lock


def test_the_lock_and_the_failures_are_recorded_in_the_audit_trail(browser, db, vendor):
    for _ in range(5):
        _attempt(browser, vendor.email, WRONG)

    db.rollback()
    actions = db.scalars(
        sa.select(AuditEvent.action)
        .where(AuditEvent.object_type == "user_account", AuditEvent.object_id == str(vendor.id))
        .order_by(AuditEvent.seq)
    ).all()
    assert actions.count("auth.login_failed") == 5
    assert actions[-1] == "auth.locked"


# ---------------------------------------------------------------------------------------------
# Per-IP throttling
# ---------------------------------------------------------------------------------------------


def _fail_from_one_ip_across_accounts(app, browser, make, org, failures: int) -> None:
    """``failures`` wrong passwords spread over several accounts, none of them locked."""
    per_account = app.config["LOGIN_MAX_FAILURES"] - 1
    done = 0
    while done < failures:
        account = make.user(company=make.company(org))
        for _ in range(min(per_account, failures - done)):
            _attempt(browser, account.email, WRONG)
            done += 1


def test_an_ip_address_is_throttled_after_too_many_failures_across_accounts(
    app, browser, client, db, make, org
):
    limit = app.config["LOGIN_IP_MAX_FAILURES"]
    target = make.user(company=make.company(org))
    _from_ip(browser, "192.0.2.10")
    _fail_from_one_ip_across_accounts(app, browser, make, org, limit)

    response = _attempt(browser, target.email, PASSWORD)

    assert response.status_code == 429
    assert flashes(response) == [THROTTLED]
    assert not logged_in(browser)

    elsewhere = _from_ip(Browser(client), "192.0.2.99")
    response = _attempt(elsewhere, target.email, PASSWORD)
    assert response.status_code == 302
    assert logged_in(elsewhere)


def test_an_ip_address_below_the_limit_is_not_throttled(app, browser, make, org):
    limit = app.config["LOGIN_IP_MAX_FAILURES"]
    target = make.user(company=make.company(org))
    _from_ip(browser, "192.0.2.10")
    _fail_from_one_ip_across_accounts(app, browser, make, org, limit - 1)

    response = _attempt(browser, target.email, PASSWORD)

    assert response.status_code == 302
    assert logged_in(browser)


def test_attempts_from_a_throttled_address_do_not_lock_the_account_they_name(
    app, browser, client, db, vendor
):
    _from_ip(browser, "192.0.2.40")
    for n in range(app.config["LOGIN_IP_MAX_FAILURES"]):
        _attempt(browser, f"nobody{n}@example.jp", WRONG)

    for _ in range(app.config["LOGIN_MAX_FAILURES"] + 2):
        assert _attempt(browser, vendor.email, WRONG).status_code == 429

    assert reload(db, vendor).failed_login_count == 0
    assert reload(db, vendor).locked_until is None
    elsewhere = _from_ip(Browser(client), "192.0.2.41")
    assert _attempt(elsewhere, vendor.email, PASSWORD).status_code == 302


def test_unknown_email_addresses_count_towards_the_ip_limit(app, browser, vendor):
    _from_ip(browser, "192.0.2.20")
    for n in range(app.config["LOGIN_IP_MAX_FAILURES"]):
        _attempt(browser, f"nobody{n}@example.jp", WRONG)

    assert _attempt(browser, vendor.email, PASSWORD).status_code == 429
    assert not logged_in(browser)


def test_the_ip_throttle_ends_after_the_window(app, browser, vendor):
    window = timedelta(minutes=app.config["LOGIN_IP_WINDOW_MINUTES"])
    _from_ip(browser, "192.0.2.30")
    with time_machine.travel(T0, tick=False) as clock:
        for n in range(app.config["LOGIN_IP_MAX_FAILURES"]):
            _attempt(browser, f"nobody{n}@example.jp", WRONG)
        assert _attempt(browser, vendor.email, PASSWORD).status_code == 429

        clock.shift(window + timedelta(seconds=1))
        response = _attempt(browser, vendor.email, PASSWORD)

        assert response.status_code == 302
        assert logged_in(browser)


# ---------------------------------------------------------------------------------------------
# The previous login and the failures since, shown after login (対策基準 7.2(3))
# ---------------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_previous_login_and_the_failures_since(browser, staff):
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(staff)
        first = browser.get("/")
        assert text_of(first, "[data-field=previous-login]") == "今回が初めてのログインです"
        assert text_of(first, "[data-field=failed-attempts]") == "0 回"
        browser.logout()

        clock.shift(timedelta(hours=3))
        _attempt(browser, staff.email, WRONG)
        clock.shift(timedelta(minutes=1))
        _attempt(browser, staff.email, WRONG)

        clock.shift(timedelta(hours=1))
        browser.login(staff)
        page = browser.get("/")

        assert text_of(page, "[data-field=previous-login]") == "2027年1月15日 01:05"
        assert text_of(page, "[data-field=failed-attempts]") == "2 回"
        assert soup(page).select_one("[data-field=login-info] .flash--warning") is not None

        browser.logout()
        clock.shift(timedelta(hours=20))
        browser.login(staff)
        page = browser.get("/")

        assert text_of(page, "[data-field=previous-login]") == "2027年1月15日 05:06"
        assert text_of(page, "[data-field=failed-attempts]") == "0 回"
        assert soup(page).select_one("[data-field=login-info] .flash--warning") is None


# ---------------------------------------------------------------------------------------------
# No default administrator
# ---------------------------------------------------------------------------------------------


def test_a_freshly_migrated_database_has_no_users(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            count = conn.scalar(sa.select(sa.func.count()).select_from(User.__table__))
    finally:
        engine.dispose()
    assert count == 0


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("admin", "admin"),
        ("admin@localhost", "admin"),
        ("admin@example.com", "password"),
        ("admin@example.jp", "admin1234567"),
    ],
)
def test_no_default_credentials_open_the_portal(browser, db, email, password):
    assert db.scalar(sa.select(sa.func.count()).select_from(User)) == 0

    response = _attempt(browser, email, password)

    assert response.status_code == 200
    assert flashes(response) == [LOGIN_FAILED]
    assert not logged_in(browser)
