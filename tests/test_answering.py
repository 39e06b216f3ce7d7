"""Vendors answering online, through the real pages: invitations (existing or new company, new or
existing contact), sections with progress, prefill, saving without JavaScript, validation beside
the field, conditions, tables, the autosave endpoint, submit, return-and-revise with history, and
the vendor isolation matrix."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.assessments.demo import sample_answer
from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.audit.models import AuditEvent
from portal.engagements.models import Engagement
from portal.permissions import Role
from portal.questionnaires import loader
from portal.users.models import User
from portal.vendors.corporate_number import with_check_digit
from portal.vendors.models import OrganisationVendor, VendorCompany
from tests.factories import Factory
from tests.helpers import Browser, flashes, form_fields, link_in, outbox, reload, soup, text_of

BANK = loader.latest("assessment")
ANSWERS = "form#answers"
MAIN_FORM = "main form[method=post]"
PASSPHRASE = "港の見える丘で朝の珈琲をゆっくり飲む"
NOT_ANSWERABLE = "この設問には回答できません。"
REQUEST_SUBJECT = "【回答のご依頼】委託先・外部サービス 情報セキュリティ評価票"
RETURN_SUBJECT = "【回答の差戻し】委託先・外部サービス 情報セキュリティ評価票"
INVITATION_SUBJECT = "【利用登録のご案内】委託先・外部サービス リスク評価ポータル"


# ---------------------------------------------------------------------------------------------
# Arranging
# ---------------------------------------------------------------------------------------------


def make_engagement(
    db,
    org,
    department,
    staff,
    *,
    kind: str = "outsourcing",
    confidentiality: int = 2,
    personal: bool = False,
    title: str = "窓口業務委託",
) -> Engagement:
    engagement = Engagement(
        organisation_id=org.id,
        department_id=department.id,
        created_by_id=staff.id,
        kind=kind,
        title=title,
        purpose="窓口業務の一部を委託する。",
        information="住民の氏名・住所" if personal else "業務マニュアル",
        confidentiality=confidentiality,
        integrity=1,
        availability=1,
        personal_data=personal,
    )
    db.add(engagement)
    db.commit()
    return engagement


def make_assessment(db, engagement, company, staff) -> Assessment:
    return Factory(db, None).assessment(engagement, company, staff)


def logged_in_as(app, user, **kwargs) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user, **kwargs)
    assert response.status_code == 302
    return browser


@pytest.fixture
def department(make, org):
    return make.department(org, "市民課")


@pytest.fixture
def other_department(make, org):
    return make.department(org, "福祉課")


@pytest.fixture
def staff(make, org, department):
    return make.user(org, roles={Role.STAFF}, departments=[department], name="市民 課長")


@pytest.fixture
def staff_browser(app, staff):
    return logged_in_as(app, staff)


@pytest.fixture
def company(make, org):
    return make.company(org, "みなと情報システム株式会社")


@pytest.fixture
def vendor(make, org, company):
    return make.user(company=company, invited_by=org, name="回答 花子")


@pytest.fixture
def vendor_browser(app, vendor):
    return logged_in_as(app, vendor)


@pytest.fixture
def engagement(db, org, department, staff):
    return make_engagement(db, org, department, staff)


@pytest.fixture
def assessment(db, engagement, company, staff):
    return make_assessment(db, engagement, company, staff)


# ---------------------------------------------------------------------------------------------
# Reading and posting
# ---------------------------------------------------------------------------------------------


def section_url(assessment_id: int, section_key: str) -> str:
    return f"/assessments/{assessment_id}/sections/{section_key}"


def box(response, key: str):
    """The question's block on a section page, or None when the question is not shown."""
    return soup(response).select_one(f'[data-question="{key}"]')


def shown_questions(response) -> list[str]:
    return [node["data-question"] for node in soup(response).select("[data-question]")]


def answer_errors(response) -> dict[str, str]:
    """Question key → the error shown beside it."""
    return {
        node["data-question"]: node.select_one(".field__error").get_text(strip=True)
        for node in soup(response).select(".question.field--error")
    }


def field_value(response, name: str):
    """What the form shows for ``name``: a text value, the checked radio, the selected option."""
    return form_fields(soup(response).select_one(ANSWERS)).get(name)


def section_progress(response) -> dict[str, str]:
    return {
        node["data-section-progress"]: node.get_text(strip=True)
        for node in soup(response).select("[data-section-progress]")
    }


def stored(db, assessment) -> dict:
    """The answers as committed now (hidden ones too), decoded."""
    db.rollback()
    rows = db.scalars(sa.select(Answer).where(Answer.assessment_id == assessment.id))
    return {row.question_key: json.loads(row.value) for row in rows}


def revisions(db, assessment, key: str) -> list:
    db.rollback()
    rows = db.scalars(
        sa.select(AnswerRevision)
        .join(Answer, Answer.id == AnswerRevision.answer_id)
        .where(Answer.assessment_id == assessment.id, Answer.question_key == key)
        .order_by(AnswerRevision.revision)
    )
    return [json.loads(row.value) for row in rows]


def status_of(db, assessment) -> str:
    return reload(db, assessment).status


def csrf(browser) -> str:
    return soup(browser.get("/")).select_one("input[name=csrf_token]")["value"]


def fields_for(key: str, value) -> dict:
    """The form fields a browser posts for one question's value."""
    question = BANK.question(key)
    name = f"a:{key}"
    if question is not None and question.type == "table":
        rows = value or []
        data = {f"{name}:rows": str(len(rows))}
        for number, row in enumerate(rows):
            for column, cell in row.items():
                data[f"{name}:{number}:{column}"] = cell
        return data
    if isinstance(value, list):
        return {name: list(value)}
    return {name: "" if value is None else str(value)}


def autosave(browser, assessment_id: int, key: str, value, token: str | None = None):
    return browser.client.post(
        f"/assessments/{assessment_id}/autosave",
        data={"csrf_token": token or csrf(browser), "question": key, **fields_for(key, value)},
    )


def missing_links(browser, assessment_id: int) -> dict[str, str]:
    """Question key → link, as listed on the submit page."""
    page = browser.get(f"/assessments/{assessment_id}/submit")
    assert page.status_code == 200
    links = {}
    for anchor in soup(page).select("[data-field=missing] a"):
        fragment = urlsplit(anchor["href"]).fragment
        assert fragment.startswith("q-")
        links[fragment[2:]] = anchor["href"]
    return links


def answer_everything(browser, assessment_id: int) -> None:
    """Answer every required, visible question the submit page lists, until none is left
    (answers reveal follow-up questions, which are listed on the next round)."""
    token = csrf(browser)
    for _round in range(10):
        missing = missing_links(browser, assessment_id)
        if not missing:
            return
        for key in missing:
            response = autosave(
                browser, assessment_id, key, sample_answer(BANK.question(key)), token
            )
            assert response.status_code == 200, (key, response.get_json())
    raise AssertionError("required questions keep appearing")


def submit(browser, assessment_id: int):
    return browser.submit(f"/assessments/{assessment_id}/submit", selector=MAIN_FORM)


