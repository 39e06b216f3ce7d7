"""Hypothesis fuzzing of every form (SECURITY.md "Input and output"; issue 8, attack suite).

Mechanical, so that a new form is fuzzed without anyone listing it:

* the route walker's sample world (``tests/test_routes.py``) is built once for this module,
  with more objects in the states that show the other forms (an assessment under review,
  one awaiting confirmation, applications waiting / returned / being retired, contracts
  active / ending / complete, a submitted confirmation, contractor audits, locked and
  disabled accounts …: ``arrange_states``);
* every GET page is visited by every user who may see it (each role, an auditor outside the
  department, an anonymous visitor, someone half-way through the login), with every sample
  object, and every ``<form method=post>`` found there is collected with its fields (controls
  joined through ``form="…"`` included), as well as what the page's scripts post
  (``data-autosave-url``);
* every POST route of ``app.url_map`` is a test: hypothesis fills the real fields of one of
  its forms — text with control characters, any UTF-8 text, very long text, numbers, dates
  as text, empty values, choices outside the offered options, missing and duplicated fields,
  extra fields (``organisation_id`` …), files of random bytes with random names — keeps the
  CSRF token valid and submits it;
* every example must be answered without a 5xx: a 4xx only 400/403/404/409/413 with the
  Japanese error page (or a 400/409/422 re-render naming the errors in Japanese; JSON with a
  Japanese message for the script's calls), a 200 page shows
  Japanese field errors or a flash, a download is an attachment, a redirect stays on the site
  and its target opens; the database is not left half-written: the audit chain verifies, no
  row holds U+0000 or a lone surrogate, and a refused submission changes no table but the
  audit trail. Then the database, the evidence store and the visitor's cookies are put back
  as they were (``Rollback``), so that a submission that disables, deletes or ends something
  never spoils the next example.

A route with no form on any walked page fails its test, naming the route: arrange the state
that shows it, or add it to ``NOT_A_FORM`` with the reason and the test that covers it.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
import time_machine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from portal import create_app
from portal.audit import service as audit_service
from portal.auth import tokens
from portal.contractor_audits import service as contractor_audits
from portal.db import Base, engine_for
from portal.errors import MESSAGES
from portal.evaluations.models import Outcome, Score
from portal.evidence.models import EvidenceFile
from portal.evidence.scanner import NoScanner
from portal.evidence.storage import stored_path
from portal.lifecycle import checklists
from portal.lifecycle import service as lifecycle
from portal.permissions import PUBLIC, ROLE_PERMISSIONS, Role
from portal.questionnaires import loader
from portal.reviews import confirmations, exits, schedules
from portal.reviews.models import REPORT_KINDS, ReviewFile
from portal.users.models import User
from portal.web import JST
from tests import factories
from tests.conftest import CHEAP_ARGON2
from tests.factories import PASSWORD
from tests.helpers import Browser, empty_database, soup
from tests.test_clauses_web import ready
from tests.test_confirmations import answer_all
from tests.test_evidence_files import pdf_bytes
from tests.test_isolation import objects_of
from tests.test_lifecycle import Upload
from tests.test_register import Entry, attach_contract, make_entry
from tests.test_routes import (
    arrange_evidence,
    arrange_organisation,
    issue_token,
    needed_permission,
    path_for,
    requirement_of,
    signed_in,
    walked_rules,
)

TODAY = date(2026, 11, 20)
NOW = datetime.combine(TODAY, time(10), JST)

# POST routes that no page holds as a form, each with the reason and the test that covers it.
NOT_A_FORM = {
    "auth.logout": (
        "ends the visitor's session; every page's navigation holds it with only a CSRF token: "
        "tests/test_sessions.py::test_logout_ends_every_session_of_the_user and "
        "tests/test_routes.py::test_every_post_route_refuses_a_request_without_a_valid_csrf_token"
    ),
}

EXAMPLES = 25  # per form with fields of its own
EXAMPLES_TOKEN_ONLY = 3  # per form holding only its CSRF token (extra fields are still fuzzed)
# Each example renders a PDF (seconds each): what goes into the PDF is fuzzed through the
# forms that store it.
EXAMPLES_PDF = {"clauses.generate": 1, "evaluations.report_pdf": 1}
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)

ERROR_PAGES = {400, 403, 404, 409, 413}
RERENDER = {200, 400, 409, 422}  # a form shown again with its errors
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
# What a refused submission may still write: the audit trail of the refusal.
AUDIT_TABLES = {"audit_event", "audit_chain"}
# Forms whose refusal still writes more than the audit trail, with the reason.
FAILED_LOGIN = (
    {"login_attempt", "user_account"},
    "a failed password or code is counted (the throttle and the account lock-out)",
)
WRITTEN_ON_REFUSAL = {
    "auth.login": FAILED_LOGIN,
    "auth.mfa": FAILED_LOGIN,
    "auth.change_password": FAILED_LOGIN,  # a wrong current password
    "assessments.section": (
        {"answer", "answer_revision"},
        "each answer is saved on its own: the page names the refused questions and says "
        "「入力内容に誤りがある項目は保存していません」",
    ),
}


def _post_endpoints() -> list[str]:
    """Every POST route's endpoint, read at collection (one test each)."""
    app = create_app({"DATABASE_URL": "sqlite://"})
    return sorted({rule.endpoint for rule in app.url_map.iter_rules() if "POST" in rule.methods})


POST_ENDPOINTS = _post_endpoints()


# ---------------------------------------------------------------------------------------------
# The world: the route walker's sample world and more states
# ---------------------------------------------------------------------------------------------


