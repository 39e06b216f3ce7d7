"""The dashboards of 定期確認 (対策基準 9.1(3), 9.2(6)): the figures of a staff member (their
department) and of the CISO (the organisation), every figure's link opening a list of exactly
its rows, the list's filters and pages, the CSV and XLSX exports of every list (schedules,
expiring certificates and ISMAP registrations, incidents, findings) read back — exactly the rows
of the page, BOM, CRLF, formula neutralisation, audit, POST only — the home page panel and a
constant number of queries."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import quote

import openpyxl
import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals.models import ExternalService, UseApplication
from portal.assessments.models import Answer
from portal.audit.models import AuditEvent
from portal.permissions import Permission, Role, require
from portal.reports import service as reports
from portal.reports.columns import (
    COLUMNS,
    EXPIRING_COLUMNS,
    FINDING_COLUMNS,
    FINDING_PAGE_COLUMNS,
    HEADERS,
    INCIDENT_COLUMNS,
    INCIDENT_PAGE_COLUMNS,
)
from portal.reviews import schedules
from portal.reviews.models import (
    Confirmation,
    ConfirmationSection,
    Finding,
    ReviewSchedule,
    ReviewTrigger,
    VendorReport,
)
from portal.scoring import ismap
from portal.web import JST
from tests.helpers import Browser, QueryCounter, soup

TODAY = date(2026, 11, 20)
WINDOW_END = TODAY + timedelta(days=reports.EXPIRY_DAYS)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel("2026-11-20 10:00 +0900", tick=False):
        yield


@pytest.fixture(autouse=True)
def schedule_page(app):
    """The schedule page the lists link to (``confirmations.schedule``) — a stand-in with the
    same URL until that blueprint is registered; nothing once it is."""
    if "confirmations.schedule" not in app.view_functions:
        app.add_url_rule(
            "/reviews/<int:schedule_id>",
            "confirmations.schedule",
            require(Permission.REVIEWS_VIEW)(lambda schedule_id: "確認予定"),
        )


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return browser


# ---------------------------------------------------------------------------------------------
# Arranging schedules (rows only: the states, dates and certificates are what matters here)
# ---------------------------------------------------------------------------------------------


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=JST)


def _schedule(department, title, *, due, risk, status, regular=None, **subject):
    return ReviewSchedule(
        organisation_id=department.organisation_id,
        department_id=department.id,
        title=title,
        risk_rating=risk,
        personal_data=False,
        interval_months=12,
        starts_on=date(2025, 11, 1),
        regular_due_on=regular or due,
        due_on=due,
        status=status,
        **subject,
    )


def contractor(
    db,
    make,
    w,
    department,
    title,
    *,
    due,
    risk,
    status="active",
    answers=None,
    confirmed=None,
    last=None,
) -> ReviewSchedule:
    """A 業務委託 assessment with its answers and (``confirmed``) a completed confirmation
    whose certifications section changed to those values."""
    engagement = make.engagement(
        w.orgs[department.organisation_id], department, w.staff, title=title
    )
    assessment = make.assessment(engagement, w.company, w.staff, status="decided")
    for key, value in (answers or {}).items():
        db.add(
            Answer(
                assessment_id=assessment.id,
                question_key=key,
                value=json.dumps(value, ensure_ascii=False),
            )
        )
    schedule = _schedule(
        department,
        title,
        due=due,
        risk=risk,
        status=status,
        vendor_company_id=w.company.id,
        assessment_id=assessment.id,
    )
    schedule.last_confirmed_on = last
    db.add(schedule)
    db.flush()
    if confirmed is not None:
        db.add(
            Confirmation(
                organisation_id=schedule.organisation_id,
                schedule_id=schedule.id,
                number=1,
                reason="scheduled",
                questionnaire_key="confirmation",
                questionnaire_version="1",
                period_from=date(2025, 11, 1),
                period_to=date(2026, 10, 31),
                due_on=date(2026, 10, 30),
                status="completed",
                completed_on=date(2026, 10, 1),
                sections=[
                    ConfirmationSection(
                        section_key="certifications",
                        changed=True,
                        values=json.dumps(confirmed, ensure_ascii=False),
                    )
                ],
            )
        )
    db.commit()
    return schedule


def service_use(
    db, w, department, title, *, due, risk, status="active", ismap_end=None, expires=None
) -> ReviewSchedule:
    """An approved 利用申請 of a service with an ISMAP registration and / or a certificate."""
    service = ExternalService(
        organisation_id=department.organisation_id,
        vendor_company_id=w.cloud.id,
        name=title,
        ismap_kind="ismap" if ismap_end else "none",
        ismap_number="ISMAP-C-0001" if ismap_end else "",
        ismap_audit_period_end=ismap_end,
    )
    if expires:
        service.set_rows(
            "certificates",
            [{"kind": "iso27001", "label": "ISO/IEC 27001", "number": "IS 1", "expires": expires}],
        )
    service.refresh_derived()
    application = UseApplication(
        organisation_id=department.organisation_id,
        department_id=department.id,
        service=service,
        applicant_id=w.staff.id,
        category="9.3",
        purpose="業務で使うため。",
        business="庁内の事務。",
        network_segment="internet",
        max_confidentiality=1,
        status="approved" if status == "active" else status,
        decision="approve",
        decided_by_id=w.ciso.id,
        decided_at=at(date(2025, 11, 1)),
    )
    schedule = _schedule(
        department,
        title,
        due=due,
        risk=risk,
        status=status,
        vendor_company_id=w.cloud.id,
        application=application,
    )
    db.add(schedule)
    db.commit()
    return schedule


def finding(db, w, schedule, title, *, due, status="open") -> Finding:
    confirmation = db.scalar(sa.select(Confirmation).where(Confirmation.schedule_id == schedule.id))
    row = Finding(
        organisation_id=schedule.organisation_id,
        department_id=schedule.department_id,
        confirmation_id=confirmation.id,
        severity="medium",
        title=title,
        corrective_action="手順書を改訂する。",
        owner_id=w.ciso.id,
        due_on=due,
        status=status,
        closed_on=TODAY if status == "closed" else None,
        created_by_id=w.ciso.id,
    )
    db.add(row)
    db.commit()
    return row


def report(db, w, schedule, kind="incident", *, acknowledged=False) -> VendorReport:
    row = VendorReport(
        organisation_id=schedule.organisation_id,
        schedule_id=schedule.id,
        vendor_company_id=schedule.vendor_company_id,
        kind=kind,
        occurred_at=at(date(2026, 11, 18)),
        summary=f"{schedule.title}の{kind}",
        reported_by_id=w.vendor.id,
        reported_at=at(date(2026, 11, 19)),
        acknowledged_by_id=w.ciso.id if acknowledged else None,
        acknowledged_at=at(TODAY) if acknowledged else None,
    )
    db.add(row)
    db.commit()
    return row


def certificate(expires: str, kind: str = "ISMS") -> dict:
    return {"certifications.others": [{"kind": kind, "number": "IS-1", "expires": expires}]}


@pytest.fixture
def world(db, make, org, other_org):
    policy, citizens = make.department(org, "情報政策課"), make.department(org, "市民課")
    w = SimpleNamespace(
        org=org,
        orgs={org.id: org, other_org.id: other_org},
        policy=policy,
        citizens=citizens,
        staff=make.user(org, roles={Role.STAFF}, departments=[policy], name="担当 一郎"),
        citizen_staff=make.user(org, roles={Role.STAFF}, departments=[citizens], name="市民 二郎"),
        ciso=make.user(org, roles={Role.CISO}, name="統括 三郎"),
        admin=make.user(org, roles={Role.ADMIN}, name="管理 四郎"),
        company=make.company(org, name="株式会社委託先"),
        cloud=make.company(org, name="クラウド提供株式会社"),
    )
    w.vendor = make.user(org, company=w.company, name="事業者 五郎")
    ismap_soon, ismap_far = date(2025, 10, 31), date(2026, 6, 30)
    assert ismap.valid_until(ismap_soon) <= WINDOW_END < ismap.valid_until(ismap_far)
    s = w.s = {}
    # 情報政策課
    s["P1"] = contractor(
        db,
        make,
        w,
        policy,
        "窓口業務委託",
        due=date(2026, 10, 30),
        risk="high",
        answers=certificate("2026-12-01"),
        confirmed=certificate("2027-01-15"),  # renewed: the confirmed date counts
        last=date(2025, 10, 30),
    )
    s["P2"] = service_use(
        db,
        w,
        policy,
        "=クラウド会議",  # a formula, to be neutralised in the exports
        due=date(2027, 1, 12),
        risk="medium",
        ismap_end=ismap_soon,
        expires="2028-04-01",
    )
    s["P3"] = contractor(
        db,
        make,
        w,
        policy,
        "文書管理システム保守",
        due=date(2027, 3, 31),
        risk="low",
        answers={**certificate("2026-11-01", "プライバシーマーク"), "certifications.ismap": "none"},
    )
    s["P3"].regular_due_on = date(2027, 6, 30)
    s["P3"].triggers.append(
        ReviewTrigger(
            kind="subcontractor_change",
            key="subcontractor:1",
            occurred_on=date(2026, 11, 2),
            due_on=date(2027, 3, 31),
            detail="再委託先の追加",
        )
    )
    s["P4"] = service_use(
        db, w, policy, "旧財務システム", due=date(2027, 5, 6), risk="low", status="ending"
    )
    s["P5"] = contractor(
        db,
        make,
        w,
        policy,
        "終了した委託",
        due=date(2026, 6, 30),
        risk="medium",
        status="ended",
        answers=certificate("2026-12-01"),
    )
    # 市民課
    s["C1"] = contractor(
        db,
        make,
        w,
        citizens,
        "住民票発行委託",
        due=date(2026, 11, 19),
        risk="unacceptable",
        answers={
            **certificate("2026-12-10"),
            "certifications.ismap": "ismap",
            "certifications.ismap_number": "ISMAP-C-0009",
            "certifications.ismap_audit_period_end": "2025-09-30",
            "certifications.ismap_renewal_pending": "no",
        },
        confirmed=certificate("2029-12-10"),  # renewed: no longer expiring
    )
    s["C2"] = service_use(db, w, citizens, "電子申請", due=TODAY, risk=None, expires="2027-02-01")
    s["C3"] = service_use(
        db, w, citizens, "財務会計クラウド", due=date(2027, 9, 30), risk="high", ismap_end=ismap_far
    )
    # Another organisation: never counted.
    elsewhere = make.department(other_org, "他団体の課")
    s["X1"] = contractor(
        db,
        make,
        w,
        elsewhere,
        "他団体の委託",
        due=date(2026, 1, 5),
        risk="high",
        answers=certificate("2026-12-01"),
    )
    db.commit()
    w.findings = {
        "F1": finding(db, w, s["P1"], "手順書の不備", due=date(2026, 12, 31)),
        "F2": finding(db, w, s["P1"], "ログ確認の遅れ", due=date(2026, 11, 1)),
        "F3": finding(db, w, s["P1"], "是正済みの指摘", due=date(2026, 11, 1), status="closed"),
        "F4": finding(db, w, s["C1"], "教育の未実施", due=date(2026, 11, 19)),
    }
    w.reports = {
        "R1": report(db, w, s["P1"]),
        "R2": report(db, w, s["P2"], acknowledged=True),
        "R3": report(db, w, s["P1"], "subcontractor_change"),
        "R4": report(db, w, s["C1"]),
    }
    return w


def ids(w, *names: str) -> set[int]:
    return {w.s[n].id for n in names}


# What each user's figures count: name of the figure → the rows of its list.
STAFF_EXPECTED = {
    "overdue": ("P1",),
    "due_soon": ("P2",),
    "certificates": ("P1", "P3"),
    "ismap": ("P2",),
    "open_findings": ("F1", "F2"),
    "overdue_findings": ("F2",),
    "incidents": ("R1",),
    "ending": ("P4",),
}
CISO_EXPECTED = {
    "overdue": ("P1", "C1"),
    "due_soon": ("P2", "C2"),
    "certificates": ("P1", "P3", "C2"),
    "ismap": ("P2", "C1"),
    "open_findings": ("F1", "F2", "F4"),
    "overdue_findings": ("F2", "F4"),
    "incidents": ("R1", "R4"),
    "ending": ("P4",),
}
STAFF_RISKS = {"low": ("P3",), "medium": ("P2",), "high": ("P1",), "unacceptable": (), "none": ()}
CISO_RISKS = {
    "low": ("P3",),
    "medium": ("P2",),
    "high": ("P1", "C3"),
    "unacceptable": ("C1",),
    "none": ("C2",),
}


def figure_counts(page) -> dict[str, int]:
    panel = soup(page).select_one("[data-section=review-figures]")
    assert panel is not None, "no figures panel"
    return {
        dd["data-figure"]: int(dd.get_text(strip=True).removesuffix("件").strip())
        for dd in panel.select("dd[data-figure]")
    }


def listed(browser, url: str) -> set[int]:
    """The ids of the rows a list shows (schedules, findings or reports)."""
    page = browser.get(url)
    assert page.status_code == 200, url
    html = soup(page)
    return {
        int(row[attr])
        for attr in ("data-schedule-id", "data-finding-id", "data-report-id")
        for row in html.select(f"tbody tr[{attr}]")
    }


def expected_rows(w, names) -> set[int]:
    """The ids of named schedules (P…, C…), findings (F…) and reports (R…)."""
    rows = {**w.s, **w.findings, **w.reports}
    return {rows[n].id for n in names}


# ---------------------------------------------------------------------------------------------
# Figures and their lists
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected", "risks"),
    [("staff", STAFF_EXPECTED, STAFF_RISKS), ("ciso", CISO_EXPECTED, CISO_RISKS)],
)
def test_each_figure_counts_the_scope_and_links_to_exactly_its_rows(
    app, world, who, expected, risks
):
    browser = signed_in(app, getattr(world, who))
    page = browser.get("/reviews/dashboard")
    assert page.status_code == 200
    assert figure_counts(page) == {name: len(rows) for name, rows in expected.items()}
    scope = soup(page).select_one("[data-field=scope]").get_text(strip=True)
    assert scope == ("対象: 情報政策課の担当分" if who == "staff" else "対象: 団体全体")

    links = {
        dd["data-figure"]: dd.select_one("a")["href"] for dd in soup(page).select("dd[data-figure]")
    }
    for name, rows in expected.items():
        assert listed(browser, links[name]) == expected_rows(world, rows), name

    table = soup(page).select_one("[data-table=risk-distribution]")
    for key, rows in risks.items():
        row = table.select_one(f"tr[data-risk={key}]")
        assert row.select_one("td").get_text(strip=True) == f"{len(rows)} 件", key
        assert listed(browser, row.select_one("a")["href"]) == ids(world, *rows), key
    labels = [th.get_text(strip=True) for th in table.select("tbody th")]
    assert labels == ["低", "中", "高", "不可", "評価なし"]


def test_the_links_name_the_lists_they_open(app, world):
    browser = signed_in(app, world.ciso)
    html = soup(browser.get("/reviews/dashboard"))
    links = {dd["data-figure"]: dd.select_one("a")["href"] for dd in html.select("dd[data-figure]")}
    assert links == {
        "overdue": "/reviews?state=overdue",
        "due_soon": "/reviews?state=due_soon",
        "certificates": "/reviews/expiring?kind=certificate",
        "ismap": "/reviews/expiring?kind=ismap",
        "open_findings": "/findings?status=open",
        "overdue_findings": "/findings?status=overdue",
        "incidents": "/reviews/incidents",
        "ending": "/reviews?state=ending",
    }


def test_the_service_figures_match_the_pages(db, world):
    staff = reports.figures(db, world.staff, TODAY)
    assert (staff.overdue, staff.due_soon, staff.ending) == (1, 1, 1)
    assert (staff.certificates_expiring, staff.ismap_expiring) == (2, 1)
    assert (staff.open_findings, staff.overdue_findings, staff.unacknowledged_incidents) == (
        2,
        1,
        1,
    )
    assert {r.key: r.count for r in staff.risks} == {k: len(v) for k, v in STAFF_RISKS.items()}
    assert staff.active == 3 and not staff.organisation_wide
    citizens = reports.figures(db, world.citizen_staff, TODAY)
    assert (citizens.overdue, citizens.due_soon, citizens.ending) == (1, 1, 0)
    assert (citizens.certificates_expiring, citizens.ismap_expiring) == (1, 1)
    assert citizens.scope == "市民課の担当分" and citizens.active == 3
    ciso = reports.figures(db, world.ciso, TODAY)
    assert ciso.organisation_wide and ciso.active == 6


def test_the_expiring_certificates_are_those_of_schedules_expiries(db, world):
    """The batched loading finds what ``schedules.expiries`` finds, schedule by schedule (the
    confirmed values overlaying the assessment's answers)."""
    found = {(r.schedule.id, r.expiry) for r in reports.expiring(db, world.ciso, TODAY)}
    active = db.scalars(
        schedules.visible_query(world.ciso).where(ReviewSchedule.status == "active")
    ).all()
    direct = {(s.id, e) for s in active for e in schedules.expiries(db, s) if e.until <= WINDOW_END}
    assert found == direct and len(found) == 5


def test_the_expiring_list_shows_label_date_and_days_left(app, world):
    browser = signed_in(app, world.ciso)
    html = soup(browser.get("/reviews/expiring?kind=certificate"))
    rows = html.select("tbody tr[data-schedule-id]")
    assert [int(r["data-schedule-id"]) for r in rows] == [
        world.s["P3"].id,  # expired on 2026-11-01
        world.s["P1"].id,  # the confirmed renewal, 2027-01-15
        world.s["C2"].id,  # 2027-02-01
    ]
    cells = {r["data-schedule-id"]: r for r in rows}
    expired = cells[str(world.s["P3"].id)]
    assert (
        expired.select_one("[data-field=label]").get_text(strip=True) == "プライバシーマーク IS-1"
    )
    assert (
        expired.select_one("[data-field=days-left]").get_text(strip=True) == "期限切れ（19日経過）"
    )
    renewed = cells[str(world.s["P1"].id)]
    assert renewed.select_one("[data-field=until]").get_text(strip=True) == "2027年1月15日"
    assert renewed.select_one("[data-field=days-left]").get_text(strip=True) == "あと56日"
    link = renewed.select_one("[data-field=subject] a")["href"]
    assert link == f"/reviews/{world.s['P1'].id}"

    ismap_rows = soup(browser.get("/reviews/expiring?kind=ismap")).select("tbody tr")
    labels = {r.select_one("[data-field=label]").get_text(strip=True) for r in ismap_rows}
    assert labels == {"ISMAP ISMAP-C-0009", "ISMAP ISMAP-C-0001"}
    # An unknown kind shows the certificates.
    assert listed(browser, "/reviews/expiring?kind=x") == ids(world, "P1", "P3", "C2")


def test_the_incident_list_links_each_report(app, world):
    browser = signed_in(app, world.ciso)
    html = soup(browser.get("/reviews/incidents"))
    rows = html.select("tbody tr[data-report-id]")
    assert {int(r["data-report-id"]) for r in rows} == {
        world.reports["R1"].id,
        world.reports["R4"].id,
    }
    for row in rows:
        link = row.select_one("[data-field=summary] a")["href"]
        assert link == f"/reports/{row['data-report-id']}"
        assert row.select_one("[data-field=acknowledged]").get_text(strip=True) == "未確認"
    everything = listed(browser, "/reviews/incidents?state=all")
    assert everything == {world.reports[n].id for n in ("R1", "R2", "R4")}


# ---------------------------------------------------------------------------------------------
# The list: columns, filters, scope, pages
# ---------------------------------------------------------------------------------------------


def test_the_list_shows_every_column_for_each_schedule(app, world):
    browser = signed_in(app, world.staff)
    html = soup(browser.get("/reviews"))
    headers = [th.get_text(strip=True) for th in html.select("[data-table=schedules] thead th")]
    assert tuple(headers) == HEADERS
    rows = {int(r["data-schedule-id"]): r for r in html.select("tbody tr[data-schedule-id]")}
    assert set(rows) == ids(world, "P1", "P2", "P3")  # active, own department, earliest first
    assert list(rows) == [world.s[n].id for n in ("P1", "P2", "P3")]

    def cells(name):
        return {
            td["data-field"]: td.get_text(" ", strip=True)
            for td in rows[world.s[name].id].select("td")
        }

    p1 = cells("P1")
    assert p1["subject"] == "窓口業務委託" and p1["kind"] == "業務委託"
    assert p1["vendor"] == "株式会社委託先" and p1["department"] == "情報政策課"
    assert p1["risk"] == "高" and p1["interval"] == "12か月"
    assert p1["last_confirmed"] == "2025年10月30日"
    assert p1["due"] == "2026年10月30日 期限超過" and p1["state"] == "期限超過"
    assert rows[world.s["P1"].id].select_one("[data-mark=overdue]") is not None
    link = rows[world.s["P1"].id].select_one("[data-field=subject] a")["href"]
    assert link == f"/reviews/{world.s['P1'].id}"

    p2 = cells("P2")
    assert p2["kind"] == "外部サービス" and p2["vendor"] == "クラウド提供株式会社"
    assert p2["last_confirmed"] == "—" and p2["state"] == "90日以内に期限"
    p3 = cells("P3")
    assert p3["due"] == "2027年3月31日" and p3["state"] == "予定どおり"
    assert p3["triggers"] == "再委託先の変更（期限 2027年3月31日）"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ("P1", "P2", "P3", "C1", "C2", "C3")),
        ("?state=all", ("P1", "P2", "P3", "P4", "P5", "C1", "C2", "C3")),
        ("?state=scheduled", ("P3", "C3")),
        ("?state=ended", ("P5",)),
        ("?risk=high", ("P1", "C3")),
        ("?risk=none", ("C2",)),
        ("?kind=assessment", ("P1", "P3", "C1")),
        ("?kind=application&state=all", ("P2", "P4", "C2", "C3")),
        ("?keyword=クラウド", ("P2", "C2", "C3")),  # title or vendor name
        ("?keyword=委託先", ("P1", "P3", "C1")),
        ("?keyword=100%25", ()),
        ("?state=bogus&risk=bogus", ("P1", "P2", "P3", "C1", "C2", "C3")),
    ],
)
def test_each_filter_finds_the_right_schedules(app, world, query, expected):
    browser = signed_in(app, world.ciso)
    assert listed(browser, f"/reviews{query}") == ids(world, *expected)


