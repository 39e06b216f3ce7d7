"""A year in the life of one 業務委託 contract, on a frozen clock (対策基準 9.1(2)⑨, 9.1(3),
9.2(6), 10.1(4)): the schedule opens at the decision; a certificate nearing expiry and a reported
subcontractor change bring the confirmation forward; reminders go out (read back from the
outbox, none twice); overdue escalates to the ネットワーク管理者 and CISO; the vendor confirms with a
change, staff see the diff and complete it; a finding is raised and closed; the contract ends
and its exit checklist (with the 消去証明書) closes it. The dashboards show the right counts at
every step."""

from __future__ import annotations

import io
from collections import Counter
from datetime import date, datetime, time

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage, MultiDict

from portal.assessments import store
from portal.evidence import setup
from portal.reports import service as dashboards
from portal.reviews import confirmations, exits, findings, reminders, reports, schedules
from portal.reviews.demo import _form
from portal.reviews.models import ReminderLog
from portal.users.models import Role
from portal.web import JST
from tests.helpers import outbox, soup
from tests.test_evidence_files import pdf_bytes
from tests.test_routes import signed_in
from tests.test_schedules import _outcome

ESCALATION_DAYS = 14


@pytest.fixture
def contract(db, make, org):
    department = make.department(org, "情報政策課")
    other = make.department(org, "市民課")
    people = {
        "staff": make.user(
            org, email="staff@city.example.jp", roles={Role.STAFF}, departments=[department]
        ),
        "colleague": make.user(
            org, email="staff2@city.example.jp", roles={Role.STAFF}, departments=[department]
        ),
        "outsider": make.user(
            org, email="citizen@city.example.jp", roles={Role.STAFF}, departments=[other]
        ),
        "netadmin": make.user(org, email="net@city.example.jp", roles={Role.NETWORK_ADMIN}),
        "ciso": make.user(org, email="ciso@city.example.jp", roles={Role.CISO}),
    }
    company = make.company(org, "株式会社年間委託")
    people["vendor"] = make.user(company=company, invited_by=org, email="tanto@vendor.example.com")
    engagement = make.engagement(
        org, department, people["staff"], title="窓口受付業務委託", personal_data=True
    )
    assessment = make.assessment(engagement, company, people["staff"], status="decided")
    for key, value in {
        "certifications.ismap": "none",
        "certifications.others": [
            {"kind": "iso27001", "number": "IS 555", "expires": "2026-12-15"}
        ],
        "certifications.external_audit": "yes",
        "certifications.external_audit_summary": "2026年2月に外部監査を受け、指摘事項なし。",
    }.items():
        store.save(db, assessment, key, value, people["vendor"])
    db.commit()
    return people, assessment


def _on(time_machine, day: date) -> None:
    time_machine.move_to(datetime.combine(day, time(9), JST), tick=False)


def _run(app, db, day: date):
    """The daily job, as ``flask send-reminders`` runs it (in an app context)."""
    with app.app_context():
        report = reminders.run(db, day, dry_run=False, escalation_days=ESCALATION_DAYS)
    db.rollback()
    return report


def _sent(report) -> Counter:
    """(stage, recipient) → messages sent by one run."""
    return Counter((r.stage.split("-")[0], r.recipient) for r in report.sent)


def _dashboard_page(app, user) -> dict:
    """The figures as the dashboard page shows them, and the rows behind the overdue link."""
    browser = signed_in(app, user)
    page = soup(browser.get("/reviews/dashboard"))
    shown = {dd["data-figure"]: dd.get_text(strip=True) for dd in page.select("dd[data-figure]")}
    link = page.select_one("dd[data-figure=overdue] a")["href"]
    rows = soup(browser.get(link)).select("tr[data-schedule-id]")
    return {**shown, "listed": [row["data-schedule-id"] for row in rows]}


def _counts(db, actor, day: date) -> dict:
    figures = dashboards.figures(db, actor, day)
    return {
        "overdue": figures.overdue,
        "due_soon": figures.due_soon,
        "certificates": figures.certificates_expiring,
        "open_findings": figures.open_findings,
        "overdue_findings": figures.overdue_findings,
        "incidents": figures.unacknowledged_incidents,
        "ending": figures.ending,
        "active": figures.active,
    }


