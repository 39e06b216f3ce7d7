"""Bad input never breaks the portal: any text in any field, bytes that are not UTF-8, oversized
bodies, and ``next`` values that try to send the user elsewhere (SECURITY.md "Input and output")."""

from __future__ import annotations

import io
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlencode, urljoin, urlsplit

import pyotp
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.auth.views import safe_next
from portal.orgs.models import Department
from portal.permissions import Role
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, field_errors, soup
from tests.test_admin import fresh, japanese
from tests.test_routes import (
    MAIN_FORM,
    changed_tables,
    csrf_token,
    error_title,
    signed_in,
    snapshot,
)

ACCEPTABLE = {200, 302, 400, 409, 413}
FUZZ = settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
)

# Any text a browser can send (no lone surrogates: they cannot be encoded), short and long.
any_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=90, max_size=400),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\r\n",
            "<script>alert(1)</script>",
            "' OR 1=1 --",
            "%(max)d",
            "{{ 7*7 }}",
            "０１２３",
            "𠮷野家",
            "\u202e\u200b",
            "9" * 40,
            "-1",
            "あ" * 5000,
        ]
    ),
)


def maybe(values: list[str]):
    """A valid choice or anything at all, alone or several."""
    one = st.one_of(st.sampled_from(values), any_text)
    return st.one_of(one, st.lists(one, max_size=4))


def assert_handled(response, what: str) -> None:
    assert response.status_code in ACCEPTABLE, f"{what} → {response.status_code}"
    if response.status_code >= 400:
        assert soup(response).html["lang"] == "ja"


@pytest.fixture
def arranged(make, org):
    department = make.department(org, name="総務課")
    company = make.company(org, name="入力試験株式会社")
    admin = make.user(org, roles={Role.ADMIN}, departments=[department])
    target = make.user(org, roles={Role.STAFF}, departments=[department])
    vendor = make.user(company=company, invited_by=org)
    return {
        "department": department,
        "company": company,
        "admin": admin,
        "target": target,
        "vendor": vendor,
    }


# Browsers are function-scoped fixtures: one login serves every example of a hypothesis test.
@pytest.fixture
def admin_browser(app, arranged):
    return signed_in(app, arranged["admin"])


@pytest.fixture
def vendor_browser(app, arranged):
    return signed_in(app, arranged["vendor"])


@pytest.fixture
def auditor_browser(app, make, org):
    return signed_in(app, make.user(org, roles={Role.AUDITOR}))


@pytest.fixture
def anonymous(app):
    app.config["LOGIN_IP_MAX_FAILURES"] = 10**6  # measure the login form, not the throttle
    return Browser(app.test_client())


# ---------------------------------------------------------------------------------------------
# Any text in every field
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(email=any_text, password=any_text, next_=any_text)
def test_any_text_in_the_login_form(app, anonymous, email, password, next_):
    url = "/auth/login?" + urlencode({"next": next_})
    assert_handled(anonymous.get(url), f"GET {url}")
    token = csrf_token(anonymous, "/auth/login")
    response = anonymous.client.post(
        url, data={"csrf_token": token, "email": email, "password": password}
    )
    assert_handled(response, f"login {email!r}")


@FUZZ
@given(
    name=any_text,
    email=any_text,
    roles=maybe(["staff", "admin", "auditor"]),
    departments=maybe(["1", "2"]),
)
def test_any_text_in_the_new_user_form(
    app, admin_browser, arranged, name, email, roles, departments
):
    response = admin_browser.submit(
        "/admin/users/new",
        {"name": name, "email": email, "roles": roles, "departments": departments},
        MAIN_FORM,
    )
    assert_handled(response, "new user")


@FUZZ
@given(
    name=any_text,
    roles=maybe(["staff", "approver", "vendor"]),
    departments=maybe(["1", "2", "3"]),
    version=st.one_of(st.none(), any_text),
)
def test_any_text_in_the_user_form(app, admin_browser, arranged, name, roles, departments, version):
    response = admin_browser.submit(
        f"/admin/users/{arranged['target'].id}",
        {"name": name, "roles": roles, "departments": departments, "version": version},
        MAIN_FORM,
    )
    assert_handled(response, "user form")