def open_inputs(response) -> set[str]:
    """Answer fields of the page's form that the vendor can still change."""
    names = set()
    for node in soup(response).select(f"{ANSWERS} input, {ANSWERS} select, {ANSWERS} textarea"):
        name = node.get("name", "")
        if not name.startswith("a:") or node.get("type") in ("hidden", "file"):
            continue
        if node.has_attr("disabled") or node.has_attr("readonly"):
            continue
        names.add(name.split(":")[1])
    return names


def raw_visible(section_key: str) -> list:
    """Questions of a section shown before anything is answered (no condition of their own)."""
    return [q for q in BANK.section(section_key).questions if q.when is None]


def audit_actions(db, assessment) -> list[str]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent.action)
            .where(
                AuditEvent.object_type == "assessment", AuditEvent.object_id == str(assessment.id)
            )
            .order_by(AuditEvent.seq)
        )
    )


# ---------------------------------------------------------------------------------------------
# Invitations
# ---------------------------------------------------------------------------------------------


def invite(staff_browser, engagement_id: int, **data):
    return staff_browser.submit(
        f"/engagements/{engagement_id}",
        data,
        selector=f"form[action='/engagements/{engagement_id}/assessments']",
    )


def test_a_new_contact_of_a_known_company_is_invited_sets_a_password_and_sees_the_request(
    app, db, org, staff_browser, engagement, company
):
    response = invite(
        staff_browser,
        engagement.id,
        company_id=str(company.id),
        contact_name="回答 花子",
        contact_email="Hanako@Vendor.example.jp",
    )

    assert response.status_code == 302
    page = staff_browser.get(response.headers["Location"])
    assert "みなと情報システム株式会社 に回答を依頼しました。" in flashes(page)
    db.rollback()
    assessment = db.scalar(sa.select(Assessment))
    assert (assessment.engagement_id, assessment.vendor_company_id, assessment.status) == (
        engagement.id,
        company.id,
        "draft",
    )
    assert (assessment.questionnaire_key, assessment.questionnaire_version) == (
        BANK.key,
        BANK.version,
    )
    row = soup(page).select_one(f"[data-table=assessments] [data-assessment-id='{assessment.id}']")
    assert row.select_one("[data-field=status]").get_text(strip=True) == "回答中"
    contact = db.scalar(sa.select(User).where(User.email == "hanako@vendor.example.jp"))
    assert contact.vendor_company_id == company.id
    assert contact.vendor_organisation_ids == {org.id}
    assert "assessment.created" in audit_actions(db, assessment)

    (message,) = outbox(app)
    assert message["To"] == "hanako@vendor.example.jp"
    assert message["Subject"] == INVITATION_SUBJECT
    path = urlsplit(link_in(message)).path
    assert path.startswith("/auth/invitation/")

    newcomer = Browser(app.test_client())
    accepted = newcomer.submit(path, {"password": PASSPHRASE, "confirm": PASSPHRASE}, "main form")
    assert accepted.status_code == 302
    assert accepted.headers["Location"] == "/auth/login"
    login = newcomer.submit(
        "/auth/login", {"email": "hanako@vendor.example.jp", "password": PASSPHRASE}
    )
    assert login.status_code == 302
    assert login.headers["Location"] == "/"

    dashboard = newcomer.get("/")
    rows = soup(dashboard).select("[data-table=my-assessments] [data-assessment-id]")
    assert [r["data-assessment-id"] for r in rows] == [str(assessment.id)]
    link = rows[0].select_one("a")
    assert link.get_text(strip=True) == "窓口業務委託"
    assert rows[0].select_one("[data-field=status]").get_text(strip=True) == "回答中"
    opened = newcomer.get(link["href"])
    assert opened.headers["Location"] == section_url(assessment.id, "company")
    assert newcomer.get(opened.headers["Location"]).status_code == 200


def test_a_new_company_is_registered_by_its_corporate_number(
    app, db, org, staff_browser, engagement
):
    number = with_check_digit("700110005901")
    spaced = f"{number[0]}-{number[1:5]}-{number[5:9]}-{number[9:]}"

    response = invite(
        staff_browser,
        engagement.id,
        corporate_number=spaced,
        company_name="株式会社みなみクラウド",
        contact_name="南 次郎",
        contact_email="jiro@minami.example.jp",
    )

    assert response.status_code == 302
    db.rollback()
    company = db.scalar(sa.select(VendorCompany).where(VendorCompany.corporate_number == number))
    assert company.name == "株式会社みなみクラウド"
    assert db.get(OrganisationVendor, (org.id, company.id)) is not None
    assessment = db.scalar(sa.select(Assessment))
    assert assessment.vendor_company_id == company.id
    assert [m["To"] for m in outbox(app)] == ["jiro@minami.example.jp"]
    # The company can now be picked for the next engagement.
    page = staff_browser.get(f"/engagements/{engagement.id}")
    options = [o["value"] for o in soup(page).select("select[name=company_id] option")]
    assert str(company.id) in options


def test_a_company_another_body_registered_is_reused_with_its_own_profile(
    app, db, make, org, other_org, staff_browser, engagement
):
    theirs = make.company(other_org, name="登記上の名称株式会社")

    response = invite(
        staff_browser,
        engagement.id,
        corporate_number=theirs.corporate_number,
        company_name="別の名前で入力",
        contact_name="担当 三郎",
        contact_email="saburo@example.jp",
    )

    assert response.status_code == 302
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(VendorCompany)) == 1
    assert reload(db, theirs).name == "登記上の名称株式会社"
    assert db.get(OrganisationVendor, (org.id, theirs.id)) is not None
    assert db.scalar(sa.select(Assessment.vendor_company_id)) == theirs.id


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"corporate_number": "1234567890123", "company_name": "偽株式会社"},
            "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。",
        ),
        (
            {"corporate_number": "12345", "company_name": "短い株式会社"},
            "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。",
        ),
        (
            {"corporate_number": "", "company_name": ""},
            "登録済みの事業者を選ぶか、法人番号を入力してください。",
        ),
        (
            {"corporate_number": with_check_digit("700110005902"), "company_name": ""},
            "新しい事業者の商号又は名称を入力してください。",
        ),
        ({"company_id": "999999"}, "選択肢の中から選んでください。"),
    ],
    ids=["check-digit", "too-short", "nothing", "no-name", "forged-company"],
)
def test_a_bad_invitation_is_refused_in_japanese_and_creates_nothing(
    app, db, staff_browser, engagement, data, message
):
    assert with_check_digit("234567890123")[0] != "1"  # so "1234567890123" is really invalid
    response = invite(
        staff_browser,
        engagement.id,
        contact_name="誰か",
        contact_email="someone@example.jp",
        **data,
    )

    assert response.status_code == 302
    assert message in flashes(staff_browser.get(response.headers["Location"]))
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Assessment)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(VendorCompany)) == 0
    assert db.scalar(sa.select(User).where(User.email == "someone@example.jp")) is None
    assert outbox(app) == []


def test_a_company_of_another_body_cannot_be_picked_by_id(
    app, db, make, other_org, staff_browser, engagement
):
    theirs = make.company(other_org)
    page = staff_browser.get(f"/engagements/{engagement.id}")
    options = [o["value"] for o in soup(page).select("select[name=company_id] option")]
    assert str(theirs.id) not in options

    response = invite(
        staff_browser,
        engagement.id,
        company_id=str(theirs.id),
        contact_name="誰か",
        contact_email="someone@example.jp",
    )
    assert "選択肢の中から選んでください。" in flashes(
        staff_browser.get(response.headers["Location"])
    )
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Assessment)) == 0


