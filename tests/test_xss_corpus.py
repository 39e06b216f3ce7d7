"""The XSS corpus (issue 8, attack suite): payloads pushed through every vendor text field and
checked in every page, PDF and export where the text shows.

The corpus is ``tests/data/xss_corpus.toml``; each payload is also combined with Japanese text.
The vendor text fields are enumerated, not hand-picked: every text-bearing question of the
assessment bank and of the 定期確認 bank, every text field of the forms behind the POST routes a
vendor (or an anonymous visitor) can reach, the names of the files they upload. One world is
built through the real forms and the autosave endpoint (payloads spread over the fields so that
every payload lands somewhere); then

- every GET route, walked as the vendor, staff, the CISO and the administrator, carries no markup
  from a payload (no foreign script, no ``on*`` attribute, no ``javascript:`` URL, no iframe /
  svg / object / style / base / meta refresh, no image or stylesheet from elsewhere), and the
  pages that show a field show its stored value as text (so a field that is not rendered fails);
- the forms that give the vendor's text back (its answers, profile, a refused submission) hold
  it unchanged in their values;
- the 特記事項 PDF and the assessment report PDF read the payloads as literal text, fetched
  nothing (a loopback listener) and embed nothing;
- every CSV / XLSX export neutralises text starting with = + - @ (no formula cell).

The guard tests fail when a vendor-editable text field appears that the world does not write.
"""

from __future__ import annotations

import csv
import http.server
import io
import json
import re
import threading
import tomllib
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from bs4 import BeautifulSoup
from flask import request
from flask.signals import request_started
from openpyxl import load_workbook
from pypdf import PdfReader
from wtforms import HiddenField, PasswordField, StringField
from wtforms.fields.core import UnboundField

from portal import create_app
from portal.approvals import service as approvals
from portal.assessments import store
from portal.assessments.answers import validate
from portal.assessments.demo import sample_answer
from portal.assessments.excel_layout import ANSWER_COL, ANSWERS, KEY_COL
from portal.assessments.models import Assessment
from portal.auth.forms import LoginForm
from portal.clauses import catalogue as clause_catalogue
from portal.contractor_audits.models import ContractorAudit
from portal.db import utcnow
from portal.evidence.models import EvidenceFile
from portal.permissions import AUTHENTICATED, PUBLIC, ROLE_PERMISSIONS, Role
from portal.questionnaires import loader
from portal.questionnaires.conditions import holds, visible_questions
from portal.register.columns import Column as RegisterColumn
from portal.register.exports import FORMULA_STARTS, to_csv, to_xlsx
from portal.reviews import confirmations, findings, schedules
from portal.reviews import questionnaire as confirmation_bank
from portal.reviews.confirmation_forms import SectionForm
from portal.reviews.models import ReviewFile, VendorReport
from portal.reviews.report_forms import ReportForm
from portal.users.models import User
from portal.vendors.forms import CompanyProfileForm, VendorUserForm
from portal.vendors.models import VendorCompany
from portal.web import today_jst
from tests import factories
from tests.conftest import CHEAP_ARGON2
from tests.helpers import Browser, empty_database, form_fields, link_in, outbox, soup
from tests.pdf_helpers import pdf_attachments, pdf_text
from tests.test_evidence_files import pdf_bytes
from tests.test_routes import path_for, requirement_of, walked_rules

CORPUS_FILE = Path(__file__).parent / "data" / "xss_corpus.toml"
CORPUS = tomllib.loads(CORPUS_FILE.read_text(encoding="utf-8"))["payload"]
TEXT_COLUMNS = ("text", "corporate_id")  # table columns a vendor types freely
TEXT_TYPES = ("text", "long_text", "url")
PASSWORD = factories.PASSWORD


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One corpus value: a payload as it stands or combined with Japanese text."""

    id: str
    text: str
    pdf: str  # what must read literally in a PDF
    formula: bool = False
    url: bool = False


def japanese(text: str, *, formula: bool, url: bool) -> str:
    if formula:  # the cell must still start with the formula character
        return f"{text}　株式会社テスト（委託先）"
    if url:  # still a URL
        return f"{text}&note=委託先の説明"
    return f"委託先の回答：{text}　個人情報を含む"


def corpus_values(origin: str) -> list[Value]:
    values = []
    for entry in CORPUS:
        text = entry["text"].replace("{probe}", origin)
        pdf = entry.get("pdf", entry["text"]).replace("{probe}", origin)
        kind = {"formula": entry.get("formula", False), "url": entry.get("url", False)}
        values.append(Value(entry["id"], text, pdf, **kind))
        values.append(Value(f"{entry['id']}/ja", japanese(text, **kind), pdf, **kind))
    return values


def corpus_value(values: list[Value], value_id: str) -> Value:
    return next(v for v in values if v.id == value_id)


class Rotation:
    """Hands out corpus values in turn: the least recently used value that fits the field, so
    that a long payload waits for a field that takes it instead of being passed over."""

    def __init__(self, values: list[Value]):
        self.queues = {kind: [v for v in values if v.url is kind] for kind in (False, True)}

    def take(self, max_length: int, *, url: bool = False, skip=()) -> Value:
        queue = self.queues[url]
        for index, value in enumerate(queue):
            if len(value.text) <= max_length and value.id not in skip:
                queue.append(queue.pop(index))
                return value
        raise AssertionError(f"no corpus value fits a field of {max_length} characters")


# ---------------------------------------------------------------------------------------------
# The vendor text fields, enumerated
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A place in an answer a vendor types freely: a question, or one column of a table."""

    key: str
    column: str | None
    max_length: int
    url: bool = False

    @property
    def id(self) -> str:
        return self.key if self.column is None else f"{self.key}[0].{self.column}"


def text_targets(questions) -> list[Target]:
    targets = []
    for q in questions:
        if q.type in TEXT_TYPES:
            limit = q.max_length or (2000 if q.type == "url" else 200)
            targets.append(Target(q.key, None, limit, url=q.type == "url"))
        elif q.type == "table":
            targets += [
                Target(q.key, c.key, c.max_length) for c in q.columns if c.type in TEXT_COLUMNS
            ]
    return targets


def assessment_targets() -> list[Target]:
    return text_targets(loader.latest("assessment").questions)


def confirmation_targets() -> list[str]:
    """Every text place of the 定期確認 bank: its text questions and each section's note."""
    bank = confirmation_bank.latest(confirmation_bank.DEFAULT_KEY)
    return [t.id for t in text_targets(bank.questions)] + [f"note:{s.key}" for s in bank.sections]


def text_fields_of(form_class) -> set[str]:
    """The free-text fields of a WTForms class (hidden and password fields are not text)."""
    names = set()
    for klass in form_class.__mro__:
        for name, unbound in vars(klass).items():
            if not isinstance(unbound, UnboundField):
                continue
            kind = unbound.field_class
            if issubclass(kind, StringField) and not issubclass(kind, HiddenField | PasswordField):
                names.add(name)
    return names


# The POST routes a vendor or an anonymous visitor can reach, and what the world types there.
# ``FORMS``: the form whose text fields the world fills (checked field by field below).
VENDOR_WRITES = {
    "vendors.profile": "the company profile (商号, 所在地, 代表者)",
    "assessments.autosave": "every text question and table text column of the assessment",
    "assessments.section": "a refused section save, given back in the form",
    "assessments.excel_import": "a workbook whose cells and keys carry payloads",
    "evidence.upload": "evidence files with hostile names",
    "confirmations.vendor_section": "every text question of the 定期確認 and each note",
    "confirmations.vendor_upload": "a file with a hostile name attached to the 定期確認",
    "vendor_reports.create": "an incident report (summary, information, measures, attachment)",
    "auth.login": "a failed login whose e-mail address is a payload",
    "auth.invitation": "the invitation accepted (the vendor user's name is shown there)",
}
VENDOR_NO_TEXT = {
    "assessments.submit": "a button",
    "assessments.copy": "the id of an earlier assessment",
    "evidence.delete": "a button",
    "evidence.download": "a button",
    "evidence.view": "a button",
    "review_files.download": "a button",
    "confirmations.vendor_submit": "a button (the version)",
    "auth.logout": "a button",
    "auth.mfa": "a TOTP or recovery code, never stored",
    "auth.mfa_setup": "a TOTP code, never stored",
    "auth.change_password": "passwords, stored hashed",
    "auth.recovery_codes": "a button",
    "auth.reset": "a new password, stored hashed",
}
FORMS = {
    "vendors.profile": (CompanyProfileForm, "profile.{}"),
    "vendor_reports.create": (ReportForm, "report.{}"),
    "confirmations.vendor_section": (SectionForm, "confirmation:{}:<section>"),  # per section
    "vendors.invite_user": (VendorUserForm, "user.{}"),  # typed by staff, shown as the vendor
    "auth.login": (LoginForm, "login.{}"),
}
FORM_FIELDS_NOT_STORED = {
    "user.email": "an e-mail address: validated as one, shown only to staff and the admin",
    "login.email": "audited without an organisation unless it names an account (then it is "
    "that account's own address): no organisation's audit log shows what was typed",
    "login.password": "never stored",
}