@FUZZ
@given(name=any_text, code=any_text, active=st.one_of(st.none(), any_text))
def test_any_text_in_the_department_forms(app, admin_browser, arranged, name, code, active):
    created = admin_browser.submit("/admin/departments", {"name": name, "code": code}, MAIN_FORM)
    assert_handled(created, "new department")
    edited = admin_browser.submit(
        f"/admin/departments/{arranged['department'].id}",
        {"name": name, "code": code, "active": active},
        MAIN_FORM,
    )
    assert_handled(edited, "department form")


@FUZZ
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "name": any_text,
            "kind": maybe(["municipality", "union"]),
            "self_designation": any_text,
            "ciso_title": any_text,
            "network_admin_title": any_text,
            "approver_title": any_text,
            "review_interval_months": st.one_of(any_text, st.integers().map(str)),
            "high_risk_review_interval_months": st.one_of(any_text, st.integers().map(str)),
            "version": any_text,
        },
    )
)
def test_any_text_in_the_organisation_form(app, admin_browser, values):
    response = admin_browser.submit("/admin/organisation", values, MAIN_FORM)
    assert_handled(response, "organisation form")


@FUZZ
@given(
    number=st.one_of(any_text, st.text("0123456789０１２３４５６７８９-ー ", max_size=20)),
    name=any_text,
    address=any_text,
    representative=any_text,
)
def test_any_text_in_the_vendor_form(app, admin_browser, number, name, address, representative):
    response = admin_browser.submit(
        "/vendors/new",
        {
            "corporate_number": number,
            "name": name,
            "address": address,
            "representative": representative,
        },
        MAIN_FORM,
    )
    assert_handled(response, "vendor form")


@FUZZ
@given(name=any_text, email=any_text)
def test_any_text_in_the_vendor_user_invitation(app, admin_browser, arranged, name, email):
    page = f"/vendors/{arranged['company'].id}"
    response = admin_browser.submit(
        page, {"name": name, "email": email}, f"form[action='{page}/users']"
    )
    assert_handled(response, "vendor user invitation")


@FUZZ
@given(name=any_text, address=any_text, representative=any_text)
def test_any_text_in_the_vendor_profile(app, vendor_browser, name, address, representative):
    response = vendor_browser.submit(
        "/vendor/profile",
        {"name": name, "address": address, "representative": representative},
        MAIN_FORM,
    )
    assert_handled(response, "vendor profile")


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["action", "actor", "date_from", "date_to", "page"]), any_text
    )
)
def test_any_text_in_the_audit_filter(app, auditor_browser, query):
    response = auditor_browser.get("/audit/?" + urlencode(query))
    assert_handled(response, f"audit filter {query!r}")


def test_text_that_is_too_long_gets_a_japanese_error_and_is_not_saved(
    app, db, arranged, admin_browser
):
    target = arranged["target"]
    response = admin_browser.submit(f"/admin/users/{target.id}", {"name": "長" * 101}, MAIN_FORM)
    assert response.status_code == 200
    assert japanese(field_errors(response)["name"])
    assert fresh(db, User, target.id).name == target.name


# ---------------------------------------------------------------------------------------------
# Bytes that are not UTF-8
# ---------------------------------------------------------------------------------------------

NOT_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\x80abc", b"\xe3\x81", b"%FF%FE", b"%C3%28", b"%E3%81"]


@pytest.mark.parametrize("bad", NOT_UTF8, ids=repr)
def test_non_utf8_bytes_in_a_form_body_are_handled(
    app, arranged, admin_browser, auditor_browser, bad
):
    token = csrf_token(admin_browser, "/admin/users/new").encode()
    bodies = {
        "/admin/users/new": b"csrf_token="
        + token
        + b"&name="
        + bad
        + b"&email=a"
        + bad
        + b"%40example.jp&roles=staff&roles="
        + bad,
        "/admin/departments": b"csrf_token=" + token + b"&name=" + bad + b"&code=" + bad,
        "/vendors/new": b"csrf_token=" + token + b"&corporate_number=" + bad + b"&name=" + bad,
        f"/admin/users/{arranged['target'].id}": b"csrf_token="
        + token
        + b"&name="
        + bad
        + b"&roles=staff&version="
        + bad,
        "/admin/organisation": b"csrf_token=" + token + b"&name=" + bad + b"&kind=" + bad,
    }
    for path, body in bodies.items():
        response = admin_browser.client.post(
            path, data=body, content_type="application/x-www-form-urlencoded"
        )
        assert_handled(response, path)
    # … and in a multipart body, a query string and a path.
    response = admin_browser.client.post(
        "/admin/departments",
        data=b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + token
        + b'\r\n--B\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        + bad
        + b"\r\n--B--\r\n",
        content_type="multipart/form-data; boundary=B",
    )
    assert_handled(response, "multipart")
    # Gunicorn refuses raw bytes over 0x7F in a request target, so they arrive percent-encoded
    # in the query string, and decoded (as latin-1, PEP 3333) in the path.
    query = auditor_browser.client.get("/audit/?actor=" + quote_from_bytes(bad) + "&action=%ff")
    assert_handled(query, "query")
    raw = unquote_to_bytes(bad).decode("latin-1")
    path = admin_browser.client.get("/", environ_overrides={"PATH_INFO": "/admin/users/" + raw})
    assert path.status_code == 404


