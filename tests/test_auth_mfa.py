"""Multi-factor authentication: TOTP mandatory for every staff role, offered to vendors; a code
cannot be replayed; ±1 time step; recovery codes stored hashed and single use; failed codes count
towards the lockout; the enrolment QR code is an SVG rendered by the portal itself.

SECURITY.md "Authentication" (Multi-factor).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import segno
import sqlalchemy as sa
import time_machine

from portal.auth import totp
from portal.auth.models import RecoveryCode
from portal.auth.views import LOGIN_FAILED, MFA_FAILED
from portal.db import Base
from portal.permissions import STAFF_ROLES, Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import field_errors, flashes, logged_in, reload, soup, text_of

# The middle of a 30-second step, so that ±1 step is unambiguous.
T0 = datetime(2027, 2, 1, 0, 0, 15, tzinfo=UTC)
STEP = timedelta(seconds=30)
SVG_NS = "{http://www.w3.org/2000/svg}"


def _password_step(browser, user, password: str = PASSWORD):
    return browser.submit("/auth/login", {"email": user.email, "password": password})


def _code_step(browser, code: str):
    return browser.submit("/auth/mfa", {"code": code}, selector="main form")


def _wrong_code(secret: str, at: datetime | None = None) -> str:
    moment = at or datetime.now(UTC)
    near = {pyotp.TOTP(secret).at(moment + k * STEP) for k in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 10**6)) if c not in near)


def _recovery_codes(page) -> list[str]:
    return [
        node.get_text(strip=True) for node in soup(page).select("[data-field=recovery-codes] code")
    ]


def _enrol(browser, code_for=None):
    """Read the secret from the setup page and confirm it with a code; returns (secret, page)."""
    page = browser.get("/auth/mfa/setup")
    assert page.status_code == 200
    secret = text_of(page, "[data-field=totp-secret]")
    code = code_for(secret) if code_for else pyotp.TOTP(secret).now()
    return secret, browser.submit(
        "/auth/mfa/setup", {"code": code}, selector="main form", follow_redirects=True
    )


# ---------------------------------------------------------------------------------------------
# Staff must pass TOTP
# ---------------------------------------------------------------------------------------------


def test_every_role_but_vendor_is_a_staff_role():
    assert set(Role) - STAFF_ROLES == {Role.VENDOR}


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
def test_staff_must_pass_totp_before_being_logged_in(browser, make, org, role):
    user = make.user(org, roles={role})

    response = _password_step(browser, user)

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/mfa"
    assert not logged_in(browser)
    assert browser.get("/auth/account").status_code == 302

    response = _code_step(browser, pyotp.TOTP(user.totp_secret).now())

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert logged_in(browser)


@pytest.mark.parametrize("role", sorted(STAFF_ROLES))
def test_staff_without_totp_are_sent_to_enrolment_and_not_logged_in_until_enrolled(
    browser, db, make, org, role
):
    user = make.user(org, roles={role}, totp=False)

    response = _password_step(browser, user)

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/mfa/setup"
    assert not logged_in(browser)
    assert browser.get("/auth/mfa").headers["Location"] == "/auth/mfa/setup"

    secret, page = _enrol(browser)

    assert page.status_code == 200
    assert len(_recovery_codes(page)) == 10
    assert logged_in(browser)
    stored = reload(db, user)
    assert stored.totp_enabled is True
    assert stored.totp_secret == secret


def test_a_wrong_code_at_enrolment_enables_nothing(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF}, totp=False)
    _password_step(browser, user)

    _secret, page = _enrol(browser, code_for=_wrong_code)

    assert page.status_code == 200
    assert field_errors(page) == {"code": MFA_FAILED}
    assert not logged_in(browser)
    stored = reload(db, user)
    assert stored.totp_enabled is False
    assert stored.totp_secret is None


def test_a_staff_user_with_totp_cannot_skip_it_by_enrolling_again(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    old_secret = user.totp_secret
    _password_step(browser, user)

    response = browser.get("/auth/mfa/setup")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/mfa"
    assert browser.get("/auth/mfa/qr.svg").status_code == 404
    assert not logged_in(browser)
    assert reload(db, user).totp_secret == old_secret


def test_the_code_page_without_a_password_step_goes_to_login(browser):
    response = browser.get("/auth/mfa")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert browser.get("/auth/mfa/setup").headers["Location"] == "/auth/login"


# ---------------------------------------------------------------------------------------------
# The QR code: an SVG rendered by the portal
# ---------------------------------------------------------------------------------------------


def _svg_modules(svg_root) -> set[tuple[int, int]]:
    """The dark modules drawn by segno's path of horizontal runs, as (row, column)."""
    dark: set[tuple[int, int]] = set()
    for path in svg_root.iter(f"{SVG_NS}path"):
        if path.get("stroke") is None:
            continue  # the light background
        x = y = 0.0
        for command, a, b in re.findall(
            r"([MmHh])\s*(-?[\d.]+)(?:[\s,]+(-?[\d.]+))?", path.get("d")
        ):
            if command == "M":
                x, y = float(a), float(b)
            elif command == "m":
                x, y = x + float(a), y + float(b)
            else:
                end = x + float(a) if command == "h" else float(a)
                dark |= {(int(y), col) for col in range(int(x), int(end))}
                x = end
    top, left = min(r for r, _ in dark), min(c for _, c in dark)
    return {(r - top, c - left) for r, c in dark}