def vendor_post_endpoints(app) -> set[str]:
    granted = {str(p) for p in ROLE_PERMISSIONS[Role.VENDOR]} | {PUBLIC, AUTHENTICATED}
    return {
        rule.endpoint for rule in walked_rules(app, "POST") if requirement_of(app, rule) in granted
    }


# ---------------------------------------------------------------------------------------------
# Reading pages
# ---------------------------------------------------------------------------------------------

URL_ATTRIBUTES = (
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "poster",
    "background",
    "ping",
    "srcset",
    "cite",
    "longdesc",
    "manifest",
)
FOREIGN_TAGS = ("iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math")
FOREIGN_TAGS += ("base", "style", "portal")
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def ws(text: str) -> str:
    """Whitespace collapsed: how a value reads once rendered."""
    return " ".join(text.split())


def _scheme_of(value: str) -> str:
    return re.sub(r"[\s\x00-\x1f]+", "", value).lower()


def _own(url: str) -> bool:
    """A path of the portal itself (never another origin or scheme)."""
    return url.startswith("/") and not url.startswith("//") and "\\" not in url


def _foreign(node, head) -> bool:
    """An element the portal never writes, or never writes there or so."""
    if node.name in FOREIGN_TAGS:
        return True
    if node.name == "script":  # the bundled scripts only, never inline
        return not node.get("src", "").startswith("/static/") or bool(node.get_text().strip())
    if node.name == "link":
        return not _own(node.get("href", "")) or head not in node.parents
    if node.name == "meta":
        return node.get("http-equiv") is not None or head not in node.parents
    if node.name == "img":
        return not _own(node.get("src", ""))
    return False


def markup_problems(page: BeautifulSoup) -> list[str]:
    """Markup that is not the portal's own: what a payload would have injected."""
    problems = []
    head = page.head
    for node in page.find_all(True):
        where = f"<{node.name}>"
        for name, value in node.attrs.items():
            value = " ".join(value) if isinstance(value, list) else value
            if name.lower().startswith("on"):
                problems.append(f"{where} event handler {name}={value!r}")
            if name.lower() in ("style", "srcdoc"):
                problems.append(f"{where} {name}={value!r}")
            if name.lower() in URL_ATTRIBUTES and _scheme_of(value).startswith(DANGEROUS_SCHEMES):
                problems.append(f"{where} {name}={value!r}")
        if _foreign(node, head):
            problems.append(f"foreign <{node.name}>: {str(node)[:120]!r}")
    return problems


def textarea_text(node) -> str:
    """A textarea's value: its text without the one line break that may follow the tag."""
    text = node.get_text()
    return text.removeprefix("\r\n") if text.startswith("\r\n") else text.removeprefix("\n")


def missing_text(page: BeautifulSoup, expected: dict[str, str]) -> list[str]:
    """The expected values no text node of the page holds. An escaped value is one text node
    (perhaps with text around it); a value parsed as markup is split over several."""
    texts = [ws(str(node)) for node in page.find_all(string=True)]
    return [name for name, value in expected.items() if not any(ws(value) in t for t in texts)]


@dataclass
class Checked:
    """Pages checked so far, for the assertions of coverage at the end."""

    pages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def page(self, label: str, response, expected: dict[str, str] | None = None) -> BeautifulSoup:
        assert response.status_code in (200, 422), f"{label} → {response.status_code}"
        page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
        self.problems += [f"{label}: {p}" for p in markup_problems(page)]
        self.problems += [
            f"{label}: the text of {name} is not shown"
            for name in missing_text(page, expected or {})
        ]
        self.pages.append(label)
        return page

    def verify(self) -> None:
        assert not self.problems, "\n".join(self.problems)


# ---------------------------------------------------------------------------------------------
# The loopback listener: nothing may fetch from it
# ---------------------------------------------------------------------------------------------


class _Probe(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Probe.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def probe():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Probe)
    _Probe.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------------
# One application for the module (the world is built once), emptied afterwards as conftest does
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xss")
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "MAIL_OUTBOX": str(tmp / "outbox"),
            "EVIDENCE_DIR": str(tmp / "evidence"),
            "BASE_URL": "http://localhost",
            **CHEAP_ARGON2,
        }
    )
    posted: set[str] = set()

    def record(sender, **_extra):
        if request.method == "POST" and request.endpoint:
            posted.add(request.endpoint)

    request_started.connect(record, app)
    session = app.extensions["db_sessionmaker"]()
    yield SimpleNamespace(app=app, db=session, make=factories.Factory(session, app), posted=posted)
    request_started.disconnect(record, app)
    session.close()
    empty_database(app)


def token_of(browser: Browser, url: str = "/") -> str:
    node = soup(browser.get(url)).select_one("input[name=csrf_token]")
    assert node is not None, f"no CSRF token on {url}"
    return node["value"]


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/", user.email
    return browser


def on_the_wire(name: str) -> str:
    """A file name as a client sends it in a quoted multipart header (quotes escaped); the test
    client writes the name as given, so an unescaped quote would end it early."""
    return name.replace("\\", "\\\\").replace('"', '\\"')


def answer_fields(question, value) -> dict:
    name = f"a:{question.key}"
    if question.type == "table":
        fields = {f"{name}:rows": str(len(value))}
        for n, row in enumerate(value):
            fields |= {f"{name}:{n}:{column}": cell for column, cell in row.items()}
        return fields
    if question.type == "multiple":
        return {name: list(value)}
    return {name: str(value)}


def autosave(browser: Browser, token: str, assessment: Assessment, question, value):
    data = {"csrf_token": token, "question": question.key, **answer_fields(question, value)}
    return browser.client.post(f"/assessments/{assessment.id}/autosave", data=data)


def revealing_values(questionnaire) -> dict[str, set[str]]:
    """Per question a condition looks at: the values that show a follow-up."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for section in questionnaire.sections:
        for condition in [section.when, *(q.when for q in section.questions)]:
            for key, accepted in condition.answers if condition else ():
                wanted[key] |= accepted
    return wanted


def plain_answer(question, wanted: dict[str, set[str]]):
    """A valid answer for a question that takes no free text, showing every follow-up."""
    if question.key in wanted:
        chosen = [c.value for c in question.choices if c.value in wanted[question.key]]
        return chosen if question.type == "multiple" else chosen[0]
    return sample_answer(question)


class Writer:
    """Writes corpus values into the world's fields and remembers what went where."""

    def __init__(self, values: list[Value]):
        self.values = values
        self.rotation = Rotation(values)
        self.placed: dict[str, Value] = {}  # field id → the value written there
        self.refused: dict[str, list[str]] = defaultdict(list)  # field id → refused values

    def take(self, field_id: str, max_length: int, *, url: bool = False) -> Value:
        value = self.rotation.take(max_length, url=url, skip=self.refused.get(field_id, ()))
        self.placed[field_id] = value
        return value

    def put(self, field_id: str, value_id: str) -> Value:
        self.placed[field_id] = corpus_value(self.values, value_id)
        return self.placed[field_id]


