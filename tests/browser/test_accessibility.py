"""axe-core (bundled by ``axe-playwright-python``, no network) on every main page, as each user
type sees it in the demo organisation: no serious or critical violation.

The demo (``flask seed-demo``) is seeded once for the module — it holds every state the pages
show — and each user logs in once through the real login form (password, then TOTP for staff);
every page then runs in a fresh browser context carrying that user's session cookie.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import pyotp
import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from werkzeug.serving import make_server

from portal import create_app
from portal.approvals.models import UseApplication
from portal.assessments.models import Assessment
from portal.assessments.views import Sheet
from portal.contractor_audits.models import ContractorAudit
from portal.reviews.models import Confirmation, Finding, ReviewSchedule, VendorReport
from portal.users.models import User
from tests.conftest import CHEAP_ARGON2
from tests.helpers import empty_database

PASSWORD = "アクセシビリティ確認用のパスフレーズ 2026"
BLOCKING = ("serious", "critical")

# Demo accounts (portal/demo.py), one per user type; two staff members for the two departments
# whose objects the pages show, two vendors for the two companies that have something to answer.
STAFF = "staff@sakuradai.example.jp"  # 情報政策課
STAFF_CITIZENS = "staff2@sakuradai.example.jp"  # 市民課
APPROVER = "approver@sakuradai.example.jp"
SERVICE_MANAGER = "manager@sakuradai.example.jp"
CISO = "ciso@sakuradai.example.jp"
NETWORK_ADMIN = "netadmin@sakuradai.example.jp"
AUDITOR = "auditor@sakuradai.example.jp"
ADMIN = "admin@sakuradai.example.jp"
SECOND_STAFF_MANAGER = "manager2@sakuradai.example.jp"  # only for the login steps
VENDOR = "vendor@sakura-cloud.example.com"  # a questionnaire in draft
VENDOR_CONFIRMING = "sales@minato-is.example.com"  # a 定期確認 to answer, reports made

_axe = Axe()


@dataclass(frozen=True)
class Target:
    name: str
    user: str | None  # None: not logged in
    path: str  # formatted with the demo's object ids

    def __str__(self) -> str:
        return self.name


PAGES = [
    Target("login", None, "/auth/login"),
    # Home pages, one per user type.
    Target("home-staff", STAFF, "/"),
    Target("home-approver", APPROVER, "/"),
    Target("home-service-manager", SERVICE_MANAGER, "/"),
    Target("home-ciso", CISO, "/"),
    Target("home-network-admin", NETWORK_ADMIN, "/"),
    Target("home-auditor", AUDITOR, "/"),
    Target("home-admin", ADMIN, "/"),
    Target("home-vendor", VENDOR, "/"),
    # 案件 and questionnaires.
    Target("engagement-list", STAFF, "/engagements/"),
    Target("engagement-new", STAFF, "/engagements/new"),
    Target("engagement-detail", STAFF, "/engagements/{engagement}"),
    Target("vendor-list", STAFF, "/vendors"),
    Target("vendor-profile", VENDOR, "/vendor/profile"),
    Target("answers-staff-view", STAFF_CITIZENS, "/assessments/{submitted}/view"),
    # Review, decision, report, 特記事項.
    Target("review-overview", STAFF_CITIZENS, "/assessments/{submitted}/review"),
    Target("decision", STAFF_CITIZENS, "/assessments/{reviewed}/decision"),
    Target("assessment-report", STAFF, "/assessments/{decided}/report"),
    Target("clauses", STAFF, "/assessments/{decided}/clauses"),
    Target("clauses-preview", STAFF, "/assessments/{decided}/clauses/preview"),
    # Cloud use: applications, the register, the 外部サービス管理者.
    Target("service-list", STAFF, "/services"),
    Target("application-list", APPROVER, "/applications"),
    Target("application-new", STAFF, "/applications/new"),
    Target("application-detail", APPROVER, "/applications/{application}"),
    Target("register", STAFF, "/register"),
    Target("register-approver", APPROVER, "/register"),
    Target("my-services", SERVICE_MANAGER, "/my-services"),
    # 定期確認, findings, contractor audits, vendor reports.
    Target("review-dashboard-staff", STAFF, "/reviews/dashboard"),
    Target("review-dashboard-ciso", CISO, "/reviews/dashboard"),
    Target("schedule-list", STAFF, "/reviews"),
    Target("schedule", STAFF, "/reviews/{schedule}"),
    Target("confirmation", STAFF_CITIZENS, "/confirmations/{confirmation}"),
    Target("finding-list", STAFF, "/findings"),
    Target("finding-detail", STAFF, "/findings/{finding}"),
    Target("contractor-audit-list", AUDITOR, "/contractor-audits"),
    Target("contractor-audit-detail", AUDITOR, "/contractor-audits/{contractor_audit}"),
    Target("vendor-confirmation-list", VENDOR_CONFIRMING, "/vendor/confirmations"),
    Target(
        "vendor-confirmation-answer",
        VENDOR_CONFIRMING,
        "/vendor/confirmations/{open_confirmation}",
    ),
    Target("vendor-report-list", VENDOR_CONFIRMING, "/vendor/reports"),
    Target(
        "vendor-report-new",
        VENDOR_CONFIRMING,
        "/vendor/reports/new?schedule={schedule}&kind=incident",
    ),
    Target("vendor-report-detail", VENDOR_CONFIRMING, "/vendor/reports/{vendor_report}"),
    Target("vendor-report-staff-view", CISO, "/reports/{vendor_report}"),
    # Administration and audit trail.
    Target("admin-users", ADMIN, "/admin/users"),
    Target("audit-events", AUDITOR, "/audit/"),
    Target("account", STAFF, "/auth/account"),
]


@dataclass
class World:
    base_url: str
    accounts: dict[str, dict]
    ids: dict[str, object]
    cookies: dict[str, list] = field(default_factory=dict)


def _first(session, statement) -> int:
    found = session.scalars(statement.limit(1)).first()
    assert found is not None, f"the demo has nothing for {statement}"
    return found


def _demo_ids(app) -> dict[str, object]:
    """The objects the pages show, picked by state from the seeded demo."""
    session = app.extensions["db_sessionmaker"]()
    try:

        def assessment(status: str, **where) -> Assessment:
            statement = sa.select(Assessment).where(Assessment.status == status)
            for column, value in where.items():
                statement = statement.where(getattr(Assessment, column) == value)
            return _first(session, statement.order_by(Assessment.id))

        vendor = session.scalar(sa.select(User).where(User.email == VENDOR))
        confirming = session.scalar(sa.select(User).where(User.email == VENDOR_CONFIRMING))
        draft = assessment("draft", vendor_company_id=vendor.vendor_company_id)
        submitted = assessment("submitted")
        with app.test_request_context():
            draft_sections = [section.key for section, _ in Sheet(draft).sections]
            submitted_sections = [section.key for section, _ in Sheet(submitted).sections]
        # A 業務委託 contract under periodic review whose vendor has a confirmation to answer:
        # its engagement, report and 特記事項 pages show everything that follows a decision.
        open_confirmation = _first(
            session,
            sa.select(Confirmation)
            .join(ReviewSchedule)
            .where(
                Confirmation.status == "open",
                ReviewSchedule.vendor_company_id == confirming.vendor_company_id,
                ReviewSchedule.assessment_id.is_not(None),
            ),
        )
        decided = open_confirmation.schedule.assessment
        return {
            "engagement": decided.engagement_id,
            "draft": draft.id,
            "draft_sections": draft_sections,
            "submitted": submitted.id,
            "submitted_sections": submitted_sections,
            "reviewed": assessment("reviewed").id,
            "decided": decided.id,
            "application": _first(
                session,
                sa.select(UseApplication.id).where(UseApplication.status == "submitted"),
            ),
            "schedule": open_confirmation.schedule_id,
            "confirmation": _first(
                session, sa.select(Confirmation.id).where(Confirmation.status == "submitted")
            ),
            "open_confirmation": open_confirmation.id,
            "finding": _first(
                session, sa.select(Finding.id).where(Finding.status == "open").order_by(Finding.id)
            ),
            "contractor_audit": _first(
                session, sa.select(ContractorAudit.id).order_by(ContractorAudit.id)
            ),
            "vendor_report": _first(
                session,
                sa.select(VendorReport.id).where(
                    VendorReport.vendor_company_id == confirming.vendor_company_id
                ),
            ),
        }
    finally:
        session.close()


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    """The demo seeded once into the test database, served on loopback for the whole module;
    the tables are emptied afterwards as the ``app`` fixture leaves them."""
    tmp = tmp_path_factory.mktemp("accessibility")
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "MAIL_OUTBOX": str(tmp / "outbox"),
            "EVIDENCE_DIR": str(tmp / "evidence"),
            "BASE_URL": "http://localhost",
            **CHEAP_ARGON2,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        result = app.test_cli_runner().invoke(args=["seed-demo", "--password", PASSWORD, "--json"])
        assert result.exit_code == 0, result.output
        accounts = {row["email"]: row for row in map(json.loads, result.stdout.splitlines())}
        ids = _demo_ids(app)
        thread.start()
        yield World(f"http://127.0.0.1:{server.server_port}", accounts, ids)
    finally:
        if thread.is_alive():
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()
        empty_database(app)


def _log_in(page, world: World, email: str) -> None:
    """Password, then (for staff) the TOTP code, through the real forms."""
    page.goto(f"{world.base_url}/auth/login")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    secret = world.accounts[email]["totp_secret"]
    if secret:
        page.wait_for_url(f"{world.base_url}/auth/mfa")
        page.get_by_label("確認コード").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="確認").click()
    page.wait_for_url(f"{world.base_url}/")


def _session_cookies(world: World, chromium, email: str) -> list:
    """Each user logs in once; later pages reuse the session cookie (a TOTP code is single
    use, so a second login within the same 30-second step would be refused)."""
    if email not in world.cookies:
        context = chromium.new_context(locale="ja-JP")
        try:
            _log_in(context.new_page(), world, email)
            world.cookies[email] = context.cookies()
        finally:
            context.close()
    return world.cookies[email]


def _open_as(page, world: World, chromium, user: str | None, path: str) -> str:
    if user:
        page.context.add_cookies(_session_cookies(world, chromium, user))
    url = world.base_url + path.format(**world.ids)
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    assert page.url == url, f"{url} was redirected to {page.url}"
    return url


def _blocking_violations(page) -> list[dict]:
    return [v for v in _axe.run(page).response["violations"] if v["impact"] in BLOCKING]


def _describe(where: str, violations: list[dict]) -> str:
    """Rule id, impact and every offending element (its selector and the start of its HTML)."""
    lines = [f"{where}:"]
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            snippet = " ".join(node["html"].split())[:160]
            lines.append(f"    {', '.join(node['target'])}  {snippet}")
    return "\n".join(lines)


def _assert_accessible(page, where: str) -> None:
    violations = _blocking_violations(page)
    assert not violations, _describe(where, violations)


@pytest.mark.parametrize("target", PAGES, ids=str)
def test_page_has_no_serious_or_critical_axe_violation(target, world, chromium, page):
    _open_as(page, world, chromium, target.user, target.path)

    _assert_accessible(page, f"{target.name} ({target.path})")


@pytest.mark.parametrize(
    ("name", "user", "path", "sections"),
    [
        (
            "vendor-questionnaire",
            VENDOR,
            "/assessments/{draft}/sections/{section}",
            "draft_sections",
        ),
        (
            "review-section",
            STAFF_CITIZENS,
            "/assessments/{submitted}/review/{section}",
            "submitted_sections",
        ),
    ],
    ids=["vendor-questionnaire", "review-section"],
)
def test_every_section_has_no_serious_or_critical_axe_violation(
    name, user, path, sections, world, chromium, page
):
    """Each section asks different kinds of question (tables, files, yes/no with follow-ups)."""
    failures = []
    for section in world.ids[sections]:
        section_path = path.replace("{section}", section)
        _open_as(page, world, chromium, user, section_path)
        violations = _blocking_violations(page)
        if violations:
            failures.append(_describe(f"{name} ({section_path})", violations))
    assert not failures, "\n".join(failures)


def test_login_with_a_mistyped_password_and_code_has_no_serious_or_critical_violation(world, page):
    """The error and notice messages of the login steps, as a member of staff meets them."""
    email = SECOND_STAFF_MANAGER
    page.goto(f"{world.base_url}/auth/login")
    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill("まちがったパスワードです")
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_load_state()
    assert page.locator(".flash--error").count() == 1
    _assert_accessible(page, "login after a wrong password")

    page.get_by_label("メールアドレス").fill(email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(f"{world.base_url}/auth/mfa")
    _assert_accessible(page, "second factor (/auth/mfa)")
    page.get_by_label("確認コード").fill("000000")
    page.get_by_role("button", name="確認").click()
    page.wait_for_load_state()
    assert page.locator(".field__error").count() == 1
    _assert_accessible(page, "second factor after a wrong code")

    secret = world.accounts[email]["totp_secret"]
    page.get_by_label("確認コード").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="確認").click()
    page.wait_for_url(f"{world.base_url}/")
    # The failed attempts since the previous login are a warning.
    assert page.locator(".flash--warning", has_text="ログイン失敗:").count() == 1
    _assert_accessible(page, "home with the previous-login notice")


def test_a_form_sent_back_with_errors_has_no_serious_or_critical_violation(world, chromium, page):
    """Errors beside their fields (aria-invalid, aria-describedby, role=alert)."""
    _open_as(page, world, chromium, STAFF, "/engagements/new")
    form = page.locator("form:has(#title)")
    form.evaluate("form => { form.noValidate = true; }")  # let the server do the refusing
    form.get_by_role("button", name="保存する").click()
    page.wait_for_load_state()
    assert page.locator(".field__error").count() >= 3

    _assert_accessible(page, "engagement-new with errors (/engagements/new)")
