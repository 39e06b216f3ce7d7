"""Reading pages by meaning (BeautifulSoup) and submitting their real forms, CSRF token included."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urljoin

import pyotp
import sqlalchemy as sa
from bs4 import BeautifulSoup
from flask.testing import FlaskClient

from portal.audit.models import AuditChain
from portal.audit.service import GENESIS_CHAIN_HEAD
from portal.db import Base, engine_for
from portal.mail.service import read_outbox
from tests.factories import PASSWORD


def soup(response) -> BeautifulSoup:
    return BeautifulSoup(response.get_data(as_text=True), "html.parser")


def text_of(response, selector: str) -> str:
    node = soup(response).select_one(selector)
    assert node is not None, f"{selector} not found"
    return node.get_text(" ", strip=True)


def flashes(response) -> list[str]:
    return [p.get_text(strip=True) for p in soup(response).select(".flash")]


def field_errors(response) -> dict[str, str]:
    return {
        node["data-field"]: node.select_one(".field__error").get_text(strip=True)
        for node in soup(response).select(".field--error[data-field]")
    }


def form_fields(form) -> dict[str, object]:
    """The values a browser would send for ``form`` as it stands (checked boxes, hidden fields)."""
    data: dict[str, object] = {}
    for node in form.select("input, select, textarea"):
        name = node.get("name")
        if not name:
            continue
        kind = node.get("type", "text")
        if node.name == "select":
            selected = node.select_one("option[selected]")
            value = selected.get("value", "") if selected else ""
        elif kind in {"checkbox", "radio"}:
            if not node.has_attr("checked"):
                continue
            value = node.get("value", "y")
        elif kind == "submit":
            continue
        elif node.name == "textarea":
            value = node.get_text()
        else:
            value = node.get("value", "")
        if kind == "checkbox" and name in data:
            existing = data[name]
            data[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            data[name] = value
    return data


class Browser:
    """A test client that fills and submits forms found on pages, as a person would."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self.last = None

    def get(self, url: str, **kwargs):
        self.last = self.client.get(url, **kwargs)
        return self.last

    def submit(
        self,
        url: str,
        data: dict | None = None,
        selector: str = "form[method=post]",
        follow_redirects: bool = False,
    ):
        """Open ``url``, take the form matching ``selector``, override ``data`` and post it."""
        page = self.get(url)
        assert page.status_code == 200, f"GET {url} → {page.status_code}"
        form = soup(page).select_one(selector)
        assert form is not None, f"no form {selector} on {url}"
        values = form_fields(form)
        values.update(data or {})
        values = {k: v for k, v in values.items() if v is not None}
        action = urljoin(url, form.get("action") or url)
        self.last = self.client.post(action, data=values, follow_redirects=follow_redirects)
        return self.last

    def post(self, url: str, data: dict | None = None, token_from: str = "/", **kwargs):
        """A POST with a valid CSRF token taken from any page of this session."""
        token = soup(self.get(token_from)).select_one("input[name=csrf_token]")
        payload = {"csrf_token": token["value"] if token else ""}
        payload.update(data or {})
        self.last = self.client.post(url, data=payload, **kwargs)
        return self.last

    def login(self, user, password: str = PASSWORD, *, reset_totp_step=None):
        """Log ``user`` in through the real forms, including the TOTP step when needed.

        ``reset_totp_step`` (a callable) lets a test log the same user in twice within one
        30-second TOTP step; the portal itself refuses a code that was already used.
        """
        response = self.submit("/auth/login", {"email": user.email, "password": password})
        if response.status_code == 302 and response.headers["Location"].endswith("/auth/mfa"):
            if reset_totp_step:
                reset_totp_step()
            response = self.submit("/auth/mfa", {"code": pyotp.TOTP(user.totp_secret).now()})
        return response

    def logout(self):
        return self.post("/auth/logout")


def reload(db, obj):
    """``obj`` as committed now: ends the test session's read snapshot, then refreshes."""
    db.rollback()
    db.refresh(obj)
    return obj


def logged_in(browser: Browser) -> bool:
    """True when the home page opens; False when the browser is sent to the login page."""
    response = browser.get("/")
    if response.status_code == 200:
        return True
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")
    return False


def outbox(app) -> list:
    return read_outbox(Path(app.config["MAIL_OUTBOX"]))


def link_in(message) -> str:
    body = message.get_content()
    for line in body.splitlines():
        if line.startswith("http"):
            return line.strip()
    raise AssertionError("no link in the message")


class QueryCounter:
    """The SQL statements sent to the app's database while the block runs (the engine's
    ``before_cursor_execute`` event): ``with QueryCounter(app) as counter: …; counter.count``."""

    def __init__(self, app):
        self.engine = engine_for(app)
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)

    def __call__(self, _conn, _cursor, statement, *_args):
        self.statements.append(statement)

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc):
        sa.event.remove(self.engine, "before_cursor_execute", self)


def empty_database(app) -> None:
    """Empty every table and put the audit chain back as the migration leaves it (what the
    ``app`` fixture does after each test; module-scoped worlds and the crash run do it too)."""
    engine = engine_for(app)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(sa.insert(AuditChain).values(**GENESIS_CHAIN_HEAD))
    engine.dispose()