def test_an_existing_contact_gets_a_request_mail_and_no_invitation(
    app, db, staff_browser, engagement, company, vendor, vendor_browser
):
    response = invite(
        staff_browser,
        engagement.id,
        company_id=str(company.id),
        contact_name="回答 花子",
        contact_email=vendor.email,
    )

    assert response.status_code == 302
    db.rollback()
    assessment = db.scalar(sa.select(Assessment))
    (message,) = outbox(app)
    assert message["To"] == vendor.email
    assert message["Subject"] == REQUEST_SUBJECT
    body = message.get_content()
    assert "案件: 窓口業務委託" in body.splitlines()
    assert link_in(message) == f"http://localhost/assessments/{assessment.id}"
    assert db.scalar(sa.select(sa.func.count()).select_from(User)) == 2  # staff and vendor

    rows = soup(vendor_browser.get("/")).select("[data-table=my-assessments] [data-assessment-id]")
    assert [r["data-assessment-id"] for r in rows] == [str(assessment.id)]


def test_inviting_a_contact_known_to_another_body_grants_access_to_ours_only(
    app, db, make, org, other_org, staff_browser, engagement, company
):
    db.add(OrganisationVendor(organisation_id=other_org.id, vendor_company_id=company.id))
    db.commit()
    contact = make.user(company=company, invited_by=other_org)
    theirs = make_engagement(
        db,
        other_org,
        make.department(other_org),
        make.user(other_org, roles={Role.STAFF}),
        title="別の村の案件",
    )
    make_assessment(db, theirs, company, make.user(other_org, roles={Role.STAFF}))

    response = invite(
        staff_browser,
        engagement.id,
        company_id=str(company.id),
        contact_name="共通 担当",
        contact_email=contact.email,
    )

    assert response.status_code == 302
    assert [m["Subject"] for m in outbox(app)] == [REQUEST_SUBJECT]
    db.rollback()
    assert reload(db, contact).vendor_organisation_ids == {org.id, other_org.id}
    assert db.scalar(
        sa.select(AuditEvent.action).where(
            AuditEvent.action == "vendor.access_granted", AuditEvent.object_id == str(contact.id)
        )
    )
    titles = [
        a.get_text(strip=True)
        for a in soup(logged_in_as(app, contact).get("/")).select("[data-table=my-assessments] a")
    ]
    assert sorted(titles) == sorted(["窓口業務委託", "別の村の案件"])


@pytest.mark.parametrize("who", ["vendor-of-another-company", "staff", "inactive-contact"])
def test_an_address_that_is_not_a_contact_of_the_company_is_refused(
    app, db, make, org, staff_browser, engagement, company, who
):
    if who == "vendor-of-another-company":
        email = make.user(company=make.company(org), invited_by=org).email
    elif who == "staff":
        email = make.user(org, roles={Role.STAFF}).email
    else:
        email = make.user(company=company, invited_by=org, active=False).email

    response = invite(
        staff_browser,
        engagement.id,
        company_id=str(company.id),
        contact_name="誰か",
        contact_email=email,
    )

    assert (
        "このメールアドレスは別の利用者が使用しているため、担当者に指定できません。"
        "別のメールアドレスを指定してください。"
    ) in flashes(staff_browser.get(response.headers["Location"]))
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Assessment)) == 0
    assert outbox(app) == []


def test_inviting_the_same_company_twice_is_refused(
    app, db, staff_browser, engagement, company, vendor
):
    first = invite(
        staff_browser,
        engagement.id,
        company_id=str(company.id),
        contact_name="回答 花子",
        contact_email=vendor.email,
    )
    assert first.status_code == 302

    second = invite(
        staff_browser,
        engagement.id,
        corporate_number=company.corporate_number,
        company_name=company.name,
        contact_name="別の担当",
        contact_email="another@vendor.example.jp",
    )

    assert "この事業者にはすでにこの案件の回答を依頼しています。" in flashes(
        staff_browser.get(second.headers["Location"])
    )
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Assessment)) == 1
    assert db.scalar(sa.select(User).where(User.email == "another@vendor.example.jp")) is None
    assert len(outbox(app)) == 1


def test_only_staff_of_the_department_may_invite(
    app, db, make, org, engagement, company, other_department
):
    data = {"company_id": str(company.id), "contact_name": "誰か", "contact_email": "x@example.jp"}
    outsider = logged_in_as(app, make.user(org, roles={Role.STAFF}, departments=[other_department]))
    assert outsider.post(f"/engagements/{engagement.id}/assessments", data).status_code == 404
    approver = logged_in_as(app, make.user(org, roles={Role.APPROVER}))
    assert approver.post(f"/engagements/{engagement.id}/assessments", data).status_code == 403
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Assessment)) == 0
    assert outbox(app) == []


# ---------------------------------------------------------------------------------------------
# Sections, progress, prefill, saving without JavaScript
# ---------------------------------------------------------------------------------------------


def test_sections_show_progress_figures(db, vendor_browser, assessment):
    first = vendor_browser.get(f"/assessments/{assessment.id}")
    assert first.headers["Location"] == section_url(assessment.id, "company")

    page = vendor_browser.get(section_url(assessment.id, "company"))
    expected = {key: len(raw_visible(key)) for key in ("company", "certifications", "contract")}
    assert section_progress(page) == {key: f"0/{n}" for key, n in expected.items()}
    total = sum(expected.values())
    assert text_of(page, "[data-field=progress]").startswith(f"回答済み 0 / {total} 問（0%）")
    assert soup(page).select_one("[data-field=progress] progress")["value"] == "0"
    current = soup(page).select_one(".section-nav a[aria-current=page]")
    assert current["href"] == section_url(assessment.id, "company")
    assert shown_questions(page) == [q.key for q in raw_visible("company")]

    token = csrf(vendor_browser)
    for key, value in {
        "company.hq_country": "JP",
        "company.bcp": "yes",
        "contract.rto": "4",
    }.items():
        assert autosave(vendor_browser, assessment.id, key, value, token).status_code == 200

    page = vendor_browser.get(section_url(assessment.id, "contract"))
    figures = section_progress(page)
    assert figures["company"] == f"2/{expected['company']}"
    assert figures["certifications"] == f"0/{expected['certifications']}"
    assert figures["contract"] == f"1/{expected['contract']}"
    assert text_of(page, "[data-field=progress]").startswith(
        f"回答済み 3 / {total} 問（{round(300 / total)}%）"
    )
    assert vendor_browser.get(section_url(assessment.id, "terms")).status_code == 404
    assert vendor_browser.get(section_url(assessment.id, "nosuch")).status_code == 404


def test_the_sections_follow_the_engagement(
    db, make, org, department, staff, company, vendor_browser
):
    engagement = make_engagement(
        db, org, department, staff, kind="external_service", confidentiality=1, personal=True
    )
    assessment = make_assessment(db, engagement, company, staff)
    page = vendor_browser.get(section_url(assessment.id, "company"))
    assert list(section_progress(page)) == ["company", "certifications", "terms", "personal"]
    assert vendor_browser.get(section_url(assessment.id, "contract")).status_code == 404