def table_rows(question, target_values: dict[str, str], today: date) -> list[dict[str, str]]:
    """One row of ``question``'s table: the text columns from ``target_values``, the others valid."""
    row = {}
    for column in question.columns:
        if column.type in TEXT_COLUMNS:
            row[column.key] = target_values[column.key]
        elif column.type == "country":
            row[column.key] = "JP"
        elif column.choices:  # a certificate other than ISMAP (its registration is asked apart)
            values = [value for value, _label in column.choices]
            row[column.key] = "iso27001" if "iso27001" in values else values[0]
        elif column.type == "date":
            row[column.key] = (
                today + timedelta(days=45 if column.key == "expires" else -400)
            ).isoformat()
    return [row]


# ---------------------------------------------------------------------------------------------
# The world: everything a vendor types, written through the real forms
# ---------------------------------------------------------------------------------------------

# Fields that flow into the CSV / XLSX exports get the formula payloads; those the 特記事項 PDF
# quotes get the payloads that name the loopback listener or a local file. The others rotate.
EXPLICIT = {
    "profile.name": "formula-hyperlink/ja",  # every list and export names the company
    "user.name": "formula-cmd/ja",  # the audit log names the actor
    "A:certifications.ismap_service_name": "formula-at/ja",  # the service's name in the register
    "A:certifications.others[0].number": "formula-minus",
    "report.summary": "formula-minus/ja",
    "A:company.legal_name": "iframe",
    "A:company.address": "img-file/ja",
    "A:company.representative": "link-stylesheet",
    "A:contract.manager_name": "meta-base",
    "A:contract.work_sites": "css/ja",
    "A:contract.return_deletion_method": "clause-placeholder/ja",
    "A:external.incident_contact": "script-tag/ja",
    "A:contract.export_format": "template-expression",
}
EXCEL_ECHO = {"excel:choice": "img-onerror/ja", "excel:key": "attr-breakout-double"}
FILE_NAME_SKIP = "/"  # a file name is cut at its last slash: such payloads say nothing there


@dataclass
class Extra:
    """A page seen while writing (a flash, a refused form): checked with the others."""

    label: str
    response: object
    fields: list[str] = field(default_factory=list)  # stored values it must show
    literal: dict[str, str] = field(default_factory=dict)  # text it must show as is
    form_values: dict[str, str] = field(default_factory=dict)  # field name → value it must hold


