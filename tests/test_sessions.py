"""Sessions: a new session at login and after MFA; idle timeout and absolute lifetime with a
frozen clock; logout, password change, role change and disabling end every live session of the
user (a per-user session version checked on load).

SECURITY.md "Sessions" (the cookie attributes and CSRF are tested elsewhere).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from portal.auth.views import LOGIN_FAILED
from portal.db import writing
from portal.permissions import Role
from portal.users import service as users
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, flashes, logged_in, reload

T0 = datetime(2027, 3, 1, 0, 0, 15, tzinfo=UTC)
TIMED_OUT = "一定時間操作がなかったか、ログインの有効時間を過ぎたため、ログアウトしました。"
NEW_PASSWORD = "冬の朝に湯気の立つ味噌汁をゆっくり味わう"
COOKIE = "portal_session"


def _forget_totp_step(db, user: User):
    """Let the same user log in again within one 30-second TOTP step (a second device)."""

    def reset() -> None:
        db.rollback()
        db.execute(sa.update(User).where(User.id == user.id).values(totp_last_step=0))
        db.commit()

    return reset


def _second_browser(app, db, user: User) -> Browser:
    other = Browser(app.test_client())
    response = other.login(user, reset_totp_step=_forget_totp_step(db, user))
    assert response.status_code == 302
    assert logged_in(other)
    return other


def _session_of(browser) -> dict:
    with browser.client.session_transaction() as sess:
        return dict(sess)


@pytest.fixture
def staff(make, org):
    return make.user(org, roles={Role.STAFF})


@pytest.fixture
def admin(make, org):
    return make.user(org, roles={Role.ADMIN}, email="admin@example.jp")


# ---------------------------------------------------------------------------------------------
# A new session at login and after MFA
# ---------------------------------------------------------------------------------------------


def test_nothing_from_before_login_survives_login(browser, make, org):
    vendor = make.user(company=make.company(org))
    browser.get("/auth/login")
    with browser.client.session_transaction() as sess:
        sess["planted"] = "attacker-chosen"
    before = _session_of(browser)
    assert before["planted"] == "attacker-chosen"

    response = browser.login(vendor)

    assert response.status_code == 302
    after = _session_of(browser)
    assert "planted" not in after
    assert "_user_id" in after
    assert after.get("csrf_token") != before.get("csrf_token")


def test_the_password_step_and_the_mfa_step_each_start_a_new_session(browser, staff):
    with browser.client.session_transaction() as sess:
        sess["planted"] = "before the password"
    response = browser.submit("/auth/login", {"email": staff.email, "password": PASSWORD})
    assert response.headers["Location"] == "/auth/mfa"
    pending = _session_of(browser)
    assert "planted" not in pending
    assert "_user_id" not in pending
    assert pending["pending_login"]["uid"] == staff.id

    with browser.client.session_transaction() as sess:
        sess["planted"] = "between the steps"
    response = browser.submit(
        "/auth/mfa", {"code": pyotp.TOTP(staff.totp_secret).now()}, selector="main form"
    )

    assert response.status_code == 302
    after = _session_of(browser)
    assert "planted" not in after
    assert "pending_login" not in after
    assert "_user_id" in after


def test_a_cookie_from_before_login_is_not_logged_in(app, browser, make, org):
    vendor = make.user(company=make.company(org))
    browser.get("/auth/login")
    old_cookie = browser.client.get_cookie(COOKIE).value

    browser.login(vendor)
    assert logged_in(browser)
    assert browser.client.get_cookie(COOKIE).value != old_cookie

    replay = Browser(app.test_client())
    replay.client.set_cookie(COOKIE, old_cookie)
    assert not logged_in(replay)


# ---------------------------------------------------------------------------------------------
# Idle timeout and absolute lifetime (frozen clock)
# ---------------------------------------------------------------------------------------------


def test_the_idle_timeout_is_30_minutes(app, browser, staff):
    assert app.config["SESSION_IDLE_MINUTES"] == 30
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(staff)
        clock.shift(timedelta(minutes=29, seconds=59))
        assert logged_in(browser)
        clock.shift(timedelta(minutes=30))  # activity resets the idle timer
        assert logged_in(browser)

        clock.shift(timedelta(minutes=30, seconds=1))
        response = browser.get("/")

        assert response.status_code == 302
        assert response.headers["Location"] == "/auth/login"
        assert TIMED_OUT in flashes(browser.get("/auth/login"))
        assert not logged_in(browser)


def test_the_idle_timeout_applies_to_every_page(browser, staff):
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(staff)
        clock.shift(timedelta(minutes=31))

        response = browser.get("/auth/account")

        assert response.status_code == 302
        assert response.headers["Location"] == "/auth/login"
        assert not logged_in(browser)


def test_the_absolute_lifetime_is_12_hours_even_for_an_active_session(app, browser, staff):
    assert app.config["SESSION_ABSOLUTE_HOURS"] == 12
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(staff)
        while datetime.now(UTC) + timedelta(minutes=25) < T0 + timedelta(hours=12):
            clock.shift(timedelta(minutes=25))
            assert logged_in(browser), datetime.now(UTC)

        clock.move_to(T0 + timedelta(hours=12, seconds=1))
        response = browser.get("/")

        assert response.status_code == 302
        assert response.headers["Location"] == "/auth/login"
        assert TIMED_OUT in flashes(browser.get("/auth/login"))
        assert not logged_in(browser)


def test_the_timeouts_are_configurable(app, browser, staff):
    app.config["SESSION_IDLE_MINUTES"] = 5
    app.config["SESSION_ABSOLUTE_HOURS"] = 1
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(staff)
        clock.shift(timedelta(minutes=5, seconds=1))
        assert not logged_in(browser)

        clock.shift(timedelta(minutes=1))
        browser.login(staff)
        for _ in range(14):
            clock.shift(timedelta(minutes=4))
            assert logged_in(browser)
        clock.shift(timedelta(minutes=4, seconds=1))  # 60 min 1 s after this login
        assert not logged_in(browser)


def test_a_half_finished_login_times_out_too(browser, staff):
    with time_machine.travel(T0, tick=False) as clock:
        browser.submit("/auth/login", {"email": staff.email, "password": PASSWORD})
        clock.shift(timedelta(minutes=31))

        response = browser.get("/auth/mfa")

        assert response.status_code == 302
        assert response.headers["Location"] == "/auth/login"
        assert "pending_login" not in _session_of(browser)


# ---------------------------------------------------------------------------------------------
# Ending every live session of a user
# ---------------------------------------------------------------------------------------------


def test_logout_ends_every_session_of_the_user(app, browser, db, staff):
    browser.login(staff)
    other = _second_browser(app, db, staff)
    cookie_before_logout = browser.client.get_cookie(COOKIE).value

    response = browser.logout()

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert not logged_in(browser)
    assert not logged_in(other)
    replay = Browser(app.test_client())
    replay.client.set_cookie(COOKIE, cookie_before_logout)
    assert not logged_in(replay)


def test_logout_leaves_other_users_logged_in(app, browser, db, make, org, staff):
    colleague = make.user(org, roles={Role.STAFF})
    browser.login(staff)
    other = Browser(app.test_client())
    other.login(colleague)

    browser.logout()

    assert logged_in(other)


def test_a_password_change_ends_the_other_sessions_and_keeps_the_current_one(
    app, browser, db, staff
):
    browser.login(staff)
    other = _second_browser(app, db, staff)

    response = browser.submit(
        "/auth/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        selector="main form",
    )

    assert response.status_code == 302
    assert logged_in(browser)
    assert browser.get("/auth/account").status_code == 200
    assert not logged_in(other)


def test_a_refused_password_change_ends_nothing(app, browser, db, staff):
    browser.login(staff)
    other = _second_browser(app, db, staff)

    browser.submit(
        "/auth/password",
        {"current": PASSWORD, "password": "short", "confirm": "short"},
        selector="main form",
    )

    assert logged_in(browser)
    assert logged_in(other)


def _admin_browser(app, db, admin) -> Browser:
    browser = Browser(app.test_client())
    browser.login(admin, reset_totp_step=_forget_totp_step(db, admin))
    assert logged_in(browser)
    return browser


def test_a_role_change_by_an_admin_ends_the_users_sessions(app, browser, db, admin, staff):
    browser.login(staff)
    administrator = _admin_browser(app, db, admin)

    response = administrator.submit(
        f"/admin/users/{staff.id}", {"roles": "approver"}, selector="main form:not([action])"
    )

    assert response.status_code == 302
    assert reload(db, staff).role_set == {Role.APPROVER}
    assert not logged_in(browser)
    assert logged_in(administrator)


def test_a_role_change_through_the_service_ends_the_users_sessions(app, browser, db, admin, staff):
    browser.login(staff)

    with app.app_context(), writing() as session:
        actor = session.get(User, admin.id)
        target = session.get(User, staff.id)
        users.update_user(
            session,
            actor,
            target,
            name=target.name,
            roles={Role.STAFF, Role.AUDITOR},
            department_ids=[],
            expected_version=None,
        )

    assert not logged_in(browser)


def test_disabling_an_account_ends_its_sessions_and_keeps_it_out(app, browser, db, admin, staff):
    browser.login(staff)
    administrator = _admin_browser(app, db, admin)

    response = administrator.post(
        f"/admin/users/{staff.id}/disable", token_from=f"/admin/users/{staff.id}"
    )

    assert response.status_code == 302
    assert reload(db, staff).active is False
    assert not logged_in(browser)
    response = browser.submit("/auth/login", {"email": staff.email, "password": PASSWORD})
    assert flashes(response) == [LOGIN_FAILED]
    assert not logged_in(browser)


def test_re_enabling_an_account_does_not_revive_its_old_sessions(app, browser, db, admin, staff):
    browser.login(staff)
    administrator = _admin_browser(app, db, admin)

    administrator.post(f"/admin/users/{staff.id}/disable", token_from=f"/admin/users/{staff.id}")
    administrator.post(f"/admin/users/{staff.id}/enable", token_from=f"/admin/users/{staff.id}")

    assert reload(db, staff).active is True
    assert not logged_in(browser)


def test_disabling_an_account_between_password_and_code_stops_the_login(
    app, browser, db, admin, staff
):
    browser.submit("/auth/login", {"email": staff.email, "password": PASSWORD})
    with app.app_context(), writing() as session:
        users.set_active(session, session.get(User, admin.id), session.get(User, staff.id), False)

    response = browser.get("/auth/mfa")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert not logged_in(browser)


def test_an_admin_reset_ends_the_users_sessions(app, browser, db, admin, staff):
    browser.login(staff)
    administrator = _admin_browser(app, db, admin)

    response = administrator.submit(
        f"/admin/users/{staff.id}", selector=f"form[action='/admin/users/{staff.id}/reset']"
    )

    assert response.status_code == 302
    assert not logged_in(browser)
