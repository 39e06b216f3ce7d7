"""The route walker: every rule of ``app.url_map`` declares its permission, anonymous users are
sent to the login page, every POST needs a CSRF token, no GET changes anything, and every role
lacking a route's permission gets 403 (SECURITY.md "Access control", "Sessions").

The helpers at the top are shared with ``tests/test_isolation.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from portal.auth import tokens
from portal.db import Base, engine_for
from portal.errors import MESSAGES
from portal.permissions import (
    AUTHENTICATED,
    PUBLIC,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    public,
)
from portal.users.models import User
from tests.factories import PASSWORD
from tests.helpers import Browser, soup

# The page's own form: the navigation holds a logout form that comes first in the document.
MAIN_FORM = "main form[method=post]"
EXEMPT_ENDPOINTS = {"static"}  # Flask's own static files: public by nature
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def walked_rules(app, method: str | None = None) -> list:
    """Every rule except Flask's static files, optionally only those accepting ``method``."""
    return [
        rule
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule)
        if rule.endpoint not in EXEMPT_ENDPOINTS and (method is None or method in rule.methods)
    ]


def requirement_of(app, rule) -> str | None:
    return getattr(app.view_functions[rule.endpoint], "required_permission", None)


def undeclared_routes(app) -> list[str]:
    return [
        f"{rule.rule} ({rule.endpoint})"
        for rule in walked_rules(app)
        if requirement_of(app, rule) is None
    ]


def needed_permission(app, rule) -> Permission | None:
    """The Permission a rule requires, or None for public / any-logged-in routes."""
    requirement = requirement_of(app, rule)
    if requirement in (None, PUBLIC, AUTHENTICATED):
        return None
    return Permission(requirement)


def path_for(rule, samples: dict) -> str:
    """The rule's path with its arguments filled from ``samples``; fails naming what is missing."""
    missing = sorted(set(rule.arguments) - samples.keys())
    assert not missing, (
        f"route {rule.rule} has argument(s) {missing} with no sample value: "
        "add arranged data for them to the walker tests"
    )
    return _ARGUMENT.sub(lambda m: str(samples[m.group(1)]), rule.rule)


def snapshot(app) -> dict[str, list]:
    """Every row of every table, for "nothing changed" assertions."""
    with engine_for(app).connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