class WorldBuilder:
    """Builds the world: an organisation, a vendor company and its user, two assessments, the
    定期確認 and the register entry, every vendor text field holding a corpus value."""

    def __init__(self, site, origin: str):
        self.app, self.db, self.make, self.posted = site.app, site.db, site.make, site.posted
        self.today = today_jst()
        self.values = corpus_values(origin)
        self.writer = Writer(self.values)
        self.extra: list[Extra] = []
        self.file_fields: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.file_rotation = Rotation([v for v in self.values if FILE_NAME_SKIP not in v.text])

    # -- helpers ------------------------------------------------------------------------------

    def value_for(self, field_id: str, max_length: int, *, url: bool = False) -> Value:
        if field_id in EXPLICIT and field_id not in self.writer.placed:
            return self.writer.put(field_id, EXPLICIT[field_id])
        return self.writer.take(field_id, max_length, url=url)

    def file(self, field_id: str) -> tuple[io.BytesIO, str]:
        """An upload (a small PDF) named by the next corpus value, as a multipart part."""
        value = self.file_rotation.take(200)
        self.writer.placed[field_id] = value
        return io.BytesIO(pdf_bytes()), on_the_wire(f"{value.text}.pdf")

    # -- the vendor's answers -----------------------------------------------------------------

    def answer(self, browser: Browser, assessment: Assessment, prefix: str, sections=None) -> None:
        """Answer every question the engagement shows (of ``sections`` only, if given), the
        follow-ups included; free text from the corpus, evidence files with hostile names."""
        bank = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
        facts = assessment.engagement.facts
        wanted = revealing_values(bank)
        first = next(q for q in bank.questions if q.type != "evidence")
        token = token_of(browser, f"/assessments/{assessment.id}/sections/{first.section_key}")
        answered: dict = {}
        while True:
            todo = [
                q
                for q in visible_questions(bank, facts, answered)
                if q.key not in answered
                and q.type != "evidence"
                and (sections is None or q.section_key in sections)
            ]
            if not todo:
                break
            question = todo[0]
            if question.type in TEXT_TYPES:
                value = self._text_answer(browser, token, assessment, question, prefix)
            else:
                if question.type == "table":
                    cells = {
                        t.column: self.value_for(f"{prefix}:{t.id}", t.max_length).text
                        for t in text_targets([question])
                    }
                    value = table_rows(question, cells, self.today)
                else:
                    value = plain_answer(question, wanted)
                response = autosave(browser, token, assessment, question, value)
                assert response.json["status"] == "saved", (question.key, response.json)
            answered[question.key] = validate(question, value)
        for question in visible_questions(bank, facts, answered):
            if question.type == "evidence" and (
                sections is None or question.section_key in sections
            ):
                self._upload_evidence(browser, token, assessment, question, prefix)

    def _text_answer(self, browser, token, assessment, question, prefix: str) -> str:
        field_id = f"{prefix}:{question.key}"
        limit = text_targets([question])[0].max_length
        while True:
            value = self.value_for(field_id, limit, url=question.type == "url")
            response = autosave(browser, token, assessment, question, value.text)
            if response.json["status"] == "saved":
                return value.text
            assert response.status_code == 422, (question.key, response.json)
            self.writer.refused[field_id].append(value.id)

    def _upload_evidence(self, browser, token, assessment, question, prefix: str) -> None:
        files = []
        for n in range(2):
            field_id = f"{prefix}:file:{question.key}:{n}"
            files.append(self.file(field_id))
            self.file_fields[(prefix, question.key)].append(field_id)
        section_url = f"/assessments/{assessment.id}/sections/{question.section_key}"
        response = browser.client.post(
            f"/assessments/{assessment.id}/evidence/{question.key}",
            data={
                "csrf_token": token,
                "next": section_url,
                "file": files,
            },
            follow_redirects=True,
        )
        self.extra.append(
            Extra(
                f"vendor: {section_url} after uploading to {question.key}",
                response,
                fields=self.file_fields[(prefix, question.key)],
            )
        )

    def excel_import(self, browser: Browser, assessment: Assessment) -> None:
        """A workbook whose choice cell and an extra row's key carry payloads: the result page
        names them."""
        download = browser.get(f"/assessments/{assessment.id}/excel")
        book = load_workbook(io.BytesIO(download.data))
        sheet = book[ANSWERS]
        choice = corpus_value(self.values, EXCEL_ECHO["excel:choice"])
        key = corpus_value(self.values, EXCEL_ECHO["excel:key"])
        rows = list(sheet.iter_rows(min_row=2))
        target = next(r for r in rows if r[KEY_COL - 1].value == "company.security_policy")
        target[ANSWER_COL - 1].value = choice.text
        sheet.append([key.text, "", "存在しない設問"])
        out = io.BytesIO()
        book.save(out)
        response = browser.submit(
            f"/assessments/{assessment.id}/excel/import",
            {"file": (io.BytesIO(out.getvalue()), "評価票.xlsx")},
            selector="form#excel-import",
        )
        assert response.status_code == 200
        self.extra.append(
            Extra(
                "vendor: the Excel import's problems",
                response,
                # A choice is matched to the labels NFKC-normalised, and named so.
                literal={
                    "excel:choice": unicodedata.normalize("NFKC", choice.text),
                    "excel:key": key.text,
                },
            )
        )

    def refused_section(self, browser: Browser, assessment: Assessment) -> None:
        """A section saved with a payload in a number field: refused, given back in the form."""
        value = corpus_value(self.values, "img-onerror")
        name = "a:company.foreign_capital_ratio"
        response = browser.submit(
            f"/assessments/{assessment.id}/sections/company", {name: value.text}, "form#answers"
        )
        self.extra.append(
            Extra("vendor: a refused section save", response, form_values={name: value.text})
        )

    def submit(self, browser: Browser, assessment: Assessment) -> None:
        response = browser.submit(
            f"/assessments/{assessment.id}/submit", selector="main form[method=post]"
        )
        assert response.status_code == 302, response.status_code

    # -- the company, its user, the 定期確認 and the report ------------------------------------

    def invite_vendor(self, staff: Browser, company: VendorCompany) -> User:
        name = self.value_for("user.name", 100)
        email = "xss-vendor@example.jp"
        response = staff.submit(
            f"/vendors/{company.id}",
            {"name": name.text, "email": email},
            selector="form[action$='/users']",
            follow_redirects=True,
        )
        self.extra.append(
            Extra("staff: the vendor's page after the invitation", response, ["user.name"])
        )
        [message] = [m for m in outbox(self.app) if m["To"] == email]
        anonymous = Browser(self.app.test_client())
        link = link_in(message).removeprefix("http://localhost")
        self.extra.append(Extra("anonymous: the invitation", anonymous.get(link), ["user.name"]))
        response = anonymous.submit(link, {"password": PASSWORD, "confirm": PASSWORD})
        assert response.status_code == 302, response.status_code
        # Anyone may type into the login form. The address of a failed login is audited, but
        # with no organisation unless it names an account: no organisation's log shows it.
        typed = corpus_value(self.values, "formula-hyperlink").text
        anonymous.submit("/auth/login", {"email": typed, "password": "間違ったパスワード"})
        self.db.rollback()
        return self.db.scalar(sa.select(User).where(User.email == email))

    def profile(self, browser: Browser) -> None:
        refused = corpus_value(self.values, "textarea-breakout/ja")
        response = browser.submit(
            "/vendor/profile", {"name": "", "address": refused.text}, "main form[method=post]"
        )
        self.extra.append(
            Extra("vendor: a refused profile", response, form_values={"address": refused.text})
        )
        data = {
            "name": self.value_for("profile.name", 200).text,
            "address": self.value_for("profile.address", 300).text,
            "representative": self.value_for("profile.representative", 100).text,
        }
        response = browser.submit("/vendor/profile", data, "main form[method=post]")
        assert response.status_code == 302, response.status_code

    def confirmation(self, browser: Browser, confirmation) -> None:
        url = f"/vendor/confirmations/{confirmation.id}"
        # Refused: a payload in a number field, with a note; both are given back.
        value = corpus_value(self.values, "title-breakout/ja")
        note = corpus_value(self.values, "entities/ja")
        name = "a:external.incident_notice_hours"
        response = browser.submit(
            url,
            {"incidents-change": "changed", "incidents-note": note.text, name: value.text},
            selector="form[action$='/sections/incidents']",
        )
        assert response.status_code == 422, response.status_code
        self.extra.append(
            Extra(
                "vendor: a refused 定期確認 section",
                response,
                form_values={name: value.text, "incidents-note": note.text},
            )
        )
        for view in confirmations.section_views(confirmation):
            key = view.key
            data = {f"{key}-note": self.value_for(f"confirmation:note:{key}", 2000).text}
            shown = {q.key for q in view.shown}
            targets = [t for t in text_targets(view.questions) if t.key in shown]
            for target in targets:
                text = self.value_for(
                    f"confirmation:{target.id}", target.max_length, url=target.url
                ).text
                name = (
                    f"a:{target.key}"
                    if target.column is None
                    else f"a:{target.key}:0:{target.column}"
                )
                data[name] = text
            data[f"{key}-change"] = "changed" if targets else "unchanged"
            response = browser.submit(url, data, selector=f"form[action$='/sections/{key}']")
            assert response.status_code == 303, (key, response.status_code)
        response = browser.submit(
            url,
            {"file": self.file("confirmation:file:0")},
            selector="form[data-form=upload]",
            follow_redirects=True,
        )
        self.extra.append(
            Extra("vendor: the 定期確認 after attaching a file", response, ["confirmation:file:0"])
        )
        response = browser.submit(url, selector="form[data-form=submit]")
        assert response.status_code == 303, response.status_code

    def report(self, browser: Browser, schedule) -> None:
        url = f"/vendor/reports/new?schedule={schedule.id}&kind=incident"
        refused = corpus_value(self.values, "polyglot/ja")
        response = browser.submit(
            url, {"occurred_on": "", "summary": refused.text}, selector="main form[method=post]"
        )
        assert response.status_code == 422, response.status_code
        self.extra.append(
            Extra("vendor: a refused report", response, form_values={"summary": refused.text})
        )
        data = {
            "occurred_on": (self.today - timedelta(days=1)).isoformat(),
            "summary": self.value_for("report.summary", 4000).text,
            "information_affected": self.value_for("report.information_affected", 2000).text,
            "measures": self.value_for("report.measures", 4000).text,
            "attachment": self.file("report:file"),
        }
        response = browser.submit(url, data, selector="main form[method=post]")
        assert response.status_code == 303, response.status_code

    # -- the world ----------------------------------------------------------------------------

    def build(self) -> SimpleNamespace:
        make, db, today = self.make, self.db, self.today
        org = make.org(name="検証市")
        department = make.department(org, "情報政策課")
        staff = make.user(org, roles={Role.STAFF}, departments=[department], name="審査 一郎")
        approver = make.user(org, roles={Role.APPROVER}, name="許可 三郎")
        ciso = make.user(org, roles={Role.CISO}, name="統括 四郎")
        admin = make.user(org, roles={Role.ADMIN}, name="管理 五郎")
        company = make.company(org, name="検証用株式会社")
        cloud = make.engagement(
            org,
            department,
            staff,
            title="クラウド基盤サービスの利用",
            kind="external_service",
            confidentiality=3,
            integrity=2,
            availability=2,
            personal_data=True,
            specific_personal_data=True,
            sensitive_personal_data=True,
            network_segment="internet",
            period_start=today - timedelta(days=30),
            period_end=today + timedelta(days=700),
        )
        survey = make.engagement(
            org,
            department,
            staff,
            title="アンケートサービスの利用",
            kind="external_service",
            confidentiality=1,
        )
        a = make.assessment(cloud, company, staff)
        b = make.assessment(survey, company, staff)
        browsers = SimpleNamespace(
            staff=signed_in(self.app, staff),
            ciso=signed_in(self.app, ciso),
            admin=signed_in(self.app, admin),
        )

        vendor = self.invite_vendor(browsers.staff, company)
        browsers.vendor = signed_in(self.app, vendor)
        self.profile(browsers.vendor)
        self.answer(browsers.vendor, a, "A")
        self.excel_import(browsers.vendor, a)
        self.refused_section(browsers.vendor, a)
        self.submit(browsers.vendor, a)
        # The 約款型 assessment asks its own section besides those above: that one is answered.
        self.answer(browsers.vendor, b, "B", sections={"terms"})

        # Staff decide and approve the use (arranged: not under test here), which opens the
        # 定期確認 schedule and the register entry built from the vendor's answers.
        db.rollback()
        a = db.get(Assessment, a.id)
        a.status = "decided"
        db.commit()
        service = approvals.create_service(db, staff, company.id, approvals.prefill_from(db, a), a)
        application = approvals.file(
            db,
            staff,
            approvals.ApplicationInput(
                department_id=department.id,
                service_id=service.id,
                plan_id=None,
                assessment_id=a.id,
                purpose="住民向けサービスの基盤として利用するため。",
                business="住民向けサービスの運用",
                network_segment="internet",
                max_confidentiality=3,
                personal_data=True,
                specific_personal_data=True,
                sensitive_personal_data=True,
            ),
        )
        application.status, application.decision = "approved", "approve"
        application.decided_by_id, application.decided_at = approver.id, utcnow()
        schedule = schedules.open_for_application(db, application, approver, today)
        db.commit()
        confirmation = confirmations.open_confirmation(db, schedule, staff, today)
        db.commit()

        self.confirmation(browsers.vendor, confirmation)
        self.report(browsers.vendor, schedule)
        db.rollback()
        finding = findings.raise_finding(
            db,
            staff,
            source=db.get(type(confirmation), confirmation.id),
            data=findings.FindingInput(
                severity="medium",
                title="教育記録の不足",
                description="",
                corrective_action="教育記録を提出する。",
                owner_id=staff.id,
                due_on=today + timedelta(days=30),
            ),
            today=today,
        )
        # A contractor audit of the company's subcontractor, as named in the vendor's answer.
        subcontractor = store.values(db, a)["contract.subcontractors"][0]["name"]
        audit = ContractorAudit(
            organisation_id=org.id,
            department_id=department.id,
            schedule_id=schedule.id,
            vendor_company_id=company.id,
            subcontractor=subcontractor,
            title="再委託先の監査",
            scope="データセンターの運用",
            method="onsite",
            auditor_id=ciso.id,
            planned_on=today + timedelta(days=20),
            created_by_id=ciso.id,
        )
        db.add(audit)
        db.commit()

        world = SimpleNamespace(
            app=self.app,
            db=db,
            today=today,
            values=self.values,
            placed=self.writer.placed,
            extra=self.extra,
            browsers=browsers,
            org=org,
            department=department,
            company=company,
            vendor=vendor,
            a=a,
            b=b,
            service=service,
            application=application,
            schedule=schedule,
            confirmation=confirmation,
            finding=finding,
            audit=audit,
            posted=self.posted,
        )
        world.stored = self.stored(world)
        world.report = db.scalar(
            sa.select(VendorReport).where(VendorReport.schedule_id == schedule.id)
        )
        world.evidence = db.scalars(
            sa.select(EvidenceFile)
            .where(EvidenceFile.assessment_id == a.id)
            .order_by(EvidenceFile.id)
        ).all()
        world.review_file = db.scalar(
            sa.select(ReviewFile).where(ReviewFile.confirmation_id == confirmation.id)
        )
        return world

    def stored(self, world) -> dict[str, str]:
        """What the database holds for every field written: the pages must show exactly this."""
        db = self.db
        db.rollback()
        company = db.get(VendorCompany, world.company.id, populate_existing=True)
        vendor = db.get(User, world.vendor.id, populate_existing=True)
        stored = {
            "profile.name": company.name,
            "profile.address": company.address,
            "profile.representative": company.representative,
            "user.name": vendor.name,
        }
        for prefix, assessment in (("A", world.a), ("B", world.b)):
            answers = store.values(db, assessment)
            files = db.scalars(
                sa.select(EvidenceFile)
                .where(EvidenceFile.assessment_id == assessment.id)
                .order_by(EvidenceFile.id)
            ).all()
            by_question = defaultdict(list)
            for row in files:
                by_question[row.question_key].append(row.original_name)
            for field_id in self.writer.placed:
                head, _, rest = field_id.partition(":")
                if head != prefix:
                    continue
                if rest.startswith("file:"):
                    _file, key, n = rest.split(":")
                    stored[field_id] = by_question[key][int(n)]
                else:
                    stored[field_id] = _answer_part(answers, rest)
        confirmation = world.confirmation
        db.refresh(confirmation)
        for row in confirmation.sections:
            stored[f"confirmation:note:{row.section_key}"] = row.note
            values = row.value_map()
            for field_id in self.writer.placed:
                rest = field_id.removeprefix("confirmation:")
                if field_id.startswith("confirmation:") and _answer_key(rest) in values:
                    stored[field_id] = _answer_part(values, rest)
        stored["confirmation:file:0"] = db.scalar(
            sa.select(ReviewFile.original_name).where(ReviewFile.confirmation_id == confirmation.id)
        )
        report = db.scalar(
            sa.select(VendorReport).where(VendorReport.schedule_id == world.schedule.id)
        )
        for name in ("summary", "information_affected", "measures"):
            stored[f"report.{name}"] = getattr(report, name)
        stored["report:file"] = db.scalar(
            sa.select(ReviewFile.original_name).where(ReviewFile.report_id == report.id)
        )
        return stored


