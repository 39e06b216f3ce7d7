"""Reuse: company facts prefill empty answers; answers can be copied from an earlier
assessment of the same company (visible to the same vendor user) without overwriting."""

from __future__ import annotations

import sqlalchemy as sa

from portal.assessments import store
from portal.assessments.models import Answer
from portal.db import get_session
from portal.permissions import Role
from tests.helpers import Browser, flashes, soup
from tests.test_review_fixes_b import _assessment


def _vendor_world(app, db, make, org):
    department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, name="再利用株式会社")
    vendor = make.user(company=company, invited_by=org)
    earlier = _assessment(make, org, department, staff, company)
    current = _assessment(make, org, department, staff, company)
    return company, vendor, earlier, current


def _save(app, assessment, vendor, values: dict) -> None:
    with app.app_context():
        session = get_session()
        for key, value in values.items():
            store.save(session, session.merge(assessment), key, value, session.merge(vendor))
        session.commit()


def test_company_facts_prefill_empty_answers(app, db, make, org):
    company, vendor, _earlier, current = _vendor_world(app, db, make, org)
    browser = Browser(app.test_client())
    browser.login(vendor)

    page = browser.get(f"/assessments/{current.id}/sections/company")

    name = soup(page).select_one("[data-question='company.legal_name'] input")
    assert name["value"] == "再利用株式会社"
    number = soup(page).select_one("[data-question='company.corporate_number'] input")
    assert number["value"] == company.corporate_number


def test_answers_are_copied_from_an_earlier_assessment_without_overwriting(app, db, make, org):
    _company, vendor, earlier, current = _vendor_world(app, db, make, org)
    _save(
        app,
        earlier,
        vendor,
        {
            "company.legal_name": "再利用株式会社",
            "company.ownership": "親会社なし",
            "contract.subcontract": "yes",
            "contract.subcontractors": [
                {
                    "name": "下請株式会社",
                    "identifier": "",
                    "country": "JP",
                    "role": "保守",
                    "wholly_owned": "no",
                }
            ],
        },
    )
    db.execute(
        sa.update(type(earlier)).where(type(earlier).id == earlier.id).values(status="submitted")
    )
    db.commit()
    _save(app, current, vendor, {"company.ownership": "今回の回答"})
    browser = Browser(app.test_client())
    browser.login(vendor)

    page = browser.get(f"/assessments/{current.id}/sections/company")
    assert soup(page).select_one("#copy-source option")["value"] == str(earlier.id)
    response = browser.submit(
        f"/assessments/{current.id}/sections/company",
        {"source": str(earlier.id)},
        selector="form[action$='/copy']",
        follow_redirects=True,
    )

    assert any("転記しました" in message for message in flashes(response))
    db.rollback()
    copied = {
        a.question_key: a.value
        for a in db.scalars(sa.select(Answer).where(Answer.assessment_id == current.id))
    }
    assert copied["company.ownership"] == '"今回の回答"'  # not overwritten
    assert "company.legal_name" in copied
    assert "contract.subcontractors" in copied  # a follow-up copied once its trigger arrived


def test_copying_from_another_companys_assessment_is_not_found(app, db, make, org):
    _company, vendor, _earlier, current = _vendor_world(app, db, make, org)
    other_company = make.company(org)
    department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    foreign = _assessment(make, org, department, staff, other_company)
    browser = Browser(app.test_client())
    browser.login(vendor)

    response = browser.post(
        f"/assessments/{current.id}/copy",
        {"source": str(foreign.id)},
        token_from=f"/assessments/{current.id}/sections/company",
    )

    assert response.status_code == 404
    db.rollback()
    assert (
        db.scalar(
            sa.select(sa.func.count()).select_from(Answer).where(Answer.assessment_id == current.id)
        )
        == 0
    )