def test_the_department_filter_never_widens_a_staff_members_scope(app, world):
    ciso = signed_in(app, world.ciso)
    assert listed(ciso, f"/reviews?department_id={world.citizens.id}") == ids(
        world, "C1", "C2", "C3"
    )
    staff = signed_in(app, world.staff)
    assert listed(staff, f"/reviews?department_id={world.citizens.id}&state=all") == set()
    assert soup(staff.get("/reviews")).select_one("select#department_id") is None
    # Another organisation's schedule is nobody's here.
    assert world.s["X1"].id not in listed(ciso, "/reviews?state=all")


def test_the_list_is_paged_and_the_pages_keep_the_filter(app, world, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 4)
    browser = signed_in(app, world.ciso)
    first = browser.get("/reviews?state=all")
    states = [r["data-state"] for r in soup(first).select("tbody tr[data-schedule-id]")]
    assert states == ["overdue", "overdue", "due_soon", "due_soon"]  # the active ones first
    links = {a["rel"][0]: a["href"] for a in soup(first).select(".pager a")}
    assert "state=all" in links["next"] and "page=2" in links["next"]
    second = listed(browser, links["next"])
    assert second == ids(world, "P3", "C3", "P4", "P5")  # scheduled, then in exit, then ended
    last = [r["data-state"] for r in soup(browser.get(links["next"])).select("tbody tr")]
    assert last == ["scheduled", "scheduled", "ending", "ended"]
    assert listed(browser, "/reviews?state=all&page=99") == second  # the last page
    assert len(listed(browser, "/reviews?state=all&page=x")) == 4


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------