def _answer_key(target_id: str) -> str:
    return target_id.split("[", 1)[0]


def _answer_part(answers: dict, target_id: str) -> str:
    """``key`` or ``key[0].column`` of a dict of answers."""
    key, _, column = target_id.partition("[0].")
    value = answers[key]
    return value[0][column] if column else value


@pytest.fixture(scope="module")
def world(site, probe):
    return WorldBuilder(site, probe).build()


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


def group(world, *prefixes: str) -> list[str]:
    """The fields written whose id starts with one of ``prefixes``."""
    return [f for f in world.placed if f.startswith(prefixes) and f in world.stored]


def answers_of(world, prefix: str, section_key: str | None = None) -> list[str]:
    """The text answers (not the files) of assessment ``prefix``, optionally of one section."""
    bank = loader.latest("assessment")
    return [
        f
        for f in group(world, f"{prefix}:")
        if ":file:" not in f
        and (
            section_key is None
            or bank.question(_answer_key(f.split(":", 1)[1])).section_key == section_key
        )
    ]


def expected(world, field_ids) -> dict[str, str]:
    return {f: world.stored[f] for f in field_ids}


def as_json(world, field_ids) -> dict[str, str]:
    """The stored values as the audit log's details show them (inside a JSON document)."""
    return {f: json.dumps(world.stored[f], ensure_ascii=False)[1:-1] for f in field_ids}


def expectations(world) -> dict[tuple[str, str], dict[str, str]]:
    """(user type, endpoint) → the text its page must show, for the walker's sample ids."""
    a_all = answers_of(world, "A") + group(world, "A:file:")
    confirmation = group(world, "confirmation:")
    # Once handed in, the vendor's page shows the note of the sections it changed.
    unchanged_notes = {
        f"confirmation:note:{row.section_key}"
        for row in world.confirmation.sections
        if not row.changed
    }
    report = group(world, "report.", "report:")
    company = ["profile.name"]
    evidence = next(
        f for f in group(world, "A:file:") if world.stored[f] == world.evidence[0].original_name
    )
    service = ["A:certifications.ismap_service_name"]
    # The service record is filled from the vendor's answers (approvals.prefill_from).
    record = [
        "A:certifications.ismap_number",
        "A:certifications.others[0].number",
        "A:certifications.others[0].body",
        "A:certifications.others[0].scope",
        "A:external.data_locations[0].region",
        "A:contract.subcontractors[0].name",
        "A:contract.subcontractors[0].role",
        "A:contract.backup",
        "A:external.migration_plan",
    ]
    fields = {
        ("vendor", "main.dashboard"): ["user.name"],
        ("vendor", "auth.account"): ["user.name"],
        ("vendor", "evidence.detail"): [evidence],
        ("vendor", "confirmations.vendor_answer"): [
            f for f in confirmation if f not in unchanged_notes
        ],
        ("vendor", "vendor_reports.vendor_detail"): report,
        ("staff", "vendors.index"): company,
        ("staff", "vendors.detail"): group(world, "profile.") + ["user.name"],
        ("staff", "engagements.detail"): company,
        ("staff", "assessments.staff_view"): company + a_all,
        ("staff", "evaluations.overview"): company,
        ("staff", "evaluations.section"): answers_of(world, "A", "company"),
        ("staff", "evaluations.report"): company + a_all,
        ("staff", "evidence.detail"): [evidence],
        ("staff", "confirmations.detail"): company + confirmation,
        ("staff", "confirmations.schedule"): company,
        ("staff", "vendor_reports.detail"): company + report,
        ("staff", "reports.incidents"): company + ["report.summary"],
        ("staff", "reports.schedules"): company,
        ("staff", "register.index"): company + service,
        ("staff", "register.printable"): company + service,
        ("staff", "approvals.service_detail"): company + service + record,
        ("staff", "approvals.services"): company + service,
        ("staff", "clauses.preview"): clause_fields(world),
        ("staff", "evaluations.decision"): company,
        ("staff", "reports.expiring"): company + ["A:certifications.others[0].number"],
        ("staff", "approvals.detail"): company + service,
        ("staff", "findings.index"): service,
        ("ciso", "contractor_audits.detail"): company + ["A:contract.subcontractors[0].name"],
        ("ciso", "contractor_audits.index"): company + ["A:contract.subcontractors[0].name"],
        ("ciso", "contractor_audits.new"): company,
        ("admin", "admin.users_list"): ["user.name"],
    }
    pages = {page: expected(world, ids) for page, ids in fields.items()}
    pages["ciso", "audit.events"] = as_json(world, ["confirmation:file:0", "report:file"])
    return pages


