"""Invitation and password-reset links: single use, expiring, purpose-salted, the newest one only,
tamper-proof (``portal/auth/tokens.py``). Mail is read back from the file outbox.

SECURITY.md "Authentication" (Temporary passwords and invitations).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import time_machine
from argon2 import PasswordHasher
from itsdangerous import BadSignature, URLSafeSerializer

from portal.auth import tokens
from portal.auth.models import ActionToken
from portal.auth.views import LOGIN_FAILED
from portal.db import get_session
from portal.permissions import Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, field_errors, flashes, link_in, outbox, reload, soup, text_of

T0 = datetime(2027, 5, 10, 1, 0, 15, tzinfo=UTC)
PASSPHRASE = "山の上の小さな図書館で静かに本を読む午後"
ACCEPTED = "パスワードを設定しました。メールアドレスと新しいパスワードでログインしてください。"
RESET_DONE = "パスワードを再設定しました。新しいパスワードでログインしてください。"


def _user_by_email(db, email: str) -> User:
    db.rollback()
    return db.scalar(sa.select(User).where(User.email == email))


def _latest_link(app, to: str) -> str:
    """The path of the link in the newest message sent to ``to``."""
    messages = [m for m in outbox(app) if m["To"] == to]
    assert messages, f"no mail to {to}"
    link = link_in(messages[-1])
    assert link.startswith(app.config["BASE_URL"] + "/auth/")
    return urlsplit(link).path


def _is_invalid_link_page(response) -> bool:
    return (
        response.status_code == 404
        and soup(response).select_one("h1").get_text(strip=True) == "リンクが無効です"
    )


def _accept(browser, path: str, password: str = PASSPHRASE, confirm: str | None = None):
    return browser.submit(
        path,
        {"password": password, "confirm": password if confirm is None else confirm},
        selector="main form",
    )


@pytest.fixture
def admin(make, org):
    return make.user(org, roles={Role.ADMIN}, email="admin@example.jp")


@pytest.fixture
def administrator(browser, admin):
    """A browser logged in as the organisation's administrator."""
    browser.login(admin)
    assert browser.get("/admin/users").status_code == 200
    return browser


@pytest.fixture
def invitee(app):
    return Browser(app.test_client())


def _invite(administrator, email: str = "new.staff@example.jp", name: str = "新人 職員"):
    response = administrator.submit(
        "/admin/users/new",
        {"name": name, "email": email, "roles": Role.STAFF.value},
        selector="main form",
    )
    assert response.status_code == 302, field_errors(response) or flashes(response)
    return response


def _resend_invitation(administrator, user_id: int):
    response = administrator.post(
        f"/admin/users/{user_id}/invite", token_from=f"/admin/users/{user_id}"
    )
    assert response.status_code == 302
    return response


def _reset(administrator, user_id: int):
    response = administrator.submit(
        f"/admin/users/{user_id}", selector=f"form[action='/admin/users/{user_id}/reset']"
    )
    assert response.status_code == 302
    return response


# ---------------------------------------------------------------------------------------------
# An invitation link works once
# ---------------------------------------------------------------------------------------------


def test_an_invitation_link_sets_the_password_once(app, administrator, db, invitee):
    _invite(administrator)
    path = _latest_link(app, "new.staff@example.jp")
    assert path.startswith("/auth/invitation/")

    page = invitee.get(path)
    assert page.status_code == 200
    assert text_of(page, "[data-field=email]") == "new.staff@example.jp"

    response = _accept(invitee, path)

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert ACCEPTED in flashes(invitee.get("/auth/login"))
    user = _user_by_email(db, "new.staff@example.jp")
    assert PasswordHasher().verify(user.password_hash, PASSPHRASE)
    assert user.password_is_temporary is False

    assert _is_invalid_link_page(invitee.get(path))