def export(browser, kind: str, query: str = ""):
    return browser.submit(f"/reviews{query}", selector=f"form[data-export={kind}]")


def export_events(db) -> list[dict]:
    db.rollback()
    return [
        json.loads(e.details)
        for e in db.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action == "reviews.export")
            .order_by(AuditEvent.seq)
        )
    ]


def test_the_csv_has_every_column_and_is_safe_in_a_spreadsheet(app, db, world):
    browser = signed_in(app, world.ciso)
    response = export(browser, "csv", "?state=due_soon")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "20261120.csv" in disposition
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())
    text = raw.decode("utf-8")
    assert "\r\n" in text
    table = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert tuple(table[0]) == HEADERS
    records = {int(r[0]): dict(zip(HEADERS, r, strict=True)) for r in table[1:]}
    assert set(records) == ids(world, "P2", "C2")
    p2 = records[world.s["P2"].id]
    assert p2["対象（案件・サービス）"] == "'=クラウド会議"  # formula neutralised
    assert p2["区分"] == "外部サービス" and p2["担当課"] == "情報政策課"
    assert p2["リスク評価"] == "中" and p2["状態"] == "90日以内に期限"
    assert p2["次回の確認期限"] == "2027年1月12日" and p2["前回の確認日"] == ""
    assert records[world.s["C2"].id]["リスク評価"] == "評価なし"
    assert export_events(db) == [{"format": "csv", "count": 2, "filters": {"state": "due_soon"}}]