def samples_of(world) -> dict[str, object]:
    return {
        "user_id": world.vendor.id,
        "department_id": world.department.id,
        "company_id": world.company.id,
        "assessment_id": world.a.id,
        "engagement_id": world.a.engagement_id,
        "section_key": "company",
        "question_key": world.evidence[0].question_key,
        "evidence_id": world.evidence[0].id,
        "number": 1,
        "service_id": world.service.id,
        "application_id": world.application.id,
        "phase": "build",
        "item_key": "access_control",
        "schedule_id": world.schedule.id,
        "confirmation_id": world.confirmation.id,
        "finding_id": world.finding.id,
        "report_id": world.report.id,
        "file_id": world.review_file.id,
        "audit_id": world.audit.id,
        "terms_id": 1,  # no GET route takes it
    }


WALKERS = {
    "vendor": Role.VENDOR,
    "staff": Role.STAFF,
    "ciso": Role.CISO,
    "admin": Role.ADMIN,
}


def test_every_page_shows_the_vendors_text_as_text_and_never_as_markup(world):
    """Every GET route each user type may open, with the world's ids: no markup from a payload;
    the pages that show a field show its stored value."""
    app, checked = world.app, Checked()
    samples, wanted = samples_of(world), expectations(world)
    visited, unsampled = set(), set()
    for label, role in WALKERS.items():
        browser = getattr(world.browsers, label)
        granted = {str(p) for p in ROLE_PERMISSIONS[role]} | {PUBLIC, AUTHENTICATED}
        for rule in walked_rules(app, "GET"):
            if requirement_of(app, rule) not in granted:
                continue
            if set(rule.arguments) - samples.keys():
                unsampled |= set(rule.arguments) - samples.keys()
                continue
            path = path_for(rule, samples)
            response = browser.get(path)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            checked.page(f"{label} GET {path}", response, wanted.get((label, rule.endpoint)))
            visited.add((label, rule.endpoint))
    checked.verify()
    assert set(wanted) <= visited, sorted(set(wanted) - visited)
    assert len(checked.pages) >= 80
    # Only the invitation and reset links are not walked (the invitation is seen while writing).
    assert unsampled == {"token"}


def test_pages_seen_while_writing_show_the_text_and_no_markup(world):
    """Flashes after an upload or an invitation, the Excel import's problems, and the forms
    given back after a refusal (values unchanged, nothing injected)."""
    checked = Checked()
    for extra in world.extra:
        page = checked.page(
            extra.label, extra.response, expected(world, extra.fields) | extra.literal
        )
        for name, value in extra.form_values.items():
            node = page.select_one(f"[name='{name}']")
            assert node is not None, f"{extra.label}: no field {name}"
            shown = textarea_text(node) if node.name == "textarea" else node.get("value")
            if shown != value.strip():
                checked.problems.append(f"{extra.label}: {name} holds {shown!r}")
    checked.verify()
    assert len(checked.pages) == len(world.extra) >= 10


def test_the_vendors_answer_pages_give_every_answer_back_unchanged(world):
    """Every section of both assessments, as the vendor sees it: each text answer is the value
    of its field, exactly as stored."""
    browser, checked = world.browsers.vendor, Checked()
    seen = set()
    for prefix, assessment in (("A", world.a), ("B", world.b)):
        bank = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
        for section in bank.sections:
            url = f"/assessments/{assessment.id}/sections/{section.key}"
            response = browser.get(url)
            if response.status_code == 404:  # the section does not apply to this engagement
                continue
            page = checked.page(f"vendor GET {url}", response)
            values = form_fields(page.select_one("form#answers"))
            for field_id in answers_of(world, prefix, section.key):
                target = field_id.split(":", 1)[1]
                key, _, column = target.partition("[0].")
                name = f"a:{key}:0:{column}" if column else f"a:{key}"
                if values.get(name) != world.stored[field_id]:
                    checked.problems.append(f"{url}: {name} holds {values.get(name)!r}")
                seen.add(field_id)
    checked.verify()
    assert seen == set(answers_of(world, "A") + answers_of(world, "B"))


def test_the_vendors_profile_and_its_name_come_back_unchanged(world):
    checked = Checked()
    page = checked.page("vendor GET /vendor/profile", world.browsers.vendor.get("/vendor/profile"))
    values = form_fields(page.select_one("main form[method=post]"))
    assert {k: values[k] for k in ("name", "address", "representative")} == {
        k: world.stored[f"profile.{k}"] for k in ("name", "address", "representative")
    }
    url = f"/admin/users/{world.vendor.id}"
    page = checked.page(f"admin GET {url}", world.browsers.admin.get(url))
    assert (
        form_fields(page.select_one("main form[method=post]"))["name"] == world.stored["user.name"]
    )
    checked.verify()


def test_staff_review_every_section_and_the_other_assessment_without_markup(world):
    staff, checked = world.browsers.staff, Checked()
    bank = loader.get(world.a.questionnaire_key, world.a.questionnaire_version)
    for section in bank.sections:
        url = f"/assessments/{world.a.id}/review/{section.key}"
        response = staff.get(url)
        if response.status_code == 404:
            continue
        checked.page(
            f"staff GET {url}", response, expected(world, answers_of(world, "A", section.key))
        )
    b_all = answers_of(world, "B") + group(world, "B:file:")
    url = f"/assessments/{world.b.id}/view"
    checked.page(f"staff GET {url}", staff.get(url), expected(world, ["profile.name", *b_all]))
    checked.verify()
    assert len(checked.pages) >= 7


# ---------------------------------------------------------------------------------------------
# PDFs
# ---------------------------------------------------------------------------------------------


def squash(text: str) -> str:
    """Text without any whitespace: PDF extraction breaks lines wherever the layout does."""
    return re.sub(r"\s+", "", text)


def pdf_actions(data: bytes) -> list[str]:
    """Scripts, launches, form submissions and links to anything but the web in a PDF."""
    reader = PdfReader(io.BytesIO(data))
    root = reader.trailer["/Root"].get_object()
    found = [key for key in ("/OpenAction", "/AA", "/AcroForm") if key in root]
    names = root.get("/Names")
    if names is not None and "/JavaScript" in names.get_object():
        found.append("/Names/JavaScript")
    for number, page in enumerate(reader.pages, start=1):
        for annotation in page.get("/Annots") or []:
            action = annotation.get_object().get("/A")
            if action is None:
                continue
            action = action.get_object()
            kind, uri = action.get("/S"), str(action.get("/URI", ""))
            if kind not in ("/URI", "/GoTo") or (kind == "/URI" and not uri.startswith("https://")):
                found.append(f"page {number}: {kind} {uri[:80]}")
    return found


def clause_fields(world) -> list[str]:
    """The vendor's fields the 特記事項 inserts: the parties' particulars, and the answers quoted
    by the articles that apply to this engagement by default (parts, articles and paragraphs
    whose conditions hold), tables included."""
    catalogue = clause_catalogue.latest()
    facts = world.a.engagement.facts
    answers = store.values(world.db, world.a)
    keys = set()
    for part in catalogue.parts:
        for article in part.articles if holds(part.when, facts, answers) else ():
            if not holds(article.when, facts, answers) or not (
                article.mandatory or article.default
            ):
                continue
            keys |= {article.table} if article.table else set()
            for paragraph in article.paragraphs:
                if holds(paragraph.when, facts, answers):
                    keys |= {
                        name.split(":", 1)[1]
                        for text in paragraph.texts
                        for name in clause_catalogue.placeholders(text)
                        if name.startswith("answer:")
                    }
    parties = ["A:company.legal_name", "A:company.address", "A:company.representative"]
    quoted = [f for f in answers_of(world, "A") if _answer_key(f[2:]) in keys]
    assert len(quoted) >= 6, quoted
    return parties + quoted