def test_a_used_invitation_link_cannot_set_the_password_again(app, administrator, db, invitee):
    _invite(administrator)
    path = _latest_link(app, "new.staff@example.jp")
    _accept(invitee, path)
    stored = _user_by_email(db, "new.staff@example.jp").password_hash

    attacker = Browser(app.test_client())
    response = attacker.post(
        path,
        {
            "password": "別の人が設定しようとするパスワード",
            "confirm": "別の人が設定しようとするパスワード",
        },
        token_from="/auth/login",
    )

    assert _is_invalid_link_page(response)
    assert _user_by_email(db, "new.staff@example.jp").password_hash == stored


def test_after_accepting_the_invitation_a_new_staff_member_logs_in_and_enrols_totp(
    app, administrator, invitee
):
    _invite(administrator)
    _accept(invitee, _latest_link(app, "new.staff@example.jp"))

    response = invitee.submit(
        "/auth/login", {"email": "new.staff@example.jp", "password": PASSPHRASE}
    )

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/mfa/setup"


def test_opening_the_link_without_submitting_does_not_use_it_up(app, administrator, invitee):
    _invite(administrator)
    path = _latest_link(app, "new.staff@example.jp")

    assert invitee.get(path).status_code == 200
    assert invitee.get(path).status_code == 200
    assert _accept(invitee, path).status_code == 302


def test_a_refused_password_does_not_use_up_the_link(app, administrator, db, invitee):
    _invite(administrator, name="新人 職員")
    path = _latest_link(app, "new.staff@example.jp")

    response = _accept(invitee, path, "password1234")

    assert response.status_code == 200
    assert "よく使われるパスワード" in field_errors(response)["password"]
    assert _user_by_email(db, "new.staff@example.jp").password_hash is None
    response = _accept(invitee, path, "新人職員の長いパスフレーズです")
    assert "メールアドレス、氏名、団体名" in field_errors(response)["password"]
    assert _accept(invitee, path).status_code == 302


# ---------------------------------------------------------------------------------------------
# Links expire
# ---------------------------------------------------------------------------------------------


def test_an_invitation_link_works_until_invitation_hours(app, browser, admin, invitee):
    hours = timedelta(hours=app.config["INVITATION_HOURS"])
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(admin)
        _invite(browser)
        path = _latest_link(app, "new.staff@example.jp")

        clock.move_to(T0 + hours - timedelta(minutes=1))
        assert invitee.get(path).status_code == 200
        assert _accept(invitee, path).status_code == 302


def test_an_invitation_link_expires_after_invitation_hours(app, browser, db, admin, invitee):
    hours = timedelta(hours=app.config["INVITATION_HOURS"])
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(admin)
        _invite(browser)
        path = _latest_link(app, "new.staff@example.jp")

        clock.move_to(T0 + hours + timedelta(seconds=1))

        assert _is_invalid_link_page(invitee.get(path))
        response = invitee.post(
            path, {"password": PASSPHRASE, "confirm": PASSPHRASE}, token_from="/auth/login"
        )
        assert _is_invalid_link_page(response)
        assert _user_by_email(db, "new.staff@example.jp").password_hash is None


def test_a_reset_link_expires_after_reset_hours(app, browser, make, org, admin, invitee):
    vendor = make.user(org, company=make.company(org))
    hours = timedelta(hours=app.config["RESET_HOURS"])
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(admin)
        _reset(browser, vendor.id)
        path = _latest_link(app, vendor.email)
        assert path.startswith("/auth/reset/")

        clock.move_to(T0 + hours - timedelta(minutes=1))
        assert invitee.get(path).status_code == 200
        clock.move_to(T0 + hours + timedelta(seconds=1))
        assert _is_invalid_link_page(invitee.get(path))


# ---------------------------------------------------------------------------------------------
# Purpose salt: a reset link is not an invitation and vice versa
# ---------------------------------------------------------------------------------------------


def test_a_reset_token_cannot_be_used_as_an_invitation(app, administrator, make, org, invitee):
    vendor = make.user(org, company=make.company(org))
    _reset(administrator, vendor.id)
    token = _latest_link(app, vendor.email).removeprefix("/auth/reset/")

    assert _is_invalid_link_page(invitee.get(f"/auth/invitation/{token}"))
    assert invitee.get(f"/auth/reset/{token}").status_code == 200