@pytest.mark.parametrize(
    ("kind", "confidentiality", "personal"),
    [("outsourcing", 3, True), ("external_service", 2, True), ("external_service", 1, False)],
    ids=["9.1", "9.2", "9.3"],
)
def test_every_section_of_every_track_opens_with_its_evidence_upload(
    db, org, department, staff, company, vendor_browser, kind, confidentiality, personal
):
    engagement = make_engagement(
        db, org, department, staff, kind=kind, confidentiality=confidentiality, personal=personal
    )
    assessment = make_assessment(db, engagement, company, staff)
    sections = list(section_progress(vendor_browser.get(section_url(assessment.id, "company"))))
    for key in sections:
        page = vendor_browser.get(section_url(assessment.id, key))
        assert page.status_code == 200, key
        assert shown_questions(page) == [q.key for q in raw_visible(key)]
    page = vendor_browser.get(section_url(assessment.id, "certifications"))
    evidence = box(page, "certifications.certificate_evidence")
    upload = evidence.select_one("input[type=file]")
    form = soup(page).select_one(f"form#{upload['form']}")
    assert form["action"] == (
        f"/assessments/{assessment.id}/evidence/certifications.certificate_evidence"
    )
    assert evidence.select_one("[data-evidence-for]").get_text(strip=True) == (
        "添付されたファイルはありません。"
    )


def test_company_facts_are_prefilled_from_the_profile_and_not_saved_until_the_vendor_saves(
    db, vendor_browser, assessment, company
):
    company.address = "東京都港区芝公園1-1-1"
    company.representative = "代表取締役 港 太郎"
    db.commit()
    url = section_url(assessment.id, "company")

    page = vendor_browser.get(url)
    assert field_value(page, "a:company.legal_name") == "みなと情報システム株式会社"
    assert field_value(page, "a:company.corporate_number") == company.corporate_number
    assert field_value(page, "a:company.address") == "東京都港区芝公園1-1-1"
    assert field_value(page, "a:company.representative") == "代表取締役 港 太郎"
    assert stored(db, assessment) == {}
    assert section_progress(page)["company"].startswith("0/")

    # Saving the section keeps the prefilled facts as the vendor's answers.
    assert vendor_browser.submit(url, {}, ANSWERS).status_code == 302
    assert {
        k: v
        for k, v in stored(db, assessment).items()
        if k in {"company.legal_name", "company.corporate_number", "company.address"}
    } == {
        "company.legal_name": "みなと情報システム株式会社",
        "company.corporate_number": company.corporate_number,
        "company.address": "東京都港区芝公園1-1-1",
    }
    # A saved answer wins over the profile.
    assert (
        autosave(
            vendor_browser, assessment.id, "company.legal_name", "みなと情報（株）"
        ).status_code
        == 200
    )
    assert field_value(vendor_browser.get(url), "a:company.legal_name") == "みなと情報（株）"


def test_a_section_is_saved_with_the_plain_button(db, vendor_browser, vendor, assessment):
    url = section_url(assessment.id, "company")
    response = vendor_browser.submit(
        url,
        {
            "a:company.hq_country": "JP",
            "a:company.security_policy": "partly",
            "a:company.ownership": "親会社: みなとホールディングス（100%）",
            "a:company.foreign_capital_ratio": "１２.５",
            "a:company.past_incidents": "no",
        },
        ANSWERS,
    )

    assert response.status_code == 302
    assert response.headers["Location"] == url
    page = vendor_browser.get(url)
    assert "保存しました。" in flashes(page)
    values = stored(db, assessment)
    assert values["company.hq_country"] == "JP"
    assert values["company.security_policy"] == "partly"
    assert values["company.ownership"] == "親会社: みなとホールディングス（100%）"
    assert values["company.foreign_capital_ratio"] == 12.5
    assert values["company.past_incidents"] == "no"
    assert field_value(page, "a:company.hq_country") == "JP"
    assert field_value(page, "a:company.security_policy") == "partly"
    assert field_value(page, "a:company.foreign_capital_ratio") == "12.5"
    db.rollback()
    event = db.scalar(
        sa.select(AuditEvent)
        .where(AuditEvent.action == "assessment.saved")
        .order_by(AuditEvent.seq)
    )
    assert event.actor_user_id == vendor.id
    assert json.loads(event.details)["section"] == "company"

    again = vendor_browser.submit(url, {}, ANSWERS, follow_redirects=True)
    assert "変更はありませんでした。" in flashes(again)


def test_invalid_answers_get_errors_beside_them_while_valid_ones_are_saved(
    db, vendor_browser, assessment
):
    url = section_url(assessment.id, "company")
    token = csrf(vendor_browser)
    autosave(vendor_browser, assessment.id, "company.foreign_capital_ratio", "30", token)
    autosave(vendor_browser, assessment.id, "company.hq_country", "JP", token)
    autosave(vendor_browser, assessment.id, "company.security_policy", "yes", token)

    response = vendor_browser.submit(
        url,
        {
            "a:company.foreign_capital_ratio": "150",
            "a:company.hq_country": "XX",
            "a:company.security_policy": "maybe",
            "a:company.representative": "長" * 201,
            "a:company.security_officer": "情報セキュリティ部長 \x07 港",
            "a:company.ownership": "上場企業のため有価証券報告書のとおり",
            "a:company.bcp": "yes",
        },
        ANSWERS,
    )

    assert response.status_code == 200
    assert answer_errors(response) == {
        "company.foreign_capital_ratio": "100以下の値を入力してください。",
        "company.hq_country": "国を一覧から選んでください。",
        "company.security_policy": "選択肢の中から選んでください。",
        "company.representative": "200文字以内で入力してください（現在201文字）。",
        "company.security_officer": "制御文字は入力できません。",
    }
    assert (
        "入力内容に誤りがある項目は保存していません。各項目のメッセージを確認してください。"
        in flashes(response)
    )
    # The error is the field's own: inside its block, announced with it.
    error = box(response, "company.hq_country").select_one(".field__error")
    assert error.get("role") == "alert"
    # What was typed stays in the field to be corrected.
    assert field_value(response, "a:company.foreign_capital_ratio") == "150"

    values = stored(db, assessment)
    assert values["company.ownership"] == "上場企業のため有価証券報告書のとおり"
    assert values["company.bcp"] == "yes"
    assert values["company.foreign_capital_ratio"] == 30
    assert values["company.hq_country"] == "JP"
    assert values["company.security_policy"] == "yes"
    assert "company.representative" not in values
    assert "company.security_officer" not in values


# ---------------------------------------------------------------------------------------------
# Conditions and tables
# ---------------------------------------------------------------------------------------------

FOLLOW_UPS = [
    "contract.subcontractors",
    "contract.subcontract_prior_approval",
    "contract.subcontract_same_obligations",
]
SUBCONTRACTOR = {
    "name": "さくらデータセンター株式会社",
    "identifier": "",
    "country": "JP",
    "role": "データセンターの運用",
    "wholly_owned": "no",
}