def test_the_csv_marks_overdue_and_lists_the_triggers(app, world):
    browser = signed_in(app, world.staff)
    text = export(browser, "csv", "?state=all").get_data().decode("utf-8")
    table = list(csv.reader(io.StringIO(text[1:], newline="")))
    records = {int(r[0]): dict(zip(HEADERS, r, strict=True)) for r in table[1:]}
    assert set(records) == ids(world, "P1", "P2", "P3", "P4", "P5")  # own department only
    assert records[world.s["P1"].id]["次回の確認期限"] == "2026年10月30日（期限超過）"
    assert (
        records[world.s["P3"].id]["前倒しの理由（未対応）"]
        == "再委託先の変更（期限 2027年3月31日）"
    )
    assert records[world.s["P4"].id]["状態"] == "終了手続中"
    assert records[world.s["P4"].id]["次回の確認期限"] == ""


def test_the_xlsx_has_the_same_columns_and_keeps_text_as_text(app, db, world):
    browser = signed_in(app, world.ciso)
    response = export(browser, "xlsx", "?kind=application&risk=medium")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    assert "20261120.xlsx" in response.headers["Content-Disposition"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).active
    assert sheet.title == "定期確認"
    header = [c.value for c in sheet[1]]
    assert tuple(header) == HEADERS
    assert sheet.freeze_panes == "C2" and sheet.max_row == 2
    assert sheet.column_dimensions["B"].width == COLUMNS[1].width
    values = dict(zip(header, sheet[2], strict=True))
    title = values["対象（案件・サービス）"]
    assert title.value == "=クラウド会議" and title.data_type == "s"
    assert values["番号"].value == world.s["P2"].id
    assert values["委託先・提供者"].value == "クラウド提供株式会社"
    assert export_events(db) == [
        {"format": "xlsx", "count": 1, "filters": {"risk": "medium", "kind": "application"}}
    ]