def test_pdfs_read_every_payload_literally_fetch_nothing_and_embed_nothing(world):
    """The 特記事項 (generated, then downloaded) and the assessment report: the vendor's text is
    literal text, the loopback listener named in the payloads got no request, no file from a
    payload is embedded and no script, launch or form is added."""
    staff, a = world.browsers.staff, world.a
    clauses_url = f"/assessments/{a.id}/clauses"
    world.db.rollback()
    in_clauses = clause_fields(world)
    generated = staff.submit(clauses_url, selector="form[action$='/clauses/versions']")
    assert generated.status_code == 303, generated.status_code
    clauses = staff.submit(clauses_url, selector="form[action$='/clauses/versions/1/pdf']")
    report = staff.submit(f"/assessments/{a.id}/report", selector="form[action$='/report.pdf']")
    problems = []
    for label, response, fields in (
        ("特記事項", clauses, in_clauses),
        ("評価報告書", report, ["profile.name", *answers_of(world, "A"), *group(world, "A:file:")]),
    ):
        assert response.status_code == 200 and response.mimetype == "application/pdf", label
        text = squash(pdf_text(response.data))
        problems += [
            f"{label}: {f} ({world.placed[f].id}) does not read literally"
            for f in fields
            if squash(world.placed[f].pdf) not in text
        ]
        problems += [f"{label}: embeds {name}" for name in pdf_attachments(response.data)]
        problems += [f"{label}: {action}" for action in pdf_actions(response.data)]
        if "root:x:0:0" in text:
            problems.append(f"{label}: /etc/passwd was read")
    assert problems == [], "\n".join(problems)
    assert _Probe.hits == []


# ---------------------------------------------------------------------------------------------
# CSV and XLSX exports
# ---------------------------------------------------------------------------------------------


def csv_cells(data: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))) for cell in row]


def xlsx_cells(data: bytes) -> list:
    book = load_workbook(io.BytesIO(data))
    return [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]


def cells_of(data: bytes, fmt: str) -> list:
    """Every cell of an export: strings of a CSV, openpyxl cells of a workbook."""
    return csv_cells(data) if fmt == "csv" else xlsx_cells(data)


def formula_problems(label: str, cells: list) -> list[str]:
    """Cells a spreadsheet would evaluate: a formula cell, or text starting with = + - @ (or a
    tab / carriage return) left as it is (in a workbook: without Excel's quote prefix)."""
    problems = []
    for cell in cells:
        if isinstance(cell, str):
            if cell.startswith(FORMULA_STARTS):
                problems.append(f"{label}: {cell!r}")
        elif cell.data_type == "f":
            problems.append(f"{label}: formula {cell.coordinate} {cell.value!r}")
        elif (
            isinstance(cell.value, str)
            and cell.value.startswith(FORMULA_STARTS)
            and not cell.quotePrefix
        ):
            problems.append(f"{label}: {cell.coordinate} {cell.value!r} without a quote prefix")
    return problems


def missing_cells(label: str, cells: list, expected: dict[str, str]) -> list[str]:
    """The expected values no cell holds (as a cell of its own, after the CSV's apostrophe, or
    joined with others); ``formula_problems`` checks how each cell starts."""
    texts = [c if isinstance(c, str) else c.value for c in cells]
    texts = [t for t in texts if isinstance(t, str)]
    return [
        f"{label}: {name} is missing"
        for name, value in expected.items()
        if not any(value in t for t in texts)
    ]


def test_every_export_keeps_the_vendors_text_as_text(world):
    """Each list's CSV and XLSX export (the register, 定期確認, expiring certificates, incidents,
    findings), the audit log's CSV and the vendor's own workbook: the vendor's text is there, and
    nothing a spreadsheet would evaluate."""
    company, service = "profile.name", "A:certifications.ismap_service_name"
    report = ["report.summary", "report.information_affected", "report.measures"]
    staff = world.browsers.staff
    lists = {
        "/register": [company, service],
        "/reviews": [company, service],
        "/reviews/expiring?kind=certificate": [company, "A:certifications.others[0].number"],
        "/reviews/incidents": [company, *report],
        "/findings": [service],
    }
    problems, exported = [], 0
    for url, fields in lists.items():
        page = soup(staff.get(url))
        for fmt in ("csv", "xlsx"):
            form = page.select_one(f"form[data-export={fmt}]")
            response = staff.client.post(form["action"], data=form_fields(form))
            label = f"{url} ({fmt})"
            assert response.status_code == 200, label
            cells = cells_of(response.data, fmt)
            problems += formula_problems(label, cells)
            problems += missing_cells(label, cells, expected(world, fields))
            exported += 1
    audit = world.browsers.ciso.submit("/audit/", selector="form[action$='export.csv']")
    assert audit.status_code == 200
    cells = cells_of(audit.data, "csv")
    problems += formula_problems("audit log (csv)", cells)
    problems += missing_cells(
        "audit log (csv)", cells, as_json(world, ["confirmation:file:0", "report:file"])
    )
    workbook = world.browsers.vendor.get(f"/assessments/{world.a.id}/excel")
    assert workbook.status_code == 200
    cells = cells_of(workbook.data, "xlsx")
    problems += formula_problems("the vendor's workbook", cells)
    problems += missing_cells(
        "the vendor's workbook", cells, expected(world, answers_of(world, "A"))
    )
    assert problems == [], "\n".join(problems)
    assert exported == 10
    # The formula payloads really reached the exports (the checks above were not vacuous).
    assert world.stored[company].startswith("=") and world.stored[service].startswith("@")
    assert world.stored["report.summary"].startswith("-")


# ---------------------------------------------------------------------------------------------
# Mail
# ---------------------------------------------------------------------------------------------


def test_mails_that_carry_the_vendors_text_are_plain_text_holding_it_verbatim(world):
    """The invitation names the vendor user; the incident alert to staff names the company,
    the reporter and the service. Mail is text/plain only, the text unescaped."""
    messages = outbox(world.app)
    assert messages and all(
        not m.is_multipart() and m.get_content_type() == "text/plain" for m in messages
    )
    bodies = [m.get_content() for m in messages]
    name, company = world.stored["user.name"], world.stored["profile.name"]
    service = world.stored["A:certifications.ismap_service_name"]
    assert any(f"{name} 様" in body for body in bodies)  # the invitation
    assert any(company in b and name in b and service in b for b in bodies)  # the alert


# ---------------------------------------------------------------------------------------------
# Guards: a vendor text field the world does not write fails here
# ---------------------------------------------------------------------------------------------


def test_every_text_question_of_the_assessment_bank_is_written(world):
    enumerated = {t.id for t in assessment_targets()}
    written = {f.split(":", 1)[1] for f in group(world, "A:", "B:") if ":file:" not in f}
    assert enumerated - written == set(), "text questions no payload reached"
    assert written <= enumerated
    bank = loader.latest("assessment")
    evidence = {q.key for q in bank.questions if q.type == "evidence"}
    assert {f.split(":")[2] for f in group(world, "A:file:")} == evidence


def test_every_text_place_of_the_confirmation_bank_is_written(world):
    enumerated = set(confirmation_targets())
    written = {
        f.removeprefix("confirmation:") for f in group(world, "confirmation:") if ":file:" not in f
    }
    assert enumerated - written == set(), "定期確認 fields no payload reached"
    assert written <= enumerated
    assert "confirmation:file:0" in world.stored


def test_every_text_field_of_the_forms_a_vendor_fills_is_written(world):
    sections = [s.key for s in confirmation_bank.latest().sections]
    unwritten = []
    for endpoint, (form_class, pattern) in FORMS.items():
        for name in sorted(text_fields_of(form_class)):
            ids = [pattern.format(name).replace("<section>", key) for key in sections]
            unwritten += [
                f"{endpoint}: {i}"
                for i in dict.fromkeys(ids)
                if i not in world.stored and i not in FORM_FIELDS_NOT_STORED
            ]
    assert unwritten == []
    assert text_fields_of(ReportForm) == {"summary", "information_affected", "measures"}


