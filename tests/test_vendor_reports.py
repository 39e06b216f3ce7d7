"""Incident and change reports from vendors: staff (and for an incident the ネットワーク管理者 and
CISO) are alerted at once, the next confirmation is brought forward, staff acknowledge, and no
vendor sees another company's reports (対策基準 9.1(2)⑩⑫, 9.2(2)②(オ), 9.1(3))."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.approvals.models import ExternalService, ManagerAssignment, UseApplication
from portal.audit.models import AuditEvent
from portal.permissions import Role
from portal.reviews import calendar, reports
from portal.reviews.models import ReviewSchedule, ReviewTrigger, VendorReport
from portal.reviews.reports import ReportError, ReportInput
from portal.users.models import User
from portal.web import JST
from tests.helpers import Browser, field_errors, flashes, outbox, reload, soup, text_of

FORM = "main form[method=post]"
INCIDENT = {
    "kind": "incident",
    "occurred_on": "2026-11-13",
    "occurred_time": "22:15",
    "summary": "受託システムの管理者アカウントに不正ログインがあった。",
    "information_affected": "住民票の写しの交付申請データ（約1,200件）",
    "personal_data_affected": "y",
    "measures": "当該アカウントを停止し、ログを保全した。",
}


def _schedule(db, org, department, company, subject, *, title, status="active", **fields):
    schedule = ReviewSchedule(
        organisation_id=org.id,
        department_id=department.id,
        vendor_company_id=company.id,
        title=title,
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
        status=status,
        **subject,
        **fields,
    )
    db.add(schedule)
    db.commit()
    return schedule


@pytest.fixture
def scene(db, make, org):
    department = make.department(org, "市民課")
    other_department = make.department(org, "税務課")
    staff = make.user(
        org, roles={Role.STAFF}, departments=[department], email="shimin@city.example.jp"
    )
    make.user(  # a former member of the department: no longer told
        org, roles={Role.STAFF}, departments=[department], email="old@city.example.jp", active=False
    )
    tax_staff = make.user(
        org, roles={Role.STAFF}, departments=[other_department], email="zeimu@city.example.jp"
    )
    network = make.user(org, roles={Role.NETWORK_ADMIN}, email="network@city.example.jp")
    ciso = make.user(org, roles={Role.CISO}, email="ciso@city.example.jp")
    company = make.company(org, "株式会社窓口サービス")
    vendor = make.user(
        company=company, invited_by=org, email="tanto@madoguchi.example.jp", name="委託 花子"
    )
    rival = make.company(org, "株式会社別の委託先")
    rival_vendor = make.user(company=rival, invited_by=org, email="tanto@betsu.example.jp")
    engagement = make.engagement(org, department, staff, title="住民票発行窓口業務委託")
    assessment = make.assessment(engagement, company, staff, status="decided")
    schedule = _schedule(
        db, org, department, company, {"assessment_id": assessment.id}, title=engagement.title
    )
    rival_engagement = make.engagement(org, other_department, tax_staff, title="税務システム保守")
    rival_assessment = make.assessment(rival_engagement, rival, tax_staff, status="decided")
    rival_schedule = _schedule(
        db,
        org,
        other_department,
        rival,
        {"assessment_id": rival_assessment.id},
        title=rival_engagement.title,
    )
    return SimpleNamespace(
        org=org,
        department=department,
        staff=staff,
        tax_staff=tax_staff,
        network=network,
        ciso=ciso,
        company=company,
        vendor=vendor,
        rival=rival,
        rival_vendor=rival_vendor,
        engagement=engagement,
        schedule=schedule,
        rival_schedule=rival_schedule,
    )


def _signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return browser


def _report_link(browser: Browser, schedule, kind: str) -> str:
    """From the home page, follow 事故・変更の報告 to the link for ``schedule`` and ``kind``."""
    home = browser.get("/")
    entry = soup(home).select_one("[data-section=vendor-reports] a[data-field=report-link]")
    assert entry is not None and entry.get_text(strip=True) == "事故・変更を報告する"
    index = browser.get(entry["href"])
    assert index.status_code == 200
    row = soup(index).select_one(f"[data-table=reportable] tr[data-schedule-id='{schedule.id}']")
    assert row is not None
    link = row.select_one(f"a[data-kind={kind}]")
    assert link is not None, f"no {kind} link"
    return link["href"]


def _reports(db) -> list[VendorReport]:
    db.rollback()
    return list(db.scalars(sa.select(VendorReport).order_by(VendorReport.id)))


# ---------------------------------------------------------------------------------------------
# Reporting and the alert
# ---------------------------------------------------------------------------------------------


def test_an_incident_alerts_staff_network_admin_and_ciso_and_brings_the_review_forward(
    app, db, scene, time_machine
):
    time_machine.move_to("2026-11-14 10:00 +09:00")  # a Saturday
    browser = _signed_in(app, scene.vendor)
    url = _report_link(browser, scene.schedule, "incident")
    form_page = browser.get(url)
    assert text_of(form_page, "[data-field=title]").startswith("住民票発行窓口業務委託")
    assert soup(form_page).select_one("input[name=kind][value=incident]").has_attr("checked")

    response = browser.submit(url, INCIDENT, FORM)

    assert response.status_code == 303
    (report,) = _reports(db)
    assert urlsplit(response.headers["Location"]).path == f"/vendor/reports/{report.id}"
    assert report.kind == "incident"
    assert report.vendor_company_id == scene.company.id
    assert report.reported_by_id == scene.vendor.id
    assert report.occurred_at == datetime(2026, 11, 13, 22, 15, tzinfo=JST)
    assert report.personal_data_affected is True
    page = browser.get(response.headers["Location"])
    assert "事故（インシデント）の報告を受け付けました（受付番号 第" in flashes(page)[0]
    assert text_of(page, "[data-field=acknowledged]") == "未確認"

    # Alerted at once: the department's staff, the ネットワーク管理者 and the CISO — nobody else.
    messages = outbox(app)
    assert sorted(m["To"] for m in messages) == sorted(
        [scene.staff.email, scene.network.email, scene.ciso.email]
    )
    for message in messages:
        assert message["Subject"].startswith("【至急】委託先から事故（インシデント）の報告")
        assert "住民票発行窓口業務委託" in message["Subject"]
        body = message.get_content()
        assert "株式会社窓口サービス" in body
        assert f"http://localhost/reports/{report.id}" in body.split()
        assert "2026年11月24日に前倒し" in body

    # Due 7 days after the report (Sat 21 Nov), moved past the weekend and 勤労感謝の日.
    db.expire_all()
    schedule = db.get(ReviewSchedule, scene.schedule.id)
    assert calendar.next_business_day(date(2026, 11, 21)) == date(2026, 11, 24)
    assert schedule.due_on == date(2026, 11, 24)
    assert schedule.regular_due_on == date(2027, 3, 31)
    (trigger,) = schedule.triggers
    assert (trigger.kind, trigger.key, trigger.report_id) == (
        "incident",
        f"report:{report.id}",
        report.id,
    )
    assert trigger.occurred_on == date(2026, 11, 14)
    actions = set(
        db.scalars(sa.select(AuditEvent.action).where(AuditEvent.actor_user_id == scene.vendor.id))
    )
    assert {"report.submitted", "schedule.triggered"} <= actions


def test_a_change_report_brings_the_review_forward_by_30_days_and_tells_the_manager(
    app, db, make, scene, time_machine
):
    time_machine.move_to("2026-11-20 10:00 +09:00")  # a Friday
    manager = make.user(scene.org, roles={Role.SERVICE_MANAGER}, email="kanri@city.example.jp")
    service = ExternalService(
        organisation_id=scene.org.id, vendor_company_id=scene.company.id, name="窓口予約クラウド"
    )
    db.add(service)
    db.flush()
    application = UseApplication(
        organisation_id=scene.org.id,
        department_id=scene.department.id,
        service_id=service.id,
        applicant_id=scene.staff.id,
        category="9.2",
        purpose="窓口予約",
        business="窓口予約の受付",
        network_segment="internet",
        max_confidentiality=2,
        status="approved",
        decision="approve",
        decided_by_id=scene.ciso.id,
        decided_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    db.add(application)
    db.flush()
    db.add(
        ManagerAssignment(
            application_id=application.id,
            user_id=manager.id,
            appointed_on=date(2026, 4, 1),
            appointed_by_id=scene.ciso.id,
        )
    )
    db.commit()
    schedule = _schedule(
        db,
        scene.org,
        scene.department,
        scene.company,
        {"application_id": application.id},
        title="窓口予約クラウド",
    )
    browser = _signed_in(app, scene.vendor)
    url = _report_link(browser, schedule, "location_change")
    response = browser.submit(
        url,
        {
            "occurred_on": "2026-11-16",
            "summary": "バックアップの保存先を東京リージョンから大阪リージョンに変更した。",
        },
        FORM,
    )

    assert response.status_code == 303
    (report,) = _reports(db)
    assert report.kind == "location_change"
    # Staff of the department and the 外部サービス管理者; not the ネットワーク管理者 / CISO.
    messages = outbox(app)
    assert sorted(m["To"] for m in messages) == sorted([scene.staff.email, manager.email])
    assert all(
        m["Subject"].startswith("【報告】委託先からデータの保存場所の変更の報告") for m in messages
    )
    # 30 days after the report is Sunday 20 December: due on Monday the 21st.
    db.expire_all()
    schedule = db.get(ReviewSchedule, schedule.id)
    assert schedule.due_on == date(2026, 12, 21)
    assert schedule.triggers[0].kind == "location_change"
    # The register's "next review" of the application follows.
    assert db.get(UseApplication, application.id).next_review_on == date(2026, 12, 21)


def test_an_incident_may_still_be_reported_while_the_contract_ends_but_no_change(
    app, db, scene, time_machine
):
    time_machine.move_to("2026-11-20 10:00 +09:00")
    scene.schedule.status = "ending"
    db.commit()
    browser = _signed_in(app, scene.vendor)
    index = browser.get("/vendor/reports")
    row = soup(index).select_one(f"tr[data-schedule-id='{scene.schedule.id}']")
    assert [a["data-kind"] for a in row.select("a[data-kind]")] == ["incident"]

    refused = browser.get(
        f"/vendor/reports/new?schedule={scene.schedule.id}&kind=subcontractor_change"
    )
    assert refused.status_code == 302
    assert "事故（インシデント）の報告のみ" in flashes(browser.get(refused.headers["Location"]))[0]
    change = browser.submit(
        f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident",
        {**INCIDENT, "kind": "subcontractor_change"},
        FORM,
    )
    assert change.status_code == 422
    assert "事故（インシデント）の報告のみ" in " ".join(flashes(change))
    assert _reports(db) == []

    response = browser.submit(
        f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident", INCIDENT, FORM
    )
    assert response.status_code == 303
    (report,) = _reports(db)
    # Staff are still alerted; the schedule is ending, so no confirmation is brought forward.
    assert len(outbox(app)) == 3
    assert db.scalar(sa.select(ReviewTrigger).where(ReviewTrigger.report_id == report.id)) is None


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_refused_reports_change_nothing_and_say_why(app, db, scene, time_machine):
    time_machine.move_to("2026-11-20 10:00 +09:00")
    browser = _signed_in(app, scene.vendor)
    url = f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident"

    future = browser.submit(url, {**INCIDENT, "occurred_on": "2026-11-21"}, FORM)
    assert future.status_code == 422
    assert "未来の日時は指定できません" in " ".join(flashes(future))
    # Later today is the future too.
    later = browser.submit(
        url, {**INCIDENT, "occurred_on": "2026-11-20", "occurred_time": "11:00"}, FORM
    )
    assert later.status_code == 422

    early = browser.submit(url, {**INCIDENT, "occurred_on": "1989-12-31"}, FORM)
    assert early.status_code == 422
    assert field_errors(early)["occurred_on"] == "1990年1月1日以降の日付を入力してください。"

    sloppy = browser.submit(url, {**INCIDENT, "occurred_on": "2026/11/13"}, FORM)
    assert sloppy.status_code == 422
    assert "occurred_on" in field_errors(sloppy)

    empty = browser.submit(url, {**INCIDENT, "summary": "  "}, FORM)
    assert empty.status_code == 422
    assert field_errors(empty)["summary"] == "入力してください。"

    too_long = browser.submit(url, {**INCIDENT, "summary": "あ" * 4001}, FORM)
    assert too_long.status_code == 422
    assert field_errors(too_long)["summary"] == "4000文字以内で入力してください。"

    unknown = browser.submit(url, {**INCIDENT, "information_affected": ""}, FORM)
    assert unknown.status_code == 422
    assert "影響を受けた（又はそのおそれがある）情報を入力してください" in " ".join(
        flashes(unknown)
    )
    # What was typed is kept.
    kept = soup(unknown).select_one("textarea[name=summary]").get_text()
    assert kept.strip() == INCIDENT["summary"]

    assert _reports(db) == []
    assert outbox(app) == []
    db.expire_all()
    assert db.get(ReviewSchedule, scene.schedule.id).due_on == date(2027, 3, 31)


def test_another_companys_or_an_ended_contract_cannot_be_reported_on(app, db, scene):
    browser = _signed_in(app, scene.vendor)
    rival = scene.rival_schedule.id
    assert browser.get(f"/vendor/reports/new?schedule={rival}&kind=incident").status_code == 404
    assert browser.get("/vendor/reports/new?schedule=987654").status_code == 404
    assert browser.get("/vendor/reports/new?schedule=abc").status_code == 302
    # The form of its own contract, pointed at the other company's: not found.
    forged = browser.submit(
        f"/vendor/reports/new?schedule={scene.schedule.id}",
        {**INCIDENT, "schedule": str(rival)},
        FORM,
    )
    assert forged.status_code == 404
    index = soup(browser.get("/vendor/reports"))
    assert index.select_one(f"tr[data-schedule-id='{rival}']") is None
    assert "税務システム保守" not in index.get_text()

    scene.schedule.status = "ended"
    db.commit()
    ended = browser.get(f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident")
    assert ended.status_code == 302
    assert flashes(browser.get(ended.headers["Location"])) == [
        "この契約・サービスは終了しているため、報告できません。"
    ]
    assert _reports(db) == []


def test_staff_cannot_use_the_vendor_form(app, db, scene):
    browser = _signed_in(app, scene.staff)
    assert browser.get("/vendor/reports").status_code == 403
    assert (
        browser.get(f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident").status_code
        == 403
    )
    response = browser.post("/vendor/reports", {**INCIDENT, "schedule": str(scene.schedule.id)})
    assert response.status_code == 403
    assert _reports(db) == []
    # And no 報告 entry in a staff member's navigation.
    assert "/vendor/reports" not in {a["href"] for a in soup(browser.get("/")).select("nav a")}


def test_the_service_refuses_what_the_form_cannot_send(db, scene, make):
    now = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)

    def data(**changes):
        values = {
            "kind": "incident",
            "occurred_at": datetime(2026, 11, 19, 9, 0, tzinfo=JST),
            "summary": "障害",
            "information_affected": "申請データ",
        }
        return ReportInput(**{**values, **changes})

    refusals = {
        "報告の種類を選んでください。": (scene.vendor, data(kind="terms_change")),
        "1990年1月1日以降": (scene.vendor, data(occurred_at=datetime(1989, 1, 1, tzinfo=JST))),
        "発生した日（変更した日）を入力してください。": (scene.vendor, data(occurred_at=None)),
        "実施した措置は4000文字以内": (scene.vendor, data(measures="あ" * 4001)),
        "影響を受けた情報は2000文字以内": (scene.vendor, data(information_affected="あ" * 2001)),
        "報告する権限がありません": (scene.rival_vendor, data()),
        "報告する権限がありません。": (scene.staff, data()),
    }
    disabled = make.user(company=scene.company, invited_by=scene.org, active=False)
    refusals["この契約・サービスについて報告する権限がありません。"] = (disabled, data())
    for message, (actor, value) in refusals.items():
        with pytest.raises(ReportError, match=message):
            reports.submit_report(db, actor, scene.schedule, value, now)
    # A vendor user of the same company whom only another body invited: no access to ours.
    other = make.org(name="隣町")
    outsider = make.user(company=scene.company, invited_by=other)
    with pytest.raises(ReportError):
        reports.submit_report(db, outsider, scene.schedule, data(), now)
    db.rollback()
    assert _reports(db) == []


# ---------------------------------------------------------------------------------------------
# Acknowledging
# ---------------------------------------------------------------------------------------------


def _reported(db, scene, kind="incident") -> VendorReport:
    report = reports.submit_report(
        db,
        scene.vendor,
        scene.schedule,
        ReportInput(
            kind=kind,
            occurred_at=datetime(2026, 11, 19, 9, 0, tzinfo=JST),
            summary="委託先の端末がマルウェアに感染した。",
            information_affected="窓口の受付記録",
        ),
        datetime(2026, 11, 20, 1, 0, tzinfo=UTC),
    )
    db.commit()
    return report


def test_staff_acknowledge_a_report_once(app, db, scene):
    report = _reported(db, scene)
    browser = _signed_in(app, scene.staff)
    url = f"/reports/{report.id}"
    page = browser.get(url)
    assert page.status_code == 200
    assert text_of(page, "[data-field=summary]") == "委託先の端末がマルウェアに感染した。"
    assert text_of(page, "[data-field=acknowledged]") == "未確認"
    assert "2026年11月27日" in text_of(page, "[data-field=trigger]")

    response = browser.submit(url, selector="[data-section=acknowledge] form")
    assert response.status_code == 303
    page = browser.get(url)
    assert flashes(page) == ["報告を確認済みにしました。"]
    assert text_of(page, "[data-field=acknowledged]").startswith("確認済み")
    assert soup(page).select_one("[data-section=acknowledge]") is None

    again = browser.post(f"/reports/{report.id}/acknowledge", token_from=url)
    assert again.status_code == 303
    assert flashes(browser.get(url)) == ["この報告は既に確認済みです。"]
    db.rollback()
    events = db.scalars(
        sa.select(AuditEvent).where(
            AuditEvent.action == "report.acknowledged",
            AuditEvent.object_id == str(report.id),
        )
    ).all()
    assert len(events) == 1
    assert reload(db, report).acknowledged_by_id == scene.staff.id

    vendor = _signed_in(app, scene.vendor)
    mine = vendor.get(f"/vendor/reports/{report.id}")
    assert text_of(mine, "[data-field=acknowledged]").startswith("確認済み")
    # The vendor is not told who in the organisation acknowledged it.
    assert scene.staff.name not in soup(mine).get_text()


def test_who_may_read_and_acknowledge_a_report(app, db, scene, make):
    report = _reported(db, scene)
    # Another department's staff: not found (the schedule is not theirs), nothing recorded.
    tax = _signed_in(app, scene.tax_staff)
    assert tax.get(f"/reports/{report.id}").status_code == 404
    assert tax.post(f"/reports/{report.id}/acknowledge").status_code == 404
    # The CISO reads every report of the organisation.
    ciso = _signed_in(app, scene.ciso)
    assert ciso.get(f"/reports/{report.id}").status_code == 200
    # Another organisation's staff: not found.
    elsewhere = make.org(name="別の市")
    foreign_ciso = make.user(elsewhere, roles={Role.CISO})
    assert _signed_in(app, foreign_ciso).get(f"/reports/{report.id}").status_code == 404
    assert reload(db, report).acknowledged_at is None
    with pytest.raises(ReportError):
        reports.acknowledge(db, report, db.get(User, scene.tax_staff.id))


def test_read_only_roles_read_a_report_but_only_those_who_answer_for_it_acknowledge(
    app, db, scene, make
):
    """The auditor and the approver read every report and change nothing (DESIGN.md); the
    staff who manage the schedule, the CISO and the ネットワーク管理者 acknowledge (9.1(3))."""
    report = _reported(db, scene)
    url = f"/reports/{report.id}"
    for role in (Role.AUDITOR, Role.APPROVER):
        reader = make.user(scene.org, roles={role}, departments=[scene.department])
        browser = _signed_in(app, reader)
        page = browser.get(url)
        assert page.status_code == 200
        assert text_of(page, "[data-field=acknowledged]") == "未確認"
        assert soup(page).select_one("[data-section=acknowledge]") is None
        assert "CISO" in text_of(page, "[data-field=who-acknowledges]")
        response = browser.post(
            f"/reports/{report.id}/acknowledge", token_from=url, follow_redirects=True
        )
        assert any("確認済みにできるのは" in message for message in flashes(response))
        assert reload(db, report).acknowledged_at is None
        with pytest.raises(ReportError, match="確認済みにできるのは"):
            reports.acknowledge(db, report, db.get(User, reader.id))
        db.rollback()
    assert not db.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "report.acknowledged")
    ).all()
    assert reports.can_acknowledge(db.get(User, scene.network.id), report)
    assert reports.can_acknowledge(db.get(User, scene.staff.id), report)

    ciso = _signed_in(app, scene.ciso)
    assert soup(ciso.get(url)).select_one("[data-section=acknowledge] form") is not None
    response = ciso.submit(url, selector="[data-section=acknowledge] form")
    assert response.status_code == 303
    assert reload(db, report).acknowledged_by_id == scene.ciso.id


# ---------------------------------------------------------------------------------------------
# Isolation between vendors
# ---------------------------------------------------------------------------------------------


def test_a_vendor_sees_only_its_own_companys_reports(app, db, scene, make):
    report = _reported(db, scene)
    colleague = make.user(
        company=scene.company, invited_by=scene.org, email="b@madoguchi.example.jp"
    )
    other_org = make.org(name="隣町")
    same_company_elsewhere = make.user(company=scene.company, invited_by=other_org)

    own = _signed_in(app, colleague)  # the same company and body: the company's reports
    listed = soup(own.get("/vendor/reports")).select("[data-table=reports] tr[data-report-id]")
    assert [row["data-report-id"] for row in listed] == [str(report.id)]
    assert own.get(f"/vendor/reports/{report.id}").status_code == 200

    for outsider in (scene.rival_vendor, same_company_elsewhere):
        browser = _signed_in(app, outsider)
        index = browser.get("/vendor/reports")
        assert soup(index).select("[data-table=reports] tr[data-report-id]") == []
        assert "マルウェア" not in soup(index).get_text()
        assert browser.get(f"/vendor/reports/{report.id}").status_code == 404
        # Vendors never open the staff page.
        assert browser.get(f"/reports/{report.id}").status_code == 403
    # The other body's contracts of the same company are not offered to ours, nor ours to it.
    elsewhere = soup(_signed_in(app, same_company_elsewhere).get("/vendor/reports"))
    assert elsewhere.select("[data-table=reportable] tr[data-schedule-id]") == []


def test_the_schedule_page_macro_lists_the_reports(app, db, scene):
    report = _reported(db, scene)
    from flask import render_template_string

    with app.test_request_context():
        html = render_template_string(
            '{% from "reviews/_reports.html" import reports_section %}'
            "{{ reports_section(reports) }}",
            reports=reports.reports_of(db, scene.schedule),
        )
    page = soup(SimpleNamespace(get_data=lambda as_text: html))
    (row,) = page.select("[data-table=vendor-reports] tr[data-report-id]")
    assert row.select_one("a")["href"] == f"/reports/{report.id}"
    assert row.select_one("[data-field=kind]").get_text(strip=True) == "事故（インシデント）"
    assert row.select_one("[data-field=acknowledged]").get_text(strip=True) == "未確認"


def test_an_attachment_is_kept_with_the_report_and_a_refused_one_keeps_nothing(
    app, db, scene, time_machine
):
    time_machine.move_to("2026-11-20 10:00 +09:00")
    browser = _signed_in(app, scene.vendor)
    url = f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident"
    evidence_dir = Path(app.config["EVIDENCE_DIR"])

    refused = browser.submit(
        url,
        {**INCIDENT, "attachment": (io.BytesIO(b"MZ\x90\x00" + bytes(200)), "tool.exe")},
        FORM,
    )
    assert refused.status_code == 422
    assert flashes(refused)
    assert _reports(db) == []
    assert outbox(app) == []
    assert not evidence_dir.exists() or [p for p in evidence_dir.rglob("*") if p.is_file()] == []

    log = "2026-11-13 22:15 不正ログイン 203.0.113.7\n".encode()
    response = browser.submit(
        url, {**INCIDENT, "attachment": (io.BytesIO(log), "アクセスログ抜粋.txt")}, FORM
    )
    assert response.status_code == 303
    (report,) = _reports(db)
    mine = browser.get(response.headers["Location"])
    assert [
        n.get_text(strip=True) for n in soup(mine).select("[data-file-id] [data-field=name]")
    ] == ["アクセスログ抜粋.txt"]

    staff = _signed_in(app, scene.staff)
    page = staff.get(f"/reports/{report.id}")
    item = soup(page).select_one("[data-file-id]")
    assert item.select_one("[data-field=name]").get_text(strip=True) == "アクセスログ抜粋.txt"
    download = staff.submit(f"/reports/{report.id}", selector="[data-file-id] form")
    assert download.status_code == 200
    assert download.get_data() == log
    download.close()