def test_the_xlsx_writes_dates_as_dates(app, world):
    browser = signed_in(app, world.staff)
    sheet = openpyxl.load_workbook(
        io.BytesIO(export(browser, "xlsx", "?state=overdue").get_data())
    ).active
    values = dict(zip([c.value for c in sheet[1]], sheet[2], strict=True))
    assert values["前回の確認日"].value.date() == date(2025, 10, 30)


def test_exports_are_post_only_with_a_csrf_token(app, db, world):
    browser = signed_in(app, world.ciso)
    for kind in ("csv", "xlsx"):
        assert browser.get(f"/reviews/export.{kind}").status_code == 405
        assert browser.client.post(f"/reviews/export.{kind}").status_code == 400
    assert export_events(db) == []


# ---------------------------------------------------------------------------------------------
# Exports of the other lists: expiring certificates / ISMAP, incidents, findings
# ---------------------------------------------------------------------------------------------

# list → (page path, attribute naming a row's object, export path without the extension,
# the columns of the exports, the audited action)
LISTS = {
    "expiring": (
        "/reviews/expiring",
        "data-schedule-id",
        "/reviews/expiring/export",
        EXPIRING_COLUMNS,
        "reviews.export_expiring",
    ),
    "incidents": (
        "/reviews/incidents",
        "data-report-id",
        "/reviews/incidents/export",
        INCIDENT_COLUMNS,
        "reviews.export_incidents",
    ),
    "findings": (
        "/findings",
        "data-finding-id",
        "/findings/export",
        FINDING_COLUMNS,
        "findings.export",
    ),
}
EXPORT_ACTIONS = tuple(spec[4] for spec in LISTS.values())


