"""案件 (engagements) through the real forms: creating and editing with Japanese errors beside the
fields, the track (9.1 / 9.2 / 9.3) and the applicable sections on the detail page, department
scoping, organisation-wide readers, list filters, optimistic locking and the audit trail."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.engagements import service
from portal.engagements.models import Engagement
from portal.permissions import Role
from portal.questionnaires.schema import TRACKS
from tests.helpers import Browser, field_errors, flashes, form_fields, soup, text_of

BANK = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "questionnaires" / "assessment.toml").read_text(
        encoding="utf-8"
    )
)
PERSONAL_FLAGS = {"specific_personal_data", "sensitive_personal_data"}
READERS = [Role.APPROVER, Role.CISO, Role.NETWORK_ADMIN, Role.AUDITOR, Role.SERVICE_MANAGER]
MAIN_FORM = "main form[method=post]"


def _raw_questions(section_key: str) -> list[dict]:
    """The questions of a section as written in the TOML file (no loader, no conditions)."""
    return next(s for s in BANK["section"] if s["key"] == section_key)["question"]


def _when(question: dict) -> dict:
    return question.get("when", {})


def form_data(department, **overrides) -> dict:
    """Every field of the engagement form, as a person fills it in."""
    data = {
        "kind": "outsourcing",
        "title": "住民税システム保守業務委託",
        "department_id": str(department.id),
        "purpose": "住民税の賦課システムの保守・運用を委託する。",
        "period_start": "2026-04-01",
        "period_end": "2027-03-31",
        "contract_amount": "12000000",
        "information": "納税義務者の氏名・住所・税額",
        "confidentiality": "2",
        "integrity": "2",
        "availability": "1",
        "personal_data": "y",
        "specific_personal_data": None,
        "sensitive_personal_data": None,
        "network_segment": "lgwan",
    }
    data.update(overrides)
    return data


def _count(db) -> int:
    db.rollback()
    return db.scalar(sa.select(sa.func.count()).select_from(Engagement))


def _create(browser, department, **overrides) -> int:
    response = browser.submit("/engagements/new", form_data(department, **overrides), MAIN_FORM)
    assert response.status_code == 302, field_errors(response) or flashes(response)
    engagement_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    return engagement_id


def _sections(response) -> dict[str, tuple[int, int]]:
    """The applicable-sections table: section key → (questions, of which follow-ups)."""
    rows = soup(response).select("[data-table=applicable-sections] tbody tr[data-section]")
    result = {}
    for row in rows:
        cells = [td.get_text(strip=True) for td in row.select("td")]
        result[row["data-section"]] = (int(cells[1]), int(cells[2]))
    return result


def _audit(db, action: str, engagement_id: int) -> list[dict]:
    db.rollback()
    events = db.scalars(
        sa.select(AuditEvent)
        .where(
            AuditEvent.action == action,
            AuditEvent.object_type == "engagement",
            AuditEvent.object_id == str(engagement_id),
        )
        .order_by(AuditEvent.seq)
    )
    return [json.loads(e.details) for e in events]


@pytest.fixture
def department(make, org):
    return make.department(org, "税務課")


@pytest.fixture
def other_department(make, org):
    return make.department(org, "福祉課")


@pytest.fixture
def staff(make, org, department):
    return make.user(org, roles={Role.STAFF}, departments=[department], name="税務 一郎")


@pytest.fixture
def staff_browser(app, staff):
    browser = Browser(app.test_client())
    browser.login(staff)
    return browser


# ---------------------------------------------------------------------------------------------
# Creating through the form
# ---------------------------------------------------------------------------------------------


def test_staff_create_an_engagement_with_every_field(db, staff_browser, staff, department):
    response = staff_browser.submit(
        "/engagements/new",
        form_data(
            department,
            title="  住民税システム保守業務委託  ",
            specific_personal_data="y",
            sensitive_personal_data="y",
            confidentiality="3",
        ),
        MAIN_FORM,
    )

    assert response.status_code == 302
    db.rollback()
    engagement = db.scalar(sa.select(Engagement))
    assert response.headers["Location"] == f"/engagements/{engagement.id}"
    assert (
        engagement.kind,
        engagement.title,
        engagement.department_id,
        engagement.organisation_id,
        engagement.created_by_id,
    ) == (
        "outsourcing",
        "住民税システム保守業務委託",
        department.id,
        staff.organisation_id,
        staff.id,
    )
    assert engagement.purpose == "住民税の賦課システムの保守・運用を委託する。"
    assert (str(engagement.period_start), str(engagement.period_end)) == (
        "2026-04-01",
        "2027-03-31",
    )
    assert engagement.contract_amount == 12_000_000
    assert engagement.information == "納税義務者の氏名・住所・税額"
    assert (engagement.confidentiality, engagement.integrity, engagement.availability) == (3, 2, 1)
    assert engagement.personal_data and engagement.specific_personal_data
    assert engagement.sensitive_personal_data
    assert engagement.network_segment == "lgwan"

    page = staff_browser.get(response.headers["Location"])
    assert "案件を登録しました。" in flashes(page)
    assert text_of(page, "h1") == "住民税システム保守業務委託"
    assert text_of(page, "[data-field=kind]") == "業務委託"
    assert text_of(page, "[data-field=classification]") == "機密性3・完全性2・可用性1"
    assert text_of(page, "[data-field=track]") == TRACKS["9.1"]


def test_the_optional_fields_may_stay_empty(db, staff_browser, department):
    engagement_id = _create(
        staff_browser,
        department,
        period_start="",
        period_end="",
        contract_amount="",
        personal_data=None,
        network_segment="",
    )
    db.rollback()
    engagement = db.get(Engagement, engagement_id)
    assert engagement.period_start is None and engagement.period_end is None
    assert engagement.contract_amount is None
    assert engagement.personal_data is False
    assert engagement.network_segment is None


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"title": "   "}, "title", "入力してください。"),
        ({"purpose": ""}, "purpose", "入力してください。"),
        (
            {"period_start": "2027-04-01", "period_end": "2027-03-31"},
            "period_end",
            "終了日は開始日以降にしてください。",
        ),
        (
            {"period_start": "1999-12-31"},
            "period_start",
            "2000年1月1日から2100年12月31日までの日付を入力してください。",
        ),
        (
            {"period_end": "2101-01-01"},
            "period_end",
            "2000年1月1日から2100年12月31日までの日付を入力してください。",
        ),
        (
            {"period_start": "2026-02-30"},
            "period_start",
            "日付を正しく入力してください（例: 2026-04-01）。",
        ),
        (
            {"contract_amount": "-1"},
            "contract_amount",
            "0から10000000000000までの数を入力してください。",
        ),
        ({"contract_amount": "百万円"}, "contract_amount", "整数を半角数字で入力してください。"),
        ({"title": "件" * 201}, "title", "200文字以内で入力してください。"),
        ({"kind": "cloud"}, "kind", "選択肢の中から選んでください。"),
        ({"confidentiality": "4"}, "confidentiality", "選択肢の中から選んでください。"),
        ({"network_segment": "dmz"}, "network_segment", "選択肢の中から選んでください。"),
    ],
    ids=[
        "missing-title",
        "missing-purpose",
        "end-before-start",
        "start-too-early",
        "end-too-late",
        "no-such-date",
        "negative-amount",
        "amount-not-a-number",
        "title-too-long",
        "unknown-kind",
        "unknown-confidentiality",
        "unknown-segment",
    ],
)
def test_a_bad_field_gets_its_japanese_error_beside_it_and_nothing_is_created(
    db, staff_browser, department, overrides, field, message
):
    response = staff_browser.submit(
        "/engagements/new", form_data(department, **overrides), MAIN_FORM
    )

    assert response.status_code == 200
    errors = field_errors(response)
    assert list(errors) == [field]
    assert errors[field].startswith(message)
    assert _count(db) == 0


def test_the_form_keeps_what_was_typed_after_an_error(staff_browser, department):
    response = staff_browser.submit(
        "/engagements/new", form_data(department, title="", contract_amount="-5"), MAIN_FORM
    )
    form = soup(response).select_one(MAIN_FORM)
    values = form_fields(form)
    # A browser drops the newline that opens a textarea's content.
    assert values["purpose"].lstrip("\r\n") == "住民税の賦課システムの保守・運用を委託する。"
    assert values["contract_amount"] == "-5"
    assert values["confidentiality"] == "2"
    assert values["personal_data"] == "y"
    assert set(field_errors(response)) == {"title", "contract_amount"}


def test_specific_personal_data_needs_confidentiality_3(db, staff_browser, department):
    response = staff_browser.submit(
        "/engagements/new",
        form_data(department, confidentiality="2", specific_personal_data="y"),
        MAIN_FORM,
    )

    assert response.status_code == 200
    assert "特定個人情報を取り扱う場合、機密性は3としてください。" in flashes(response)
    assert _count(db) == 0

    _create(staff_browser, department, confidentiality="3", specific_personal_data="y")
    assert _count(db) == 1


# ---------------------------------------------------------------------------------------------
# Track, reason and applicable sections
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "confidentiality", "track", "reason"),
    [
        ("outsourcing", "3", "9.1", "業務委託のため"),
        ("outsourcing", "1", "9.1", "業務委託のため"),
        ("external_service", "3", "9.2", "外部サービスで機密性3の情報を取り扱うため"),
        ("external_service", "2", "9.2", "外部サービスで機密性2の情報を取り扱うため"),
        ("external_service", "1", "9.3", "外部サービスで機密性2以上の情報を取り扱わないため"),
    ],
)
def test_the_track_follows_kind_and_classification(
    db, staff_browser, department, kind, confidentiality, track, reason
):
    engagement_id = _create(
        staff_browser, department, kind=kind, confidentiality=confidentiality, personal_data=None
    )
    db.rollback()
    assert db.get(Engagement, engagement_id).track == track

    page = staff_browser.get(f"/engagements/{engagement_id}")
    assert text_of(page, "[data-field=track]") == TRACKS[track]
    assert text_of(page, "[data-field=track-reason]").startswith(reason)
    assert f"対策基準{track}" in text_of(page, "[data-field=track-reason]")

    listed = staff_browser.get("/engagements/")
    row = soup(listed).select_one(f"[data-engagement-id='{engagement_id}']")
    assert row.select_one("[data-field=track]").get_text(strip=True) == track


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (
            {"kind": "outsourcing", "confidentiality": "2", "personal_data": None},
            ["company", "certifications", "contract"],
            ["external", "lifecycle", "terms", "personal"],
        ),
        (
            {"kind": "outsourcing", "confidentiality": "2"},
            ["company", "certifications", "contract", "personal"],
            ["external", "lifecycle", "terms"],
        ),
        (
            {"kind": "external_service", "confidentiality": "3", "personal_data": None},
            ["company", "certifications", "contract", "external", "lifecycle"],
            ["terms", "personal"],
        ),
        (
            {"kind": "external_service", "confidentiality": "1", "personal_data": None},
            ["company", "certifications", "terms"],
            ["contract", "external", "lifecycle", "personal"],
        ),
    ],
    ids=["9.1", "9.1-personal", "9.2", "9.3"],
)
def test_the_detail_page_lists_the_sections_that_apply(
    staff_browser, department, overrides, present, absent
):
    engagement_id = _create(staff_browser, department, **overrides)
    page = staff_browser.get(f"/engagements/{engagement_id}")
    sections = _sections(page)

    assert list(sections) == [s["key"] for s in BANK["section"] if s["key"] in sections]
    assert set(present) <= set(sections)
    assert not set(absent) & set(sections)
    # The company section applies to every engagement in full; the count is the file's.
    company = _raw_questions("company")
    assert sections["company"] == (
        len(company),
        sum(1 for q in company if "answer" in _when(q)),
    )
    assert int(text_of(page, "[data-field=question-total]")) == sum(
        count for count, _follow_ups in sections.values()
    )


def test_the_personal_data_flags_change_the_personal_section(staff_browser, department):
    personal = _raw_questions("personal")
    basic = [q for q in personal if not set(_when(q)) & PERSONAL_FLAGS]
    specific = [q for q in personal if _when(q).get("specific_personal_data")]
    sensitive = [q for q in personal if _when(q).get("sensitive_personal_data")]
    assert specific and sensitive  # the bank asks more when these flags are set

    counts = {}
    for name, overrides in {
        "none": {"personal_data": None},
        "personal": {},
        "specific": {"confidentiality": "3", "specific_personal_data": "y"},
        "sensitive": {"sensitive_personal_data": "y"},
        "specific-only": {
            "confidentiality": "3",
            "personal_data": None,
            "specific_personal_data": "y",
        },
    }.items():
        engagement_id = _create(staff_browser, department, title=f"案件 {name}", **overrides)
        page = staff_browser.get(f"/engagements/{engagement_id}")
        counts[name] = (
            _sections(page).get("personal"),
            int(text_of(page, "[data-field=question-total]")),
        )

    assert counts["none"][0] is None
    assert counts["personal"][0][0] == len(basic)
    assert counts["specific"][0][0] == len(basic) + len(specific)
    assert counts["sensitive"][0][0] == len(basic) + len(sensitive)
    # 特定個人情報 is personal data even without the 個人情報 box ticked.
    assert counts["specific-only"][0][0] == len(basic) + len(specific)
    assert counts["personal"][1] == counts["none"][1] + len(basic)
    assert counts["specific"][1] == counts["personal"][1] + len(specific)


def test_editing_the_classification_changes_track_and_sections(db, staff_browser, department):
    engagement_id = _create(
        staff_browser, department, kind="external_service", confidentiality="2", personal_data=None
    )
    before = _sections(staff_browser.get(f"/engagements/{engagement_id}"))
    assert "external" in before and "terms" not in before

    response = staff_browser.submit(
        f"/engagements/{engagement_id}/edit", {"confidentiality": "1"}, MAIN_FORM
    )
    assert response.status_code == 302
    page = staff_browser.get(f"/engagements/{engagement_id}")
    assert "案件を更新しました。" in flashes(page)
    after = _sections(page)
    assert text_of(page, "[data-field=track]") == TRACKS["9.3"]
    assert "terms" in after and "external" not in after and "lifecycle" not in after
    assert after["terms"][0] == len(_raw_questions("terms"))


# ---------------------------------------------------------------------------------------------
# Departments and organisations
# ---------------------------------------------------------------------------------------------


def test_the_department_choice_offers_only_the_staff_members_departments(
    make, org, staff_browser, department, other_department
):
    page = staff_browser.get("/engagements/new")
    options = [o["value"] for o in soup(page).select("select[name=department_id] option")]
    assert options == [str(department.id)]


@pytest.mark.parametrize("whose", ["other-department", "other-organisation"])
def test_a_forged_department_is_refused_and_nothing_is_created(
    db, make, other_org, staff_browser, department, other_department, whose
):
    target = other_department if whose == "other-department" else make.department(other_org)
    response = staff_browser.submit(
        "/engagements/new", form_data(department, department_id=str(target.id)), MAIN_FORM
    )

    assert response.status_code == 200
    assert field_errors(response) == {"department_id": "選択肢の中から選んでください。"}
    assert _count(db) == 0


def test_the_service_refuses_a_department_the_actor_does_not_belong_to(
    app, db, staff, department, other_department
):
    from portal.db import get_session
    from portal.users.models import User

    with app.app_context():
        session = get_session()
        actor = session.get(User, staff.id)
        data = service.EngagementInput(
            kind="outsourcing",
            title="偽装",
            purpose="偽装",
            department_id=other_department.id,
            period_start=None,
            period_end=None,
            contract_amount=None,
            information="なし",
            confidentiality=1,
            integrity=1,
            availability=1,
            personal_data=False,
            specific_personal_data=False,
            sensitive_personal_data=False,
            network_segment=None,
        )
        with pytest.raises(service.EngagementError, match="所属している課等の案件だけ"):
            service.create(session, actor, data)
        session.rollback()
    assert _count(db) == 0


def test_staff_without_a_department_cannot_create(app, db, make, org):
    loner = make.user(org, roles={Role.STAFF})
    browser = Browser(app.test_client())
    browser.login(loner)

    response = browser.get("/engagements/new")
    assert response.status_code == 302
    assert any("所属している課等がない" in m for m in flashes(browser.get("/engagements/")))
    assert _count(db) == 0


def test_staff_of_another_department_neither_see_nor_edit(
    app, db, make, org, staff_browser, department, other_department
):
    engagement_id = _create(staff_browser, department)
    outsider = make.user(org, roles={Role.STAFF}, departments=[other_department])
    browser = Browser(app.test_client())
    browser.login(outsider)

    assert browser.get(f"/engagements/{engagement_id}").status_code == 404
    assert browser.get(f"/engagements/{engagement_id}/edit").status_code == 404
    response = browser.post(
        f"/engagements/{engagement_id}/edit",
        {**form_data(other_department, title="乗っ取り"), "version": "1"},
    )
    assert response.status_code == 404
    assert soup(browser.get("/engagements/")).select("[data-engagement-id]") == []
    db.rollback()
    assert db.get(Engagement, engagement_id).title == "住民税システム保守業務委託"


def test_staff_of_another_organisation_get_404(app, db, make, other_org, staff_browser, department):
    engagement_id = _create(staff_browser, department)
    stranger = make.user(
        other_org, roles={Role.STAFF, Role.APPROVER}, departments=[make.department(other_org)]
    )
    browser = Browser(app.test_client())
    browser.login(stranger)

    assert browser.get(f"/engagements/{engagement_id}").status_code == 404
    assert browser.get(f"/engagements/{engagement_id}/edit").status_code == 404
    assert soup(browser.get("/engagements/")).select("[data-engagement-id]") == []


@pytest.mark.parametrize("role", READERS, ids=[r.value for r in READERS])
def test_organisation_wide_readers_see_but_do_not_edit(
    app, db, make, org, staff_browser, department, role
):
    engagement_id = _create(staff_browser, department)
    reader = make.user(org, roles={role})
    browser = Browser(app.test_client())
    browser.login(reader)

    page = browser.get(f"/engagements/{engagement_id}")
    assert page.status_code == 200
    assert text_of(page, "h1") == "住民税システム保守業務委託"
    assert text_of(page, "[data-field=track]") == TRACKS["9.1"]
    links = [a["href"] for a in soup(page).select("main a")]
    assert f"/engagements/{engagement_id}/edit" not in links
    assert soup(page).select(f"form[action='/engagements/{engagement_id}/assessments']") == []
    listed = soup(browser.get("/engagements/")).select("[data-engagement-id]")
    assert [row["data-engagement-id"] for row in listed] == [str(engagement_id)]

    assert browser.get(f"/engagements/{engagement_id}/edit").status_code == 403
    assert browser.get("/engagements/new").status_code == 403
    response = browser.post(
        f"/engagements/{engagement_id}/edit",
        {**form_data(department, title="読むだけの人の変更"), "version": "1"},
    )
    assert response.status_code == 403
    db.rollback()
    assert db.get(Engagement, engagement_id).title == "住民税システム保守業務委託"


def test_a_vendor_never_sees_engagements(app, make, org, staff_browser, department):
    engagement_id = _create(staff_browser, department)
    vendor = make.user(company=make.company(org), invited_by=org)
    browser = Browser(app.test_client())
    browser.login(vendor)

    assert browser.get("/engagements/").status_code == 403
    assert browser.get(f"/engagements/{engagement_id}").status_code == 403
    assert browser.get("/engagements/new").status_code == 403


# ---------------------------------------------------------------------------------------------
# The list and its filters
# ---------------------------------------------------------------------------------------------


def test_the_list_filters_by_track_and_title(app, make, org, staff_browser, department):
    ids = {
        "9.1": _create(staff_browser, department, title="窓口業務委託", personal_data=None),
        "9.2": _create(
            staff_browser,
            department,
            title="電子申請サービスの利用",
            kind="external_service",
            confidentiality="2",
        ),
        "9.3": _create(
            staff_browser,
            department,
            title="研修動画配信サービスの利用",
            kind="external_service",
            confidentiality="1",
            personal_data=None,
        ),
    }

    def listed(query: str = "") -> list[int]:
        page = staff_browser.get(f"/engagements/{query}")
        assert page.status_code == 200
        return sorted(
            int(r["data-engagement-id"]) for r in soup(page).select("[data-engagement-id]")
        )

    assert listed() == sorted(ids.values())
    for track, engagement_id in ids.items():
        assert listed(f"?track={track}") == [engagement_id]
    assert listed("?q=サービスの利用") == sorted([ids["9.2"], ids["9.3"]])
    assert listed("?q=サービスの利用&track=9.3") == [ids["9.3"]]
    assert listed("?q=存在しない件名") == []
    assert listed("?q=%25") == []  # "%" is searched for literally, not as a wildcard
    assert listed("?track=9.9") == sorted(ids.values())  # an unknown track filters nothing

    page = staff_browser.get("/engagements/?q=窓口&track=9.1")
    assert soup(page).select_one("input[name=q]")["value"] == "窓口"
    assert soup(page).select_one("select[name=track] option[selected]")["value"] == "9.1"
    caption = soup(page).select_one("[data-table=engagements] caption").get_text()
    assert "".join(caption.split()) == "案件の一覧（全1件中1–1件）"


def test_the_list_shows_staff_their_own_departments_only(
    app, make, org, staff_browser, department, other_department
):
    ours = _create(staff_browser, department)
    colleague = make.user(org, roles={Role.STAFF}, departments=[other_department])
    other_browser = Browser(app.test_client())
    other_browser.login(colleague)
    theirs = _create(other_browser, other_department, title="福祉システム保守")

    def listed(browser) -> list[int]:
        page = browser.get("/engagements/")
        return sorted(
            int(r["data-engagement-id"]) for r in soup(page).select("[data-engagement-id]")
        )

    assert listed(staff_browser) == [ours]
    assert listed(other_browser) == [theirs]
    auditor = make.user(org, roles={Role.AUDITOR})
    auditor_browser = Browser(app.test_client())
    auditor_browser.login(auditor)
    assert listed(auditor_browser) == sorted([ours, theirs])


# ---------------------------------------------------------------------------------------------
# Editing: optimistic locking and the audit trail
# ---------------------------------------------------------------------------------------------


def test_editing_with_a_stale_version_gets_409_and_loses_nothing(
    app, db, make, org, staff_browser, department
):
    engagement_id = _create(staff_browser, department)
    url = f"/engagements/{engagement_id}/edit"
    stale = form_fields(soup(staff_browser.get(url)).select_one(MAIN_FORM))
    assert stale["version"] == "1"
    assert stale["title"] == "住民税システム保守業務委託"

    colleague = make.user(org, roles={Role.STAFF}, departments=[department])
    other = Browser(app.test_client())
    other.login(colleague)
    assert other.submit(url, {"title": "先に保存された件名"}, MAIN_FORM).status_code == 302

    response = staff_browser.client.post(url, data={**stale, "title": "後から保存しようとした件名"})

    assert response.status_code == 409
    assert text_of(response, "h1") == "他の操作と競合しました"
    db.rollback()
    engagement = db.get(Engagement, engagement_id)
    assert engagement.title == "先に保存された件名"
    assert engagement.version == 2
    reopened = form_fields(soup(staff_browser.get(url)).select_one(MAIN_FORM))
    assert (reopened["version"], reopened["title"]) == ("2", "先に保存された件名")
    assert len(_audit(db, "engagement.updated", engagement_id)) == 1


def test_every_create_and_update_is_in_the_audit_trail(db, staff, staff_browser, department):
    engagement_id = _create(staff_browser, department, kind="external_service", confidentiality="2")

    created = _audit(db, "engagement.created", engagement_id)
    assert created == [{"title": "住民税システム保守業務委託", "track": "9.2"}]
    event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "engagement.created"))
    assert (event.actor_user_id, event.organisation_id) == (staff.id, staff.organisation_id)

    url = f"/engagements/{engagement_id}/edit"
    response = staff_browser.submit(
        url,
        {"title": "電子申請サービスの利用", "confidentiality": "1", "contract_amount": ""},
        MAIN_FORM,
    )
    assert response.status_code == 302
    (updated,) = _audit(db, "engagement.updated", engagement_id)
    assert updated == {
        "title": ["住民税システム保守業務委託", "電子申請サービスの利用"],
        "confidentiality": [2, 1],
        "contract_amount": [12_000_000, None],
        "track": ["9.2", "9.3"],
    }

    # Saving the form unchanged records nothing and does not move the version.
    assert staff_browser.submit(url, {}, MAIN_FORM).status_code == 302
    assert len(_audit(db, "engagement.updated", engagement_id)) == 1
    db.rollback()
    assert db.get(Engagement, engagement_id).version == 2
