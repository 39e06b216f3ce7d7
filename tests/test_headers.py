"""Security headers on every kind of response, cookie flags, Japanese error pages that leak
nothing, and templates without inline script or style (SECURITY.md "Headers", "Sessions")."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.db import engine_for, get_session
from portal.errors import MESSAGES
from portal.permissions import Role, public
from tests.conftest import CHEAP_ARGON2
from tests.factories import PASSWORD
from tests.helpers import Browser, form_fields, soup
from tests.test_routes import (
    MAIN_FORM,
    csrf_token,
    error_title,
    path_for,
    signed_in,
    walked_rules,
    world,  # noqa: F401 (fixture)
)

SAFE_SOURCES = {"'self'", "'none'", "data:"}
LEAKS = re.compile(
    r"Traceback|Exception|[A-Z][a-z]+Error\b|werkzeug|sqlalchemy|psycopg|File \"|\.py\b|secret-detail",
)


def csp(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    directives = {}
    for part in header.split(";"):
        tokens = part.split()
        if tokens:
            directives[tokens[0].lower()] = tokens[1:]
    return directives


def assert_security_headers(response, what: str, *, static: bool = False) -> None:
    policy = csp(response)
    assert policy, f"{what}: no Content-Security-Policy"
    assert policy.get("script-src", policy.get("default-src")) == ["'self'"], what
    assert policy.get("frame-ancestors") == ["'none'"], what
    assert policy.get("object-src") == ["'none'"], what
    sources = {s for values in policy.values() for s in values}
    assert not any("unsafe" in s for s in sources), f"{what}: {sources}"
    assert sources <= SAFE_SOURCES, f"{what}: third-party or loose sources {sources - SAFE_SOURCES}"
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") in {
        "same-origin",
        "no-referrer",
        "strict-origin-when-cross-origin",
    }, what
    if not static:
        assert "no-store" in response.headers.get("Cache-Control", ""), what


def get_closed(client, path: str, **kwargs):
    """GET and close the response (a static file response holds the file open until closed)."""
    response = client.get(path, **kwargs)
    response.get_data()
    response.close()
    return response


def assert_japanese_error_page(response, code: int) -> None:
    assert response.status_code == code
    page = soup(response)
    assert page.html["lang"] == "ja"
    assert error_title(response) == MESSAGES[code][0]
    text = page.get_text(" ")
    assert not LEAKS.search(text), LEAKS.search(text)


@pytest.fixture
def broken_app(app):
    """Test-only routes that fail, added before the first request."""

    def explode():
        raise RuntimeError("secret-detail: /srv/portal/config.py line 12")

    def broken_query():
        get_session().execute(sa.text("SELECT * FROM no_such_table_secret"))
        return "unreachable"

    app.add_url_rule("/test-only/explode", "test_only_explode", public(explode))
    app.add_url_rule("/test-only/broken-query", "test_only_broken_query", public(broken_query))
    return app


@pytest.fixture
def people(make, org):
    return {
        "admin": make.user(org, roles={Role.ADMIN}),
        "staff": make.user(org, roles={Role.STAFF}),
    }


# ---------------------------------------------------------------------------------------------
# Every kind of response
# ---------------------------------------------------------------------------------------------


def test_headers_on_every_kind_of_response(broken_app, people):
    app = broken_app
    anonymous = Browser(app.test_client())
    responses = {
        "page": anonymous.get("/auth/login"),
        "redirect": anonymous.get("/admin/users"),
        "404": anonymous.get("/no-such-page"),
        "405": anonymous.get("/auth/logout"),
        "400": anonymous.client.post("/auth/login", data={"email": "a@example.jp"}),
        "500": anonymous.get("/test-only/explode"),
        "static": get_closed(anonymous.client, "/static/css/portal.css"),
        "healthz": anonymous.get("/healthz"),
        "json 404": anonymous.get("/no-such-page", headers={"Accept": "application/json"}),
    }
    staff = signed_in(app, people["staff"])
    responses["authenticated page"] = staff.get("/")
    responses["403"] = staff.get("/admin/users")
    responses["500 after a failed query"] = staff.get("/test-only/broken-query")
    app.config["MAX_CONTENT_LENGTH"] = 1024
    token = csrf_token(staff, "/")
    responses["413"] = staff.client.post(
        "/auth/logout", data={"csrf_token": token, "x": "y" * 4096}
    )

    expected = {
        "page": 200,
        "redirect": 302,
        "404": 404,
        "405": 405,
        "400": 400,
        "500": 500,
        "static": 200,
        "healthz": 200,
        "json 404": 404,
        "authenticated page": 200,
        "403": 403,
        "500 after a failed query": 500,
        "413": 413,
    }
    assert {k: r.status_code for k, r in responses.items()} == expected
    for what, response in responses.items():
        assert_security_headers(response, what, static=what == "static")
    assert responses["static"].mimetype == "text/css"
    assert responses["healthz"].get_json() == {"status": "ok", "database": "ok"}
    assert responses["json 404"].get_json() == {"error": MESSAGES[404][0]}
    assert responses["405"].headers["Allow"]
    for code in (400, 403, 404, 405, 413, 500):
        assert_japanese_error_page(responses[str(code)], code)
    assert_japanese_error_page(responses["500 after a failed query"], 500)
    # The logged-in user's page after the failed query still shows who is logged in.
    assert soup(responses["500 after a failed query"]).select_one(".site-user__name")


def test_the_conflict_page_has_the_headers_and_is_japanese(app, make, org, people):
    second = make.user(org, roles={Role.ADMIN})
    first_browser, second_browser = signed_in(app, people["admin"]), signed_in(app, second)
    forms = []
    for browser in (first_browser, second_browser):
        page = browser.get("/admin/organisation")
        forms.append(form_fields(soup(page).select_one(MAIN_FORM)))
    first_browser.client.post("/admin/organisation", data={**forms[0], "self_designation": "本村"})
    conflict = second_browser.client.post(
        "/admin/organisation", data={**forms[1], "self_designation": "本町"}
    )
    assert_japanese_error_page(conflict, 409)
    assert_security_headers(conflict, "409")


def test_every_get_route_answers_with_the_headers(app, world):  # noqa: F811
    for who in (None, Role.ADMIN, Role.AUDITOR, Role.VENDOR):
        browser = signed_in(app, world.people[who]) if who else Browser(app.test_client())
        for rule in walked_rules(app, "GET"):
            path = path_for(rule, world.samples)
            assert_security_headers(browser.get(path), f"{who} GET {path}")


def test_the_qr_code_image_has_the_headers(app, make, org):
    user = make.user(org, roles={Role.STAFF}, totp=False)
    browser = Browser(app.test_client())
    browser.submit("/auth/login", {"email": user.email, "password": PASSWORD})
    assert browser.get("/auth/mfa/setup").status_code == 200
    image = browser.get("/auth/mfa/qr.svg")
    assert image.status_code == 200
    assert image.mimetype == "image/svg+xml"
    assert_security_headers(image, "qr.svg")


# ---------------------------------------------------------------------------------------------
# HSTS
# ---------------------------------------------------------------------------------------------


def test_no_hsts_in_testing(client):
    assert "Strict-Transport-Security" not in client.get("/auth/login").headers


def test_hsts_when_configured(app, client):
    app.config["HSTS"] = True
    for path in ("/auth/login", "/no-such-page", "/static/css/portal.css", "/healthz"):
        header = get_closed(client, path).headers.get("Strict-Transport-Security", "")
        max_age = re.search(r"max-age=(\d+)", header)
        assert max_age and int(max_age.group(1)) >= 31536000, path


# ---------------------------------------------------------------------------------------------
# Cookies
# ---------------------------------------------------------------------------------------------


def session_cookies(response, name: str = "portal_session") -> list:
    morsels = []
    for header in response.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        jar.load(header)
        morsels.extend(jar.values())
    return [m for m in morsels if m.key == name], [m.key for m in morsels]


def assert_cookie_flags(morsel, *, secure: bool) -> None:
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["domain"] == ""
    assert bool(morsel["secure"]) is secure


def test_the_session_cookie_is_httponly_lax_and_host_only(app, people):
    browser = Browser(app.test_client())
    (cookie,), _ = session_cookies(browser.get("/auth/login"))
    assert_cookie_flags(cookie, secure=False)

    login = browser.submit("/auth/login", {"email": people["admin"].email, "password": PASSWORD})
    cookies, names = session_cookies(login)
    assert set(names) == {"portal_session"}  # no remember-me or other cookie
    for cookie in cookies:
        assert_cookie_flags(cookie, secure=False)


@pytest.fixture
def production_app(monkeypatch, database_url, tmp_path, app):
    """The portal as production runs it (the ``app`` fixture empties the database afterwards)."""
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "a-strong-production-secret-" + "x" * 40)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    production = create_app(
        {
            "DATABASE_URL": database_url,
            "MAIL_OUTBOX": str(tmp_path / "outbox"),
            "EVIDENCE_DIR": str(tmp_path / "evidence"),
            **CHEAP_ARGON2,
        }
    )
    yield production
    engine_for(production).dispose()


def test_production_cookies_are_secure_and_hsts_is_sent(production_app, make, org):
    assert production_app.config["PORTAL_ENV"] == "production"
    assert not production_app.testing
    user = make.user(org, roles={Role.VENDOR}, company=make.company(org))
    client = production_app.test_client()
    page = client.get("/auth/login", base_url="https://portal.example.jp")
    assert page.status_code == 200
    (cookie,), _ = session_cookies(page)
    assert_cookie_flags(cookie, secure=True)
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    assert_security_headers(page, "production login page")

    token = soup(page).select_one("input[name=csrf_token]")["value"]
    login = client.post(
        "/auth/login",
        data={"csrf_token": token, "email": user.email, "password": PASSWORD},
        base_url="https://portal.example.jp",
        headers={"Referer": "https://portal.example.jp/auth/login"},
    )
    assert login.status_code == 302
    cookies, names = session_cookies(login)
    assert set(names) == {"portal_session"}
    for cookie in cookies:
        assert_cookie_flags(cookie, secure=True)


# ---------------------------------------------------------------------------------------------
# Templates: no inline script or style
# ---------------------------------------------------------------------------------------------


def inline_code(response) -> list[str]:
    """Everything in a page that a strict CSP would block or that loads from elsewhere."""
    page = soup(response)
    problems = []
    for script in page.find_all("script"):
        if not script.get("src") or script.get_text(strip=True):
            problems.append(f"inline <script>: {str(script)[:60]}")
    problems += [f"<style>: {str(s)[:60]}" for s in page.find_all("style")]
    for node in page.find_all(True):
        for attribute, value in node.attrs.items():
            if attribute == "style":
                problems.append(f"style= on <{node.name}>")
            if attribute.startswith("on"):
                problems.append(f"{attribute}= on <{node.name}>")
            if attribute in {"href", "src", "action", "formaction"}:
                target = str(value).strip()
                if target.lower().startswith("javascript:"):
                    problems.append(f"javascript: URL on <{node.name}>")
                loads = attribute != "href" or node.name == "link"
                elsewhere = target.startswith("//") or re.match(
                    r"^[a-z][a-z0-9+.-]*:", target, re.I
                )
                if loads and elsewhere and not target.startswith("data:"):
                    problems.append(f"external {attribute} on <{node.name}>: {target}")
    return problems


def test_no_rendered_page_has_inline_script_or_style(broken_app, world):  # noqa: F811
    app = broken_app
    checked = 0
    for who in (None, Role.ADMIN, Role.AUDITOR, Role.VENDOR, Role.STAFF):
        browser = signed_in(app, world.people[who]) if who else Browser(app.test_client())
        paths = [path_for(rule, world.samples) for rule in walked_rules(app, "GET")]
        paths += ["/no-such-page", "/test-only/explode"]
        for path in paths:
            response = browser.get(path)
            if response.mimetype != "text/html":
                continue
            assert inline_code(response) == [], f"{who} GET {path}"
            checked += 1
    assert checked > 30


def test_the_inline_code_check_finds_what_it_looks_for():
    class Page:
        def __init__(self, html):
            self.html = html

        def get_data(self, as_text=True):
            return self.html

    bad = Page(
        '<p style="color:red" onclick="x()">a</p><script>alert(1)</script><style>p{}</style>'
        '<a href="javascript:x()">b</a><script src="https://cdn.example/x.js"></script>'
    )
    assert len(inline_code(bad)) == 6
    good = Page('<link rel="stylesheet" href="/static/css/portal.css"><a href="https://x.jp">x</a>')
    assert inline_code(good) == []
