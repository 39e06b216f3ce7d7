"""Fixes from the review of the foundation: concurrency, vendor scoping, login notices."""

from __future__ import annotations

import os
import smtplib
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.auth import tokens
from portal.auth.models import ActionToken
from portal.db import get_session
from portal.permissions import Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, flashes, logged_in, outbox, reload, soup


def _assessment(make, org, department, staff, company) -> Assessment:
    return make.assessment(make.engagement(org, department, staff), company, staff)


def test_a_user_planted_in_a_shared_company_by_another_body_sees_nothing_of_ours(
    app, db, make, org, other_org
):
    """Body B links company X (public 法人番号) and creates a user in it: that user must not
    see what body A addressed to X."""
    company = make.company(org)
    ours_department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[ours_department])
    ours = _assessment(make, org, ours_department, staff, company)
    planted = make.user(company=company, invited_by=other_org)

    browser = Browser(app.test_client())
    browser.login(planted)

    assert browser.get(f"/assessments/{ours.id}").status_code == 404
    assert soup(browser.get("/")).select("[data-table=my-assessments] [data-assessment-id]") == []

    genuine = make.user(company=company, invited_by=org)
    other = Browser(app.test_client())
    other.login(genuine)
    assert other.get(f"/assessments/{ours.id}").status_code == 302


def test_inviting_an_existing_contact_grants_access_to_that_body_only(
    app, db, make, org, other_org
):
    company = make.company(org)
    contact = make.user(company=company, invited_by=org)
    with app.app_context():
        user = get_session().get(User, contact.id)
        assert user.vendor_organisation_ids == {org.id}
        assert user.grant_vendor_access(other_org.id, None) is True
        assert user.grant_vendor_access(other_org.id, None) is False


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="SQLite serialises writers (BEGIN IMMEDIATE): the race exists on PostgreSQL only",
)
def test_a_token_is_spent_once_even_by_two_sessions_holding_it(app, make, org):
    user = make.user(org, password=None, totp=False)
    maker = app.extensions["db_sessionmaker"]
    with app.app_context():
        setup = maker()
        token = tokens.issue(
            setup,
            setup.get(User, user.id),
            tokens.INVITATION,
            __import__("datetime").timedelta(hours=1),
        )
        setup.commit()
        setup.close()
        first, second = maker(), maker()
        try:
            tokens.peek(second, token, tokens.INVITATION)  # the second request has checked it
            tokens.consume(first, token, tokens.INVITATION)
            first.commit()
            try:
                tokens.consume(second, token, tokens.INVITATION)
            except tokens.TokenError:
                second.rollback()
            else:
                raise AssertionError("a spent token was accepted a second time")
        finally:
            first.close()
            second.close()
        check = maker()
        assert (
            check.scalar(
                sa.select(sa.func.count())
                .select_from(ActionToken)
                .where(ActionToken.used_at.is_(None))
            )
            == 0
        )
        check.close()


def test_parallel_failures_each_count(app, make, org):
    """Two sessions record a failure for the same account: the counter moves twice."""
    from portal.auth import service

    user = make.user(org)
    maker = app.extensions["db_sessionmaker"]
    policy = service.LoginPolicy.from_config(app.config)
    with app.app_context():
        first, second = maker(), maker()
        try:
            a, b = first.get(User, user.id), second.get(User, user.id)
            first.commit()
            second.commit()  # both loaded failed_login_count == 0
            service.register_failure(first, a, a.email, "192.0.2.1", policy, "password")
            first.commit()
            service.register_failure(second, b, b.email, "192.0.2.2", policy, "password")
            second.commit()
        finally:
            first.close()
            second.close()
        check = maker()
        assert check.get(User, user.id).failed_login_count == 2
        check.close()


