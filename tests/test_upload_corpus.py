"""The upload corpus through EVERY upload route of the app (SECURITY.md "Files"; issue 8, attack
suite). ``tests/test_evidence_files.py`` proves the checks themselves on its corpus (wrong type by
content, polyglots, encrypted PDF, zip bomb …); this module proves that each route accepting a
file applies them, through the real pages and forms:

- the hostile corpus (imported from ``test_evidence_files``), an oversized file (over the
  per-file limit, and over the request limit) and a NUL in the file name are refused, the
  refusal is shown in Japanese on the page, no file lands in the evidence store and no row is
  written;
- odd file names (path traversal, absolute paths, control characters, line breaks, RTL override,
  quotes, very long, Japanese) are cleaned before they are kept, the file is stored under the
  store's own random name (no path component of the client's), and the download's
  ``Content-Disposition`` is safe;
- ``test_every_upload_route_is_covered`` finds the upload routes from the code (views that
  read ``request.files`` or the data of a form's ``FileField``, themselves or through functions
  of their module) and from the templates (multipart forms), and compares them with the routes
  covered here: a new upload route without coverage fails it.

Three routes keep only the SHA-256 of the file, never its bytes (the 約款型 terms of service,
対策基準 9.3: ``approvals.application_new`` / ``revise`` / ``terms``): any file is hashed, a
saved web page included, and the checks there are that nothing reaches the evidence store, the
hash is of the bytes sent and the name is cleaned. The Excel import reads the workbook and
keeps only the answers: its refusals are the workbook checks' (``excel_checks``).

File names are sent as RFC 5987 ``filename*`` parameters, so that every character arrives as it
is (a browser would percent-encode line breaks and quotes, and Werkzeug reads a backslash in a
quoted name as an escape); the Japanese name is also sent as a browser sends it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote, urljoin

import pytest
import sqlalchemy as sa
from flask import Blueprint, request
from flask_wtf import FlaskForm
from pypdf import PdfWriter
from wtforms.fields import FileField

from portal import PROJECT_ROOT, create_app
from portal.approvals import service as approvals
from portal.approvals.models import TermsVersion, UseApplication
from portal.assessments import excel_checks
from portal.db import utcnow
from portal.errors import MESSAGES
from portal.evidence import filetypes
from portal.evidence.filetypes import EvidenceError
from portal.evidence.models import EvidenceFile
from portal.evidence.storage import too_large_message
from portal.permissions import Role, public
from portal.reviews import exits
from portal.reviews.models import ReviewFile
from tests.conftest import CHEAP_ARGON2
from tests.helpers import Browser, form_fields, soup
from tests.test_contractor_audits import planned
from tests.test_evidence_files import REFUSED, japanese
from tests.test_findings import arrange_contract
from tests.test_lifecycle import approved, at
from tests.test_routes import signed_in, snapshot
from tests.test_vendor_reports import INCIDENT

STORE, IMPORT, HASH = "store", "import", "hash"
BOUNDARY = "upload-corpus-boundary-5c2e9f"
FILE_LIMIT_MB = 1  # EVIDENCE_MAX_MB while these tests run
REQUEST_LIMIT = 6 * 1024 * 1024  # MAX_CONTENT_LENGTH: above the Excel import's own 5 MB
TERMS = "第1条 本規約は、当社のアンケートサービスの利用条件を定める。"
STORED_PATH = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})$")

# (case, name as the client sends it, name as it must be kept)
ODD_NAMES = [
    ("path traversal", "../../etc/passwd.pdf", "passwd.pdf"),
    ("windows path traversal", "..\\..\\boot.ini", "boot.ini"),
    ("absolute path", "/etc/cron.d/job.pdf", "job.pdf"),
    ("windows absolute path", "C:\\Windows\\System32\\drivers\\etc\\hosts.pdf", "hosts.pdf"),
    ("control characters", "cert\x07\x1b[31m\x7f\t.pdf", "cert[31m.pdf"),
    ("line breaks", "cert\r\nX-Injected: yes\r\n.pdf", "certX-Injected: yes.pdf"),
    ("RTL override", "請求書\u202efdp.exe", "請求書fdp.exe"),
    ("quotes and semicolons", 'report"; filename="evil.html', 'report"; filename="evil.html'),
    ("very long", "長" * 300 + ".pdf", "長" * 251 + ".pdf"),
    ("dots only", "...", "添付ファイル"),
    ("japanese", "ISMAP登録証（2026年度）第1版.pdf", "ISMAP登録証（2026年度）第1版.pdf"),
]
BROWSER_NAMES = {"japanese"}  # also sent as a browser sends it (plain UTF-8 ``filename=``)


# ---------------------------------------------------------------------------------------------
# The routes
# ---------------------------------------------------------------------------------------------


def titled_pdf(title: str) -> bytes:
    """A small valid PDF of its own (the title differs), so that each file has its own hash."""
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass
class Target:
    """One upload route as a person reaches it: signed in, on ``page``, using the form
    ``selector`` whose file input is ``file_field``."""

    endpoint: str
    kind: str  # STORE: kept in the evidence store; IMPORT: read, never kept; HASH: hashed only
    browser: Browser
    page: str
    selector: str
    file_field: str
    fields: dict = field(default_factory=dict)
    before_each: Callable[[], None] | None = None
    valid: Callable[[str], bytes] = lambda title: titled_pdf(title)
    form: tuple[str, dict] | None = None  # the form as last read: action and values


def _vendor_assessment(make, org):
    department = make.department(org, "情報政策課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, "株式会社証跡提出")
    vendor = make.user(company=company, invited_by=org, name="提出 花子")
    engagement = make.engagement(org, department, staff, title="住民窓口システム運用保守")
    return vendor, make.assessment(engagement, company, staff)


def evidence_upload(app, db, make, org, time_machine) -> Target:
    vendor, assessment = _vendor_assessment(make, org)

    def make_room():
        # The question takes ten files: earlier ones are set aside (deleted) between names.
        db.execute(
            sa.update(EvidenceFile)
            .where(EvidenceFile.deleted_at.is_(None))
            .values(deleted_at=utcnow())
        )
        db.commit()

    return Target(
        "evidence.upload",
        STORE,
        signed_in(app, vendor),
        f"/assessments/{assessment.id}/sections/certifications",
        "form#upload-q-certifications-certificate_evidence",
        "file",
        before_each=make_room,
    )


def excel_import(app, db, make, org, time_machine) -> Target:
    vendor, assessment = _vendor_assessment(make, org)
    browser = signed_in(app, vendor)

    def workbook(_title: str) -> bytes:
        response = browser.client.get(f"/assessments/{assessment.id}/excel", buffered=True)
        assert response.status_code == 200
        data = response.get_data()
        response.close()
        return data

    return Target(
        "assessments.excel_import",
        IMPORT,
        browser,
        f"/assessments/{assessment.id}/excel/import",
        "form#excel-import",
        "file",
        valid=workbook,
    )


def _open_confirmation(db, make, org):
    """A contract whose confirmation waits for the vendor's answer."""
    c = arrange_contract(db, make, org)
    c.confirmation.status = "open"
    c.confirmation.answered_by_id = None
    db.commit()
    return c