def test_every_post_route_open_to_a_vendor_is_written_or_takes_no_text(world):
    """A new route a vendor (or anyone) may post to must be written by the world or declared
    to take no text."""
    reachable = vendor_post_endpoints(world.app)
    assert not VENDOR_WRITES.keys() & VENDOR_NO_TEXT.keys()
    assert reachable - (VENDOR_WRITES.keys() | VENDOR_NO_TEXT.keys()) == set(), "unclassified"
    assert (VENDOR_WRITES.keys() | VENDOR_NO_TEXT.keys()) - reachable == set(), "gone"
    assert VENDOR_WRITES.keys() - world.posted == set(), "declared written, never posted"


def test_every_payload_reached_a_field_and_every_field_holds_one(world):
    placed = {v.id for v in world.placed.values()}
    assert {v.id for v in world.values if not v.url} - placed == set()
    assert set(world.placed) <= set(world.stored)
    assert [f for f in world.placed if not world.stored[f]] == []
    assert 18 <= len(CORPUS) <= 30
    assert len({entry["id"] for entry in CORPUS}) == len(CORPUS)
    assert all(e["text"].startswith(FORMULA_STARTS) for e in CORPUS if e.get("formula"))


# ---------------------------------------------------------------------------------------------
# Each payload on its own: the company profile and answers (cheap, so every payload everywhere)
# ---------------------------------------------------------------------------------------------

REGULAR = [entry["id"] for entry in CORPUS if not entry.get("url")]
URLS = [entry["id"] for entry in CORPUS if entry.get("url")]


@pytest.fixture(scope="module")
def town(site):
    """Another organisation, with a member of staff logged in, for the per-payload tests."""
    site.db.rollback()  # a read snapshot older than the last request's commit cannot write
    org = site.make.org(name="個別検証町")
    department = site.make.department(org, "総務課")
    staff = site.make.user(org, roles={Role.STAFF}, departments=[department], name="確認 六郎")
    return SimpleNamespace(
        org=org, department=department, staff=staff, browser=signed_in(site.app, staff)
    )


def vendor_with_assessment(site, town, title: str, **engagement):
    site.db.rollback()
    company = site.make.company(town.org)
    vendor = site.make.user(company=company, invited_by=town.org, name="委託先 担当")
    engagement = site.make.engagement(
        town.org, town.department, town.staff, title=title, **engagement
    )
    assessment = site.make.assessment(engagement, company, town.staff)
    return company, assessment, signed_in(site.app, vendor)


@pytest.mark.parametrize("payload_id", REGULAR)
def test_each_payload_reads_as_text_in_the_company_profile_and_answers(
    site, town, probe, payload_id
):
    """The payload as the company's name, address and representative and as two answers (bare
    and with Japanese text): the vendor's forms give it back unchanged, the staff's vendor list,
    vendor page, engagement and assessment pages show it as text."""
    values = corpus_values(probe)
    bare, ja = corpus_value(values, payload_id), corpus_value(values, f"{payload_id}/ja")
    company, assessment, vendor = vendor_with_assessment(site, town, f"検証案件 {payload_id}")
    profile = {
        "name": ja.text,
        "address": bare.text,
        "representative": bare.text if len(bare.text) <= 100 else "代表取締役 検証 太郎",
    }
    response = vendor.submit("/vendor/profile", profile, "main form[method=post]")
    assert response.status_code == 302
    section = f"/assessments/{assessment.id}/sections/company"
    bank = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    token = token_of(vendor, section)
    answers = {"company.ownership": ja.text, "company.officers": bare.text}
    for key, text in answers.items():
        response = autosave(vendor, token, assessment, bank.question(key), text)
        assert response.json["status"] == "saved", response.json
    site.db.rollback()
    company = site.db.get(VendorCompany, company.id, populate_existing=True)
    stored_profile = {k: getattr(company, k) for k in profile}
    stored_answers = {k: v for k, v in store.values(site.db, assessment).items() if k in answers}
    assert stored_answers == {k: v.strip() for k, v in answers.items()}

    checked = Checked()
    page = checked.page("vendor GET /vendor/profile", vendor.get("/vendor/profile"))
    fields = form_fields(page.select_one("main form[method=post]"))
    assert {k: fields[k] for k in profile} == stored_profile
    page = checked.page(f"vendor GET {section}", vendor.get(section))
    fields = form_fields(page.select_one("form#answers"))
    assert {k: fields[f"a:{k}"] for k in answers} == stored_answers
    name = {"name": stored_profile["name"]}
    for url, shown in (
        ("/vendors", name),
        (f"/engagements/{assessment.engagement_id}", name),
        (f"/assessments/{assessment.id}/view", name | stored_answers),
        (f"/vendors/{company.id}", stored_profile),
    ):
        page = checked.page(f"staff GET {url}", town.browser.get(url), shown)
    # The company's page field by field (the name holds the bare payload too).
    assert page.h1.get_text() == stored_profile["name"]
    for term, key in (("所在地", "address"), ("代表者", "representative")):
        definition = page.find("dt", string=term).find_next_sibling("dd")
        assert definition.get_text() == stored_profile[key], term
    checked.verify()


@pytest.mark.parametrize("payload_id", URLS)
def test_each_url_payload_is_refused_or_reads_as_text(site, town, probe, payload_id):
    """A URL answer (約款型: the terms' URL) takes http(s) only; what it takes, the vendor's
    form gives back unchanged and the staff's page shows as text, never as a link."""
    values = corpus_values(probe)
    refused = next(e for e in CORPUS if e["id"] == payload_id).get("refused", False)
    _company, assessment, vendor = vendor_with_assessment(
        site, town, f"約款型 {payload_id}", kind="external_service", confidentiality=1
    )
    bank = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    question = bank.question("terms.terms_url")
    section = f"/assessments/{assessment.id}/sections/{question.section_key}"
    token = token_of(vendor, section)
    checked = Checked()
    for value in (corpus_value(values, payload_id), corpus_value(values, f"{payload_id}/ja")):
        response = autosave(vendor, token, assessment, question, value.text)
        site.db.rollback()
        stored = store.values(site.db, assessment).get(question.key)
        if refused:
            assert response.status_code == 422 and stored is None, value.id
            continue
        assert response.json["status"] == "saved" and stored == value.text, value.id
        page = checked.page(f"vendor GET {section}", vendor.get(section))
        assert form_fields(page.select_one("form#answers"))[f"a:{question.key}"] == stored
        url = f"/assessments/{assessment.id}/view"
        page = checked.page(f"staff GET {url}", town.browser.get(url), {value.id: stored})
        assert not [a for a in page.select("a[href]") if a["href"] == stored]
    checked.verify()


# ---------------------------------------------------------------------------------------------
# The shared export helper and the bundled scripts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_shared_export_helper_keeps_every_payload_as_text(probe, fmt):
    """``portal.register.exports`` (the register and every dashboard list): each corpus value,
    and text starting with a tab or a carriage return, is a text cell holding the value, a
    formula one neutralised (a leading apostrophe in the CSV, Excel's quote prefix)."""
    texts = [v.text for v in corpus_values(probe)] + ["\t=1+1", "\r=1+1"]
    columns = [RegisterColumn("text", "内容", lambda row: row, 40)]
    if fmt == "csv":
        data = to_csv(texts, columns)
        assert csv_cells(data)[1:] == [
            ("'" if t.startswith(FORMULA_STARTS) else "") + t for t in texts
        ]
    else:
        data = to_xlsx(texts, title="検証", columns=columns)
        cells = [c for c in xlsx_cells(data) if c.row > 1]
        # A workbook is XML: a carriage return reads back as a line feed.
        assert [c.value for c in cells] == [t.replace("\r", "\n") for t in texts]
    assert formula_problems("export", cells_of(data, fmt)) == []
    assert sum(t.startswith(FORMULA_STARTS) for t in texts) >= 10


def test_the_bundled_scripts_never_turn_text_into_markup():
    """The server escapes; the page's own scripts must not undo it (a DOM sink)."""
    scripts = sorted((Path(__file__).parents[1] / "static").rglob("*.js"))
    assert scripts
    sink = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
        r"|setAttribute\(\s*['\"]on|\.html\(|DOMParser|createContextualFragment"
    )
    assert {path.name: sink.findall(path.read_text(encoding="utf-8")) for path in scripts} == {
        path.name: [] for path in scripts
    }
