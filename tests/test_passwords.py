"""Password rules, argon2id hashing and forced change of temporary passwords.

SECURITY.md "Authentication": 12–128 characters of any kind; the most common passwords, the
user's own e-mail / name and the organisation's name refused; argon2id, rehashed when the
parameters change; an account with a temporary password is sent to the change-password page
from every route until it changes it.
"""

from __future__ import annotations

from importlib import resources

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import VerifyMismatchError
from werkzeug.routing import IntegerConverter

from portal.auth.models import RecoveryCode
from portal.auth.passwords import MAX_LENGTH, MIN_LENGTH, password_problems
from portal.permissions import Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import field_errors, flashes, reload, soup

JAPANESE_PASSPHRASE = "夏の夜空に輝く天の川を眺めながら、遠い故郷を思い出した"
NEW_PASSWORD = "冬の朝に湯気の立つ味噌汁をゆっくり味わう"

EMAIL = "hanako.tanaka@city.example.lg.jp"
NAME = "田中 花子"
ORG_NAME = "さくら市"


def _common_passwords() -> list[str]:
    text = resources.files("portal.auth").joinpath("common_passwords.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _verifies(stored_hash: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(stored_hash, password)
    except VerifyMismatchError:
        return False


# ---------------------------------------------------------------------------------------------
# The rules as a pure function
# ---------------------------------------------------------------------------------------------


def test_a_password_of_eleven_characters_is_refused_and_twelve_are_enough():
    assert MIN_LENGTH == 12
    assert password_problems("abcdefghij1") == ["パスワードは12文字以上にしてください。"]
    assert password_problems("abcdefghij12") == []


def test_a_password_of_more_than_128_characters_is_refused_and_128_are_accepted():
    assert MAX_LENGTH == 128
    base = "".join(chr(0x3041 + i % 80) for i in range(200))  # varied hiragana
    assert password_problems(base[:128]) == []
    assert password_problems(base[:129]) == ["パスワードは128文字以内にしてください。"]


def test_the_length_counts_characters_not_bytes():
    # 12 Japanese characters are 36 bytes in UTF-8, but 12 characters: accepted.
    assert password_problems("春夏秋冬と山川草木の国") != []  # 11 characters
    assert password_problems("春夏秋冬と山川草木の国々") == []  # 12 characters


def test_any_characters_are_accepted():
    assert password_problems("🍣 と 🍵 が好き！ #$%^&*()[]{}") == []
    assert password_problems("Ünïcödé Çhäràçtérs ß ø") == []


@pytest.mark.parametrize("common", _common_passwords())
def test_every_listed_common_password_is_refused(common):
    problems = password_problems(common)
    assert "よく使われるパスワードのため使用できません。" in problems


def test_the_common_password_list_is_not_empty():
    assert len(_common_passwords()) >= 50


@pytest.mark.parametrize(
    "variant",
    ["Password1234", "PASSWORD 1234", "ｐａｓｓｗｏｒｄ１２３４", " password1234 "],
)
def test_common_passwords_are_refused_whatever_the_case_width_or_spacing(variant):
    assert "よく使われるパスワードのため使用できません。" in password_problems(variant)


@pytest.mark.parametrize(
    "password",
    [
        f"{EMAIL}-2026",  # the whole e-mail address
        "HANAKO.TANAKA の春休み計画",  # the local part, in another case
        "わたしは田中花子です、よろしく",  # the name (its space removed)
        "さくら市役所で毎日働いています",  # the organisation
    ],
)
def test_the_users_email_local_part_name_and_organisation_are_refused(password):
    problems = password_problems(password, email=EMAIL, name=NAME, organisation_name=ORG_NAME)
    assert problems == ["メールアドレス、氏名、団体名・会社名を含むパスワードは使用できません。"]


def test_a_long_japanese_passphrase_is_accepted():
    assert (
        password_problems(JAPANESE_PASSPHRASE, email=EMAIL, name=NAME, organisation_name=ORG_NAME)
        == []
    )


def test_a_single_repeated_character_is_refused():
    assert (
        "同じ文字や2種類程度の文字を繰り返しただけのパスワードは使用できません。"
        in password_problems("あ" * 20)
    )


# ---------------------------------------------------------------------------------------------
# The rules through the change-password form: errors next to the field, nothing stored
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tanaka(make):
    org = make.org(name=ORG_NAME)
    return make.user(org, roles={Role.STAFF}, email=EMAIL, name=NAME)


def _change(browser, current: str, new: str, confirm: str | None = None):
    return browser.submit(
        "/auth/password",
        {"current": current, "password": new, "confirm": new if confirm is None else confirm},
        selector="main form",
    )


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("短すぎるパスワード", "12文字以上"),
        ("長" * 64 + "い" * 65, "128"),
        ("password1234", "よく使われるパスワード"),
        (f"{EMAIL}!!", "メールアドレス、氏名、団体名"),
        ("hanako.tanaka-2026-spring", "メールアドレス、氏名、団体名"),
        ("わたしは田中花子です、よろしく", "メールアドレス、氏名、団体名"),
        ("さくら市役所で毎日働いています", "メールアドレス、氏名、団体名"),
    ],
    ids=["short", "long", "common", "email", "local-part", "name", "organisation"],
)
def test_the_change_password_form_shows_the_reason_next_to_the_field(
    browser, db, tanaka, password, expected
):
    browser.login(tanaka)
    old_hash = tanaka.password_hash

    response = _change(browser, PASSWORD, password)

    assert response.status_code == 200
    errors = field_errors(response)
    assert set(errors) == {"password"}
    assert expected in errors["password"]
    assert reload(db, tanaka).password_hash == old_hash