def _qr_modules(content: str, error: str) -> set[tuple[int, int]]:
    matrix = segno.make(content, error=error).matrix
    return {(r, c) for r, row in enumerate(matrix) for c, bit in enumerate(row) if bit}


def test_the_enrolment_qr_code_is_an_svg_rendered_by_the_portal(browser, make, org):
    user = make.user(org, roles={Role.STAFF}, totp=False, email="qr.test@example.jp")
    _password_step(browser, user)
    page = browser.get("/auth/mfa/setup")
    secret = text_of(page, "[data-field=totp-secret]")
    image = soup(page).select_one("img.qr")
    assert image["src"] == "/auth/mfa/qr.svg"  # the portal's own URL, no external service

    response = browser.get(image["src"])

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 (the portal's own SVG)
    assert root.tag == f"{SVG_NS}svg"
    for node in root.iter():
        assert node.tag.removeprefix(SVG_NS) not in {"script", "image", "foreignObject", "a"}
        assert not any(key.endswith("href") for key in node.attrib), node.attrib

    uri = pyotp.TOTP(secret).provisioning_uri(
        name=user.email, issuer_name="委託先リスク評価ポータル"
    )
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert unquote(parts.path).endswith(user.email)
    assert parse_qs(parts.query)["secret"] == [secret]
    drawn = _svg_modules(root)
    assert any(drawn == _qr_modules(uri, level) for level in "lmqh")


def test_the_qr_code_is_only_served_during_enrolment(browser, make, org):
    assert browser.get("/auth/mfa/qr.svg").status_code == 404
    vendor = make.user(company=make.company(org))
    browser.login(vendor)
    assert browser.get("/auth/mfa/qr.svg").status_code == 404  # no enrolment started
    assert browser.get("/auth/mfa/setup").status_code == 200
    assert browser.get("/auth/mfa/qr.svg").status_code == 200


# ---------------------------------------------------------------------------------------------
# Single use and the ±1 step window
# ---------------------------------------------------------------------------------------------


def test_a_code_cannot_be_replayed(browser, make, org):
    user = make.user(org, roles={Role.STAFF})
    generator = pyotp.TOTP(user.totp_secret)
    with time_machine.travel(T0, tick=False):
        code = generator.now()
        _password_step(browser, user)
        assert _code_step(browser, code).status_code == 302
        browser.logout()

        _password_step(browser, user)
        response = _code_step(browser, code)

        assert response.status_code == 200
        assert field_errors(response) == {"code": MFA_FAILED}
        assert not logged_in(browser)


def test_a_code_used_in_one_browser_is_refused_in_another(app, make, org):
    from tests.helpers import Browser

    user = make.user(org, roles={Role.STAFF})
    owner, attacker = Browser(app.test_client()), Browser(app.test_client())
    with time_machine.travel(T0, tick=False):
        code = pyotp.TOTP(user.totp_secret).now()
        _password_step(owner, user)
        _password_step(attacker, user)

        assert _code_step(owner, code).status_code == 302
        assert field_errors(_code_step(attacker, code)) == {"code": MFA_FAILED}

        assert logged_in(owner)
        assert not logged_in(attacker)


def test_after_a_later_step_was_used_an_earlier_step_is_refused(browser, make, org):
    user = make.user(org, roles={Role.STAFF})
    generator = pyotp.TOTP(user.totp_secret)
    with time_machine.travel(T0, tick=False):
        _password_step(browser, user)
        assert _code_step(browser, generator.at(T0 + STEP)).status_code == 302
        browser.logout()

        _password_step(browser, user)
        response = _code_step(browser, generator.at(T0))

        assert field_errors(response) == {"code": MFA_FAILED}
        assert not logged_in(browser)


def test_the_next_steps_code_works_after_a_refused_replay(browser, make, org):
    user = make.user(org, roles={Role.STAFF})
    generator = pyotp.TOTP(user.totp_secret)
    with time_machine.travel(T0, tick=False) as clock:
        _password_step(browser, user)
        _code_step(browser, generator.at(T0))
        browser.logout()

        clock.shift(STEP)
        _password_step(browser, user)
        assert _code_step(browser, generator.at(T0)).status_code == 200  # the same code again
        response = _code_step(browser, generator.now())

        assert response.status_code == 302
        assert logged_in(browser)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-2, False), (-1, True), (0, True), (1, True), (2, False)],
)
def test_codes_one_step_either_side_are_accepted_two_steps_are_not(
    browser, make, org, offset, accepted
):
    user = make.user(org, roles={Role.STAFF})
    with time_machine.travel(T0, tick=False):
        code = pyotp.TOTP(user.totp_secret).at(T0 + offset * STEP)
        _password_step(browser, user)

        response = _code_step(browser, code)

        if accepted:
            assert response.status_code == 302
            assert response.headers["Location"] == "/"
        else:
            assert field_errors(response) == {"code": MFA_FAILED}
        assert logged_in(browser) is accepted