def test_verify_ignores_events_written_after_it_read_the_head(app, db, make, org):
    make.user(org)
    with app.app_context():
        session = get_session()
        audit.record(session, "test.one", actor_label="t")
        session.commit()
        head = audit.verify(session)
        assert head.ok
    # A row appended by a concurrent writer after the head was read is not a broken chain.
    with app.app_context():
        session = get_session()
        result = audit.verify(session)
        audit.record(session, "test.two", actor_label="t")
        session.flush()
        assert audit.verify(session).ok
        session.rollback()
    assert result.ok


def test_after_login_the_previous_login_is_shown_whatever_page_comes_next(app, make, org):
    user = make.user(org, roles={Role.STAFF})
    browser = Browser(app.test_client())
    browser.login(user)
    browser.logout()
    browser.submit("/auth/login", {"email": user.email, "password": "まちがったパスワードです"})

    response = browser.submit(
        "/auth/login?next=/auth/account", {"email": user.email, "password": PASSWORD}
    )
    with app.app_context():
        get_session().execute(sa.update(User).where(User.id == user.id).values(totp_last_step=0))
        get_session().commit()
    response = browser.submit("/auth/mfa", {"code": pyotp.TOTP(user.totp_secret).now()})
    assert response.headers["Location"] == "/auth/account"
    messages = flashes(browser.get("/auth/account"))
    assert any(
        m.startswith("前回のログイン: ") and m.endswith("ログイン失敗: 1回") for m in messages
    )


def test_recovery_codes_are_shown_once_and_a_reload_does_not_replace_them(app, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    browser = Browser(app.test_client())
    browser.login(user)

    response = browser.post("/auth/recovery-codes", token_from="/auth/account")
    assert response.status_code == 302
    page = browser.get(response.headers["Location"])
    codes = [n.get_text(strip=True) for n in soup(page).select("[data-field=recovery-codes] code")]
    assert len(codes) == 10
    again = browser.get(response.headers["Location"])
    assert again.headers["Location"] == "/auth/account"
    from portal.auth.service import use_recovery_code

    with app.app_context():
        assert use_recovery_code(get_session(), get_session().get(User, user.id), codes[0])


def test_an_expired_session_on_a_form_action_does_not_come_back_to_it(app, db, make, org):
    admin = make.user(org, roles={Role.ADMIN})
    target = make.user(org)
    browser = Browser(app.test_client())
    with time_machine.travel(datetime(2027, 1, 5, 1, 0, tzinfo=UTC), tick=False) as clock:
        browser.login(admin)
        token = soup(browser.get("/")).select_one("input[name=csrf_token]")["value"]
        clock.shift(timedelta(minutes=app.config["SESSION_IDLE_MINUTES"] + 1))

        response = browser.client.post(
            f"/admin/users/{target.id}/disable", data={"csrf_token": token}
        )

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert reload(db, target).active is True


def test_a_mail_failure_after_a_committed_change_warns_instead_of_failing(
    app, db, make, org, monkeypatch
):
    admin = make.user(org, roles={Role.ADMIN})
    browser = Browser(app.test_client())
    browser.login(admin)
    app.config["MAIL_SERVER"] = "127.0.0.1"

    def refuse(*_args, **_kwargs):
        raise smtplib.SMTPConnectError(421, "unavailable")

    monkeypatch.setattr(smtplib, "SMTP", refuse)
    response = browser.submit(
        "/admin/users/new",
        {"name": "新人", "email": "new@example.jp", "roles": "staff"},
        selector="main form",
        follow_redirects=True,
    )

    assert response.status_code == 200
    assert any("メールを送信できませんでした" in m for m in flashes(response))
    db.rollback()
    assert db.scalar(sa.select(User).where(User.email == "new@example.jp")) is not None
    assert outbox(app) == []


def test_an_oversized_ordinary_form_is_refused_before_csrf_parsing(app, make, org):
    admin = make.user(org, roles={Role.ADMIN})
    browser = Browser(app.test_client())
    browser.login(admin)
    body = "csrf_token=x&name=" + "a" * (app.config["MAX_FORM_MEMORY_SIZE"] + 10)
    response = browser.client.post(
        "/admin/departments", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert logged_in(browser)