def test_an_invitation_token_cannot_be_used_as_a_reset(app, administrator, invitee):
    _invite(administrator)
    token = _latest_link(app, "new.staff@example.jp").removeprefix("/auth/invitation/")

    assert _is_invalid_link_page(invitee.get(f"/auth/reset/{token}"))
    assert invitee.get(f"/auth/invitation/{token}").status_code == 200


def test_each_purpose_signs_with_its_own_salt(app, administrator, make, org):
    vendor = make.user(org, company=make.company(org))
    _invite(administrator)
    _reset(administrator, vendor.id)
    invitation = _latest_link(app, "new.staff@example.jp").removeprefix("/auth/invitation/")
    reset = _latest_link(app, vendor.email).removeprefix("/auth/reset/")
    key = app.config["SECRET_KEY"]

    for token, own, other in (
        (invitation, "portal.invitation", "portal.reset"),
        (reset, "portal.reset", "portal.invitation"),
    ):
        assert set(URLSafeSerializer(key, salt=own).loads(token)) == {"n", "u"}
        for wrong_salt in (other, "itsdangerous", "portal"):
            with pytest.raises(BadSignature):
                URLSafeSerializer(key, salt=wrong_salt).loads(token)


def test_an_invitation_nonce_signed_for_the_reset_purpose_is_refused(
    app, administrator, db, invitee
):
    """Even with the salt of another purpose, the nonce remembers what it was issued for."""
    _invite(administrator)
    user = _user_by_email(db, "new.staff@example.jp")
    nonce = db.scalar(sa.select(ActionToken.nonce).where(ActionToken.user_id == user.id))
    forged = URLSafeSerializer(app.config["SECRET_KEY"], salt="portal.reset").dumps(
        {"n": nonce, "u": user.id}
    )

    assert _is_invalid_link_page(invitee.get(f"/auth/reset/{forged}"))


def test_tokens_are_issued_only_for_known_purposes(app, db, make, org):
    user = make.user(org)

    with app.app_context(), pytest.raises(ValueError):
        tokens.issue(get_session(), get_session().get(User, user.id), "login", timedelta(hours=1))


# ---------------------------------------------------------------------------------------------
# Issuing a new link voids the old one
# ---------------------------------------------------------------------------------------------


def test_resending_an_invitation_voids_the_previous_link(app, administrator, db, invitee):
    _invite(administrator)
    first = _latest_link(app, "new.staff@example.jp")
    user = _user_by_email(db, "new.staff@example.jp")

    _resend_invitation(administrator, user.id)
    second = _latest_link(app, "new.staff@example.jp")

    assert second != first
    assert _is_invalid_link_page(invitee.get(first))
    assert _accept(invitee, second).status_code == 302


def test_a_second_reset_voids_the_first_reset_link(app, administrator, make, org, invitee):
    vendor = make.user(org, company=make.company(org))
    _reset(administrator, vendor.id)
    first = _latest_link(app, vendor.email)
    # After a reset the page says so, offers the reset again and no invitation (the account
    # was registered before).
    page = administrator.get(f"/admin/users/{vendor.id}")
    assert soup(page).select_one("[data-field=reset-pending]") is not None
    assert soup(page).select_one(f"form[action='/admin/users/{vendor.id}/invite']") is None
    response = administrator.submit(
        f"/admin/users/{vendor.id}", selector=f"form[action='/admin/users/{vendor.id}/reset']"
    )
    assert response.status_code == 302
    second = _latest_link(app, vendor.email)

    assert second != first
    assert _is_invalid_link_page(invitee.get(first))
    assert invitee.get(second).status_code == 200


# ---------------------------------------------------------------------------------------------
# Tampered tokens
# ---------------------------------------------------------------------------------------------