def test_the_change_password_form_accepts_a_long_japanese_passphrase(browser, db, tanaka):
    browser.login(tanaka)

    response = _change(browser, PASSWORD, JAPANESE_PASSPHRASE)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = browser.get("/")
    assert "パスワードを変更しました。ほかの端末のログインは終了しました。" in flashes(page)
    stored = reload(db, tanaka).password_hash
    assert stored.startswith("$argon2id$")
    assert _verifies(stored, JAPANESE_PASSPHRASE)
    assert not _verifies(stored, PASSWORD)


def test_the_change_password_form_requires_the_current_password(browser, db, tanaka):
    browser.login(tanaka)
    old_hash = tanaka.password_hash

    response = _change(browser, "これは現在のパスワードではありません", JAPANESE_PASSPHRASE)

    assert field_errors(response) == {"current": "現在のパスワードが正しくありません。"}
    assert reload(db, tanaka).password_hash == old_hash
    # A wrong current password counts like a failed login (no guessing through a session).
    assert reload(db, tanaka).failed_login_count == 1


def test_guessing_the_current_password_locks_the_account_and_ends_the_session(
    app, browser, db, tanaka
):
    browser.login(tanaka)
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        _change(browser, "これは現在のパスワードではありません", JAPANESE_PASSPHRASE)

    response = _change(browser, "これは現在のパスワードではありません", JAPANESE_PASSPHRASE)

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert reload(db, tanaka).locked_until is not None
    assert browser.get("/").headers["Location"].startswith("/auth/login")


def test_the_change_password_form_refuses_a_mismatched_confirmation(browser, db, tanaka):
    browser.login(tanaka)
    old_hash = tanaka.password_hash

    response = _change(browser, PASSWORD, JAPANESE_PASSPHRASE, confirm=NEW_PASSWORD)

    assert field_errors(response) == {"confirm": "確認用のパスワードが一致しません。"}
    assert reload(db, tanaka).password_hash == old_hash


def test_a_vendor_cannot_use_its_company_name(browser, db, make, org):
    company = make.company(org, name="みどり情報システム株式会社")
    vendor = make.user(company=company, email="sato@midori.example.co.jp", name="佐藤 一郎")
    browser.login(vendor)

    response = _change(browser, PASSWORD, "みどり情報システム株式会社の社員です")

    assert "メールアドレス、氏名、団体名" in field_errors(response)["password"]
    assert _verifies(reload(db, vendor).password_hash, PASSWORD)


# ---------------------------------------------------------------------------------------------
# argon2id, and rehashing when the parameters change
# ---------------------------------------------------------------------------------------------


def test_the_stored_hash_is_argon2id_with_the_configured_parameters(app, make, org):
    user = make.user(org)
    assert user.password_hash.startswith("$argon2id$")
    params = extract_parameters(user.password_hash)
    assert params.type is Type.ID
    assert params.time_cost == app.config["ARGON2_TIME_COST"]
    assert params.memory_cost == app.config["ARGON2_MEMORY_COST"]
    assert params.parallelism == app.config["ARGON2_PARALLELISM"]
    assert PASSWORD not in user.password_hash


def _set_hash(db, user: User, stored_hash: str) -> None:
    user.password_hash = stored_hash
    db.commit()