def test_a_year_of_one_contract(app, db, org, contract, time_machine):
    people, assessment = contract
    staff, vendor = people["staff"], people["vendor"]
    nothing = {
        "overdue": 0,
        "due_soon": 0,
        "certificates": 0,
        "open_findings": 0,
        "overdue_findings": 0,
        "incidents": 0,
        "ending": 0,
        "active": 1,
    }

    # 2026-04-01: decided. Personal data: confirmed at least yearly; the period ends on
    # 2027-03-31 (a Wednesday).
    day = date(2026, 4, 1)
    _on(time_machine, day)
    _outcome(db, assessment, staff)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    assert schedule.interval_months == 12
    assert schedule.due_on == date(2027, 3, 31)
    assert _counts(db, staff, day) == nothing
    assert _counts(db, people["ciso"], day) == nothing
    assert _counts(db, people["outsider"], day) == {**nothing, "active": 0}
    assert _run(app, db, day).sent == []

    # 2026-08-18: the certificate expires in 119 days. The daily job brings the confirmation
    # forward to the expiry and warns the vendor and the department's staff.
    day = date(2026, 8, 18)
    _on(time_machine, day)
    report = _run(app, db, day)
    db.refresh(schedule)
    assert [t.kind for t in schedule.open_triggers] == ["certificate_expiry"]
    assert schedule.due_on == date(2026, 12, 15)
    assert _sent(report) == Counter(
        {
            ("expiry_120", "tanto@vendor.example.com"): 1,
            ("expiry_120", "staff@city.example.jp"): 1,
            ("expiry_120", "staff2@city.example.jp"): 1,
        }
    )
    assert _counts(db, staff, day) == {**nothing, "certificates": 1}
    mails = outbox(app)
    assert len(mails) == 3
    assert any("IS 555" in m.get_content() for m in mails)
    # The same day again: nothing is sent twice.
    assert _run(app, db, day).sent == []
    assert len(outbox(app)) == 3

    # 2026-09-10: the vendor reports a new subcontractor. 30 days later is Saturday 10 October;
    # Monday 12th is スポーツの日, so the confirmation is due on Tuesday 13 October.
    day = date(2026, 9, 10)
    _on(time_machine, day)
    reports.submit_report(
        db,
        vendor,
        schedule,
        reports.ReportInput(
            kind="subcontractor_change",
            occurred_at=datetime.combine(date(2026, 9, 1), time(9), JST),
            summary="コールセンター業務の一部を株式会社夜間受付に再委託します。",
        ),
        datetime.combine(day, time(9), JST),
    )
    db.commit()
    db.refresh(schedule)
    assert schedule.due_on == date(2026, 10, 13)
    assert _counts(db, staff, day) == {**nothing, "certificates": 1, "due_soon": 1}

    # 2026-09-14: the job opens the confirmation (due within 60 days), asks the vendor, and
    # reminds the staff 30 days ahead.
    day = date(2026, 9, 14)
    _on(time_machine, day)
    report = _run(app, db, day)
    db.refresh(schedule)
    confirmation = schedule.current_confirmation
    assert confirmation is not None and confirmation.status == "open"
    assert confirmation.reason in ("subcontractor_change", "certificate_expiry")
    stages = _sent(report)
    assert stages[("request", "tanto@vendor.example.com")] == 1
    assert stages[("due_30", "staff@city.example.jp")] == 1
    assert _run(app, db, day).sent == []

    # 2026-10-20: a week overdue; reminders to staff and vendor, no escalation yet.
    day = date(2026, 10, 20)
    _on(time_machine, day)
    report = _run(app, db, day)
    stages = _sent(report)
    assert stages[("overdue", "staff@city.example.jp")] == 1
    assert not any(stage == "escalation" for stage, _ in stages)
    assert _counts(db, staff, day) == {**nothing, "certificates": 1, "overdue": 1}

    # 2026-10-29: overdue by 16 days (> 14): escalated once to the ネットワーク管理者 and CISO.
    day = date(2026, 10, 29)
    _on(time_machine, day)
    report = _run(app, db, day)
    escalated = {recipient for stage, recipient in _sent(report) if stage == "escalation"}
    assert escalated == {"net@city.example.jp", "ciso@city.example.jp"}
    assert _counts(db, people["ciso"], day)["overdue"] == 1
    page = _dashboard_page(app, people["ciso"])
    assert page["overdue"] == "1 件"
    assert page["listed"] == [str(schedule.id)]
    assert not any(r.stage == "escalation" for r in _run(app, db, date(2026, 10, 30)).sent)
    # Every message in the outbox is one reminder recorded as sent, each key once.
    db.rollback()
    sent = db.scalars(sa.select(ReminderLog.key).where(ReminderLog.status == "sent")).all()
    assert len(sent) == len(set(sent)) == len(outbox(app))

    # 2026-11-02: the vendor confirms: the certificate was renewed (changed), the rest did not
    # change; the renewed certificate is attached.
    day = date(2026, 11, 2)
    _on(time_machine, day)
    db.refresh(confirmation)
    for view in confirmations.section_views(confirmation):
        key = view.section.key
        if key == "certifications":
            values = {
                **confirmation.baseline_values(),
                "certifications.others": [
                    {"kind": "iso27001", "number": "IS 555", "expires": "2029-12-15"}
                ],
            }
            confirmations.answer_section(
                db,
                confirmation,
                vendor,
                key,
                changed=True,
                raw=_form(view.questions, values),
                note="ISO/IEC 27001の認証を更新しました。",
                version=confirmation.version,
            )
        else:
            confirmations.answer_section(
                db,
                confirmation,
                vendor,
                key,
                changed=False,
                raw=MultiDict(),
                note="",
                version=confirmation.version,
            )
    confirmations.submit(db, confirmation, vendor, confirmation.version)
    db.commit()
    changed = [
        (section.key, row.before, row.after)
        for section in confirmations.diff(confirmation)
        for row in section.changed_rows
    ]
    assert len(changed) == 1 and changed[0][0] == "certifications"
    assert "2026" in changed[0][1] and "2029" in changed[0][2]
    # Staff complete it: remote check; the next period starts today and ends on 2027-11-01.
    next_due = confirmations.complete(
        db,
        confirmation,
        staff,
        method="remote",
        result="更新後の認証書と再委託先の体制を確認した。",
        today=day,
        version=confirmation.version,
    )
    db.commit()
    db.refresh(schedule)
    assert next_due == schedule.due_on == date(2027, 11, 1)
    assert schedule.open_triggers == []
    assert _counts(db, staff, day) == nothing

    # A finding with a corrective action due on 1 December, reminded when overdue, closed.
    finding = findings.raise_finding(
        db,
        staff,
        source=confirmation,
        data=findings.FindingInput(
            severity="medium",
            title="再委託先の誓約書が未提出",
            description="",
            corrective_action="再委託先の誓約書を提出させる。",
            owner_id=people["colleague"].id,
            due_on=date(2026, 12, 1),
        ),
        today=day,
    )
    db.commit()
    assert _counts(db, staff, day) == {**nothing, "open_findings": 1}
    day = date(2026, 12, 3)
    _on(time_machine, day)
    stages = _sent(_run(app, db, day))
    assert stages[("finding_overdue", "staff2@city.example.jp")] == 1
    assert _counts(db, staff, day) == {**nothing, "open_findings": 1, "overdue_findings": 1}
    db.refresh(finding)
    findings.close(
        db,
        finding,
        people["colleague"],
        note="誓約書を受領した。",
        today=day,
        version=finding.version,
    )
    db.commit()
    assert _counts(db, staff, day) == nothing

    # 2027-03-31: the contract ends; the exit checklist opens and no confirmation can start.
    day = date(2027, 3, 31)
    _on(time_machine, day)
    db.refresh(schedule)
    exits.end_contract(
        db,
        schedule,
        staff,
        ending_on=day,
        reason="契約期間の満了",
        version=schedule.version,
    )
    db.commit()
    assert _counts(db, staff, day) == {**nothing, "ending": 1, "active": 0}
    with pytest.raises(confirmations.ConfirmationError):
        confirmations.open_confirmation(db, schedule, staff, day)
    db.rollback()
    with pytest.raises(exits.ExitError):
        exits.close(db, schedule, staff, version=schedule.version, today=day)
    db.rollback()

    day = date(2027, 4, 15)
    _on(time_machine, day)
    for item in exits.phase().items:
        upload = (
            FileStorage(io.BytesIO(pdf_bytes()), filename="消去証明書.pdf")
            if item.requires_file
            else None
        )
        exits.record(
            db,
            schedule,
            staff,
            item.key,
            result="done",
            checked_on=date(2027, 4, 10),
            note="確認した。",
            upload=upload,
            today=day,
            evidence_dir=setup.evidence_dir_for(app),
            scanner=setup.scanner_for(app),
            max_bytes=setup.max_bytes_for(app),
        )
    db.commit()
    exits.close(db, schedule, staff, version=schedule.version, today=day)
    db.commit()
    db.refresh(schedule)
    assert schedule.status == "ended" and schedule.ended_on == day
    assert _counts(db, staff, day) == {**nothing, "active": 0}
    # Nothing more is sent for an ended contract.
    assert _run(app, db, date(2027, 5, 1)).sent == []
    assert _dashboard_page(app, people["ciso"])["overdue"] == "0 件"