def changed_tables(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def audit_count(db) -> int:
    from portal.audit.models import AuditEvent

    db.rollback()  # end the test session's read transaction: see what the requests committed
    db.expire_all()
    return db.scalar(sa.select(sa.func.count()).select_from(AuditEvent))


def signed_in(app, user, password: str = PASSWORD) -> Browser:
    """A browser logged in as ``user`` through the real login (and TOTP) forms."""
    browser = Browser(app.test_client())
    response = browser.login(user, password)
    assert response.status_code == 302, f"login of {user.email} → {response.status_code}"
    assert response.headers["Location"] == "/", response.headers["Location"]
    return browser


def csrf_token(browser: Browser, page: str = "/") -> str:
    node = soup(browser.get(page)).select_one("input[name=csrf_token]")
    assert node is not None, f"no CSRF token on {page}"
    return node["value"]


def error_title(response) -> str:
    node = soup(response).select_one("h1")
    return node.get_text(strip=True) if node else ""


def issue_token(app, db, user, purpose: str) -> str:
    with app.app_context():
        token = tokens.issue(db, user, purpose, timedelta(hours=1))
    db.commit()
    return token


def arrange_organisation(make, org, prefix: str = ""):
    """One organisation with a department, a vendor company and one account per role."""
    department = make.department(org, name=f"{prefix}情報政策課")
    company = make.company(org, name=f"{prefix}テスト情報システム株式会社")
    people = {
        role: make.user(
            org,
            roles={role},
            name=f"{prefix}{role.value}役",
            departments=[department],
        )
        for role in Role
        if role is not Role.VENDOR
    }
    people[Role.VENDOR] = make.user(company=company, invited_by=org, name=f"{prefix}委託先担当")
    target = make.user(org, roles={Role.STAFF}, name=f"{prefix}対象職員", departments=[department])
    pending = make.user(org, roles={Role.STAFF}, name=f"{prefix}登録待ち職員", password=None)
    return SimpleNamespace(
        org=org,
        department=department,
        company=company,
        people=people,
        target=target,
        pending=pending,
    )


def arrange_evidence(db, arranged) -> None:
    """An engagement of the arranged department, its assessment addressed to the arranged
    company and one clean evidence file (the row only) for the routes taking their ids."""
    from portal.assessments.models import Assessment
    from portal.engagements.models import Engagement
    from portal.evidence.models import EvidenceFile
    from portal.questionnaires import loader

    bank = loader.latest("assessment")
    evidence_question = next(q for q in bank.questions if q.type == "evidence")

    staff = arranged.people[Role.STAFF]
    arranged.engagement = Engagement(
        organisation_id=arranged.org.id,
        department_id=arranged.department.id,
        created_by_id=staff.id,
        kind="outsourcing",
        title="住民情報システム運用保守",
        purpose="運用保守",
        information="住民基本台帳",
        confidentiality=2,
        integrity=1,
        availability=1,
    )
    db.add(arranged.engagement)
    db.flush()
    arranged.assessment = Assessment(
        organisation_id=arranged.org.id,
        engagement_id=arranged.engagement.id,
        vendor_company_id=arranged.company.id,
        questionnaire_key=bank.key,
        questionnaire_version=bank.version,
        created_by_id=staff.id,
    )
    db.add(arranged.assessment)
    db.flush()
    arranged.evidence = EvidenceFile(
        organisation_id=arranged.org.id,
        assessment_id=arranged.assessment.id,
        vendor_company_id=arranged.company.id,
        question_key=evidence_question.key,
        original_name="ISMAP登録証.pdf",
        stored_name=f"{arranged.assessment.id:064x}",
        content_type="application/pdf",
        size=1,
        sha256="0" * 64,
        scan_status="clean",
        uploaded_by_id=arranged.people[Role.VENDOR].id,
    )
    db.add(arranged.evidence)
    db.commit()
    arrange_register_entry(db, arranged)
    arrange_reviews(db, arranged)


def arrange_register_entry(db, arranged) -> None:
    """An approved 約款型 service of the arranged company: a register entry with its
    外部サービス管理者, one recorded terms version and one lifecycle check (the rows only)."""
    from portal.approvals.models import (
        ExternalService,
        ManagerAssignment,
        TermsVersion,
        UseApplication,
    )
    from portal.db import utcnow
    from portal.lifecycle.models import LifecycleCheck

    staff = arranged.people[Role.STAFF]
    manager = arranged.people[Role.SERVICE_MANAGER]
    arranged.service = ExternalService(
        organisation_id=arranged.org.id,
        vendor_company_id=arranged.company.id,
        name="無料アンケート",
    )
    db.add(arranged.service)
    db.flush()
    arranged.application = UseApplication(
        organisation_id=arranged.org.id,
        department_id=arranged.department.id,
        service_id=arranged.service.id,
        applicant_id=staff.id,
        category="9.3",
        purpose="研修アンケート",
        business="研修アンケートの集計",
        network_segment="internet",
        max_confidentiality=1,
        status="approved",
        decision="approve",
        decided_by_id=arranged.people[Role.APPROVER].id,
        decided_at=utcnow(),
    )
    db.add(arranged.application)
    db.flush()
    db.add(
        ManagerAssignment(
            application_id=arranged.application.id,
            user_id=manager.id,
            appointed_on=date(2026, 4, 1),
            appointed_by_id=arranged.people[Role.APPROVER].id,
        )
    )
    arranged.terms = TermsVersion(
        application_id=arranged.application.id,
        url="https://survey.example.com/terms",
        sha256="1" * 64,
        source="貼り付け",
        recorded_by_id=staff.id,
    )
    db.add(arranged.terms)
    db.add(
        LifecycleCheck(
            application_id=arranged.application.id,
            phase="build",
            item_key="access_control",
            checklist_version="1",
            result="done",
            checked_on=date(2026, 4, 2),
            evidence="設定確認シート",
            recorded_by_id=manager.id,
        )
    )
    db.commit()


def arrange_reviews(db, arranged) -> None:
    """定期確認 rows of the arranged register entry (the rows only): its schedule with an open
    confirmation, a finding, a vendor report, a contractor audit and a file of each kind."""
    from portal.contractor_audits.models import ContractorAudit
    from portal.reviews.models import (
        Confirmation,
        ConfirmationSection,
        Finding,
        ReviewFile,
        ReviewSchedule,
        VendorReport,
    )

    staff = arranged.people[Role.STAFF]
    arranged.schedule = ReviewSchedule(
        organisation_id=arranged.org.id,
        department_id=arranged.department.id,
        vendor_company_id=arranged.company.id,
        application_id=arranged.application.id,
        title="無料アンケート",
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
    )
    db.add(arranged.schedule)
    db.flush()
    arranged.confirmation = Confirmation(
        organisation_id=arranged.org.id,
        schedule_id=arranged.schedule.id,
        number=1,
        reason="scheduled",
        questionnaire_key="periodic",
        questionnaire_version="2026.11",
        period_from=date(2026, 4, 1),
        period_to=date(2026, 11, 20),
        due_on=date(2027, 3, 31),
        opened_by_id=staff.id,
    )
    db.add(arranged.confirmation)
    db.flush()
    db.add(ConfirmationSection(confirmation_id=arranged.confirmation.id, section_key="staff"))
    arranged.finding = Finding(
        organisation_id=arranged.org.id,
        department_id=arranged.department.id,
        confirmation_id=arranged.confirmation.id,
        severity="medium",
        title="教育記録の不足",
        corrective_action="教育記録を提出する",
        owner_id=staff.id,
        due_on=date(2027, 1, 31),
        created_by_id=staff.id,
    )
    arranged.report = VendorReport(
        organisation_id=arranged.org.id,
        schedule_id=arranged.schedule.id,
        vendor_company_id=arranged.company.id,
        kind="incident",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        summary="誤送信",
        information_affected="アンケート結果",
        reported_by_id=arranged.people[Role.VENDOR].id,
    )
    arranged.audit = ContractorAudit(
        organisation_id=arranged.org.id,
        department_id=arranged.department.id,
        schedule_id=arranged.schedule.id,
        vendor_company_id=arranged.company.id,
        title="委託先監査",
        scope="アンケート集計業務",
        method="onsite",
        auditor_id=arranged.people[Role.AUDITOR].id,
        planned_on=date(2026, 12, 1),
        created_by_id=arranged.people[Role.AUDITOR].id,
    )
    db.add_all([arranged.finding, arranged.report, arranged.audit])
    db.flush()
    arranged.review_file = ReviewFile(
        organisation_id=arranged.org.id,
        confirmation_id=arranged.confirmation.id,
        purpose="evidence",
        original_name="認証書.pdf",
        stored_name=f"{arranged.confirmation.id + 7:064x}",
        content_type="application/pdf",
        size=1,
        sha256="0" * 64,
        scan_status="clean",
        uploaded_by_id=arranged.people[Role.VENDOR].id,
    )
    db.add(arranged.review_file)
    db.commit()


@pytest.fixture
def world(app, db, make, org):
    arranged = arrange_organisation(make, org)
    invitation = issue_token(app, db, arranged.pending, tokens.INVITATION)
    arrange_evidence(db, arranged)
    arranged.samples = {
        "user_id": arranged.target.id,
        "department_id": arranged.department.id,
        "company_id": arranged.company.id,
        "token": invitation,
        "assessment_id": arranged.assessment.id,
        "engagement_id": arranged.engagement.id,
        "section_key": "company",
        "question_key": arranged.evidence.question_key,
        "evidence_id": arranged.evidence.id,
        "number": 1,
        "service_id": arranged.service.id,
        "application_id": arranged.application.id,
        "terms_id": arranged.terms.id,
        "phase": "build",
        "item_key": "access_control",
        "schedule_id": arranged.schedule.id,
        "confirmation_id": arranged.confirmation.id,
        "finding_id": arranged.finding.id,
        "report_id": arranged.report.id,
        "audit_id": arranged.audit.id,
        "file_id": arranged.review_file.id,
    }
    return arranged


# ---------------------------------------------------------------------------------------------
# Every route declares its permission
# ---------------------------------------------------------------------------------------------


def test_every_route_declares_the_permission_it_needs(app):
    assert undeclared_routes(app) == [], "routes without @require / @public / @authenticated"


def test_every_declared_requirement_is_known_and_reachable_by_some_role(app):
    granted = set().union(*ROLE_PERMISSIONS.values())
    problems = []
    for rule in walked_rules(app):
        requirement = requirement_of(app, rule)
        if requirement in (PUBLIC, AUTHENTICATED):
            continue
        if requirement not in {str(p) for p in Permission}:
            problems.append(f"{rule.rule}: unknown requirement {requirement!r}")
        elif Permission(requirement) not in granted:
            problems.append(f"{rule.rule}: no role holds {requirement}")
    assert problems == []


def test_the_walker_names_a_route_that_declares_nothing(app):
    app.add_url_rule("/undeclared-for-test", "undeclared_for_test", lambda: "x")
    app.add_url_rule("/declared-for-test", "declared_for_test", public(lambda: "x"))

    assert undeclared_routes(app) == ["/undeclared-for-test (undeclared_for_test)"]


def test_every_route_has_sample_arguments_for_the_walkers(app, world):
    for rule in walked_rules(app):
        path_for(rule, world.samples)  # fails naming the route and the argument


# ---------------------------------------------------------------------------------------------
# Anonymous users
# ---------------------------------------------------------------------------------------------


def test_every_non_public_get_route_sends_anonymous_users_to_the_login_page(app, client, world):
    checked, failures = 0, []
    for rule in walked_rules(app, "GET"):
        if requirement_of(app, rule) == PUBLIC:
            continue
        path = path_for(rule, world.samples)
        response = client.get(path)
        location = urlsplit(response.headers.get("Location", ""))
        if response.status_code != 302 or location.path != "/auth/login":
            failures.append(f"GET {path} → {response.status_code} {location.geturl()}")
        elif parse_qs(location.query).get("next") != [path]:
            failures.append(f"GET {path}: next is {parse_qs(location.query).get('next')}")
        checked += 1
    assert failures == []
    assert checked >= 10


def test_public_get_routes_answer_anonymous_users_without_error(app, client, world):
    for rule in walked_rules(app, "GET"):
        if requirement_of(app, rule) == PUBLIC:
            path = path_for(rule, world.samples)
            assert client.get(path).status_code < 500, path


def test_every_non_public_post_route_sends_anonymous_users_to_login_and_changes_nothing(app, world):
    browser = Browser(app.test_client())
    token = csrf_token(browser, "/auth/login")
    before = snapshot(app)
    failures = []
    for rule in walked_rules(app, "POST"):
        if requirement_of(app, rule) == PUBLIC:
            continue
        path = path_for(rule, world.samples)
        response = browser.client.post(path, data={"csrf_token": token, "name": "匿名"})
        if response.status_code != 302 or urlsplit(response.location).path != "/auth/login":
            failures.append(f"POST {path} → {response.status_code}")
    assert failures == []
    assert changed_tables(before, snapshot(app)) == []


# ---------------------------------------------------------------------------------------------
# CSRF on every POST
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["missing", "forged"])
def test_every_post_route_refuses_a_request_without_a_valid_csrf_token(app, world, token):
    admin = signed_in(app, world.people[Role.ADMIN])
    before = snapshot(app)
    checked, failures = 0, []
    for rule in walked_rules(app, "POST"):
        path = path_for(rule, world.samples)
        data = {"name": "偽の送信", "roles": "admin", "version": "1", "email": "x@example.jp"}
        if token:
            data["csrf_token"] = token
        response = admin.client.post(path, data=data)
        if response.status_code != 400 or error_title(response) != MESSAGES[400][0]:
            failures.append(f"POST {path} → {response.status_code} {error_title(response)}")
        checked += 1
    assert failures == []
    assert checked >= 10
    assert changed_tables(before, snapshot(app)) == []