def test_a_follow_up_question_appears_after_its_trigger_and_hidden_answers_do_not_count(
    db, vendor_browser, assessment
):
    url = section_url(assessment.id, "contract")
    page = vendor_browser.get(url)
    assert not set(FOLLOW_UPS) & set(shown_questions(page))
    before_total = int(section_progress(page)["contract"].split("/")[1])
    assert (
        autosave(vendor_browser, assessment.id, FOLLOW_UPS[0], [SUBCONTRACTOR]).status_code == 400
    )

    assert vendor_browser.submit(url, {"a:contract.subcontract": "yes"}, ANSWERS).status_code == 302
    page = vendor_browser.get(url)
    shown = shown_questions(page)
    assert set(FOLLOW_UPS) <= set(shown)
    assert shown.index("contract.subcontract") < shown.index("contract.subcontractors")
    assert section_progress(page)["contract"] == f"1/{before_total + 3}"
    assert {"contract.subcontractors", "contract.subcontract_prior_approval"} <= set(
        missing_links(vendor_browser, assessment.id)
    )

    token = csrf(vendor_browser)
    assert (
        autosave(vendor_browser, assessment.id, FOLLOW_UPS[0], [SUBCONTRACTOR], token).status_code
        == 200
    )
    assert autosave(vendor_browser, assessment.id, FOLLOW_UPS[1], "yes", token).status_code == 200
    assert section_progress(vendor_browser.get(url))["contract"] == f"3/{before_total + 3}"

    # Answering "no" hides the follow-ups: their answers are kept but no longer count.
    assert (
        autosave(vendor_browser, assessment.id, "contract.subcontract", "no", token).status_code
        == 200
    )
    page = vendor_browser.get(url)
    assert not set(FOLLOW_UPS) & set(shown_questions(page))
    assert section_progress(page)["contract"] == f"1/{before_total}"
    assert not set(FOLLOW_UPS) & set(missing_links(vendor_browser, assessment.id))
    assert autosave(vendor_browser, assessment.id, FOLLOW_UPS[1], "no", token).status_code == 400
    assert stored(db, assessment)[FOLLOW_UPS[1]] == "yes"

    assert (
        autosave(vendor_browser, assessment.id, "contract.subcontract", "partly", token).status_code
        == 200
    )
    assert section_progress(vendor_browser.get(url))["contract"] == f"3/{before_total + 3}"


def test_table_rows_are_added_and_deleted(db, vendor_browser, assessment):
    url = section_url(assessment.id, "contract")
    autosave(vendor_browser, assessment.id, "contract.subcontract", "yes")
    table = "a:contract.subcontractors"
    page = vendor_browser.get(url)
    assert len(box(page, "contract.subcontractors").select("tr[data-row]")) == 1
    assert field_value(page, f"{table}:rows") == "1"

    number = with_check_digit("100200300400")
    response = vendor_browser.submit(
        url,
        {
            f"{table}:0:name": "さくらデータセンター株式会社",
            f"{table}:0:identifier": "".join(chr(ord(c) + 0xFEE0) for c in number),  # 全角
            f"{table}:0:country": "JP",
            f"{table}:0:role": "データセンターの運用",
            f"{table}:0:wholly_owned": "no",
            "add_row": "contract.subcontractors",
        },
        ANSWERS,
    )
    assert response.status_code == 302
    assert response.headers["Location"] == (
        f"{url}?add=contract.subcontractors#q-contract.subcontractors"
    )
    added = response.headers["Location"].split("#")[0]
    page = vendor_browser.get(added)
    rows = box(page, "contract.subcontractors").select("tr[data-row]")
    assert len(rows) == 2
    assert field_value(page, f"{table}:0:name") == "さくらデータセンター株式会社"
    assert field_value(page, f"{table}:1:name") == ""
    assert stored(db, assessment)["contract.subcontractors"] == [
        {
            "name": "さくらデータセンター株式会社",
            "identifier": number,
            "country": "JP",
            "role": "データセンターの運用",
            "wholly_owned": "no",
        }
    ]

    response = vendor_browser.submit(
        added,
        {
            f"{table}:1:name": "Overseas Support Ltd.",
            f"{table}:1:identifier": "SG-201912345K",
            f"{table}:1:country": "SG",
            f"{table}:1:role": "夜間の監視",
            f"{table}:1:wholly_owned": "yes",
        },
        ANSWERS,
    )
    assert response.status_code == 302
    assert [r["name"] for r in stored(db, assessment)["contract.subcontractors"]] == [
        "さくらデータセンター株式会社",
        "Overseas Support Ltd.",
    ]
    page = vendor_browser.get(url)
    assert len(box(page, "contract.subcontractors").select("tr[data-row]")) == 2  # no blank row

    # Ticking 削除 on the first row removes it.
    assert vendor_browser.submit(url, {f"{table}:0:_delete": "1"}, ANSWERS).status_code == 302
    (remaining,) = stored(db, assessment)["contract.subcontractors"]
    assert remaining["name"] == "Overseas Support Ltd."
    assert remaining["identifier"] == "SG-201912345K"

    # A row with a missing required cell is refused and the saved table stays as it was.
    response = vendor_browser.submit(
        url, {f"{table}:0:country": "", f"{table}:0:role": "変更"}, ANSWERS
    )
    assert answer_errors(response) == {
        "contract.subcontractors": "1行目の「所在国」を入力してください。"
    }
    assert stored(db, assessment)["contract.subcontractors"] == [remaining]

    # Deleting the last row leaves the required table unanswered again.
    assert vendor_browser.submit(url, {f"{table}:0:_delete": "1"}, ANSWERS).status_code == 302
    assert stored(db, assessment)["contract.subcontractors"] is None
    assert "contract.subcontractors" in missing_links(vendor_browser, assessment.id)


# ---------------------------------------------------------------------------------------------
# The autosave endpoint
# ---------------------------------------------------------------------------------------------


def test_autosave_saves_one_answer_and_replies_with_json(db, vendor, vendor_browser, assessment):
    token = csrf(vendor_browser)
    response = vendor_browser.client.post(
        f"/assessments/{assessment.id}/autosave",
        data={
            "csrf_token": token,
            "question": "company.hq_country",
            "a:company.hq_country": "JP",
            "a:company.representative": "ついでに送られた値",
        },
    )

    assert response.status_code == 200
    assert response.get_json() == {
        "status": "saved",
        "message": "自動保存しました。",
        "revision": 1,
    }
    assert stored(db, assessment) == {"company.hq_country": "JP"}
    assert revisions(db, assessment, "company.hq_country") == ["JP"]

    assert (
        autosave(vendor_browser, assessment.id, "company.hq_country", "JP", token).status_code
        == 200
    )
    assert revisions(db, assessment, "company.hq_country") == ["JP"]  # no change, no revision
    assert (
        autosave(vendor_browser, assessment.id, "company.hq_country", "us", token).status_code
        == 200
    )
    assert revisions(db, assessment, "company.hq_country") == ["JP", "US"]
    db.rollback()
    details = [
        json.loads(d)
        for d in db.scalars(
            sa.select(AuditEvent.details).where(
                AuditEvent.action == "assessment.saved", AuditEvent.actor_user_id == vendor.id
            )
        )
    ]
    assert details == [{"question": "company.hq_country", "autosave": True}] * 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("company.nosuch", "x"),  # not in the questionnaire
        ("", "x"),  # no question named
        ("terms.terms_url", "https://example.com/terms"),  # a 9.3 section, this is 9.1
        ("personal.countries", "日本国内のみ"),  # no personal data in this engagement
        ("company.past_incident_details", "なし"),  # its trigger is not answered "yes"
        ("certifications.certificate_evidence", "file.pdf"),  # evidence: uploaded, not typed
    ],
    ids=["unknown", "none", "other-track", "personal-off", "hidden-follow-up", "evidence"],
)
def test_autosave_refuses_questions_that_cannot_be_answered(
    db, vendor_browser, assessment, key, value
):
    response = autosave(vendor_browser, assessment.id, key, value)

    assert response.status_code == 400
    assert response.get_json() == {"status": "error", "message": NOT_ANSWERABLE}
    assert stored(db, assessment) == {}


