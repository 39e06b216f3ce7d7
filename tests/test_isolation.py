"""Organisation isolation: one organisation never reaches or sees another's users, departments,
vendors or audit events; a vendor sees only its own company (SECURITY.md "Access control")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal.auth import tokens
from portal.permissions import ROLE_PERMISSIONS, Role
from portal.users.models import User
from portal.vendors.models import OrganisationVendor, VendorCompany
from tests.helpers import soup
from tests.test_routes import (
    MAIN_FORM,
    arrange_evidence,
    arrange_organisation,
    changed_tables,
    csrf_token,
    error_title,
    issue_token,
    needed_permission,
    path_for,
    signed_in,
    snapshot,
    walked_rules,
)

NO_SUCH_ID = 987654

# Form data that would be accepted if the object were the actor's own: a 404 then comes from the
# object rule, not from validation.
PLAUSIBLE_POST = {
    "name": "乗っ取り",
    "roles": "staff",
    "version": "1",
    "email": "intruder@example.jp",
    "code": "X-1",
    "active": "y",
    "address": "不正な住所",
}


@pytest.fixture
def two(app, db, make, org, other_org):
    ours = arrange_organisation(make, org)
    theirs = arrange_organisation(make, other_org, prefix="他団体")
    arrange_evidence(db, ours)
    arrange_evidence(db, theirs)
    theirs.vendor_user = theirs.people[Role.VENDOR]
    theirs.admin = theirs.people[Role.ADMIN]
    theirs.invitation = issue_token(app, db, theirs.pending, tokens.INVITATION)
    return SimpleNamespace(ours=ours, theirs=theirs)


def id_rules(app) -> list:
    """Every route addressing an object by id (users, departments, vendors …)."""
    return [rule for rule in walked_rules(app) if any(a.endswith("_id") for a in rule.arguments)]


def objects_of(arranged) -> dict:
    """One id of every kind of object an organisation owns (for the id routes)."""
    return {
        "user_id": arranged.target.id,
        "department_id": arranged.department.id,
        "company_id": arranged.company.id,
        "engagement_id": arranged.engagement.id,
        "assessment_id": arranged.assessment.id,
        "evidence_id": arranged.evidence.id,
        "question_key": arranged.evidence.question_key,
        "section_key": "company",
        "number": 1,  # a clause version (its document is found through the assessment)
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


def foreign_variants(two) -> list[dict]:
    """Several of the other organisation's ids for each kind of object."""
    theirs = two.theirs
    base = objects_of(theirs)
    return [
        base,
        {**base, "user_id": theirs.vendor_user.id},
        {**base, "user_id": theirs.admin.id},
    ]


def test_the_id_routes_are_walked(app):
    paths = {rule.rule for rule in id_rules(app)}
    assert "/admin/users/<int:user_id>" in paths
    assert "/admin/departments/<int:department_id>" in paths
    assert "/vendors/<int:company_id>" in paths


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_another_organisations_ids_are_not_found_for_any_role(app, two, role):
    browser = signed_in(app, two.ours.people[role])
    granted = ROLE_PERMISSIONS[role]
    token = csrf_token(browser)
    before = snapshot(app)
    wrong, checked = [], 0
    for rule in id_rules(app):
        permission = needed_permission(app, rule)
        # Without the permission the answer is 403 whatever the id: no existence oracle either way.
        expected = 404 if permission is None or permission in granted else 403
        for samples in [*foreign_variants(two), dict.fromkeys(rule.arguments, NO_SUCH_ID)]:
            path = path_for(rule, samples)
            if "GET" in rule.methods:
                response = browser.get(path)
                if response.status_code != expected:
                    wrong.append(f"GET {path} → {response.status_code}, expected {expected}")
                checked += 1
            if "POST" in rule.methods:
                response = browser.client.post(path, data={"csrf_token": token, **PLAUSIBLE_POST})
                if response.status_code != expected:
                    wrong.append(f"POST {path} → {response.status_code}, expected {expected}")
                checked += 1
    assert wrong == []
    assert checked > 0
    assert changed_tables(before, snapshot(app)) == []


def test_the_same_routes_reach_our_own_objects(app, two):
    """The control for the test above: with our own ids, someone holding the permission
    opens each page (the evidence download is left out: the arranged file has no bytes)."""
    ours = objects_of(two.ours)
    browsers: dict = {}
    for rule in id_rules(app):
        if "GET" not in rule.methods or rule.endpoint == "evidence.download":
            continue
        permission = needed_permission(app, rule)
        role = next(r for r in Role if permission in ROLE_PERMISSIONS[r])
        if role not in browsers:
            browsers[role] = signed_in(app, two.ours.people[role])
        response = browsers[role].get(path_for(rule, ours))
        assert response.status_code in (200, 302), (rule.rule, role, response.status_code)
        if response.status_code == 302:
            assert not response.headers["Location"].startswith("/auth/login"), rule.rule


def test_not_found_page_is_the_same_for_foreign_and_missing_ids(app, two):
    admin = signed_in(app, two.ours.people[Role.ADMIN])
    foreign = admin.get(f"/admin/users/{two.theirs.target.id}")
    missing = admin.get(f"/admin/users/{NO_SUCH_ID}")
    assert foreign.status_code == missing.status_code == 404
    assert error_title(foreign) == error_title(missing) == "ページが見つかりません"
    assert two.theirs.target.name not in soup(foreign).get_text()


def _texts(response, selector: str) -> str:
    return " ".join(node.get_text(" ", strip=True) for node in soup(response).select(selector))