def _flip(char: str) -> str:
    return "B" if char != "B" else "C"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: _flip(t[0]) + t[1:],  # the payload
        # the signature (not its last character: its low bits are base64 padding, ignored)
        lambda t: t[:-5] + _flip(t[-5]) + t[-4:],
        lambda t: t[: len(t) // 2],  # truncated
        lambda t: t.split(".")[0],  # the payload alone
        lambda t: t + "A",  # extended
    ],
    ids=["payload", "signature", "truncated", "unsigned", "extended"],
)
def test_a_tampered_invitation_token_is_refused(app, administrator, db, invitee, tamper):
    _invite(administrator)
    token = _latest_link(app, "new.staff@example.jp").removeprefix("/auth/invitation/")

    tampered = tamper(token)

    assert tampered != token
    assert _is_invalid_link_page(invitee.get(f"/auth/invitation/{tampered}"))
    response = invitee.post(
        f"/auth/invitation/{tampered}",
        {"password": PASSPHRASE, "confirm": PASSPHRASE},
        token_from="/auth/login",
    )
    assert _is_invalid_link_page(response)
    assert _user_by_email(db, "new.staff@example.jp").password_hash is None


def test_tokens_signed_with_another_key_or_naming_another_user_are_refused(
    app, administrator, db, make, org, invitee
):
    _invite(administrator)
    user = _user_by_email(db, "new.staff@example.jp")
    nonce = db.scalar(sa.select(ActionToken.nonce).where(ActionToken.user_id == user.id))
    other = make.user(org, password=None)
    right_key = URLSafeSerializer(app.config["SECRET_KEY"], salt="portal.invitation")
    wrong_key = URLSafeSerializer(
        "another-secret-key-of-sufficient-length", salt="portal.invitation"
    )

    for forged in (
        wrong_key.dumps({"n": nonce, "u": user.id}),
        right_key.dumps({"n": nonce, "u": other.id}),
        right_key.dumps({"n": "an-unknown-nonce", "u": user.id}),
        right_key.dumps([nonce, user.id]),
    ):
        assert _is_invalid_link_page(invitee.get(f"/auth/invitation/{forged}")), forged


# ---------------------------------------------------------------------------------------------
# Links of disabled accounts; password resets end to end
# ---------------------------------------------------------------------------------------------


def test_the_link_of_a_disabled_account_is_refused(app, administrator, db, invitee):
    _invite(administrator)
    path = _latest_link(app, "new.staff@example.jp")
    user = _user_by_email(db, "new.staff@example.jp")

    administrator.post(f"/admin/users/{user.id}/disable", token_from=f"/admin/users/{user.id}")

    assert _is_invalid_link_page(invitee.get(path))


def test_a_password_reset_voids_the_old_password_and_the_link_sets_a_new_one(
    app, administrator, db, make, org, invitee
):
    vendor = make.user(org, company=make.company(org))
    _reset(administrator, vendor.id)
    path = _latest_link(app, vendor.email)

    response = invitee.submit("/auth/login", {"email": vendor.email, "password": PASSWORD})
    assert flashes(response) == [LOGIN_FAILED]

    response = _accept(invitee, path)
    assert response.status_code == 302
    assert RESET_DONE in flashes(invitee.get("/auth/login"))
    assert _is_invalid_link_page(invitee.get(path))

    response = invitee.submit("/auth/login", {"email": vendor.email, "password": PASSPHRASE})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_password_reset_lifts_the_lock(app, administrator, db, make, org, invitee):
    vendor = make.user(org, company=make.company(org))
    for _ in range(5):
        invitee.submit("/auth/login", {"email": vendor.email, "password": "まちがったパスワード"})
    assert reload(db, vendor).locked_until is not None

    _reset(administrator, vendor.id)
    _accept(invitee, _latest_link(app, vendor.email))

    user = reload(db, vendor)
    assert user.locked_until is None
    assert user.failed_login_count == 0
    response = invitee.submit("/auth/login", {"email": vendor.email, "password": PASSPHRASE})
    assert response.status_code == 302