def test_autosave_without_the_csrf_token_is_refused(db, vendor_browser, assessment):
    response = vendor_browser.client.post(
        f"/assessments/{assessment.id}/autosave",
        data={"question": "company.hq_country", "a:company.hq_country": "JP"},
    )
    assert response.status_code == 400
    assert stored(db, assessment) == {}


INVALID = [
    ("company.foreign_capital_ratio", "abc", "数値を半角数字で入力してください。", {}),
    ("company.foreign_capital_ratio", "-1", "0以上の値を入力してください。", {}),
    ("lifecycle.log_retention", "1.5", "整数で入力してください。", {}),
    ("company.hq_country", "ZZ", "国を一覧から選んでください。", {}),
    ("company.security_policy", "maybe", "選択肢の中から選んでください。", {}),
    ("company.past_incidents", "partly", "選択肢の中から選んでください。", {}),  # not allowed
    ("external.governing_law", "mars", "選択肢の中から選んでください。", {}),
    ("contract.access_methods", ["onsite", "teleport"], "選択肢の中から選んでください。", {}),
    ("company.representative", "長" * 201, "200文字以内で入力してください（現在201文字）。", {}),
    ("company.ownership", "長" * 4001, "4000文字以内で入力してください（現在4001文字）。", {}),
    ("company.security_officer", "部長\x1b[31m", "制御文字は入力できません。", {}),
    (
        "external.sla_url",
        "ftp://example.com/sla",
        "http:// または https:// で始まるURLを入力してください。",
        {},
    ),
    (
        "external.sla_url",
        "javascript:alert(1)",
        "http:// または https:// で始まるURLを入力してください。",
        {},
    ),
    (
        "external.sla_url",
        "https://[::1/sla",
        "http:// または https:// で始まるURLを入力してください。",
        {},
    ),
    (
        "certifications.ismap_registered_on",
        "2019-12-31",
        "2020-01-01から2100-12-31までの日付を入力してください。",
        {"certifications.ismap": "ismap"},
    ),
    (
        "certifications.ismap_registered_on",
        "2026-13-01",
        "日付を「2026-04-01」の形で入力してください。",
        {"certifications.ismap": "ismap_liu"},
    ),
    (
        "external.data_locations",
        [{"purpose": "primary", "country": "", "region": "東京都"}],
        "1行目の「国」を入力してください。",
        {},
    ),
    (
        "external.data_locations",
        [{"purpose": "moon", "country": "JP", "region": ""}],
        "1行目の「用途」: 選択肢の中から選んでください。",
        {},
    ),
    (
        "contract.subcontractors",
        [{**SUBCONTRACTOR, "identifier": "1234567890123"}],
        "1行目の「法人番号又は外国の登録番号」: 法人番号のチェックデジットが一致しません。",
        {"contract.subcontract": "yes"},
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "message", "before"),
    INVALID,
    ids=[f"{k}-{i}" for i, (k, *_rest) in enumerate(INVALID)],
)
def test_autosave_refuses_an_invalid_value_in_japanese_and_keeps_the_saved_one(
    db, org, department, staff, company, vendor_browser, key, value, message, before
):
    engagement = make_engagement(
        db, org, department, staff, kind="external_service", confidentiality=2
    )
    assessment = make_assessment(db, engagement, company, staff)
    token = csrf(vendor_browser)
    for trigger, answer in before.items():
        assert autosave(vendor_browser, assessment.id, trigger, answer, token).status_code == 200
    good = sample_answer(BANK.question(key))
    assert autosave(vendor_browser, assessment.id, key, good, token).status_code == 200
    saved = stored(db, assessment)[key]

    response = autosave(vendor_browser, assessment.id, key, value, token)

    assert response.status_code == 422
    assert response.get_json() == {"status": "invalid", "message": message}
    assert stored(db, assessment)[key] == saved
    assert len(revisions(db, assessment, key)) == 1


# ---------------------------------------------------------------------------------------------
# Submitting
# ---------------------------------------------------------------------------------------------


def test_submit_is_refused_while_required_questions_are_missing(db, vendor_browser, assessment):
    missing = missing_links(vendor_browser, assessment.id)
    required = [
        q.key
        for key in ("company", "certifications", "contract")
        for q in raw_visible(key)
        if q.required and q.type != "evidence"
    ]
    assert list(missing) == required
    assert "company.corporate_number" not in missing  # optional
    assert "company.past_incident_details" not in missing  # hidden
    for key, href in missing.items():
        assert href == f"{section_url(assessment.id, BANK.question(key).section_key)}#q-{key}"
        target = vendor_browser.get(href.split("#")[0])
        assert box(target, key) is not None  # the link leads to the question
    page = vendor_browser.get(f"/assessments/{assessment.id}/submit")
    assert text_of(page, "h2") == f"未回答の必須項目（{len(required)}件）"
    assert soup(page).select(MAIN_FORM) == []

    response = vendor_browser.post(
        f"/assessments/{assessment.id}/submit", token_from=f"/assessments/{assessment.id}/submit"
    )
    assert response.status_code == 200
    assert "未回答の必須項目があるため提出できません。" in flashes(response)
    assert status_of(db, assessment) == "draft"
    assert reload(db, assessment).submitted_at is None

    # All but one: the page names exactly that one.
    answer_everything(vendor_browser, assessment.id)
    autosave(vendor_browser, assessment.id, "contract.rto", "")
    assert list(missing_links(vendor_browser, assessment.id)) == ["contract.rto"]
    vendor_browser.post(
        f"/assessments/{assessment.id}/submit", token_from=f"/assessments/{assessment.id}/submit"
    )
    assert status_of(db, assessment) == "draft"


