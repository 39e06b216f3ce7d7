"""Fixes from the review of the questionnaire capability."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.engagements.models import Engagement
from portal.permissions import Role
from portal.questionnaires.loader import _version_order
from tests.helpers import Browser, flashes


@pytest.mark.parametrize(
    "path",
    [
        "/assessments/1000000000000000000000000000000",
        "/engagements/99999999999999999999",
        "/evidence/18446744073709551616",
        "/admin/users/9223372036854775808",
        "/vendors/0",
    ],
)
def test_absurd_ids_are_a_plain_404(app, make, org, path):
    admin = make.user(org, roles={Role.ADMIN, Role.STAFF}, departments=[make.department(org)])
    browser = Browser(app.test_client())
    browser.login(admin)
    assert browser.get(path).status_code == 404


def test_versions_compare_numerically():
    assert _version_order("2026.11") > _version_order("2026.9")
    assert _version_order("2027.1") > _version_order("2026.12")


def test_classification_is_frozen_once_answers_are_handed_in(app, db, make, org):
    department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org)
    engagement = make.engagement(org, department, staff)
    make.assessment(engagement, company, staff, status="submitted")
    browser = Browser(app.test_client())
    browser.login(staff)

    refused = browser.submit(
        f"/engagements/{engagement.id}/edit", {"confidentiality": "3"}, selector="main form"
    )
    assert refused.status_code == 200
    assert any("変更できません" in message for message in flashes(refused))
    db.rollback()
    assert (
        db.scalar(sa.select(Engagement.confidentiality).where(Engagement.id == engagement.id)) == 2
    )

    allowed = browser.submit(
        f"/engagements/{engagement.id}/edit",
        {"title": "窓口業務委託（令和9年度）"},
        selector="main form",
    )
    assert allowed.status_code == 302


def test_a_stale_page_does_not_silently_undo_a_colleagues_newer_answer(app, db, make, org):
    from portal.assessments import store
    from tests.helpers import form_fields, soup

    department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org)
    first = make.user(company=company, invited_by=org)
    colleague = make.user(company=company, invited_by=org)
    assessment = make.assessment(make.engagement(org, department, staff), company, staff)
    url = f"/assessments/{assessment.id}/sections/company"
    mine, theirs = Browser(app.test_client()), Browser(app.test_client())
    mine.login(first)
    theirs.login(colleague)

    page = mine.get(url)  # shows revision 0 of the answer
    values = form_fields(soup(page).select_one("form#answers"))
    token = values["csrf_token"]
    saved = theirs.client.post(
        f"/assessments/{assessment.id}/autosave",
        data={
            "csrf_token": soup(theirs.get(url)).select_one("form#answers input[name=csrf_token]")[
                "value"
            ],
            "question": "company.security_officer",
            "r:company.security_officer": "0",
            "a:company.security_officer": "CISO 佐藤（4月1日交代）",
        },
    )
    assert saved.get_json()["revision"] == 1

    values["a:company.security_officer"] = "CISO 田中"
    response = mine.client.post(url, data=values)

    error = soup(response).select_one('[data-question="company.security_officer"] .field__error')
    assert error is not None and error.get_text(strip=True).startswith("ほかの方が先に")
    stale = mine.client.post(
        f"/assessments/{assessment.id}/autosave",
        data={
            "csrf_token": token,
            "question": "company.security_officer",
            "r:company.security_officer": "0",
            "a:company.security_officer": "CISO 田中",
        },
    )
    assert stale.status_code == 409
    with app.app_context():
        from portal.db import get_session

        current = store.values(get_session(), get_session().merge(assessment))
    assert current["company.security_officer"] == "CISO 佐藤（4月1日交代）"