def vendor_confirmation(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    c = _open_confirmation(db, make, org)
    return Target(
        "confirmations.vendor_upload",
        STORE,
        signed_in(app, c.vendor),
        f"/vendor/confirmations/{c.confirmation.id}",
        "form[data-form=upload]",
        "file",
    )


def staff_confirmation(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    c = _open_confirmation(db, make, org)
    return Target(
        "confirmations.staff_upload",
        STORE,
        signed_in(app, c.staff),
        f"/confirmations/{c.confirmation.id}/answer",
        "form[data-form=upload]",
        "file",
    )


def contractor_audit(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    c = arrange_contract(db, make, org)
    c.ciso = make.user(org, roles={Role.CISO}, name="CISO 副市長")
    audit_row = planned(db, c)
    return Target(
        "contractor_audits.upload",
        STORE,
        signed_in(app, c.auditor),
        f"/contractor-audits/{audit_row.id}",
        "form[data-form=audit-file]",
        "file",
    )


def contract_exit(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2027-04-05 10:00 +09:00", tick=False)
    c = arrange_contract(db, make, org)
    exits.end_contract(
        db,
        c.schedule,
        c.staff,
        ending_on=date(2027, 3, 31),
        reason="契約期間の満了",
        version=c.schedule.version,
    )
    db.commit()
    key = "information_deletion"
    assert exits.phase().item(key).requires_file
    return Target(
        "exits.record",
        STORE,
        signed_in(app, c.staff),
        f"/reviews/{c.schedule.id}/exit",
        f"form[action$='/exit/{key}']",
        f"{key}-certificate",
        fields={f"{key}-result": "done", f"{key}-checked_on": "2027-04-02"},
    )


def lifecycle_exit(app, db, make, org, time_machine) -> Target:
    department = make.department(org, "情報政策課")
    company = make.company(org, name="株式会社クラウド提供")
    team = {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="申請 一郎"),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 二郎"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="管理 三郎",
        ),
        "company": company,
    }
    application = approved(db, make, org, team)
    with at(date(2027, 3, 31)):
        approvals.change_status(
            db, application, team["approver"], "retire", "後継サービスに移行した。",
            application.version,
        )  # fmt: skip
        db.commit()
    time_machine.move_to("2027-04-10 10:00 +09:00", tick=False)
    prefix = "exit-data_deletion"
    return Target(
        "lifecycle.record",
        STORE,
        signed_in(app, team["manager"]),
        f"/applications/{application.id}/checks",
        "form[action$='/checks/exit/data_deletion']",
        f"{prefix}-certificate",
        fields={
            f"{prefix}-result": "done",
            f"{prefix}-checked_on": "2027-04-10",
            f"{prefix}-evidence": "消去証明書（2027年4月10日受領）",
        },
    )


def vendor_report(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    c = arrange_contract(db, make, org)
    return Target(
        "vendor_reports.create",
        STORE,
        signed_in(app, c.vendor),
        f"/vendor/reports/new?schedule={c.schedule.id}&kind=incident",
        "main form[method=post]",
        "attachment",
        fields=dict(INCIDENT),
    )


def _terms_team(make, org):
    department = make.department(org, "情報政策課")
    return {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="申請 一郎"),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 二郎"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="管理 三郎",
        ),
        "company": make.company(org, name="株式会社アンケート"),
    }


def _terms_service(db, team):
    service = approvals.create_service(
        db, team["staff"], team["company"].id, approvals.ServiceInput(name="無料アンケート")
    )
    db.commit()
    return service


def _filed(db, team, service) -> UseApplication:
    application = approvals.file(
        db,
        team["staff"],
        approvals.ApplicationInput(
            department_id=team["department"].id,
            service_id=service.id,
            plan_id=None,
            assessment_id=None,
            purpose="研修の受講者アンケート",
            business="研修アンケートの集計（氏名は収集しない）",
            network_segment="internet",
            max_confidentiality=1,
            personal_data=False,
            specific_personal_data=False,
            sensitive_personal_data=False,
            terms=approvals.TermsInput(
                url="https://survey.example.com/terms",
                content=TERMS.encode(),
                risks_confirmed=True,
            ),
        ),
    )
    db.commit()
    return application


def _decide(db, team, application, decision: str) -> None:
    approvals.decide(
        db,
        application,
        team["approver"],
        approvals.DecisionInput(
            decision,
            "内容を確認した。",
            manager_id=team["manager"].id if decision == "approve" else None,
            version=application.version,
        ),
        date(2026, 11, 20),
    )
    db.commit()


def application_new(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    team = _terms_team(make, org)
    service = _terms_service(db, team)
    return Target(
        "approvals.application_new",
        HASH,
        signed_in(app, team["staff"]),
        "/applications/new",
        "main form[enctype='multipart/form-data']",
        "terms_file",
        fields={
            "department_id": str(team["department"].id),
            "service_id": str(service.id),
            "purpose": "研修の受講者アンケート",
            "business": "研修アンケートの集計（氏名は収集しない）",
            "network_segment": "internet",
            "max_confidentiality": "1",
            "terms_url": "https://survey.example.com/terms",
            "terms_risks_confirmed": "y",
        },
    )


def application_revise(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    team = _terms_team(make, org)
    application = _filed(db, team, _terms_service(db, team))
    _decide(db, team, application, "return")

    def returned_again():
        db.rollback()
        db.refresh(application)
        if application.status != "returned":
            _decide(db, team, application, "return")

    return Target(
        "approvals.revise",
        HASH,
        signed_in(app, team["staff"]),
        f"/applications/{application.id}/revise",
        "main form[enctype='multipart/form-data']",
        "terms_file",
        fields={"terms_risks_confirmed": "y"},
        before_each=returned_again,
    )


def application_terms(app, db, make, org, time_machine) -> Target:
    time_machine.move_to("2026-11-20 10:00 +09:00", tick=False)
    team = _terms_team(make, org)
    application = _filed(db, team, _terms_service(db, team))
    _decide(db, team, application, "approve")
    return Target(
        "approvals.terms",
        HASH,
        signed_in(app, team["manager"]),
        f"/applications/{application.id}",
        "form[data-form=terms]",
        "terms_file",
        fields={"terms_url": "https://survey.example.com/terms"},
    )


ROUTES: dict[str, Callable[..., Target]] = {
    "evidence.upload": evidence_upload,
    "assessments.excel_import": excel_import,
    "confirmations.vendor_upload": vendor_confirmation,
    "confirmations.staff_upload": staff_confirmation,
    "contractor_audits.upload": contractor_audit,
    "exits.record": contract_exit,
    "lifecycle.record": lifecycle_exit,
    "vendor_reports.create": vendor_report,
    "approvals.application_new": application_new,
    "approvals.revise": application_revise,
    "approvals.terms": application_terms,
}

# Templates with a multipart form → the endpoints those forms post to (a form without a literal
# ``url_for`` posts to the page that renders it, or to a URL the view passes in).
MULTIPART_TEMPLATES = {
    "approvals/application_form.html": {"approvals.application_new", "approvals.revise"},
    "approvals/detail.html": {"approvals.terms"},
    "assessments/excel_import.html": {"assessments.excel_import"},
    "assessments/section.html": {"evidence.upload"},
    "contractor_audits/detail.html": {"contractor_audits.upload"},
    "lifecycle/checks.html": {"lifecycle.record"},
    "reviews/confirmation_answer.html": {
        "confirmations.vendor_upload",
        "confirmations.staff_upload",
    },
    "reviews/exit.html": {"exits.record"},
    "reviews/report_form.html": {"vendor_reports.create"},
}


@pytest.fixture
def target(request, app, db, make, org, time_machine) -> Target:
    app.config["EVIDENCE_MAX_MB"] = FILE_LIMIT_MB
    app.config["MAX_CONTENT_LENGTH"] = REQUEST_LIMIT
    return ROUTES[request.param](app, db, make, org, time_machine)


every_route = pytest.mark.parametrize("target", list(ROUTES), indirect=True)


# ---------------------------------------------------------------------------------------------
# Sending a file through a page's form
# ---------------------------------------------------------------------------------------------


def _part(name: str, value: str) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
    return head.encode() + str(value).encode() + b"\r\n"


def multipart(values: dict, file_field: str, filename: str, content: bytes, browser_style: bool):
    """The body a form with a file sends. Built here: the test client's own encoder mangles
    some names (it does not escape quotes or backslashes) and leaks temporary files."""
    parts = [
        _part(name, v)
        for name, value in values.items()
        for v in (value if isinstance(value, list) else [value])
    ]
    if browser_style:  # HTML: UTF-8, with '"', CR and LF percent-encoded
        escaped = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        disposition = f'filename="{escaped}"'
    else:  # RFC 5987: every character arrives as it is
        disposition = f"filename*=UTF-8''{quote(filename, safe='')}"
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; {disposition}\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={BOUNDARY}"


def send(target: Target, filename: str, content: bytes, browser_style: bool = False, reuse=False):
    """Open the page, fill its form as it stands, attach the file, post, follow redirects.
    ``reuse``: a refused upload changes no form, so the form read last time is posted again
    (unless the route must be set up again before each upload)."""
    if target.before_each:
        target.before_each()
    if not (reuse and target.form and target.before_each is None):
        page = target.browser.get(target.page)
        assert page.status_code == 200, f"GET {target.page} → {page.status_code}"
        form = soup(page).select_one(target.selector)
        assert form is not None, f"no form {target.selector} on {target.page}"
        assert form.get("enctype") == "multipart/form-data", "the form would not send the file"
        values = {**form_fields(form), **target.fields}
        values = {k: v for k, v in values.items() if k != target.file_field and v is not None}
        target.form = (urljoin(target.page, form.get("action") or target.page), values)
    action, values = target.form
    body, content_type = multipart(values, target.file_field, filename, content, browser_style)
    response = target.browser.client.post(action, data=body, content_type=content_type)
    for _hop in range(3):
        if response.status_code not in (301, 302, 303):
            break
        response = target.browser.client.get(response.headers["Location"].split("#")[0])
    return response


def shown_errors(response) -> list[str]:
    """The refusals a page shows: flashed errors, errors beside fields, refusal blocks."""
    page = soup(response)
    nodes = page.select(".flash--error, [data-field=refused], [data-field=error], .field__error")
    return [node.get_text(" ", strip=True) for node in nodes]


def error_page_title(response) -> str:
    node = soup(response).select_one("main h1")
    return node.get_text(strip=True) if node else ""


def store_files(app) -> list[str]:
    """Every file under the evidence store, temporary files included."""
    root = Path(app.config["EVIDENCE_DIR"])
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def file_rows(db) -> dict[tuple[str, int], EvidenceFile | ReviewFile]:
    db.rollback()
    rows = [*db.scalars(sa.select(EvidenceFile)), *db.scalars(sa.select(ReviewFile))]
    return {(type(row).__name__, row.id): row for row in rows}


def terms_versions(db) -> dict[int, TermsVersion]:
    db.rollback()
    return {row.id: row for row in db.scalars(sa.select(TermsVersion))}


def expected_refusal(tmp_path, name: str, content: bytes, kind: str) -> str:
    """The message the checks give this file: the evidence checks', or the workbook checks'."""
    if kind == IMPORT:
        with pytest.raises(excel_checks.WorkbookRefused) as refused:
            excel_checks.open_workbook(content)
        return str(refused.value)
    if not content:
        return filetypes.EMPTY
    path = tmp_path / "probe"
    path.write_bytes(content)
    with pytest.raises(EvidenceError) as refused:
        filetypes.identify(path, name)
    return str(refused.value)


# ---------------------------------------------------------------------------------------------
# Every upload route is covered
# ---------------------------------------------------------------------------------------------


def _file_fields() -> set[str]:
    """Names of the file fields of every form class (``certificate``, ``terms_file`` …)."""
    found, pending = set(), list(FlaskForm.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        for attribute in dir(cls):
            field_class = getattr(getattr(cls, attribute, None), "field_class", None)
            if isinstance(field_class, type) and issubclass(field_class, FileField):
                found.add(attribute)
    return found


def _calls(function) -> list:
    """The functions of ``function``'s own module that it calls by name."""
    module = inspect.getmodule(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    return [
        helper
        for name in sorted(names)
        if inspect.isfunction(helper := getattr(module, name, None))
        and helper.__module__ == module.__name__
    ]


def upload_endpoints(app) -> dict[str, str]:
    """Endpoints whose view takes an uploaded file → how: it reads ``request.files`` or the
    data of a form's file field, itself or through functions of its module that it calls."""
    fields = "|".join(sorted(_file_fields()))
    takes_file = re.compile(rf"request\.files|\.(?:{fields})\.data\b")

    def path_to_file(function, seen: set) -> list[str] | None:
        if match := takes_file.search(inspect.getsource(function)):
            return [f"{function.__name__}() reads {match.group(0)}"]
        for helper in _calls(function):
            if helper not in seen:
                seen.add(helper)
                if (found := path_to_file(helper, seen)) is not None:
                    return [f"{function.__name__}() calls", *found]
        return None

    found = {}
    for endpoint, view in app.view_functions.items():
        view = inspect.unwrap(view)
        try:
            how = path_to_file(view, {view})
        except (OSError, TypeError):  # no Python source (Flask's own static view is one)
            continue
        if how is not None:
            found[endpoint] = " ".join(how)
    return found


MULTIPART_FORM = re.compile(r"<form\b[^>]*multipart/form-data[^>]*>", re.S)
URL_FOR = re.compile(r"url_for\(\s*['\"]([\w.]+)['\"]")


def multipart_templates(root: Path = PROJECT_ROOT / "portal") -> dict[str, set[str]]:
    """Template (as ``render_template`` names it) → endpoints named by its multipart forms."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("templates/**/*.html")):
        text = path.read_text(encoding="utf-8")
        forms = MULTIPART_FORM.findall(text)
        if forms:
            parts = path.relative_to(root).parts
            name = "/".join(parts[parts.index("templates") + 1 :])
            found[name] = {m for form in forms for m in URL_FOR.findall(form)}
    return found


def test_every_upload_route_is_covered(app):
    found = upload_endpoints(app)
    assert set(found) == set(ROUTES), (
        f"upload routes without coverage here: {sorted(set(found) - set(ROUTES))}; "
        f"covered but no longer upload routes: {sorted(set(ROUTES) - set(found))}"
    )
    templates = multipart_templates()
    assert set(templates) == set(MULTIPART_TEMPLATES), "a multipart form appeared or went"
    for name, named in templates.items():
        assert named <= MULTIPART_TEMPLATES[name], (name, named)
    assert set().union(*MULTIPART_TEMPLATES.values()) == set(ROUTES)
    for endpoint in ROUTES:
        assert "POST" in next(app.url_map.iter_rules(endpoint)).methods


def test_a_new_upload_route_or_multipart_form_would_be_noticed(database_url, tmp_path):
    fresh = create_app(
        {
            "DATABASE_URL": database_url,
            "EVIDENCE_DIR": str(tmp_path / "evidence"),
            "MAIL_OUTBOX": str(tmp_path / "outbox"),
            **CHEAP_ARGON2,
        }
    )
    extra = Blueprint("extra_uploads", __name__)

    @extra.route("/extra/upload", methods=["POST"])
    @public
    def extra_upload():
        return str(len(request.files))

    fresh.register_blueprint(extra)
    assert upload_endpoints(fresh)["extra_uploads.extra_upload"] == (
        "extra_upload() reads request.files"
    )
    assert set(upload_endpoints(fresh)) - set(ROUTES) == {"extra_uploads.extra_upload"}

    folder = tmp_path / "portal" / "extra" / "templates" / "extra"
    folder.mkdir(parents=True)
    (folder / "page.html").write_text(
        '<form method="post"\n action="{{ url_for(\'extra_uploads.extra_upload\') }}"'
        ' enctype="multipart/form-data"></form>',
        encoding="utf-8",
    )
    assert multipart_templates(tmp_path / "portal") == {
        "extra/page.html": {"extra_uploads.extra_upload"}
    }


# ---------------------------------------------------------------------------------------------
# The hostile corpus
# ---------------------------------------------------------------------------------------------


@every_route
def test_the_hostile_corpus_is_refused_in_japanese_and_leaves_nothing(app, db, target, tmp_path):
    before, wrong = snapshot(app), {}
    terms_before = terms_versions(db)
    for case, (name, content) in REFUSED.items():
        response = send(target, name, content, reuse=True)
        if store_files(app):
            wrong[case] = f"files in the evidence store: {store_files(app)}"
            break
        if target.kind == HASH:
            # Only the SHA-256 of the bytes is kept (a version already recorded is not
            # recorded twice), and only of a file that has bytes.
            versions = terms_versions(db)
            new = {t.sha256 for i, t in versions.items() if i not in terms_before}
            digest = hashlib.sha256(content).hexdigest()
            if content.strip():
                if new - {digest} or digest not in {t.sha256 for t in versions.values()}:
                    wrong[case] = f"recorded {new}"
            elif new or not any(japanese(e) for e in shown_errors(response)):
                wrong[case] = f"{response.status_code}, {shown_errors(response)}"
            terms_before = versions
            continue
        expected = expected_refusal(tmp_path, name, content, target.kind)
        assert japanese(expected), expected
        errors = shown_errors(response)
        if response.status_code >= 500 or not any(expected in error for error in errors):
            wrong[case] = f"{response.status_code}, shown: {errors}"
    assert wrong == {}
    if target.kind != HASH:
        after = snapshot(app)
        assert [t for t in before if before[t] != after[t]] == []


# ---------------------------------------------------------------------------------------------
# Oversized files and a NUL in the name
# ---------------------------------------------------------------------------------------------


@every_route
def test_oversized_files_are_refused_in_japanese_and_leave_nothing(app, db, target):
    before = snapshot(app)
    # Over the route's own limit for one file (the hashed terms have none but the request's).
    limits = {
        STORE: (FILE_LIMIT_MB * 1024 * 1024, too_large_message(FILE_LIMIT_MB * 1024 * 1024)),
        IMPORT: (excel_checks.MAX_BYTES, excel_checks.TOO_LARGE),
    }
    if target.kind in limits:
        limit, message = limits[target.kind]
        response = send(target, "大きな証明書.pdf", b"%PDF-1.7\n" + b"0" * limit)
        assert response.status_code < 500
        assert any(message in error for error in shown_errors(response)), shown_errors(response)
        assert japanese(message)
    # Over the request limit: 413, the Japanese error page.
    response = send(target, "とても大きな証明書.pdf", b"%PDF-1.7\n" + b"0" * REQUEST_LIMIT)
    assert response.status_code == 413
    assert error_page_title(response) == MESSAGES[413][0]
    assert store_files(app) == []
    after = snapshot(app)
    assert [t for t in before if before[t] != after[t]] == []


@every_route
def test_a_nul_in_the_file_name_is_refused_and_leaves_nothing(app, db, target):
    before = snapshot(app)
    response = send(target, "証明書\x00.exe.pdf", target.valid("NUL"))
    assert response.status_code == 400
    assert error_page_title(response) == MESSAGES[400][0]
    assert japanese(soup(response).select_one("main").get_text())
    assert store_files(app) == []
    after = snapshot(app)
    assert [t for t in before if before[t] != after[t]] == []


# ---------------------------------------------------------------------------------------------
# Odd names of files that are accepted
# ---------------------------------------------------------------------------------------------


def check_disposition(header: str, expected_name: str) -> None:
    """An attachment, ASCII only, one plain fallback name with no path or control character,
    and the cleaned name in ``filename*``."""
    assert all(32 <= ord(ch) < 127 for ch in header), header
    disposition, *params = [part.strip() for part in header.split(";")]
    assert disposition == "attachment"
    values = dict(param.split("=", 1) for param in params)
    assert set(values) == {"filename", "filename*"}, header
    fallback = values["filename"]
    assert re.fullmatch(r'"[A-Za-z0-9_-][A-Za-z0-9._-]*"', fallback), fallback
    assert ".." not in fallback
    assert values["filename*"].startswith("UTF-8''")
    assert unquote(values["filename*"][len("UTF-8''") :]) == expected_name


def sent_names():
    for case, raw, kept in ODD_NAMES:
        yield case, raw, kept, False
        if case in BROWSER_NAMES:
            yield f"{case} (as a browser sends it)", raw, kept, True


@every_route
def test_odd_names_are_cleaned_and_the_file_is_kept_under_the_stores_own_name(app, db, target):
    wrong = {}
    for case, raw, kept, browser_style in sent_names():
        content = target.valid(case)
        rows_before, files_before = file_rows(db), set(store_files(app))
        terms_before = terms_versions(db)
        response = send(target, raw, content, browser_style)
        if response.status_code >= 400 or shown_errors(response):
            wrong[case] = f"refused: {response.status_code} {shown_errors(response)}"
            continue
        new_files = sorted(set(store_files(app)) - files_before)
        if target.kind == IMPORT:
            # Read, never kept: the import result is shown and nothing reaches the store.
            if soup(response).select_one("[data-field=import-result]") is None or new_files:
                wrong[case] = f"no import result, or files kept: {new_files}"
            continue
        if target.kind == HASH:
            new = [t for i, t in terms_versions(db).items() if i not in terms_before]
            if new_files or [(t.source, t.sha256) for t in new] != [
                (kept, hashlib.sha256(content).hexdigest())
            ]:
                wrong[case] = f"files {new_files}, recorded {[(t.source, t.sha256) for t in new]}"
            continue
        rows = [row for key, row in file_rows(db).items() if key not in rows_before]
        if len(rows) != 1 or len(new_files) != 1:
            wrong[case] = f"rows {rows}, files {new_files}"
            continue
        (row,) = rows
        stored = STORED_PATH.match(new_files[0])
        problems = []
        if row.original_name != kept:
            problems.append(f"kept as {row.original_name!r}")
        if stored is None or stored.group(1) != row.stored_name:
            problems.append(f"stored at {new_files[0]!r} for {row.stored_name!r}")
        path = Path(app.config["EVIDENCE_DIR"]) / new_files[0]
        if hashlib.sha256(path.read_bytes()).hexdigest() != row.sha256:
            problems.append("stored bytes differ")
        url = (
            f"/evidence/{row.id}/download"
            if isinstance(row, EvidenceFile)
            else f"/review-files/{row.id}/download"
        )
        token = soup(target.browser.get(target.page)).select_one("input[name=csrf_token]")
        download = target.browser.client.post(
            url, data={"csrf_token": token["value"]}, buffered=True
        )
        try:
            if download.status_code != 200 or download.get_data() != content:
                problems.append(f"download {download.status_code}")
            else:
                expected = kept if kept.lower().endswith(".pdf") else f"{kept}.pdf"
                try:
                    check_disposition(download.headers["Content-Disposition"], expected)
                except AssertionError as exc:
                    problems.append(f"Content-Disposition: {exc}")
        finally:
            download.close()
        if problems:
            wrong[case] = problems
    assert wrong == {}