def test_after_answering_everything_submit_makes_the_assessment_read_only(
    db, staff_browser, vendor_browser, assessment
):
    answer_everything(vendor_browser, assessment.id)
    page = vendor_browser.get(f"/assessments/{assessment.id}/submit")
    assert soup(page).select("[data-field=missing]") == []

    response = submit(vendor_browser, assessment.id)

    assert response.status_code == 302
    page = vendor_browser.get(response.headers["Location"])
    assert "回答を提出しました。ご協力ありがとうございました。" in flashes(page)
    assert text_of(page, "[data-field=status]") == "状態: 提出済み"
    assert status_of(db, assessment) == "submitted"
    assert reload(db, assessment).submitted_at is not None
    assert "assessment.submit" in audit_actions(db, assessment)

    before = stored(db, assessment)
    for key in ("company", "certifications", "contract"):
        page = vendor_browser.get(section_url(assessment.id, key))
        assert text_of(page, "[data-field=status]") == "状態: 提出済み（提出済みのため閲覧のみ）"
        assert open_inputs(page) == set()
        assert soup(page).select(f"{ANSWERS} button") == []
        assert soup(page).select(f"{ANSWERS} input[type=file]") == []

    response = vendor_browser.client.post(
        section_url(assessment.id, "company"),
        data={"csrf_token": csrf(vendor_browser), "a:company.hq_country": "US"},
    )
    assert response.status_code == 302
    assert "提出済みのため変更できません。" in flashes(
        vendor_browser.get(response.headers["Location"])
    )
    response = autosave(vendor_browser, assessment.id, "company.hq_country", "US")
    assert response.status_code == 409
    assert response.get_json()["message"] == "提出済みのため変更できません。"
    response = vendor_browser.post(
        f"/assessments/{assessment.id}/submit", token_from=f"/assessments/{assessment.id}/submit"
    )
    assert "現在の状態ではこの操作はできません。" in flashes(response)
    assert stored(db, assessment) == before
    assert audit_actions(db, assessment).count("assessment.submit") == 1

    row = soup(vendor_browser.get("/")).select_one(f"[data-assessment-id='{assessment.id}']")
    assert row.select_one("[data-field=status]").get_text(strip=True) == "提出済み"
    staff_page = staff_browser.get(f"/engagements/{assessment.engagement_id}")
    row = soup(staff_page).select_one(f"[data-assessment-id='{assessment.id}']")
    assert row.select_one("[data-field=status]").get_text(strip=True) == "提出済み"


# ---------------------------------------------------------------------------------------------
# Return and revise
# ---------------------------------------------------------------------------------------------

RETURNED = {
    "company.security_officer": "役職だけでなく氏名もご記入ください。",
    "contract.rto": "業務継続計画との整合のため、目標復旧時間を見直してください。",
}


@pytest.fixture
def submitted(db, vendor_browser, assessment):
    answer_everything(vendor_browser, assessment.id)
    assert submit(vendor_browser, assessment.id).status_code == 302
    assert status_of(db, assessment) == "submitted"
    return assessment


def return_answers(browser, assessment_id: int, comments: dict[str, str]):
    data = {"return": list(comments)}
    data.update({f"comment:{key}": comment for key, comment in comments.items()})
    return browser.submit(f"/assessments/{assessment_id}/view", data, selector="#return-form")


def test_staff_return_two_answers_and_the_vendor_revises_only_those(
    app, db, staff_browser, vendor, vendor_browser, submitted
):
    assessment = submitted
    before = stored(db, assessment)

    response = return_answers(staff_browser, assessment.id, RETURNED)

    assert response.status_code == 302
    view = staff_browser.get(response.headers["Location"])
    assert "2件の回答を差し戻しました。" in flashes(view)
    assert text_of(view, "dd[data-field=status]") == "差戻し中"
    assert status_of(db, assessment) == "returned"
    for key, comment in RETURNED.items():
        assert text_of(view, f'[data-answer="{key}"] [data-returned]') == f"差戻し中: {comment}"
    (message,) = [m for m in outbox(app) if m["Subject"] == RETURN_SUBJECT]
    assert message["To"] == vendor.email
    assert "2 件について" in message.get_content()
    assert link_in(message) == f"http://localhost/assessments/{assessment.id}"

    # The vendor sees the comments and can change only the returned answers.
    row = soup(vendor_browser.get("/")).select_one(f"[data-assessment-id='{assessment.id}']")
    assert row.select_one("[data-field=status]").get_text(strip=True) == "差戻し中"
    page = vendor_browser.get(section_url(assessment.id, "company"))
    assert (
        text_of(page, '[data-returned="company.security_officer"] [data-field=return-comment]')
        == (RETURNED["company.security_officer"])
    )
    assert open_inputs(page) == {"company.security_officer"}
    assert open_inputs(vendor_browser.get(section_url(assessment.id, "certifications"))) == set()
    assert open_inputs(vendor_browser.get(section_url(assessment.id, "contract"))) == {
        "contract.rto"
    }

    token = csrf(vendor_browser)
    refused = autosave(vendor_browser, assessment.id, "company.hq_country", "US", token)
    assert refused.status_code == 400
    saved = autosave(
        vendor_browser,
        assessment.id,
        "company.security_officer",
        "情報セキュリティ部長 港 一郎",
        token,
    )
    assert saved.status_code == 200
    # A forged post of a locked answer changes nothing; the returned one is saved.
    response = vendor_browser.submit(
        section_url(assessment.id, "contract"),
        {"a:contract.rto": "2", "a:contract.rpo": "0", "a:contract.work_scope": "改ざん"},
        ANSWERS,
    )
    assert response.status_code == 302
    after = stored(db, assessment)
    assert after["contract.rto"] == 2
    assert after["company.security_officer"] == "情報セキュリティ部長 港 一郎"
    unchanged = {k: v for k, v in after.items() if k not in RETURNED}
    assert unchanged == {k: v for k, v in before.items() if k not in RETURNED}

    response = submit(vendor_browser, assessment.id)
    assert response.status_code == 302
    assert status_of(db, assessment) == "submitted"
    db.rollback()
    assert (
        db.scalar(
            sa.select(sa.func.count()).where(
                Answer.assessment_id == assessment.id, Answer.returned.is_(True)
            )
        )
        == 0
    )
    assert audit_actions(db, assessment).count("assessment.submit") == 2
    assert "assessment.return" in audit_actions(db, assessment)

    # The staff view shows every revision of the revised answers.
    view = staff_browser.get(f"/assessments/{assessment.id}/view")
    assert soup(view).select("[data-returned]") == []
    for key, new in {
        "company.security_officer": "情報セキュリティ部長 港 一郎",
        "contract.rto": "2",
    }.items():
        history = soup(view).select_one(f'details[data-history="{key}"]')
        entries = history.select("li")
        texts = [li.get_text(" ", strip=True) for li in entries]
        assert ["（1回目の保存）" in texts[0], "（2回目の保存）" in texts[1]] == [True, True]
        # Each revision reads like the answer itself (labels and units, not raw codes).
        assert str(before[key]) in texts[0]
        assert new in texts[1]
    assert revisions(db, assessment, "contract.rto") == [before["contract.rto"], 2]
    assert soup(view).select('details[data-history="company.hq_country"]') == []
    # After resubmission everything is read-only again.
    assert open_inputs(vendor_browser.get(section_url(assessment.id, "company"))) == set()


@pytest.mark.parametrize(
    ("comments", "message"),
    [
        (
            {"company.security_officer": "   "},
            "差し戻す設問それぞれに、修正を依頼する内容を入力してください。",
        ),
        (
            {"company.security_officer": "氏名を追記してください。", "contract.rto": ""},
            "差し戻す設問それぞれに、修正を依頼する内容を入力してください。",
        ),
        ({}, "差し戻す設問を1つ以上選んでください。"),
        ({"terms.terms_url": "この案件にない設問"}, "差し戻す設問を1つ以上選んでください。"),
        ({"contract.rto": "長" * 2001}, "コメントは2000文字以内で入力してください。"),
    ],
    ids=[
        "blank-comment",
        "one-of-two-blank",
        "nothing-chosen",
        "not-in-this-assessment",
        "too-long",
    ],
)
def test_a_return_without_a_proper_comment_is_refused(
    app, db, staff_browser, submitted, comments, message
):
    response = return_answers(staff_browser, submitted.id, comments)

    assert response.status_code == 302
    assert message in flashes(staff_browser.get(response.headers["Location"]))
    assert status_of(db, submitted) == "submitted"
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).where(Answer.returned.is_(True))) == 0
    assert [m for m in outbox(app) if m["Subject"] == RETURN_SUBJECT] == []