def test_lists_never_show_another_organisations_names(app, db, two):
    # The other organisation is busy: its admin logs in and adds a department and a vendor.
    other_admin = signed_in(app, two.theirs.admin)
    assert (
        other_admin.submit("/admin/departments", {"name": "他団体の新設課"}, MAIN_FORM).status_code
        == 302
    )
    theirs = two.theirs
    foreign_names = [
        theirs.target.name,
        theirs.target.email,
        theirs.admin.email,
        theirs.vendor_user.name,
        theirs.department.name,
        "他団体の新設課",
        theirs.company.name,
        theirs.company.corporate_number,
        theirs.org.name,
    ]

    admin = signed_in(app, two.ours.people[Role.ADMIN])
    auditor = signed_in(app, two.ours.people[Role.AUDITOR])
    pages = {
        "users": admin.get("/admin/users"),
        "departments": admin.get("/admin/departments"),
        "vendors": admin.get("/vendors"),
        "new user form": admin.get("/admin/users/new"),
        "user form": admin.get(f"/admin/users/{two.ours.target.id}"),
        "audit-events": auditor.get("/audit/"),
        "dashboard": admin.get("/"),
    }
    for label, page in pages.items():
        assert page.status_code == 200, label
        text = soup(page).get_text(" ")
        leaked = [name for name in foreign_names if name in text]
        assert leaked == [], f"{label} shows {leaked}"

    # The control: the lists do show our own organisation's objects.
    assert two.ours.target.name in _texts(pages["users"], "[data-table=users] tbody td")
    assert two.ours.department.name in _texts(
        pages["departments"], "[data-table=departments] tbody td"
    )
    assert two.ours.company.name in _texts(pages["vendors"], "[data-table=vendors] tbody td")
    assert _texts(pages["audit-events"], "[data-table=audit-events] tbody [data-field=action]")

    export = auditor.submit("/audit/", selector="form[action='/audit/export.csv']")
    assert export.status_code == 200
    csv_text = export.get_data(as_text=True)
    assert two.ours.people[Role.AUDITOR].email in csv_text
    assert [name for name in foreign_names if name in csv_text] == []


def test_a_shared_vendor_shows_only_the_contacts_each_organisation_invited(app, make, two):
    shared = make.company(two.ours.org, name="共有システム株式会社")
    # The same company also works for the other organisation.
    make._save(OrganisationVendor(organisation_id=two.theirs.org.id, vendor_company_id=shared.id))
    mine = make.user(company=shared, invited_by=two.ours.org, name="当方が招待した担当")
    foreign = make.user(company=shared, invited_by=two.theirs.org, name="他団体が招待した担当")

    admin = signed_in(app, two.ours.people[Role.ADMIN])
    page = admin.get(f"/vendors/{shared.id}")
    contacts = _texts(page, "[data-table=vendor-users] tbody td")
    assert mine.name in contacts
    assert foreign.name not in contacts
    assert foreign.email not in soup(page).get_text()
    assert admin.get(f"/admin/users/{foreign.id}").status_code == 404
    assert admin.get(f"/admin/users/{mine.id}").status_code == 200


def test_a_vendor_sees_its_own_company_only_and_no_staff_page(app, db, make, two):
    second = make.company(two.ours.org, name="別の委託先株式会社")
    vendor = two.ours.people[Role.VENDOR]
    browser = signed_in(app, vendor)

    profile = browser.get("/vendor/profile")
    assert profile.status_code == 200
    assert soup(profile).select_one("[name=name]")["value"] == two.ours.company.name
    assert (
        soup(profile).select_one("[data-field=corporate-number]").get_text(strip=True)
        == two.ours.company.corporate_number
    )
    for page in (browser.get("/"), profile):
        text = soup(page).get_text(" ")
        for other in (second, two.theirs.company):
            assert other.name not in text
            assert other.corporate_number not in text

    staff_pages = [
        "/vendors",
        f"/vendors/{two.ours.company.id}",
        f"/vendors/{second.id}",
        "/vendors/new",
        "/admin/users",
        f"/admin/users/{vendor.id}",
        "/admin/departments",
        "/admin/organisation",
        "/audit/",
    ]
    for path in staff_pages:
        response = browser.get(path)
        assert response.status_code == 403, path
        assert error_title(response) == "アクセス権限がありません"
    # No link to a staff page in the vendor's navigation.
    links = {a["href"] for a in soup(browser.get("/")).select("nav a[href]")}
    assert links <= {
        "/",
        "/vendor/profile",
        "/vendor/confirmations",
        "/vendor/reports",
        "/auth/account",
    }


def test_a_vendor_edits_only_its_own_company_whatever_the_form_says(app, db, make, two):
    vendor = two.ours.people[Role.VENDOR]
    browser = signed_in(app, vendor)
    victim = two.theirs.company
    response = browser.submit(
        "/vendor/profile",
        {
            "name": "自社の新しい名称株式会社",
            "id": str(victim.id),
            "vendor_company_id": str(victim.id),
            "company_id": str(victim.id),
            "corporate_number": victim.corporate_number,
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    db.rollback()
    db.expire_all()
    own = db.get(VendorCompany, two.ours.company.id)
    assert own.name == "自社の新しい名称株式会社"
    assert own.corporate_number == two.ours.company.corporate_number
    assert db.get(VendorCompany, victim.id).name == victim.name
    assert db.get(User, vendor.id).vendor_company_id == two.ours.company.id