@pytest.mark.parametrize("bad", NOT_UTF8, ids=repr)
def test_non_utf8_bytes_in_the_login_form_are_handled(app, bad):
    browser = Browser(app.test_client())
    token = csrf_token(browser, "/auth/login").encode()
    response = browser.client.post(
        "/auth/login?next=" + quote_from_bytes(bad),
        data=b"csrf_token=" + token + b"&email=" + bad + b"&password=" + bad,
        content_type="application/x-www-form-urlencoded",
    )
    assert_handled(response, "login")


@settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(email=st.binary(max_size=200), password=st.binary(max_size=200))
def test_arbitrary_bytes_in_the_login_form(app, anonymous, email, password):
    token = csrf_token(anonymous, "/auth/login").encode()
    response = anonymous.client.post(
        "/auth/login",
        data=b"csrf_token=" + token + b"&email=" + email + b"&password=" + password,
        content_type="application/x-www-form-urlencoded",
    )
    assert_handled(response, "login bytes")


# ---------------------------------------------------------------------------------------------
# Oversized bodies
# ---------------------------------------------------------------------------------------------


def assert_too_large(response) -> None:
    assert response.status_code == 413
    assert error_title(response) == "データが大きすぎます"
    assert soup(response).html["lang"] == "ja"


def test_a_body_over_max_content_length_gets_the_japanese_413_page(app, arranged, admin_browser):
    app.config["MAX_CONTENT_LENGTH"] = 4096
    token = csrf_token(admin_browser, "/admin/departments")
    response = admin_browser.client.post(
        "/admin/departments", data={"csrf_token": token, "name": "課" * 5000}
    )
    assert_too_large(response)
    upload = admin_browser.client.post(
        "/admin/departments",
        data={"csrf_token": token, "file": (io.BytesIO(b"%PDF-" + b"0" * 8000), "a.pdf")},
        content_type="multipart/form-data",
    )
    assert_too_large(upload)
    anonymous = Browser(app.test_client())
    login_token = csrf_token(anonymous, "/auth/login")
    assert_too_large(
        anonymous.client.post(
            "/auth/login", data={"csrf_token": login_token, "email": "x" * 8000, "password": "p"}
        )
    )
    # Under the limit the same form works.
    small = admin_browser.client.post(
        "/admin/departments", data={"csrf_token": token, "name": "小さな課"}
    )
    assert small.status_code == 302


def test_a_multipart_text_field_over_the_form_memory_limit_gets_413_with_default_limits(
    app, admin_browser
):
    assert app.config["MAX_CONTENT_LENGTH"] > 2 * 1024 * 1024
    token = csrf_token(admin_browser, "/admin/departments")
    # Encoded here: the test client spools big multipart bodies to a file it never closes.
    body = (
        b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + token.encode()
        + b'\r\n--B\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        + b"x" * (2 * 1024 * 1024)
        + b"\r\n--B--\r\n"
    )
    response = admin_browser.client.post(
        "/admin/departments", data=body, content_type="multipart/form-data; boundary=B"
    )
    assert_too_large(response)


def test_an_ordinary_form_body_over_the_form_memory_limit_gets_413(app, admin_browser, db):
    """Urlencoded bodies are read whole into memory: they get the form limit, not 20 MB."""
    limit = app.config["MAX_FORM_MEMORY_SIZE"]
    assert limit < app.config["MAX_CONTENT_LENGTH"]
    token = csrf_token(admin_browser, "/admin/departments")
    before = departments(db)
    response = admin_browser.client.post(
        "/admin/departments", data={"csrf_token": token, "name": "課" * limit}
    )
    assert_too_large(response)
    assert departments(db) == before