def test_a_draft_cannot_be_returned(db, staff_browser, vendor_browser, assessment):
    autosave(vendor_browser, assessment.id, "company.hq_country", "JP")
    view = staff_browser.get(f"/assessments/{assessment.id}/view")
    assert soup(view).select("#return-form") == []
    response = staff_browser.post(
        f"/assessments/{assessment.id}/return",
        {"return": "company.hq_country", "comment:company.hq_country": "確認"},
    )
    assert "現在の状態ではこの操作はできません。" in flashes(
        staff_browser.get(response.headers["Location"])
    )
    assert status_of(db, assessment) == "draft"
    assert db.scalar(sa.select(sa.func.count()).where(Answer.returned.is_(True))) == 0


@pytest.mark.parametrize(
    ("who", "view_status", "return_status"),
    [
        ("staff-of-another-department", 404, 404),
        ("staff-of-another-organisation", 404, 404),
        ("approver", 200, 403),
        ("auditor", 200, 403),
        ("vendor", 403, 403),
    ],
)
def test_only_staff_of_the_department_may_return(
    app, db, make, org, other_org, other_department, submitted, who, view_status, return_status
):
    user = {
        "staff-of-another-department": lambda: make.user(
            org, roles={Role.STAFF}, departments=[other_department]
        ),
        "staff-of-another-organisation": lambda: make.user(
            other_org, roles={Role.STAFF}, departments=[make.department(other_org)]
        ),
        "approver": lambda: make.user(org, roles={Role.APPROVER}),
        "auditor": lambda: make.user(org, roles={Role.AUDITOR}),
        "vendor": lambda: make.user(company=submitted.vendor_company, invited_by=org),
    }[who]()
    browser = logged_in_as(app, user)

    view = browser.get(f"/assessments/{submitted.id}/view")
    assert view.status_code == view_status
    if view_status == 200:
        assert soup(view).select("#return-form") == []
        assert soup(view).select("input[name=return]") == []
    response = browser.post(
        f"/assessments/{submitted.id}/return",
        {"return": "contract.rto", "comment:contract.rto": "差し戻します。"},
    )
    assert response.status_code == return_status
    assert status_of(db, submitted) == "submitted"
    assert [m for m in outbox(app) if m["Subject"] == RETURN_SUBJECT] == []


def test_the_return_mail_reaches_only_contacts_who_may_see_the_assessment(
    app, db, make, org, other_org, company, staff_browser, vendor, submitted
):
    colleague = make.user(company=company, invited_by=org)
    planted = make.user(company=company, invited_by=other_org)  # same company, another body
    make.user(company=company, invited_by=org, active=False)

    return_answers(staff_browser, submitted.id, {"contract.rto": "見直してください。"})

    recipients = sorted(m["To"] for m in outbox(app) if m["Subject"] == RETURN_SUBJECT)
    assert recipients == sorted([vendor.email, colleague.email])
    assert planted.email not in recipients


# ---------------------------------------------------------------------------------------------
# Vendor isolation
# ---------------------------------------------------------------------------------------------


def _vendor_requests(browser, assessment_id: int) -> dict[str, int]:
    token = csrf(browser)
    base = f"/assessments/{assessment_id}"
    return {
        "answer": browser.get(base).status_code,
        "section": browser.get(f"{base}/sections/company").status_code,
        "section-post": browser.client.post(
            f"{base}/sections/company",
            data={"csrf_token": token, "a:company.hq_country": "KP"},
        ).status_code,
        "autosave": browser.client.post(
            f"{base}/autosave",
            data={
                "csrf_token": token,
                "question": "company.hq_country",
                "a:company.hq_country": "KP",
            },
        ).status_code,
        "submit": browser.get(f"{base}/submit").status_code,
        "submit-post": browser.client.post(
            f"{base}/submit", data={"csrf_token": token}
        ).status_code,
    }


@pytest.mark.parametrize("who", ["vendor-of-another-company", "same-company-another-body"])
def test_other_vendors_get_404_everywhere_and_never_see_the_assessment(
    app, db, make, org, other_org, company, vendor_browser, assessment, who
):
    autosave(vendor_browser, assessment.id, "company.hq_country", "JP")
    if who == "vendor-of-another-company":
        outsider = make.user(company=make.company(org), invited_by=org)
    else:
        outsider = make.user(company=company, invited_by=other_org)
    browser = logged_in_as(app, outsider)

    assert _vendor_requests(browser, assessment.id) == {
        "answer": 404,
        "section": 404,
        "section-post": 404,
        "autosave": 404,
        "submit": 404,
        "submit-post": 404,
    }
    assert soup(browser.get("/")).select("[data-table=my-assessments] [data-assessment-id]") == []
    assert stored(db, assessment) == {"company.hq_country": "JP"}
    assert status_of(db, assessment) == "draft"


def test_a_forged_assessment_id_is_404_for_the_genuine_vendor_too(vendor_browser, assessment):
    statuses = _vendor_requests(vendor_browser, assessment.id + 1000)
    assert set(statuses.values()) == {404}


def test_vendors_never_see_staff_pages(app, vendor_browser, submitted):
    base = f"/assessments/{submitted.id}"
    assert vendor_browser.get(f"/engagements/{submitted.engagement_id}").status_code == 403
    assert vendor_browser.get("/engagements/").status_code == 403
    assert vendor_browser.get(f"{base}/view").status_code == 403
    assert vendor_browser.post(f"{base}/return", {"return": "contract.rto"}).status_code == 403
    # Staff notes (the return form, histories) never reach the vendor's own pages.
    page = vendor_browser.get(section_url(submitted.id, "company"))
    assert soup(page).select("#return-form, [data-history], textarea[name^='comment:']") == []


def test_staff_do_not_answer(staff_browser, assessment):
    base = f"/assessments/{assessment.id}"
    assert staff_browser.get(f"{base}/sections/company").status_code == 403
    assert (
        staff_browser.post(f"{base}/autosave", {"question": "company.hq_country"}).status_code
        == 403
    )


def test_a_returned_answer_that_reveals_follow_ups_makes_them_editable(
    db, staff_browser, vendor_browser, submitted
):
    """Changing a returned trigger answer reveals questions the vendor must be able to answer."""
    assessment = submitted
    assert autosave(vendor_browser, assessment.id, "contract.subcontract", "no").status_code == 409
    return_answers(
        staff_browser, assessment.id, {"contract.subcontract": "再委託の有無を再確認してください。"}
    )
    token = csrf(vendor_browser)

    assert (
        autosave(vendor_browser, assessment.id, "contract.subcontract", "yes", token).status_code
        == 200
    )
    rows = [
        {
            "name": "下請株式会社",
            "identifier": "",
            "country": "JP",
            "role": "保守",
            "wholly_owned": "no",
        }
    ]
    follow_up = autosave(vendor_browser, assessment.id, "contract.subcontractors", rows, token)
    assert follow_up.status_code == 200, follow_up.get_json()
    # Unrelated answers stay locked.
    assert (
        autosave(vendor_browser, assessment.id, "company.hq_country", "US", token).status_code
        == 400
    )