def decided_contract(db, make, w, title: str):
    """A decided 業務委託 assessment of the world's company (the rows only) and its schedule."""
    staff = w.people[Role.STAFF]
    engagement = make.engagement(
        w.org,
        w.department,
        staff,
        title=title,
        period_start=date(2026, 4, 1),
        period_end=date(2027, 3, 31),
    )
    assessment = make.assessment(engagement, w.company, staff, status="decided")
    score = Score(
        assessment_id=assessment.id,
        kind="final",
        questionnaire_version=assessment.questionnaire_version,
        rules_version="2026.11",
        scored_on=TODAY,
        rating="medium",
        summary="{}",
        created_by_id=staff.id,
    )
    db.add(score)
    db.flush()
    db.add(
        Outcome(
            assessment_id=assessment.id,
            decision="approve",
            score_id=score.id,
            recommended_by_id=staff.id,
        )
    )
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    return schedule


def arrange_states(app, db, make, w) -> list[dict]:
    """Objects in the states that show the forms the walker's world does not: returns the
    sample variants (argument → id) that reach their pages."""
    staff, approver = w.people[Role.STAFF], w.people[Role.APPROVER]
    manager, vendor = w.people[Role.SERVICE_MANAGER], w.people[Role.VENDOR]
    people = {
        "org": w.org,
        "department": w.department,
        "policy": w.department,
        "staff": staff,
        "approver": approver,
        "manager": manager,
        "company": w.company,
        "vendor": vendor,
    }
    store = {
        "evidence_dir": Path(app.config["EVIDENCE_DIR"]),
        "scanner": NoScanner(),
        "max_bytes": 1024 * 1024,
    }
    s = SimpleNamespace()

    # Accounts: disabled, locked, invited but not yet registered (``w.pending``).
    s.disabled = make.user(w.org, roles={Role.STAFF}, active=False, name="無効 職員")
    s.locked = make.user(w.org, roles={Role.STAFF}, name="施錠 職員")
    s.locked.failed_login_count = 10
    s.locked.locked_until = datetime(2026, 11, 21, tzinfo=UTC)
    db.commit()

    # An assessment under review (submitted, scored, with its 特記事項 and contract), and one
    # whose decision waits for a second person.
    s.review = ready(db, make, w.org, people, title="審査中の委託")
    attach_contract(
        db,
        SimpleNamespace(organisation_id=w.org.id, assessment_id=s.review.id, id=900 + s.review.id),
        staff,
    )
    s.reviewed = ready(db, make, w.org, people, title="確認待ちの委託")
    score = db.scalar(sa.select(Score).where(Score.assessment_id == s.reviewed.id))
    db.add(
        Outcome(
            assessment_id=s.reviewed.id,
            decision="conditional",
            conditions="年1回報告させること。",
            score_id=score.id,
            recommended_by_id=w.target.id,
        )
    )
    s.reviewed.status = "reviewed"
    w.org.decision_requires_confirmation = True
    db.commit()

    # 利用申請: waiting for the decision, returned, being retired (exit checks open, and
    # complete).
    s.waiting = make_entry(db, make, w.org, people, Entry("判断待ちサービス", decision=None))
    s.returned = make_entry(
        db, make, w.org, people, Entry("差戻しサービス", track="9.3", decision="return")
    )
    s.retiring = make_entry(
        db, make, w.org, people, Entry("廃止中サービス", track="9.3", status_action="retire")
    )
    s.retired_checks = make_entry(
        db, make, w.org, people, Entry("確認済みサービス", track="9.3", status_action="retire")
    )
    for item in checklists.latest().phase("exit").items_for(s.retired_checks.category):
        upload = Upload("消去証明書.pdf", pdf_bytes()) if item.requires_file else None
        lifecycle.record(
            db, s.retired_checks, manager, phase="exit", item_key=item.key, result="done",
            checked_on=TODAY, evidence="消去証明書", note="", today=TODAY, upload=upload,
            **store,
        )  # fmt: skip
    db.commit()

    # Contracts: active without a confirmation, a submitted confirmation, ending with the
    # exit checklist open, ending with every item recorded.
    s.active = decided_contract(db, make, w, "開始前の委託")
    s.answered = decided_contract(db, make, w, "回答済みの委託")
    confirmation = confirmations.open_confirmation(db, s.answered, staff, TODAY)
    answer_all(db, confirmation, vendor)
    confirmations.submit(db, confirmation, vendor, confirmation.version)
    db.commit()
    s.submitted_confirmation = confirmation
    s.ending = decided_contract(db, make, w, "終了手続中の委託")
    s.ended_checks = decided_contract(db, make, w, "確認を終えた委託")
    for schedule in (s.ending, s.ended_checks):
        exits.end_contract(
            db,
            schedule,
            staff,
            ending_on=TODAY + timedelta(days=20),
            reason="満了",
            version=schedule.version,
        )
    for item in exits.phase().items:
        upload = Upload("消去証明書.pdf", pdf_bytes()) if item.requires_file else None
        exits.record(
            db, s.ended_checks, staff, item.key, result="done", checked_on=TODAY, note="",
            upload=upload, today=TODAY, **store,
        )  # fmt: skip
    db.commit()

    # Contractor audits by an auditor outside the audited department: planned, performed.
    s.auditor = make.user(w.org, roles={Role.AUDITOR}, name="外部 監査")
    audits = []
    for title in ("計画中の監査", "実施済みの監査"):
        audits.append(
            contractor_audits.plan(
                db,
                s.auditor,
                contractor_audits.AuditPlan(
                    vendor_company_id=w.company.id,
                    schedule_id=s.active.id,
                    department_id=w.department.id,
                    subcontractor="",
                    title=title,
                    scope="アクセスログ",
                    method="remote",
                    auditor_id=s.auditor.id,
                    planned_on=TODAY,
                ),
                TODAY,
            )
        )
    contractor_audits.record_performed(
        db, audits[1], s.auditor, performed_on=TODAY, evidence="入退室記録", today=TODAY,
        version=audits[1].version,
    )  # fmt: skip
    db.commit()
    s.audits = audits

    # A password reset link (the invitation link is the walker's own sample).
    s.reset_token = issue_token(app, db, w.target, tokens.PASSWORD_RESET)
    w.states = s

    sections = [section.key for section in loader.latest("assessment").sections]
    return [
        *({"user_id": u.id} for u in (s.disabled, s.locked, w.pending)),
        *(
            {"assessment_id": a.id, "section_key": key}
            for a in (w.assessment, s.review)
            for key in sections
        ),
        {"assessment_id": s.reviewed.id},
        *({"application_id": a.id} for a in (s.waiting, s.returned, s.retiring, s.retired_checks)),
        *({"schedule_id": x.id} for x in (s.active, s.answered, s.ending, s.ended_checks)),
        {"confirmation_id": s.submitted_confirmation.id},
        *({"audit_id": a.id} for a in audits),
        {"token": s.reset_token},
    ]