def departments(db) -> int:
    db.rollback()
    return db.scalar(sa.select(sa.func.count()).select_from(Department))


def test_a_body_over_the_default_max_content_length_gets_413(app, admin_browser):
    token = csrf_token(admin_browser, "/admin/departments")
    response = admin_browser.client.post(
        "/admin/departments",
        data={"csrf_token": token, "name": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)},
    )
    assert_too_large(response)


# ---------------------------------------------------------------------------------------------
# Open redirects
# ---------------------------------------------------------------------------------------------

FOREIGN = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example",
    "//evil.example/admin/users",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https:/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "%2F%2Fevil.example",
    "／／evil.example",
    "evil.example",
]


def login_with_next(app, user, next_value: str):
    browser = Browser(app.test_client())
    url = "/auth/login?" + urlencode({"next": next_value})
    response = browser.submit(url, {"email": user.email, "password": PASSWORD})
    if response.status_code == 302 and urlsplit(response.location).path == "/auth/mfa":
        response = browser.submit("/auth/mfa", {"code": pyotp.TOTP(user.totp_secret).now()})
    assert response.status_code == 302
    return response.location


@pytest.mark.parametrize("next_value", FOREIGN, ids=repr)
@pytest.mark.parametrize("who", ["staff", "vendor"])
def test_login_never_follows_next_off_the_site(app, arranged, next_value, who):
    user = arranged["admin"] if who == "staff" else arranged["vendor"]
    assert login_with_next(app, user, next_value) == "/"


@pytest.mark.parametrize("who", ["staff", "vendor"])
@pytest.mark.parametrize("next_value", ["/admin/users", "/vendor/profile", "/vendors?page=2"])
def test_login_follows_a_local_next(app, arranged, who, next_value):
    user = arranged["admin"] if who == "staff" else arranged["vendor"]
    assert login_with_next(app, user, next_value) == next_value


def test_a_protected_page_returns_the_user_to_it_after_login(app, arranged):
    browser = Browser(app.test_client())
    bounced = browser.get("/admin/users")
    assert urlsplit(bounced.location).path == "/auth/login"
    login_page = bounced.location
    response = browser.submit(login_page, {"email": arranged["admin"].email, "password": PASSWORD})
    assert urlsplit(response.location).path == "/auth/mfa"
    code = pyotp.TOTP(arranged["admin"].totp_secret).now()
    assert browser.submit("/auth/mfa", {"code": code}).location == "/admin/users"


@given(target=st.text(st.characters(codec="utf-8"), max_size=60))
def test_safe_next_only_ever_returns_a_local_path(target):
    result = safe_next(target)
    if result is None:
        return
    assert result == target
    assert result.startswith("/") and not result.startswith("//")
    assert "\\" not in result
    resolved = urlsplit(urljoin("https://portal.example.jp/auth/login", result))
    assert (resolved.scheme, resolved.netloc) == ("https", "portal.example.jp")


@pytest.mark.parametrize("target", FOREIGN)
def test_safe_next_refuses_every_foreign_target(target):
    assert safe_next(target) is None


# ---------------------------------------------------------------------------------------------
# U+0000: no browser sends it and PostgreSQL cannot store it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field", "selector"),
    [
        ("/admin/users/new", "name", MAIN_FORM),
        ("/admin/users/new", "email", MAIN_FORM),
        ("/admin/departments", "name", MAIN_FORM),
        ("/admin/organisation", "self_designation", MAIN_FORM),
        ("/vendors/new", "address", MAIN_FORM),
    ],
)
def test_a_nul_character_in_a_field_is_refused_and_nothing_is_stored(
    app, admin_browser, url, field, selector
):
    before = snapshot(app)
    response = admin_browser.submit(url, {"name": "有効な名前", field: "総務\x00課"}, selector)
    assert response.status_code == 400
    assert error_title(response) == "リクエストが正しくありません"
    assert changed_tables(before, snapshot(app)) == []


def test_a_nul_character_at_login_or_in_a_query_is_refused(app, anonymous, auditor_browser):
    response = anonymous.submit("/auth/login", {"email": "a\x00@example.jp", "password": "x"})
    assert response.status_code == 400
    assert auditor_browser.get("/audit/?actor=%00").status_code == 400
    assert auditor_browser.get("/audit/?actor=ok%40example.jp").status_code == 200