def read_export(response, fmt: str) -> tuple[list[str], list[dict]]:
    """The header and the rows (header → value) of a CSV or XLSX export; the CSV is checked
    for its BOM and CRLF line ends, XLSX values are the cells."""
    assert response.status_code == 200
    if fmt == "csv":
        assert response.mimetype == "text/csv"
        raw = response.get_data()
        assert raw.startswith("\ufeff".encode())
        text = raw.decode("utf-8")[1:]
        assert text.endswith("\r\n")
        table = list(csv.reader(io.StringIO(text, newline="")))
    else:
        assert response.mimetype.endswith("spreadsheetml.sheet")
        sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).active
        assert sheet.freeze_panes == "C2"
        table = [[c.value for c in sheet[1]], *sheet.iter_rows(min_row=2)]
    header = [str(h) for h in table[0]]
    return header, [dict(zip(header, line, strict=True)) for line in table[1:]]


def plain(value) -> str:
    """A read-back value (CSV text or an XLSX cell) as text."""
    value = getattr(value, "value", value)
    return "" if value is None else str(value)


def page_rows(browser, url: str, attr: str) -> list[tuple[int, str]]:
    """The page's rows in order: the object's id and, on the expiring list, the certificate."""
    page = browser.get(url)
    assert page.status_code == 200, url
    return [
        (int(tr[attr]), text(tr, "label") if tr.select_one("[data-field=label]") else "")
        for tr in soup(page).select(f"tbody tr[{attr}]")
    ]


def text(row, field: str) -> str:
    return row.select_one(f"[data-field={field}]").get_text(strip=True)


def export_rows(rows: list[dict], columns) -> list[tuple[int, str]]:
    has_label = any(c.key == "label" for c in columns)
    return [(int(plain(r["番号"])), plain(r["認証・登録"]) if has_label else "") for r in rows]


def list_events(db, actions=EXPORT_ACTIONS) -> list[tuple[str, int, dict]]:
    db.rollback()
    return [
        (e.action, e.actor_user_id, json.loads(e.details))
        for e in db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.seq)
        )
    ]


def export_of(browser, name: str, query: str, fmt: str):
    page, _attr, _export, _columns, _action = LISTS[name]
    return browser.submit(f"{page}{query}", selector=f"form[data-export={fmt}]")