def test_matching_step_window_and_replay_as_a_pure_function():
    secret = pyotp.random_base32()
    generator = pyotp.TOTP(secret)
    current = generator.timecode(T0)
    for offset in (-1, 0, 1):
        code = generator.at(T0 + offset * STEP)
        assert totp.matching_step(secret, code, 0, now=T0) == current + offset
        assert totp.matching_step(secret, code, current + offset, now=T0) is None  # used
    for offset in (-2, 2):
        assert totp.matching_step(secret, generator.at(T0 + offset * STEP), 0, now=T0) is None
    assert totp.matching_step(secret, " ".join(generator.at(T0)), 0, now=T0) == current
    assert totp.matching_step(secret, "１２３４５６", 0, now=T0) is None  # full-width digits


# ---------------------------------------------------------------------------------------------
# Failed codes count towards the lockout
# ---------------------------------------------------------------------------------------------


def test_failed_codes_count_towards_the_account_lock(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    with time_machine.travel(T0, tick=False):
        wrong = _wrong_code(user.totp_secret)
        _password_step(browser, user)
        for n in range(1, 5):
            response = _code_step(browser, wrong)
            assert field_errors(response) == {"code": MFA_FAILED}
            assert reload(db, user).failed_login_count == n

        response = _code_step(browser, wrong)

        assert response.status_code == 302
        assert response.headers["Location"] == "/auth/login"
        assert flashes(browser.get("/auth/login")) == [LOGIN_FAILED]
        assert reload(db, user).locked_until is not None

        response = _password_step(browser, user)
        assert response.status_code == 200
        assert flashes(response) == [LOGIN_FAILED]
        assert not logged_in(browser)


def test_password_and_code_failures_add_up(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    with time_machine.travel(T0, tick=False):
        for _ in range(3):
            _password_step(browser, user, "まちがったパスワードを入れてみる")
        _password_step(browser, user)
        wrong = _wrong_code(user.totp_secret)
        _code_step(browser, wrong)
        response = _code_step(browser, wrong)

        assert response.headers["Location"] == "/auth/login"
        assert reload(db, user).locked_until is not None


def test_failed_codes_are_shown_as_failed_attempts_after_login(browser, make, org):
    user = make.user(org, roles={Role.STAFF})
    with time_machine.travel(T0, tick=False):
        _password_step(browser, user)
        _code_step(browser, _wrong_code(user.totp_secret))
        _code_step(browser, pyotp.TOTP(user.totp_secret).now())

        assert text_of(browser.get("/"), "[data-field=failed-attempts]") == "1 回"


# ---------------------------------------------------------------------------------------------
# Recovery codes
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def enrolled(browser, make, org):
    """A staff user who has just enrolled: (user, recovery codes), logged in."""
    user = make.user(org, roles={Role.STAFF}, totp=False)
    _password_step(browser, user)
    _secret, page = _enrol(browser)
    codes = _recovery_codes(page)
    assert logged_in(browser)
    return user, codes


def test_recovery_codes_are_shown_once_after_enrolment(browser, enrolled):
    _user, codes = enrolled
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", c) for c in codes)

    account = browser.get("/auth/account")

    assert text_of(account, "[data-field=remaining-codes]") == "10"
    shown = soup(account).get_text(" ")
    assert not any(code in shown for code in codes)
    assert not _recovery_codes(account)


def test_recovery_codes_are_stored_hashed(db, enrolled):
    user, codes = enrolled
    db.rollback()
    stored = db.scalars(sa.select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id))
    expected = {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}
    assert set(stored) == expected

    everything = []
    for table in Base.metadata.sorted_tables:
        everything += [repr(tuple(row)) for row in db.execute(sa.select(table))]
    dump = "\n".join(everything).lower()
    for code in codes:
        assert code not in dump
        assert code.replace("-", "") not in dump


def test_a_recovery_code_logs_in_once(browser, db, enrolled):
    user, codes = enrolled
    browser.logout()

    _password_step(browser, user)
    response = _code_step(browser, codes[3])
    assert response.status_code == 302
    assert logged_in(browser)
    assert text_of(browser.get("/auth/account"), "[data-field=remaining-codes]") == "9"
    browser.logout()

    _password_step(browser, user)
    response = _code_step(browser, codes[3])

    assert field_errors(response) == {"code": MFA_FAILED}
    assert not logged_in(browser)
    response = _code_step(browser, codes[4].upper())  # another one still works
    assert response.status_code == 302


def test_new_recovery_codes_replace_the_old_ones(browser, enrolled):
    user, old_codes = enrolled

    page = browser.post("/auth/recovery-codes", token_from="/auth/account", follow_redirects=True)
    new_codes = _recovery_codes(page)

    assert len(new_codes) == 10
    assert not set(new_codes) & set(old_codes)
    browser.logout()
    _password_step(browser, user)
    assert field_errors(_code_step(browser, old_codes[0])) == {"code": MFA_FAILED}
    assert _code_step(browser, new_codes[0]).status_code == 302


# ---------------------------------------------------------------------------------------------
# Vendors: no TOTP needed, offered on the account page
# ---------------------------------------------------------------------------------------------


def test_a_vendor_logs_in_without_totp(browser, make, org):
    vendor = make.user(company=make.company(org))
    assert vendor.totp_enabled is False

    response = _password_step(browser, vendor)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert logged_in(browser)


def test_a_vendor_can_enrol_voluntarily_from_the_account_page(browser, db, make, org):
    vendor = make.user(company=make.company(org))
    with time_machine.travel(T0, tick=False) as clock:
        browser.login(vendor)
        account = browser.get("/auth/account")
        link = soup(account).select_one("a[href='/auth/mfa/setup']")
        assert link is not None

        secret, page = _enrol(browser)

        assert len(_recovery_codes(page)) == 10
        assert reload(db, vendor).totp_enabled is True
        assert text_of(browser.get("/auth/account"), "[data-field=remaining-codes]") == "10"
        browser.logout()

        clock.shift(STEP)
        response = _password_step(browser, vendor)
        assert response.headers["Location"] == "/auth/mfa"
        assert not logged_in(browser)
        assert _code_step(browser, pyotp.TOTP(secret).now()).status_code == 302
        assert logged_in(browser)


def test_a_logged_in_session_cannot_replace_a_working_second_factor(browser, db, make, org):
    """Re-enrolment would let a stolen session take over the account: an admin resets MFA."""
    staff = make.user(org, roles={Role.STAFF})
    secret_before = staff.totp_secret
    browser.login(staff)

    response = browser.get("/auth/mfa/setup")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/account"
    assert any("システム管理者" in message for message in flashes(browser.get("/auth/account")))
    assert browser.get("/auth/mfa/qr.svg").status_code == 404
    assert reload(db, staff).totp_secret == secret_before


def test_a_recovery_code_is_spent_by_one_conditional_update(app, make, org):
    """Two sessions holding the same unused code: only the first spends it."""
    from portal.auth import service

    user = make.user(org, roles={Role.STAFF})
    with app.app_context():
        first = app.extensions["db_sessionmaker"]()
        codes = service.replace_recovery_codes(first, first.get(User, user.id))
        first.commit()
        second = app.extensions["db_sessionmaker"]()
        try:
            assert service.use_recovery_code(first, first.get(User, user.id), codes[0])
            first.commit()
            assert not service.use_recovery_code(second, second.get(User, user.id), codes[0])
            second.rollback()
        finally:
            first.close()
            second.close()