# ---------------------------------------------------------------------------------------------
# No GET changes state
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_no_get_route_changes_anything(app, db, world, role):
    browser = signed_in(app, world.people[role])
    before, events = snapshot(app), audit_count(db)
    statuses = {}
    for rule in walked_rules(app, "GET"):
        path = path_for(rule, world.samples)
        statuses[path] = browser.get(path).status_code
    assert {p: s for p, s in statuses.items() if s >= 500} == {}
    assert audit_count(db) == events
    assert changed_tables(before, snapshot(app)) == []
    # The walk really reached pages (the role is not simply logged out).
    assert statuses["/"] == 200


def test_get_walk_detects_a_change(app, db, world):
    """The snapshot used above sees a single changed column."""
    before = snapshot(app)
    db.get(User, world.target.id).name = "変更後"
    db.commit()
    assert changed_tables(before, snapshot(app)) == ["user_account"]


# ---------------------------------------------------------------------------------------------
# Role × route: 403 without the permission, the page with it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_gets_403_exactly_where_it_lacks_the_permission(app, world, role):
    browser = signed_in(app, world.people[role])
    granted = ROLE_PERMISSIONS[role]
    token = csrf_token(browser)
    before = snapshot(app)
    forbidden, wrong = 0, []
    for rule in walked_rules(app):
        permission = needed_permission(app, rule)
        if permission is None or permission in granted:
            continue
        path = path_for(rule, world.samples)
        if "GET" in rule.methods:
            response = browser.get(path)
            if response.status_code != 403 or error_title(response) != MESSAGES[403][0]:
                wrong.append(f"GET {path} → {response.status_code}")
            forbidden += 1
        if "POST" in rule.methods:
            response = browser.client.post(
                path,
                data={"csrf_token": token, "name": "権限外", "roles": "admin", "version": "1"},
            )
            if response.status_code != 403:
                wrong.append(f"POST {path} → {response.status_code}")
            forbidden += 1
    assert wrong == [], f"{role}: {wrong}"
    assert changed_tables(before, snapshot(app)) == []

    allowed = []
    for rule in walked_rules(app, "GET"):
        permission = needed_permission(app, rule)
        if permission is not None and permission in granted:
            path = path_for(rule, world.samples)
            response = browser.get(path)
            opened = response.status_code == 200 or (
                response.status_code == 302  # e.g. an assessment opens at its first section
                and not response.headers["Location"].startswith("/auth/login")
            )
            if not opened:
                allowed.append(f"GET {path} → {response.status_code}")
    assert allowed == [], f"{role} cannot open pages its permissions grant: {allowed}"
    assert forbidden > 0