def write_arranged_files(app, db) -> None:
    """The walker's evidence and review files are rows only: give them their bytes, so that
    a download or a view is served rather than refused for a missing file."""
    content = pdf_bytes()
    digest = hashlib.sha256(content).hexdigest()
    for model in (EvidenceFile, ReviewFile):
        for row in db.scalars(sa.select(model).where(model.sha256 == "0" * 64)):
            path = stored_path(Path(app.config["EVIDENCE_DIR"]), row.stored_name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            row.sha256, row.size = digest, len(content)
    db.commit()


# ---------------------------------------------------------------------------------------------
# Forms as a browser sees them
# ---------------------------------------------------------------------------------------------

PLAUSIBLE = {
    "text": "試験入力",
    "search": "試験",
    "textarea": "試験の入力です。",
    "email": "fuzz@example.jp",
    "url": "https://example.jp/",
    "tel": "03-1234-5678",
    "password": PASSWORD,
    "number": "1",
    "date": "2026-12-01",
    "datetime-local": "2026-12-01T10:00",
    "month": "2026-12",
    "time": "10:00",
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # an input type, "textarea", "select", "select-multiple", "button"
    rendered: tuple[str, ...]  # what the browser sends as the page stands
    options: tuple[str, ...] = ()
    maxlength: int | None = None

    @property
    def csrf(self) -> bool:
        return self.name == "csrf_token" or self.name.endswith("-csrf_token")


@dataclass
class Form:
    endpoint: str
    action: str
    fields: list[Field]
    multipart: bool
    json: bool = False  # posted by the page's script, answered in JSON

    @property
    def fuzzable(self) -> list[Field]:
        return [f for f in self.fields if not f.csrf]


@dataclass
class Host:
    visitor: str
    page: str
    forms: list[Form] = field(default_factory=list)


def controls(page, form) -> list:
    """The form's controls as the browser submits them: its own (minus those that name another
    form) and those elsewhere that name it with ``form="…"``."""
    ident = form.get("id")
    own = [
        n
        for n in form.select("input, select, textarea, button")
        if not n.get("form") or n.get("form") == ident
    ]
    joined = [n for n in page.select(f'[form="{ident}"]') if n not in own] if ident else []
    return [n for n in own + joined if n.get("name") and not n.has_attr("disabled")]


def fields_of(page, form) -> list[Field]:
    grouped: dict[str, dict] = {}
    for node in controls(page, form):
        name = node["name"]
        if node.name == "textarea":
            kind, values, options = "textarea", [node.get_text()], []
        elif node.name == "select":
            kind = "select-multiple" if node.has_attr("multiple") else "select"
            opts = [o.get("value", o.get_text()) for o in node.select("option")]
            chosen = [o.get("value", o.get_text()) for o in node.select("option[selected]")]
            if not chosen and kind == "select" and opts:
                chosen = [opts[0]]  # a browser sends the first option
            values, options = chosen, opts
        elif node.name == "button" or node.get("type") in ("submit", "image"):
            if node.get("type", "submit") != "submit":
                continue
            kind, values, options = "button", [], [node.get("value", "")]
        else:
            kind = (node.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                value = node.get("value", "on")
                values, options = ([value] if node.has_attr("checked") else []), [value]
            elif kind == "reset":
                continue
            else:
                values, options = [node.get("value", "")], []
        entry = grouped.setdefault(
            name, {"kind": kind, "values": [], "options": [], "maxlength": None}
        )
        entry["values"] += values
        entry["options"] += [o for o in options if o not in entry["options"]]
        if node.get("maxlength", "").isdigit():
            entry["maxlength"] = int(node["maxlength"])
    fields = []
    for name, entry in grouped.items():
        values = entry["values"]
        if entry["kind"] == "button":
            values = entry["options"][:1]  # the first button of that name is the one clicked
        fields.append(
            Field(name, entry["kind"], tuple(values), tuple(entry["options"]), entry["maxlength"])
        )
    return fields


def endpoint_of(app, url: str) -> str | None:
    try:
        endpoint, _ = app.url_map.bind("localhost").match(urlsplit(url).path, method="POST")
    except HTTPException:
        return None
    return endpoint


def forms_on(app, page_url: str, response) -> list[Form]:
    """Every POST form of the page (an action the site does not take shows as ``None``), and
    what its scripts post: the answer form's autosave, one question at a time."""
    page = soup(response)
    found = []
    for form in page.select("form"):
        if (form.get("method") or "get").lower() != "post":
            continue
        action = urljoin(page_url, form.get("action") or page_url)
        fields = fields_of(page, form)
        multipart = (form.get("enctype") or "").lower() == "multipart/form-data" or any(
            f.kind == "file" for f in fields
        )
        found.append(Form(endpoint_of(app, action), action, fields, multipart))
        autosave = form.get("data-autosave-url")
        if autosave:
            keys = tuple(dict.fromkeys(n["data-question"] for n in page.select("[data-question]")))
            found.append(
                Form(
                    endpoint_of(app, autosave),
                    urljoin(page_url, autosave),
                    [*fields, Field("question", "select", keys[:1], keys)],
                    False,
                    json=True,
                )
            )
    return found


# ---------------------------------------------------------------------------------------------
# What goes into a field
# ---------------------------------------------------------------------------------------------

CHARS = st.characters(codec="utf-8")  # every code point a browser can send: no lone surrogates
CONTROLS = st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"])
TRICKY = [
    "",
    " ",
    "\u3000",
    "\x00",
    "a\x00b",
    "\r\n",
    "\x1b[31m",
    "\ufeff",
    "\u202e\u200b",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%(max)d",
    "{{ 7*7 }}",
    "${7*7}",
    "../../etc/passwd",
    "null",
    "None",
    "true",
    "[]",
    "{}",
    "０１２３",
    "𠮷野家",
    "😀",
    "ｱｲｳ",
]
NUMBERS = [
    "0",
    "-1",
    "-0",
    "1.5",
    "1e309",
    "NaN",
    "inf",
    "-inf",
    "１２",
    "1,000",
    "0x1F",
    "1_000",
    "٣",
    "Ⅻ",
    "2147483647",
    "2147483648",
    "9223372036854775808",
    "9" * 40,
]
DATES = [
    "2026-02-29",
    "2026-02-30",
    "2026-13-01",
    "0000-00-00",
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "-2026-04-01",
    "2026-4-1",
    "20260401",
    "2026/04/01",
    "令和8年4月1日",
    "2026-04-01T09:00",
    "２０２６-０４-０１",
]
NAMES = [
    "",
    ".",
    "..",
    "../../evil.pdf",
    "..\\..\\boot.ini",
    "/etc/passwd",
    "a/b.pdf",
    "CON",
    "証明書.pdf",
    "file.pdf.exe",
    "\u202egpj.exe",
    "a\x01b.pdf",
    "x" * 300 + ".pdf",
    "報告.xlsx",
    "メモ.txt",
]
CONTENT = [b"", pdf_bytes(), b"%PDF-1.7\n%%EOF", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"MZ"]
CONTENT += ["テキスト\n".encode(), b"\xff\xfe\x00<", b"<html><script>x</script>"]


@dataclass(frozen=True)
class File:
    name: str
    content: bytes


class _Missing:
    """A field left out of the submission."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

texts = st.one_of(
    st.text(CHARS, max_size=40),
    st.text(CONTROLS, min_size=1, max_size=8),
    st.sampled_from(TRICKY),
)
numbers = st.one_of(
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(NUMBERS),
)
dates = st.one_of(
    st.dates().map(date.isoformat),
    st.dates().map(lambda d: f"{d.year}/{d.month}/{d.day}"),
    st.sampled_from(DATES),
)
files = st.builds(
    File,
    st.one_of(st.sampled_from(NAMES), st.text(CHARS, max_size=30)),
    st.one_of(st.sampled_from(CONTENT), st.binary(max_size=2048)),
)


def long_texts(maxlength: int | None) -> st.SearchStrategy[str]:
    limit = maxlength or 200
    return st.builds(
        lambda unit, n: unit * n,
        st.sampled_from(["あ", "a", "𠮷", "\u3000", "\r\n", "a\x0b"]),
        st.sampled_from(sorted({limit, limit + 1, 5000, 60000})),
    )


def strategy_for(f: Field) -> st.SearchStrategy:
    """Anything a person or a script could send in ``f``: the field's own kind of value more
    often, every other kind too, nothing at all, or several values."""
    if f.kind == "file":
        return st.one_of(files, st.lists(files, min_size=2, max_size=3), texts, st.just(MISSING))
    single = [texts, long_texts(f.maxlength), numbers, dates]
    if f.kind in ("number", "hidden"):
        single.insert(0, numbers)
    if f.kind in ("date", "datetime-local", "month"):
        single.insert(0, dates)
    if f.options:
        single.insert(0, st.sampled_from(f.options))
    one = st.one_of(*single)
    return st.one_of(
        one,
        st.just(MISSING),
        st.just(""),
        st.lists(one, min_size=2, max_size=3),  # duplicated field
        st.lists(st.sampled_from(f.options), max_size=len(f.options), unique=True)
        if f.options
        else st.just(list(f.rendered)),
    )


def baseline(f: Field):
    """The field as a careful user fills it: what the page shows, empty inputs given a value
    of their kind (so that fuzzing one field at a time gets past the others)."""
    if f.kind == "file":
        return File("証明書.pdf", pdf_bytes())
    if f.kind in PLAUSIBLE and not any(v.strip() for v in f.rendered):
        return PLAUSIBLE[f.kind]
    if f.kind in ("select", "radio") and not any(f.rendered):
        chosen = [o for o in f.options if o]
        return chosen[:1]
    return list(f.rendered)


EXTRA_NAMES = st.one_of(
    st.sampled_from(
        ["organisation_id", "user_id", "id", "status", "roles", "version", "next", "is_admin"]
    ),
    st.text(CHARS, min_size=1, max_size=20).filter(lambda n: not n.endswith("csrf_token")),
)


def submission(data, form: Form, pinned: dict | None) -> list[tuple[str, object]]:
    """The pairs to post: every field from the baseline, the chosen ones fuzzed."""
    fuzzable = form.fuzzable
    if pinned is not None:
        values = pinned.get("values", {})
        chosen: set[str] = set()
        extras = pinned.get("extras", [])
    else:
        names = [f.name for f in fuzzable]
        mode = data.draw(st.sampled_from(["one", "few", "all"]), label="mode") if names else "all"
        if mode == "all":
            targets = names
        else:
            targets = data.draw(
                st.lists(st.sampled_from(names), min_size=1, max_size=1 if mode == "one" else 3),
                label="fuzzed fields",
            )
        chosen = set(targets)
        values = {}
        extras = data.draw(st.lists(st.tuples(EXTRA_NAMES, texts), max_size=2), label="extras")
    pairs: list[tuple[str, object]] = []
    for f in form.fields:
        if f.csrf:
            pairs += [(f.name, v) for v in f.rendered[:1]]
            continue
        if f.name in values:
            value = values[f.name]
        elif f.name in chosen:
            value = data.draw(strategy_for(f), label=f.name)
        else:
            value = baseline(f)
        if value is MISSING:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((f.name, item))
    return pairs + list(extras)


def _browser_safe(text: str) -> str:
    """A browser percent-encodes these in multipart names and file names."""
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode(form: Form, pairs: list[tuple[str, object]]) -> tuple[MultiDict, dict]:
    body = MultiDict()
    for name, value in pairs:
        if isinstance(value, File):
            body.add(_browser_safe(name), (io.BytesIO(value.content), _browser_safe(value.name)))
        else:
            body.add(_browser_safe(name) if form.multipart else name, value)
    options = {"content_type": "multipart/form-data"} if form.multipart else {}
    if form.json:
        options["headers"] = {"X-Requested-With": "fetch"}
    return body, options


# ---------------------------------------------------------------------------------------------
# Putting everything back after an example
# ---------------------------------------------------------------------------------------------


class Rollback:
    """Rows of every table, the evidence store and each visitor's cookies as they were before
    the first example; ``restore`` puts back whatever an example changed (rows added, changed
    or deleted, files written or removed) and returns the rows it found added or changed."""

    def __init__(self, app, visitors: dict[str, Browser]):
        self.engine = engine_for(app)
        self.tables = list(Base.metadata.sorted_tables)
        self.evidence = Path(app.config["EVIDENCE_DIR"])
        self.rows = self.read()
        self.files = self.read_files()
        self.visitors = visitors
        self.cookies = {name: dict(b.client._cookies) for name, b in visitors.items()}
        self.writes = 0
        sa.event.listen(self.engine, "before_cursor_execute", self._count)

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args) -> None:
        if WRITE.match(statement):
            self.writes += 1

    def _key(self, table, row) -> tuple:
        names = [c.name for c in table.primary_key.columns]
        return tuple(row._mapping[n] for n in names)

    def read(self) -> dict[str, dict[tuple, tuple]]:
        with self.engine.connect() as conn:
            return {
                t.name: {self._key(t, r): tuple(r) for r in conn.execute(sa.select(t))}
                for t in self.tables
            }

    def read_files(self) -> dict[Path, bytes]:
        if not self.evidence.exists():
            return {}
        return {p: p.read_bytes() for p in self.evidence.rglob("*") if p.is_file()}

    def browser(self, name: str) -> Browser:
        browser = self.visitors[name]
        browser.client._cookies.clear()
        browser.client._cookies.update(self.cookies[name])
        return browser

    def changes(self) -> tuple[dict, dict[str, list[tuple]]]:
        """The rows now, and per table the rows added or changed since the snapshot."""
        now = self.read()
        changed = {}
        for t in self.tables:
            before, after = self.rows[t.name], now[t.name]
            fresh = [row for key, row in after.items() if before.get(key) != row]
            gone = before.keys() - after.keys()
            if fresh or gone:
                changed[t.name] = fresh
        return now, changed

    def restore(self, now: dict) -> None:
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:  # no foreign-key checks or cascades while rows go back
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                    for t in reversed(self.tables):
                        self._put_back(conn, t, self.rows[t.name], now[t.name])
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
        for path in set(self.read_files()) - set(self.files):
            path.unlink()
        for path, content in self.files.items():
            if not path.exists() or path.read_bytes() != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        self.writes = 0

    def _put_back(self, conn, table, before: dict, after: dict) -> None:
        pk = list(table.primary_key.columns)
        names = [c.name for c in table.columns]

        def where():
            return sa.and_(*(c == sa.bindparam(f"pk_{c.name}") for c in pk))

        def keys(key):
            return {f"pk_{c.name}": v for c, v in zip(pk, key, strict=True)}

        extra = [keys(k) for k in after.keys() - before.keys()]
        if extra:
            conn.execute(table.delete().where(where()), extra)
        for key in before.keys() & after.keys():
            if before[key] != after[key]:
                conn.execute(
                    table.update()
                    .where(where())
                    .values(dict(zip(names, before[key], strict=True))),
                    keys(key),
                )
        missing = [dict(zip(names, before[k], strict=True)) for k in before.keys() - after.keys()]
        if missing:
            conn.execute(table.insert(), missing)


# ---------------------------------------------------------------------------------------------
# The module's world, visitors and forms
# ---------------------------------------------------------------------------------------------


@dataclass
class Fuzz:
    app: object
    db: object
    world: object
    rollback: Rollback
    hosts: dict[str, list[Host]]  # endpoint → pages holding its forms
    unknown: list[str]  # forms whose action the site does not take


def visitors_of(app, w) -> dict[str, Browser]:
    """A browser per role, the auditor outside the audited department, an anonymous visitor
    and one whose password was accepted and who is asked for the TOTP code."""
    browsers = {role.value: signed_in(app, w.people[role]) for role in Role}
    browsers["outside_auditor"] = signed_in(app, w.states.auditor)
    anonymous = Browser(app.test_client())
    anonymous.get("/auth/login")
    browsers["anonymous"] = anonymous
    halfway = Browser(app.test_client())
    response = halfway.submit("/auth/login", {"email": w.target.email, "password": PASSWORD})
    assert response.headers["Location"].endswith("/auth/mfa")
    browsers["mfa_pending"] = halfway
    return browsers


def pages_for(app, w, visitor: str, variants: list[dict]) -> list[str]:
    """The pages ``visitor`` may open: every GET route its permissions grant, with every
    sample object (anonymous visitors: the public pages; mid-login: the TOTP page)."""
    if visitor == "mfa_pending":
        return ["/auth/mfa"]
    role = Role.AUDITOR if visitor == "outside_auditor" else None
    role = role or (None if visitor == "anonymous" else Role(visitor))
    pages: list[str] = []
    for rule in walked_rules(app, "GET"):
        if role is None:
            if requirement_of(app, rule) != PUBLIC:
                continue
        else:
            permission = needed_permission(app, rule)
            if permission is not None and permission not in ROLE_PERMISSIONS[role]:
                continue
        for variant in [{}, *variants]:
            if variant and not set(variant) & set(rule.arguments):
                continue
            path = path_for(rule, {**w.samples, **variant})
            if path not in pages:
                pages.append(path)
    if role is Role.VENDOR:
        pages += [
            f"/vendor/reports/new?schedule={schedule.id}&kind={kind}"
            for schedule in (w.schedule, w.states.active)
            for kind in REPORT_KINDS
        ]
    return pages


POST_FORM = re.compile(r"<form\b[^>]*\bmethod=\"post\"[^>]*>", re.IGNORECASE)
ACTION = re.compile(r"\baction=\"([^\"]*)\"")
PAGES_PER_VISITOR = 3  # pages kept per endpoint and visitor, before ``pick_hosts`` chooses


def worth_reading(app, visitor: str, url: str, html: str, seen: dict[str, list[Host]]) -> bool:
    """Parsing is the slow part of the walk: read a page only when one of its POST forms goes
    where this visitor has fewer than ``PAGES_PER_VISITOR`` pages so far, or nowhere known."""

    def wanted(endpoint: str | None) -> bool:
        mine = [h for h in seen.get(endpoint, []) if h.visitor == visitor]
        return endpoint is None or len(mine) < PAGES_PER_VISITOR

    for tag in POST_FORM.findall(html):
        found = ACTION.search(tag)
        action = urljoin(url, found.group(1).replace("&amp;", "&")) if found else url
        if wanted(endpoint_of(app, action)):
            return True
    return "data-autosave-url" in html and wanted("assessments.autosave")


def discover(app, w, browsers: dict[str, Browser], variants: list[dict]):
    hosts: dict[str, list[Host]] = {}
    unknown: list[str] = []
    for visitor, browser in browsers.items():
        for page in pages_for(app, w, visitor, variants):
            with browser.get(page, follow_redirects=True) as response:
                if response.status_code != 200 or response.mimetype != "text/html":
                    continue
                html = response.get_data(as_text=True)
            request = response.request
            query = request.query_string.decode()
            final = request.path + (f"?{query}" if query else "")
            if not worth_reading(app, visitor, final, html, hosts):
                continue
            for form in forms_on(app, final, response):
                if form.endpoint is None:
                    unknown.append(f"{visitor} {final}: {form.action}")
                    continue
                pages = hosts.setdefault(form.endpoint, [])
                host = next((h for h in pages if (h.visitor, h.page) == (visitor, final)), None)
                if host is None:
                    host = Host(visitor, final)
                    pages.append(host)
                host.forms.append(form)
    return {endpoint: pick_hosts(found) for endpoint, found in hosts.items()}, unknown


def pick_hosts(found: list[Host], limit: int = 6) -> list[Host]:
    """A few pages per endpoint, each visitor first, then pages whose forms differ."""
    chosen: list[Host] = []
    seen: set = set()
    for pass_ in ("visitor", "fields"):
        for host in found:
            signature = (
                host.visitor
                if pass_ == "visitor"
                else tuple(sorted({f.name for form in host.forms for f in form.fields}))
            )
            if signature not in seen and host not in chosen and len(chosen) < limit:
                seen.add(signature)
                chosen.append(host)
    return chosen


@pytest.fixture(scope="module")
def fuzz(database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("form-fuzz")
    with time_machine.travel(NOW, tick=False):
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "MAIL_OUTBOX": str(tmp / "outbox"),
                "EVIDENCE_DIR": str(tmp / "evidence"),
                "BASE_URL": "http://localhost",
                "LOGIN_IP_MAX_FAILURES": 10**6,  # measure the forms, not the login throttle
                **CHEAP_ARGON2,
            }
        )
        db = app.extensions["db_sessionmaker"]()
        make = factories.Factory(db, app)
        rollback = None
        try:
            w = arrange_organisation(make, make.org())
            invitation = issue_token(app, db, w.pending, tokens.INVITATION)
            arrange_evidence(db, w)
            w.samples = {**objects_of(w), "token": invitation}
            variants = arrange_states(app, db, make, w)
            write_arranged_files(app, db)
            browsers = visitors_of(app, w)
            hosts, unknown = discover(app, w, browsers, variants)
            rollback = Rollback(app, browsers)
            yield Fuzz(app, db, w, rollback, hosts, unknown)
        finally:
            if rollback is not None:
                rollback.close()
            db.close()
            empty_database(app)


# ---------------------------------------------------------------------------------------------
# Judging one submission
# ---------------------------------------------------------------------------------------------


def flashes_of(page) -> list[tuple[str, str]]:
    return [
        (" ".join(node.get("class", [])), node.get_text(" ", strip=True))
        for node in page.select(".flash")
    ]


def judge_page(response, what: str) -> str:
    """ "refused", "accepted" or "download" for a response that is not a redirect; fails on
    anything a user should never see."""
    status = response.status_code
    assert status < 500, f"{what} → {status}"
    assert status < 300 or status in ERROR_PAGES | RERENDER, f"{what} → {status}"
    if response.mimetype == "application/json":
        body = json.loads(response.get_data(as_text=True))
        message = body.get("message") or body.get("error") or ""
        assert JAPANESE.search(message), f"{what} → {status} {body}"
        return "accepted" if status == 200 else "refused"
    if response.mimetype != "text/html":
        assert status == 200, f"{what} → {status} {response.mimetype}"
        assert response.headers.get("Content-Disposition", "").startswith(
            ("attachment", "inline")
        ), f"{what}: {response.mimetype} without a file name"
        return "download"
    page = soup(response)
    assert page.html is not None and page.html.get("lang") == "ja", f"{what}: not a Japanese page"
    heading = page.select_one("h1")
    if status in ERROR_PAGES and heading and heading.get_text(strip=True) == MESSAGES[status][0]:
        assert page.select_one(".error-code"), f"{what}: {status} without its error page"
        return "refused"
    assert status in RERENDER, f"{what} → {status} without the Japanese error page"
    errors = [n.get_text(" ", strip=True) for n in page.select(".field__error")]
    notes = flashes_of(page)
    assert errors or notes, f"{what} → {status}: neither a field error nor a flash"
    for text in errors + [text for _kind, text in notes]:
        assert JAPANESE.search(text), f"{what}: a message not in Japanese: {text!r}"
    refused = errors or any("flash--error" in kind for kind, _text in notes)
    assert status == 200 or refused, f"{what} → {status} without an error"
    return "refused" if refused else "accepted"


def judge(browser: Browser, response, what: str) -> str:
    status = response.status_code
    assert status < 500, f"{what} → {status}"
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        target = urlsplit(location)
        assert not target.netloc or target.netloc == "localhost", f"{what} → off-site {location}"
        with browser.get(location) as landing:
            assert landing.status_code < 500, f"{what} → {location} → {landing.status_code}"
            if landing.status_code != 200 or landing.mimetype != "text/html":
                return "accepted"
            notes = flashes_of(soup(landing))
        for _kind, text in notes:
            assert JAPANESE.search(text), f"{what}: a message not in Japanese: {text!r}"
        return "refused" if any("flash--error" in kind for kind, _text in notes) else "accepted"
    return judge_page(response, what)


def check_database(fuzz: Fuzz, endpoint: str, outcome: str, what: str) -> None:
    """Nothing half-written; then everything back as it was."""
    rollback = fuzz.rollback
    if not rollback.writes:
        return
    now, changed = rollback.changes()
    try:
        for table, rows in changed.items():
            for row in rows:
                bad = [v for v in row if isinstance(v, str) and UNSTORABLE.search(v)]
                assert not bad, f"{what}: {table} stored {bad!r}"
        if outcome == "refused":
            allowed = AUDIT_TABLES | WRITTEN_ON_REFUSAL.get(endpoint, (set(), ""))[0]
            assert set(changed) <= allowed, (
                f"{what}: refused, yet changed {sorted(set(changed) - allowed)}"
            )
        fuzz.db.rollback()
        result = audit_service.verify(fuzz.db)
        assert result.ok, f"{what}: the audit chain breaks at {result.broken_seq}: {result.reason}"
    finally:
        fuzz.db.rollback()
        rollback.restore(now)


def run_example(fuzz: Fuzz, endpoint: str, data, pinned: dict | None) -> None:
    hosts = fuzz.hosts[endpoint]
    if pinned is not None:
        host = hosts[pinned.get("host", 0)]
        form = [f for f in host.forms if f.endpoint == endpoint][pinned.get("form", 0)]
    else:
        host = data.draw(st.sampled_from(hosts), label="page") if len(hosts) > 1 else hosts[0]
        forms = [f for f in host.forms if f.endpoint == endpoint]
        form = data.draw(st.sampled_from(forms), label="form") if len(forms) > 1 else forms[0]
    pairs = submission(data, form, pinned)
    what = f"{host.visitor} on {host.page}: POST {form.action} {pairs!r:.2000}"
    browser = fuzz.rollback.browser(host.visitor)
    body, options = encode(form, pairs)
    outcome = "unknown"
    try:
        response = browser.client.post(form.action, data=body, **options)
        with response:
            outcome = judge(browser, response, what)
        if response.status_code == 413:
            collect_parser_leftovers()
    finally:
        check_database(fuzz, endpoint, outcome, what)


def collect_parser_leftovers() -> None:
    """Werkzeug's multipart parser leaves the file parts it already spooled open when a
    later part is over ``MAX_FORM_MEMORY_SIZE`` (413): CPython closes them when the request's
    exception is collected, with a ResourceWarning. Collect them now, quietly, rather than
    at a random moment during a later test (where pytest would report the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------

# Regression examples: endpoint → the submissions that once broke it ({"values": {name: value},
# optionally "host" / "form" indices). Applied with hypothesis' ``example`` to that form only.
REGRESSIONS: dict[str, list[dict]] = {
    # An empty hidden version re-rendered the page with no message at all.
    "admin.user_edit": [{"values": {"version": ""}}],
    "admin.organisation": [{"values": {"version": ""}}],
    # An empty file (or one past the limit) was a 500 on the 定期確認 uploads.
    "confirmations.staff_upload": [{"values": {"file": File(".", b"")}}],
    "confirmations.vendor_upload": [{"values": {"file": File("空.pdf", b"")}}],
}


@pytest.mark.parametrize("endpoint", [e for e in POST_ENDPOINTS if e not in NOT_A_FORM])
def test_any_input_in_the_form(fuzz, endpoint):
    assert endpoint in fuzz.hosts, (
        f"POST {endpoint} has no form on any walked page: arrange the state that shows it "
        "(arrange_states), or add it to NOT_A_FORM with the reason and the test covering it"
    )
    token_only = all(not form.fuzzable for host in fuzz.hosts[endpoint] for form in host.forms)

    examples = EXAMPLES_PDF.get(endpoint, EXAMPLES_TOKEN_ONLY if token_only else EXAMPLES)

    @settings(FUZZ, max_examples=examples)
    @given(data=st.data(), pinned=st.none())
    @example(data=None, pinned={})  # the form exactly as a careful user fills it
    def fuzz_form(data, pinned):
        run_example(fuzz, endpoint, data, pinned)

    for pinned in REGRESSIONS.get(endpoint, []):
        fuzz_form = example(data=None, pinned=pinned)(fuzz_form)
    fuzz_form()


def test_every_post_form_on_a_walked_page_is_fuzzed(fuzz):
    """Every form found (and the script's autosave) posts to a route fuzzed above; the routes
    not fuzzed are exactly ``NOT_A_FORM``'s, each with its reason."""
    fuzzed = sorted(e for e in POST_ENDPOINTS if e not in NOT_A_FORM)
    found = set(fuzz.hosts)
    assert fuzz.unknown == [], "forms posting where the site takes no POST"
    assert sorted(found - set(fuzzed) - {"auth.logout"}) == []
    assert sorted(set(fuzzed) - found) == [], "routes without a form on any walked page"
    assert set(NOT_A_FORM) <= set(POST_ENDPOINTS), "NOT_A_FORM names a route that is gone"
    print(f"fuzzed {len(fuzzed)} forms:", ", ".join(fuzzed))


def test_forms_are_read_as_a_browser_submits_them(fuzz):
    """Controls outside a form that name it (``form="…"``) belong to it, not to the form they
    sit in: the evidence upload gets its file input, the answer form does not."""
    upload = [form for host in fuzz.hosts["evidence.upload"] for form in host.forms]
    assert any(f.kind == "file" for form in upload for f in form.fields)
    answers = [form for host in fuzz.hosts["assessments.section"] for form in host.forms]
    assert answers and not any(f.kind == "file" for form in answers for f in form.fields)
    autosave = [form for host in fuzz.hosts["assessments.autosave"] for form in host.forms]
    assert autosave and all(form.json and form.fields[-1].options for form in autosave)


def test_the_rollback_puts_back_rows_files_and_cookies(fuzz):
    from portal.auth.models import ActionToken
    from portal.orgs.models import Department

    rollback, db, w = fuzz.rollback, fuzz.db, fuzz.world
    before_files = rollback.read_files()
    assert before_files, "the arranged evidence has its bytes"
    db.rollback()
    db.get(User, w.target.id).name = "書き換え"
    db.add(Department(organisation_id=w.org.id, name="追加された課"))
    db.execute(sa.delete(ActionToken))
    db.commit()
    stored = next(iter(before_files))
    stored.unlink()
    (stored.parent / "extra").write_bytes(b"x")
    browser = rollback.browser("staff")
    browser.client._cookies.clear()
    assert browser.get("/").status_code == 302  # logged out
    assert rollback.writes > 0

    now, changed = rollback.changes()
    assert {"user_account", "department", "action_token"} <= set(changed)
    rollback.restore(now)
    assert rollback.read() == rollback.rows
    assert rollback.read_files() == before_files
    assert rollback.browser("staff").get("/").status_code == 200
    assert rollback.writes == 0


@pytest.mark.parametrize(
    ("status", "body", "mimetype"),
    [
        (500, "<html lang='ja'><h1>システムエラーが発生しました</h1></html>", "text/html"),
        (200, "<html lang='ja'><h1>利用者</h1><p>保存しました</p></html>", "text/html"),
        (200, "<html lang='ja'><p class='flash flash--error'>Invalid value</p></html>", "text/html"),
        (404, "<html lang='en'><h1>Not Found</h1></html>", "text/html"),
        (404, "<html lang='ja'><h1>エラー</h1></html>", "text/html"),
        (429, "<html lang='ja'><h1>操作が多すぎます</h1></html>", "text/html"),
        (422, "<html lang='ja'><h1>計画</h1></html>", "text/html"),
        (200, "a,b\n1,2\n", "text/csv"),  # a download without a file name
        (400, '{"message": "bad request"}', "application/json"),
    ],
    ids=["500", "silent-200", "english-flash", "english-404", "bare-404", "429", "silent-422",
         "nameless-download", "english-json"],
)  # fmt: skip
def test_the_judge_refuses_what_a_user_should_never_see(status, body, mimetype):
    from flask import Response

    with pytest.raises(AssertionError):
        judge_page(Response(body, status=status, mimetype=mimetype), "probe")


@pytest.mark.parametrize(
    ("status", "body", "mimetype", "verdict"),
    [
        (
            404,
            "<html lang='ja'><h1>ページが見つかりません</h1><p class='error-code'>404</p></html>",
            "text/html",
            "refused",
        ),
        (
            422,
            "<html lang='ja'><p class='field__error'>入力してください。</p></html>",
            "text/html",
            "refused",
        ),
        (200, "<html lang='ja'><p class='flash flash--success'>保存しました。</p></html>", "text/html", "accepted"),
        (422, '{"status": "invalid", "message": "数字で入力してください。"}', "application/json", "refused"),
    ],
    ids=["error-page", "field-error", "success-flash", "json"],
)  # fmt: skip
def test_the_judge_accepts_what_the_portal_should_answer(status, body, mimetype, verdict):
    from flask import Response

    assert judge_page(Response(body, status=status, mimetype=mimetype), "probe") == verdict