# (list, query, the figure (or named rows) of the staff member, of the CISO, filters audited)
LIST_CASES = [
    ("expiring", "?kind=certificate", "certificates", "certificates", {"kind": "certificate"}),
    ("expiring", "?kind=ismap", "ismap", "ismap", {"kind": "ismap"}),
    ("expiring", "?kind=bogus", "certificates", "certificates", {"kind": "certificate"}),
    ("incidents", "", "incidents", "incidents", {}),
    ("incidents", "?state=all", ("R1", "R2"), ("R1", "R2", "R4"), {"state": "all"}),
    ("findings", "", "open_findings", "open_findings", {"status": "open"}),
    ("findings", "?status=overdue", "overdue_findings", "overdue_findings", {"status": "overdue"}),
    ("findings", "?status=closed", ("F3",), ("F3",), {"status": "closed"}),
    (
        "findings",
        "?status=all&severity=medium",
        ("F1", "F2", "F3"),
        ("F1", "F2", "F3", "F4"),
        {"status": "all", "severity": "medium"},
    ),
    ("findings", "?status=all&severity=high", (), (), {"status": "all", "severity": "high"}),
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize(("who", "expected"), [("staff", STAFF_EXPECTED), ("ciso", CISO_EXPECTED)])
def test_every_lists_export_has_exactly_the_rows_of_its_page(app, db, world, who, expected, fmt):
    """A staff member's files hold their department's rows, the CISO's the organisation's —
    those of the page with the same filter, in its order, under the list's columns; each export
    is audited with its list, format, filter and size."""
    user = getattr(world, who)
    browser = signed_in(app, user)
    audited = []
    for name, query, staff_rows, ciso_rows, filters in LIST_CASES:
        page, attr, _export, columns, action = LISTS[name]
        names = staff_rows if who == "staff" else ciso_rows
        names = expected[names] if isinstance(names, str) else names
        shown = page_rows(browser, f"{page}{query}", attr)
        assert {row_id for row_id, _label in shown} == expected_rows(world, names), (name, query)
        header, rows = read_export(export_of(browser, name, query, fmt), fmt)
        assert header == [c.header for c in columns], name
        assert export_rows(rows, columns) == shown, (name, query)
        audited.append((action, user.id, {"format": fmt, "count": len(shown), "filters": filters}))
    assert list_events(db) == audited
    assert export_events(db) == []  # the schedule list's own action is not used for these


def test_the_expiring_export_reads_like_the_page(app, db, world):
    browser = signed_in(app, world.ciso)
    page = soup(browser.get("/reviews/expiring?kind=certificate"))
    headers = [th.get_text(strip=True) for th in page.select("[data-table=expiring] thead th")]
    assert headers == [c.header for c in EXPIRING_COLUMNS]
    _header, rows = read_export(export_of(browser, "expiring", "?kind=certificate", "csv"), "csv")
    records = {int(r["番号"]): r for r in rows}
    expired = records[world.s["P3"].id]
    assert expired["認証・登録"] == "プライバシーマーク IS-1"
    assert expired["有効期限"] == "2026年11月1日"
    assert expired["残り日数"] == "期限切れ（19日経過）"
    assert expired["区分"] == "業務委託" and expired["担当課"] == "情報政策課"
    assert records[world.s["P1"].id]["残り日数"] == "あと56日"
    assert records[world.s["C2"].id]["委託先・提供者"] == "クラウド提供株式会社"

    response = export_of(browser, "expiring", "?kind=ismap", "xlsx")
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''" + quote("有効期限が近いISMAP登録_20261120.xlsx") in disposition
    fallback = disposition.split('filename="')[1].split('"')[0]
    assert fallback.isascii() and fallback.startswith("ISMAP") and fallback.endswith(".xlsx")
    assert response.headers["Cache-Control"] == "no-store"
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    assert book.active.title == "有効期限が近いISMAP登録"
    _header, rows = read_export(response, "xlsx")
    until = {
        r.schedule.id: r.expiry.until for r in reports.expiring(db, world.ciso, TODAY, "ismap")
    }
    assert {r["番号"].value for r in rows} == set(until) == ids(world, "P2", "C1")
    for row in rows:
        cell = row["有効期限"]
        assert cell.is_date and cell.value.date() == until[row["番号"].value]


def test_the_exports_neutralise_formulas(app, db, world):
    """A title starting with = stays text: an apostrophe in the CSV, a string cell with the
    quote prefix in the workbook — on every list."""
    finding(db, world, world.s["P1"], '=HYPERLINK("http://example.com")', due=date(2027, 1, 8))
    browser = signed_in(app, world.staff)
    cases = [
        ("expiring", "?kind=ismap", "対象（案件・サービス）", "=クラウド会議"),
        ("incidents", "?state=all", "対象（案件・サービス）", "=クラウド会議"),
        ("findings", "?status=open", "指摘事項", '=HYPERLINK("http://example.com")'),
    ]
    for name, query, column, title in cases:
        _header, rows = read_export(export_of(browser, name, query, "csv"), "csv")
        assert "'" + title in [r[column] for r in rows], name
        assert title not in [r[column] for r in rows], name
        _header, rows = read_export(export_of(browser, name, query, "xlsx"), "xlsx")
        [cell] = [r[column] for r in rows if r[column].value == title]
        assert cell.data_type == "s" and cell.quotePrefix, name


def test_the_incident_export_has_every_page_and_the_full_report(app, db, world, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 1)
    r1 = world.reports["R1"]
    r1.summary = "窓口端末がマルウェアに感染した。" * 10  # longer than the page shows
    r1.information_affected = "住民の氏名・住所（約120件）"
    r1.personal_data_affected = True
    r1.measures = "端末を隔離し、全端末を検査した。"
    db.commit()
    browser = signed_in(app, world.ciso)
    page = browser.get("/reviews/incidents?state=all")
    html = soup(page)
    headers = [th.get_text(strip=True) for th in html.select("[data-table=incidents] thead th")]
    assert headers == [c.header for c in INCIDENT_PAGE_COLUMNS]
    assert len(html.select("tbody tr[data-report-id]")) == 1
    assert html.select_one(".pager a[rel=next]")["href"] == "/reviews/incidents?page=2&state=all"
    _header, rows = read_export(export_of(browser, "incidents", "?state=all", "csv"), "csv")
    records = {int(r["番号"]): r for r in rows}
    assert set(records) == expected_rows(world, ("R1", "R2", "R4"))
    first = records[r1.id]
    assert first["概要"] == r1.summary
    assert first["影響を受けた情報"] == "住民の氏名・住所（約120件）"
    assert first["個人情報への影響"] == "あり" and first["講じた措置"] == r1.measures
    assert first["報告日時"] == "2026年11月19日 10:00"
    assert first["発生日時"] == "2026年11月18日 10:00"
    assert first["確認"] == "未確認" and first["担当課"] == "情報政策課"
    assert records[world.reports["R2"].id]["確認"] == "2026年11月20日 10:00 確認済み"
    assert list_events(db)[-1][2]["count"] == 3


def test_the_findings_export_adds_the_corrective_action(app, db, world):
    browser = signed_in(app, world.ciso)
    html = soup(browser.get("/findings?status=all"))
    headers = [th.get_text(strip=True) for th in html.select("[data-table=findings] thead th")]
    assert headers == [c.header for c in FINDING_PAGE_COLUMNS]
    closed = world.findings["F3"]
    closed.closing_note = "手順書を改訂し、周知した。"
    db.commit()
    response = export_of(browser, "findings", "?status=all", "csv")
    assert (
        "filename*=UTF-8''" + quote("指摘事項_20261120.csv")
        in response.headers["Content-Disposition"]
    )
    _header, rows = read_export(response, "csv")
    records = {int(r["番号"]): r for r in rows}
    overdue = records[world.findings["F2"].id]
    assert overdue["指摘事項"] == "ログ確認の遅れ" and overdue["重要度"] == "中"
    assert overdue["指摘の元"] == "窓口業務委託／第1回 定期確認"
    assert overdue["担当課"] == "情報政策課" and overdue["担当者"] == "統括 三郎"
    assert overdue["是正措置"] == "手順書を改訂する。"
    assert overdue["期限"] == "2026年11月1日（期限超過）" and overdue["状態"] == "対応中"
    done = records[closed.id]
    assert done["状態"] == "完了（2026年11月20日）" and done["期限"] == "2026年11月1日"
    assert done["対応の内容"] == "手順書を改訂し、周知した。"
    assert records[world.findings["F4"].id]["担当課"] == "市民課"


EXPORT_URLS = (
    "/reviews/expiring/export.csv",
    "/reviews/expiring/export.xlsx",
    "/reviews/incidents/export.csv",
    "/reviews/incidents/export.xlsx",
    "/findings/export.csv",
    "/findings/export.xlsx",
)


def test_the_list_exports_are_post_only_with_a_csrf_token(app, db, world):
    browser = signed_in(app, world.ciso)
    for url in EXPORT_URLS:
        assert browser.get(url).status_code == 405, url
        assert browser.client.post(url, data={"kind": "ismap"}).status_code == 400, url
    assert list_events(db) == []
    vendor = signed_in(app, world.vendor)
    for url in EXPORT_URLS:
        assert vendor.post(url).status_code == 403, url
    admin = signed_in(app, world.admin)
    for url in EXPORT_URLS:
        assert admin.post(url).status_code == 403, url
    assert list_events(db) == []


def test_each_list_page_offers_both_exports_with_its_filter(app, world):
    browser = signed_in(app, world.staff)
    for url, action, fields in (
        ("/reviews/expiring?kind=ismap", "/reviews/expiring/export", {"kind": "ismap"}),
        ("/reviews/incidents?state=all", "/reviews/incidents/export", {"state": "all"}),
        ("/reviews/incidents", "/reviews/incidents/export", {}),
        (
            "/findings?status=closed&severity=low",
            "/findings/export",
            {"status": "closed", "severity": "low"},
        ),
        ("/reviews?state=ending", "/reviews/export", {"state": "ending"}),
    ):
        html = soup(browser.get(url))
        for fmt in ("csv", "xlsx"):
            form = html.select_one(f"form[data-export={fmt}]")
            assert form["method"] == "post" and form["action"] == f"{action}.{fmt}", url
            hidden = {i["name"]: i["value"] for i in form.select("input[type=hidden]")}
            assert hidden.pop("csrf_token")
            assert hidden == fields, url
            assert form.select_one("button").get_text(strip=True).startswith("この条件で")


# ---------------------------------------------------------------------------------------------
# Home page and navigation
# ---------------------------------------------------------------------------------------------


def test_the_home_page_shows_the_same_figures_to_staff(app, world):
    staff = signed_in(app, world.staff)
    home = staff.get("/")
    assert home.status_code == 200
    assert figure_counts(home) == {n: len(rows) for n, rows in STAFF_EXPECTED.items()}
    assert soup(home).select_one("h1").get_text(strip=True) == "ホーム"  # the page is kept
    nav = {a.get_text(strip=True): a["href"] for a in soup(home).select(".site-nav a")}
    assert nav["定期確認"] == "/reviews/dashboard"

    admin = signed_in(app, world.admin)
    page = soup(admin.get("/"))
    assert page.select_one("[data-section=review-figures]") is None
    assert "定期確認" not in {a.get_text(strip=True) for a in page.select(".site-nav a")}
    assert admin.get("/reviews/dashboard").status_code == 403


def test_a_vendor_sees_no_figures(app, world):
    vendor = signed_in(app, world.vendor)
    assert soup(vendor.get("/")).select_one("[data-section=review-figures]") is None
    assert vendor.get("/reviews").status_code == 403


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


def many(db, make, w, start: int, stop: int) -> None:
    """Schedules of every kind, with answers, a confirmation, a finding and a report each."""
    for n in range(start, stop):
        department = w.policy if n % 2 else w.citizens
        if n % 3:
            schedule = contractor(
                db,
                make,
                w,
                department,
                f"委託{n:02d}",
                due=TODAY + timedelta(days=30 * (n % 5) - 20),
                risk=("low", "medium", "high", None)[n % 4],
                answers=certificate("2027-01-01"),
                confirmed=certificate("2027-02-01"),
            )
            finding(db, w, schedule, f"指摘{n}", due=TODAY - timedelta(days=n % 2))
        else:
            schedule = service_use(
                db,
                w,
                department,
                f"サービス{n:02d}",
                due=TODAY + timedelta(days=40 * (n % 4)),
                risk="medium",
                ismap_end=date(2025, 10, 31),
                expires="2027-01-01",
            )
        report(db, w, schedule)
        schedule.triggers.append(
            ReviewTrigger(
                kind="incident",
                key=f"incident:{n}",
                occurred_on=TODAY,
                due_on=schedule.due_on,
                detail="事故の報告",
            )
        )
        db.commit()


@pytest.fixture
def bare(db, make, org):
    policy, citizens = make.department(org, "情報政策課"), make.department(org, "市民課")
    return SimpleNamespace(
        orgs={org.id: org},
        policy=policy,
        citizens=citizens,
        staff=make.user(org, roles={Role.STAFF}, departments=[policy]),
        ciso=make.user(org, roles={Role.CISO}),
        company=make.company(org, name="株式会社委託先"),
        cloud=make.company(org, name="クラウド提供株式会社"),
        vendor=make.user(org, company=make.company(org)),
    )


def test_the_number_of_queries_does_not_grow_with_the_schedules(app, db, make, bare):
    browser = signed_in(app, bare.ciso)
    urls = (
        "/reviews/dashboard",
        "/",
        "/reviews?state=all",
        "/reviews/expiring?kind=certificate",
        "/reviews/incidents",
    )

    def measure() -> list[int]:
        counts = []
        for url in urls:
            with QueryCounter(app) as counter:
                assert browser.get(url).status_code == 200, url
            counts.append(counter.count)
        with QueryCounter(app) as counter:
            assert export(browser, "csv", "?state=all").status_code == 200
        counts.append(counter.count)
        for name, query in (
            ("expiring", "?kind=certificate"),
            ("incidents", "?state=all"),
            ("findings", "?status=all"),
        ):
            with QueryCounter(app) as counter:
                assert export_of(browser, name, query, "xlsx").status_code == 200, name
            counts.append(counter.count)
        return counts

    many(db, make, bare, 0, 3)
    three = measure()
    figures = reports.figures(db, bare.ciso, TODAY)
    assert figures.active == 3 and figures.certificates_expiring == 3
    many(db, make, bare, 3, 12)
    assert reports.figures(db, bare.ciso, TODAY).active == 12
    assert len(listed(browser, "/reviews")) == 12
    twelve = measure()
    assert twelve == three, (three, twelve)


def test_the_columns_are_defined_once_with_unique_headers():
    assert len(set(HEADERS)) == len(HEADERS) == len(COLUMNS)
    assert reports.COLUMNS is COLUMNS
    assert {c.key for c in COLUMNS} >= {
        "subject",
        "kind",
        "vendor",
        "department",
        "risk",
        "interval",
        "last_confirmed",
        "due",
        "triggers",
        "state",
    }