@pytest.mark.parametrize(
    "old_hasher",
    [
        PasswordHasher(time_cost=2, memory_cost=2048, parallelism=2, type=Type.ID),
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.I),
    ],
    ids=["other-argon2id-parameters", "legacy-argon2i"],
)
def test_login_rehashes_a_password_stored_with_other_parameters(
    app, browser, db, make, org, old_hasher
):
    user = make.user(org, roles={Role.STAFF})
    old_hash = old_hasher.hash(PASSWORD)
    _set_hash(db, user, old_hash)

    response = browser.login(user)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    new_hash = reload(db, user).password_hash
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$")
    params = extract_parameters(new_hash)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        app.config["ARGON2_TIME_COST"],
        app.config["ARGON2_MEMORY_COST"],
        app.config["ARGON2_PARALLELISM"],
    )
    assert _verifies(new_hash, PASSWORD)


def test_login_keeps_a_hash_whose_parameters_are_current(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    old_hash = user.password_hash

    browser.login(user)

    assert browser.get("/").status_code == 200
    assert reload(db, user).password_hash == old_hash


def test_a_wrong_password_does_not_rehash(browser, db, make, org):
    user = make.user(org, roles={Role.STAFF})
    old_hash = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=2).hash(PASSWORD)
    _set_hash(db, user, old_hash)

    browser.submit("/auth/login", {"email": user.email, "password": "まちがったパスワードです"})

    assert reload(db, user).password_hash == old_hash


# ---------------------------------------------------------------------------------------------
# Temporary passwords: sent to /auth/password from every route until changed
# ---------------------------------------------------------------------------------------------


def _every_get_url(app, user_id: int) -> list[str]:
    """A URL for every GET route of the portal (arguments filled with plausible values)."""
    urls = []
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in {"static", "main.healthz"}:
            continue
        if rule.endpoint == "auth.change_password":
            continue
        values = {
            name: user_id if isinstance(converter, IntegerConverter) else "x"
            for name, converter in rule._converters.items()
        }
        urls.append(adapter.build(rule.endpoint, values))
    return urls


@pytest.fixture
def temporary_admin(make, org):
    return make.user(org, roles={Role.ADMIN}, temporary=True)


def test_a_temporary_password_is_sent_to_the_change_page_from_every_route(
    app, browser, temporary_admin
):
    response = browser.login(temporary_admin)
    assert response.status_code == 302

    urls = _every_get_url(app, temporary_admin.id)
    assert {"/", "/auth/account", "/admin/users", "/auth/mfa/setup", "/auth/login"} <= set(urls)
    # The one-time recovery codes page stays reachable (right after enrolment), and with no
    # codes to show it sends the user on; everything else leads to the change page.
    for url in urls:
        response = browser.get(url)
        assert response.status_code == 302, url
        if url == "/auth/recovery-codes/new":
            assert response.headers["Location"] == "/auth/account", url
            continue
        assert response.headers["Location"] == "/auth/password", url

    page = browser.get("/auth/password")
    assert page.status_code == 200
    assert soup(page).select_one("h1").get_text(strip=True) == "パスワードの変更"


def test_a_temporary_password_blocks_state_changing_requests_too(
    browser, db, make, org, temporary_admin
):
    browser.login(temporary_admin)

    response = browser.post("/auth/recovery-codes", token_from="/auth/password")

    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/password"
    db.rollback()
    count = db.scalar(
        sa.select(sa.func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == temporary_admin.id)
    )
    assert count == 0


def test_a_temporary_password_stays_in_force_after_a_refused_change(browser, db, temporary_admin):
    browser.login(temporary_admin)

    response = _change(browser, PASSWORD, "password1234")

    assert "よく使われるパスワード" in field_errors(response)["password"]
    assert reload(db, temporary_admin).password_is_temporary is True
    assert browser.get("/").headers["Location"] == "/auth/password"


def test_after_changing_the_temporary_password_the_portal_opens(browser, db, temporary_admin):
    browser.login(temporary_admin)

    response = _change(browser, PASSWORD, JAPANESE_PASSPHRASE)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    user = reload(db, temporary_admin)
    assert user.password_is_temporary is False
    assert _verifies(user.password_hash, JAPANESE_PASSPHRASE)
    for url in ("/", "/auth/account", "/admin/users"):
        assert browser.get(url).status_code == 200, url
    assert browser.get("/auth/password").status_code == 200
    assert not soup(browser.get("/auth/password")).select(".flash--warning")
