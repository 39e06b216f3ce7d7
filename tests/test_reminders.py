"""``send-reminders``: due-soon, overdue (weekly), escalation to the ネットワーク管理者 and CISO,
certificate and ISMAP expiry warnings, findings; idempotent, ``--dry-run``, and nothing lost when
the mail server is down (対策基準 9.1(3), 9.2(6), 10.1(4))."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa

from portal.approvals.models import ExternalService, ManagerAssignment, UseApplication
from portal.assessments import store
from portal.audit.models import AuditEvent
from portal.config import ConfigError, load_config
from portal.db import utcnow
from portal.mail import service as mail_service
from portal.permissions import Role
from portal.reviews import confirmations, reminders, schedules
from portal.reviews.models import (
    Confirmation,
    ConfirmationSection,
    Finding,
    ReminderLog,
    ReviewSchedule,
    VendorReport,
)
from tests.helpers import Browser, QueryCounter, flashes, form_fields, link_in, outbox, soup

DUE = date(2027, 3, 31)  # a Wednesday


def _schedule(db, org, department, company, subject, *, title, due=DUE):
    schedule = ReviewSchedule(
        organisation_id=org.id,
        department_id=department.id,
        vendor_company_id=company.id,
        title=title,
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=due,
        due_on=due,
        **subject,
    )
    db.add(schedule)
    db.commit()
    return schedule


@pytest.fixture
def scene(db, make, org, other_org):
    department = make.department(org, "市民課")
    other_department = make.department(org, "税務課")
    staff = make.user(
        org,
        roles={Role.STAFF},
        departments=[department],
        email="shimin@city.example.jp",
        name="市民 一郎",
    )
    make.user(  # a former member of the department
        org, roles={Role.STAFF}, departments=[department], email="old@city.example.jp", active=False
    )
    make.user(  # reads the department's reviews but does not manage them
        org, roles={Role.AUDITOR}, departments=[department], email="kansa@city.example.jp"
    )
    tax_staff = make.user(
        org, roles={Role.STAFF}, departments=[other_department], email="zeimu@city.example.jp"
    )
    network = make.user(
        org, roles={Role.NETWORK_ADMIN}, email="network@city.example.jp", name="情報 二郎"
    )
    ciso = make.user(org, roles={Role.CISO}, email="ciso@city.example.jp", name="最高 三郎")
    make.user(other_org, roles={Role.CISO}, email="ciso@other.example.jp")
    company = make.company(org, "株式会社窓口サービス")
    vendor = make.user(
        company=company, invited_by=org, email="tanto@madoguchi.example.jp", name="委託 花子"
    )
    # The same company's contact for another body only: never told about this body's items.
    make.user(company=company, invited_by=other_org, email="betsu-dantai@madoguchi.example.jp")
    rival = make.company(org, "株式会社別の委託先")
    make.user(company=rival, invited_by=org, email="tanto@betsu.example.jp")
    engagement = make.engagement(org, department, staff, title="住民票発行窓口業務委託")
    assessment = make.assessment(engagement, company, staff, status="decided")
    schedule = _schedule(
        db, org, department, company, {"assessment_id": assessment.id}, title=engagement.title
    )
    return SimpleNamespace(
        org=org,
        department=department,
        other_department=other_department,
        staff=staff,
        tax_staff=tax_staff,
        network=network,
        ciso=ciso,
        company=company,
        vendor=vendor,
        rival=rival,
        assessment=assessment,
        schedule=schedule,
    )


class Mailbox:
    """The outbox read back, a step at a time."""

    def __init__(self, app):
        self.app = app
        self.seen: set[str] = set()

    def new(self) -> list:
        fresh = [m for m in outbox(self.app) if m["Message-ID"] not in self.seen]
        self.seen.update(m["Message-ID"] for m in fresh)
        return fresh


def to(messages) -> list[str]:
    return sorted(m["To"] for m in messages)


def send(app, db, today: date, *, escalation_days: int = 14, dry_run: bool = False):
    with app.app_context():
        return reminders.run(db, today, dry_run=dry_run, escalation_days=escalation_days)


def path_of(message) -> str:
    link = link_in(message)
    assert link.startswith("http://localhost/")  # absolute, from BASE_URL
    return urlsplit(link).path


def counts(db) -> dict[str, int]:
    db.rollback()
    return {
        model.__name__: db.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (ReminderLog, Confirmation, AuditEvent)
    }


# Schedules: due soon, overdue, weekly, escalation ------------------------------------------------


def test_a_schedule_is_reminded_at_30_and_7_days_then_weekly_and_escalated_once(app, db, scene):
    box = Mailbox(app)
    s = scene
    staff, vendor = s.staff.email, s.vendor.email

    send(app, db, DUE - timedelta(days=61))
    assert box.new() == []

    # 60 days ahead the job opens the confirmation and asks the vendor's contact to answer.
    send(app, db, DUE - timedelta(days=60))
    [request] = box.new()
    db.rollback()
    confirmation = db.scalar(
        sa.select(Confirmation).where(Confirmation.schedule_id == s.schedule.id)
    )
    assert request["To"] == vendor and "定期確認のお願い" in request["Subject"]
    assert path_of(request) == f"/vendor/confirmations/{confirmation.id}"
    assert "2027年3月31日" in request.get_content()

    send(app, db, DUE - timedelta(days=30))
    due_30 = box.new()
    assert to(due_30) == sorted([staff, vendor])
    staff_mail = next(m for m in due_30 if m["To"] == staff)
    assert "あと30日" in staff_mail["Subject"] and "住民票発行窓口業務委託" in staff_mail["Subject"]
    assert path_of(staff_mail) == f"/reviews/{s.schedule.id}"
    assert "委託先の回答を待っています" in staff_mail.get_content()

    # Running again the same day, or the next day, sends nothing twice.
    send(app, db, DUE - timedelta(days=30))
    send(app, db, DUE - timedelta(days=29))
    assert box.new() == []

    send(app, db, DUE - timedelta(days=7))
    assert to(box.new()) == sorted([staff, vendor])
    send(app, db, DUE)
    assert box.new() == []

    send(app, db, DUE + timedelta(days=1))
    overdue = box.new()
    assert to(overdue) == sorted([staff, vendor])
    assert all("期限" in m["Subject"] and "過ぎています" in m["Subject"] for m in overdue)
    send(app, db, DUE + timedelta(days=7))
    assert box.new() == []
    send(app, db, DUE + timedelta(days=8))
    assert to(box.new()) == sorted([staff, vendor])  # the second week

    send(app, db, DUE + timedelta(days=14))
    assert box.new() == []  # overdue by 14 days is not yet more than 14
    send(app, db, DUE + timedelta(days=15))
    third_week = box.new()
    assert to(third_week) == sorted([staff, vendor, s.network.email, s.ciso.email])
    escalation = next(m for m in third_week if m["To"] == s.ciso.email)
    assert "エスカレーション" in escalation["Subject"]
    body = escalation.get_content()
    assert body.startswith("最高 三郎 様")
    assert "市民課" in body and "株式会社窓口サービス" in body and "担当者: 市民 一郎" in body
    assert "15日超過" in body and "9.1(3)" in body
    assert path_of(escalation) == f"/reviews/{s.schedule.id}"

    send(app, db, DUE + timedelta(days=16))
    assert box.new() == []
    send(app, db, DUE + timedelta(days=22))
    assert to(box.new()) == sorted([staff, vendor])  # weekly again, but escalated only once

    db.rollback()
    logs = db.scalars(sa.select(ReminderLog)).all()
    assert len(logs) == 1 + 2 + 2 + 2 + 2 + 4 + 2
    assert {row.status for row in logs} == {"sent"} and all(row.attempts == 1 for row in logs)
    assert {row.stage for row in logs} == {"request", "due_30", "due_7", "overdue", "escalation"}


def test_a_submitted_answer_stops_the_vendors_reminders_and_staff_are_asked_to_review(
    app, db, scene
):
    box = Mailbox(app)
    send(app, db, DUE - timedelta(days=60))
    box.new()
    db.rollback()
    confirmation = db.scalar(
        sa.select(Confirmation).where(Confirmation.schedule_id == scene.schedule.id)
    )
    confirmation.status = "submitted"
    db.commit()
    send(app, db, DUE - timedelta(days=7))
    [message] = box.new()
    assert message["To"] == scene.staff.email
    assert "確認結果を記録してください" in message.get_content()


def test_the_current_service_manager_is_reminded_with_the_department(app, db, make, scene):
    manager = make.user(scene.org, roles={Role.SERVICE_MANAGER}, email="kanri@city.example.jp")
    former = make.user(scene.org, roles={Role.SERVICE_MANAGER}, email="mae@city.example.jp")
    application = _application(db, scene, "窓口予約クラウド", scene.department)
    for user, ended in ((former, date(2026, 6, 30)), (manager, None)):
        db.add(
            ManagerAssignment(
                application_id=application.id,
                user_id=user.id,
                appointed_on=date(2026, 4, 1),
                ended_on=ended,
                appointed_by_id=scene.ciso.id,
            )
        )
    db.commit()
    # The contract's schedule is far off; only the service is due.
    scene.schedule.due_on = scene.schedule.regular_due_on = date(2028, 3, 31)
    db.commit()
    _schedule(
        db,
        scene.org,
        scene.department,
        scene.company,
        {"application_id": application.id},
        title="窓口予約クラウド",
    )
    box = Mailbox(app)
    send(app, db, DUE - timedelta(days=7))
    # The vendor was asked to answer (the job opened the confirmation) and told it is due.
    assert to(box.new()) == sorted(
        [scene.staff.email, manager.email, scene.vendor.email, scene.vendor.email]
    )


# Expiry warnings -------------------------------------------------------------------------------


def test_certificate_expiry_is_warned_120_30_and_7_days_ahead(app, db, scene):
    expires = date(2027, 6, 30)
    store.save(
        db,
        scene.assessment,
        "certifications.others",
        [{"kind": "iso27001", "number": "IS 123", "expires": expires.isoformat()}],
        scene.staff,
    )
    scene.schedule.due_on = scene.schedule.regular_due_on = date(2027, 9, 30)
    db.commit()
    box = Mailbox(app)

    def warnings():
        return [m for m in box.new() if "有効期限" in m["Subject"]]

    send(app, db, expires - timedelta(days=121))
    assert warnings() == []
    send(app, db, expires - timedelta(days=120))
    first = warnings()
    assert to(first) == sorted([scene.staff.email, scene.vendor.email])
    vendor_mail = next(m for m in first if m["To"] == scene.vendor.email)
    assert "IS 123" in vendor_mail["Subject"] and "あと120日" in vendor_mail["Subject"]
    assert "2027年6月30日" in vendor_mail.get_content()
    assert "住民票発行窓口業務委託" in vendor_mail.get_content()
    send(app, db, expires - timedelta(days=100))
    assert warnings() == []
    send(app, db, expires - timedelta(days=30))
    assert to(warnings()) == sorted([scene.staff.email, scene.vendor.email])
    send(app, db, expires - timedelta(days=29))
    assert warnings() == []
    send(app, db, expires - timedelta(days=7))
    assert to(warnings()) == sorted([scene.staff.email, scene.vendor.email])
    send(app, db, expires + timedelta(days=1))
    assert warnings() == []  # expired: the confirmation, brought forward, is overdue instead

    db.rollback()
    stages = db.scalars(
        sa.select(ReminderLog.stage).where(ReminderLog.stage.like("expiry_%"))
    ).all()
    assert sorted(stages) == sorted(["expiry_120", "expiry_30", "expiry_7"] * 2)
    # The expiry brought the schedule forward (schedules.sync), and the usual reminders follow.
    assert db.get(ReviewSchedule, scene.schedule.id).due_on == expires


def test_a_late_first_run_sends_only_the_nearest_expiry_warning():
    assert reminders.expiry_stage(121) is None
    assert reminders.expiry_stage(120) == "expiry_120"
    assert reminders.expiry_stage(31) == "expiry_120"
    assert reminders.expiry_stage(29) == "expiry_30"
    assert reminders.expiry_stage(0) == "expiry_7"
    assert reminders.expiry_stage(-1) is None


def _application(db, scene, name, department, service=None):
    if service is None:
        service = ExternalService(
            organisation_id=scene.org.id, vendor_company_id=scene.company.id, name=name
        )
        db.add(service)
        db.flush()
    application = UseApplication(
        organisation_id=scene.org.id,
        department_id=department.id,
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
    db.commit()
    return application


def test_an_ismap_registration_shared_by_two_departments_reaches_the_vendor_once(app, db, scene):
    service = ExternalService(
        organisation_id=scene.org.id,
        vendor_company_id=scene.company.id,
        name="自治体クラウド",
        ismap_kind="ismap",
        ismap_number="C0123",
        ismap_audit_period_end=date(2025, 11, 30),
    )
    service.refresh_derived()
    db.add(service)
    db.flush()
    until = service.ismap_valid_until
    assert until is not None
    scene.schedule.due_on = scene.schedule.regular_due_on = date(2028, 3, 31)
    db.commit()
    for department, title in (
        (scene.department, "自治体クラウド（市民課）"),
        (scene.other_department, "自治体クラウド（税務課）"),
    ):
        application = _application(db, scene, "", department, service)
        _schedule(
            db,
            scene.org,
            department,
            scene.company,
            {"application_id": application.id},
            title=title,
            due=date(2028, 3, 31),
        )
    box = Mailbox(app)
    send(app, db, until - timedelta(days=120))
    messages = box.new()
    assert to(messages) == sorted([scene.staff.email, scene.tax_staff.email, scene.vendor.email])
    vendor_mail = next(m for m in messages if m["To"] == scene.vendor.email)
    assert "ISMAP登録" in vendor_mail["Subject"]
    body = vendor_mail.get_content()
    assert "自治体クラウド（市民課）" in body and "自治体クラウド（税務課）" in body
    assert path_of(vendor_mail) == "/vendor/confirmations"


# Findings ----------------------------------------------------------------------------------------


def test_findings_are_reminded_to_their_owner_and_escalated(app, db, make, scene):
    owner = make.user(
        scene.org,
        roles={Role.STAFF},
        departments=[scene.department],
        email="tantou@city.example.jp",
        name="是正 一郎",
    )
    scene.schedule.due_on = scene.schedule.regular_due_on = date(2027, 9, 30)
    db.commit()
    with app.app_context():
        confirmation = confirmations.open_confirmation(db, scene.schedule, None, date(2027, 1, 4))
    due = date(2027, 2, 15)
    found = {}
    for status in ("open", "closed"):
        finding = Finding(
            organisation_id=scene.org.id,
            department_id=scene.department.id,
            confirmation_id=confirmation.id,
            severity="high",
            title=f"再委託先の管理が不十分（{status}）",
            corrective_action="再委託先との契約に監査条項を追加する。",
            owner_id=owner.id,
            due_on=due,
            status=status,
            closed_on=date(2027, 2, 1) if status == "closed" else None,
            created_by_id=scene.staff.id,
        )
        db.add(finding)
        found[status] = finding
    db.commit()
    box = Mailbox(app)

    send(app, db, due - timedelta(days=8))
    assert box.new() == []
    send(app, db, due - timedelta(days=7))
    [soon] = box.new()
    assert soon["To"] == owner.email and "あと7日" in soon["Subject"]
    assert "（open）" in soon["Subject"]
    body = soon.get_content()
    assert "監査条項を追加する" in body and "第1回 定期確認（住民票発行窓口業務委託）" in body
    assert path_of(soon) == f"/findings/{found['open'].id}"
    send(app, db, due)
    assert box.new() == []
    send(app, db, due + timedelta(days=1))
    [late] = box.new()
    assert late["To"] == owner.email and "1日過ぎています" in late["Subject"]
    send(app, db, due + timedelta(days=8))
    assert to(box.new()) == [owner.email]
    send(app, db, due + timedelta(days=15))
    assert to(box.new()) == sorted([owner.email, scene.network.email, scene.ciso.email])
    send(app, db, due + timedelta(days=16))
    assert box.new() == []


# Dry run, failures, CLI --------------------------------------------------------------------------


def test_dry_run_sends_and_writes_nothing(app, db, runner, scene, caplog):
    before = counts(db)
    result = runner.invoke(args=["send-reminders", "--dry-run", "--today", "2027-03-01"])
    assert result.exit_code == 0, result.output
    assert outbox(app) == []
    assert counts(db) == before
    planned = [line for line in result.output.splitlines() if line.startswith("送信予定:")]
    # The confirmation request and the 30-day reminders to staff and vendor.
    assert len(planned) == 3
    assert any(scene.staff.email in line for line in planned)
    assert "送信予定 3 件・送信済みのため省略 0 件" in result.output

    with caplog.at_level(logging.INFO, logger="portal.reviews.reminders"):
        result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    assert result.exit_code == 0, result.output
    assert "送信 3 件・送信済みのため省略 0 件・失敗 0 件" in result.output
    assert len(outbox(app)) == 3
    # Every message sent is printed and logged with its key and recipient.
    key = f"schedule:{scene.schedule.id}:due_30:2027-03-31:{scene.staff.email}"
    assert f"送信: [期限30日前] {scene.staff.email}（{key}）" in result.output.splitlines()
    assert f"reminder sent: {key} to {scene.staff.email}" in caplog.messages
    assert len([m for m in caplog.messages if m.startswith("reminder sent: ")]) == 3
    # The request was for the confirmation opened then; the 30-day reminders are done.
    result = runner.invoke(args=["send-reminders", "--dry-run", "--today", "2027-03-01"])
    assert "送信予定 0 件・送信済みのため省略 2 件" in result.output


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_smtp_down_fails_loudly_keeps_everything_and_the_next_run_sends_it(app, db, runner, scene):
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=_closed_port(), MAIL_STARTTLS=False)
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    assert result.exit_code != 0
    assert "送信 0 件・送信済みのため省略 0 件・失敗 3 件" in result.output
    assert "次回の実行で再送します" in result.output
    db.rollback()
    rows = db.scalars(sa.select(ReminderLog)).all()
    assert len(rows) == 3
    assert {r.status for r in rows} == {"failed"} and all(r.attempts == 1 for r in rows)
    assert all(r.last_error for r in rows) and not any(r.sent_at for r in rows)
    failed_keys = {r.key for r in rows}
    # The confirmation the job opened stays open; its request is among the failures.
    assert {r.stage for r in rows} == {"request", "due_30"}

    app.config.update(MAIL_SERVER="")
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-02"])
    assert result.exit_code == 0, result.output
    assert "送信 3 件・送信済みのため省略 0 件・失敗 0 件" in result.output
    assert to(outbox(app)) == sorted([scene.vendor.email, scene.vendor.email, scene.staff.email])
    db.rollback()
    rows = db.scalars(sa.select(ReminderLog)).all()
    assert {r.key for r in rows} == failed_keys
    assert {r.status for r in rows} == {"sent"} and all(r.attempts == 2 for r in rows)

    result = runner.invoke(args=["send-reminders", "--today", "2027-03-02"])
    assert "送信 0 件・送信済みのため省略 2 件・失敗 0 件" in result.output  # and the request
    assert len(outbox(app)) == 3
    events = db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "reminders.sent")).all()
    assert [json.loads(e.details) for e in events] == [
        {"today": "2027-03-01", "sent": 0, "failed": 3},
        {"today": "2027-03-02", "sent": 3, "failed": 0},
    ]


def test_the_cli_counts_days_in_japan_and_takes_the_escalation_days_from_config(
    app, db, runner, scene, time_machine
):
    # 08:00 in Japan on 1 March is still 28 February in UTC: the 30-day reminder is due today.
    time_machine.move_to(datetime(2027, 3, 1, 8, 0, tzinfo=UTC) - timedelta(hours=9))
    result = runner.invoke(args=["send-reminders"])
    assert result.exit_code == 0, result.output
    assert "基準日 2027-03-01" in result.output
    assert any("あと30日" in m["Subject"] for m in outbox(app) if m["To"] == scene.staff.email)

    def escalated() -> list[str]:
        return sorted(m["To"] for m in outbox(app) if "エスカレーション" in m["Subject"])

    # Four days overdue: not escalated with --escalation-days 30, escalated with the
    # configured 3 (PORTAL_REMINDER_ESCALATION_DAYS).
    result = runner.invoke(
        args=["send-reminders", "--today", "2027-04-04", "--escalation-days", "30"]
    )
    assert result.exit_code == 0, result.output
    assert escalated() == []
    app.config["REMINDER_ESCALATION_DAYS"] = 3
    result = runner.invoke(args=["send-reminders", "--today", "2027-04-04"])
    assert result.exit_code == 0, result.output
    assert escalated() == sorted([scene.network.email, scene.ciso.email])


@pytest.mark.parametrize(
    "args",
    [
        ["--today", "20270301"],
        ["--today", "2027-02-30"],
        ["--escalation-days", "0"],
        ["--escalation-days", "-5"],
    ],
)
def test_the_cli_refuses_bad_options(app, runner, scene, args):
    result = runner.invoke(args=["send-reminders", *args])
    assert result.exit_code == 2
    assert outbox(app) == []


@pytest.mark.parametrize(("raw", "expected"), [("", 14), ("21", 21)])
def test_escalation_days_come_from_the_environment(tmp_path, raw, expected):
    env = {"PORTAL_ENV": "testing", "PORTAL_REMINDER_ESCALATION_DAYS": raw}
    assert load_config(tmp_path, env)["REMINDER_ESCALATION_DAYS"] == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two weeks"])
def test_bad_escalation_days_are_refused(tmp_path, raw):
    with pytest.raises(ConfigError, match="PORTAL_REMINDER_ESCALATION_DAYS"):
        load_config(tmp_path, {"PORTAL_ENV": "testing", "PORTAL_REMINDER_ESCALATION_DAYS": raw})


def test_keys_fit_the_column_and_stay_unique():
    long = "x" * 400
    key = reminders.make_key("schedule:1", "expiry_30:" + long, DUE, "a@example.jp")
    assert len(key) == reminders.KEY_LENGTH
    other = reminders.make_key("schedule:1", "expiry_30:" + long + "y", DUE, "a@example.jp")
    assert other != key
    assert reminders.make_key("schedule:1", "due_7", DUE, "a@example.jp") == (
        "schedule:1:due_7:2027-03-31:a@example.jp"
    )


# Failures of one message, overlapping runs ------------------------------------------------------


def test_a_message_that_cannot_be_rendered_is_recorded_as_failed_and_the_run_goes_on(
    app, db, runner, scene, monkeypatch, caplog
):
    real_send = mail_service.send

    def broken_for_staff(to, subject, template, **context):
        if to == scene.staff.email:
            raise RuntimeError("template mail/reminder_due.txt: 'None' has no attribute 'name'")
        return real_send(to, subject, template, **context)

    monkeypatch.setattr(mail_service, "send", broken_for_staff)
    key = f"schedule:{scene.schedule.id}:due_30:2027-03-31:{scene.staff.email}"
    with caplog.at_level(logging.INFO, logger="portal.reviews.reminders"):
        result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    # The request and the vendor's reminder went; the staff's is recorded as failed.
    assert result.exit_code == 1, result.output
    assert "送信 2 件・送信済みのため省略 0 件・失敗 1 件" in result.output
    assert to(outbox(app)) == [scene.vendor.email, scene.vendor.email]
    [logged] = [r for r in caplog.records if r.exc_info and key in r.getMessage()]
    assert logged.levelno == logging.ERROR and "RuntimeError" in logged.exc_text
    db.rollback()
    row = db.scalar(sa.select(ReminderLog).where(ReminderLog.key == key))
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error.startswith("RuntimeError: template mail/reminder_due.txt")

    # Mended, the next run sends it, and only it.
    monkeypatch.setattr(mail_service, "send", real_send)
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-02"])
    assert result.exit_code == 0, result.output
    # (the vendor's 30-day reminder was sent; the request, sent, is no longer planned)
    assert "送信 1 件・送信済みのため省略 1 件・失敗 0 件" in result.output
    assert to(outbox(app)) == sorted([scene.vendor.email, scene.vendor.email, scene.staff.email])


def test_a_message_claimed_by_another_run_is_skipped_until_the_claim_is_stale(
    app, db, runner, scene, time_machine
):
    time_machine.move_to(datetime(2027, 3, 1, 6, 15, tzinfo=UTC), tick=False)
    key = f"schedule:{scene.schedule.id}:due_30:2027-03-31:{scene.staff.email}"
    db.add(  # another run took it ten minutes ago and is sending it
        ReminderLog(
            organisation_id=scene.org.id,
            key=key,
            item=f"schedule:{scene.schedule.id}",
            stage="due_30",
            recipient=scene.staff.email,
            subject="…",
            status="sending",
            attempts=0,
            claimed_at=utcnow() - timedelta(minutes=10),
        )
    )
    db.commit()
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    assert result.exit_code == 0, result.output
    assert (
        "送信 2 件・送信済みのため省略 0 件・失敗 0 件・別の実行が送信中のため省略 1 件"
        in result.output
    )
    assert f"省略: [期限30日前] {scene.staff.email}（{key}）" in result.output
    assert scene.staff.email not in to(outbox(app))

    # Still claimed 14 minutes on; after 15 the run that claimed it is taken to have stopped.
    time_machine.move_to(datetime(2027, 3, 1, 6, 19, tzinfo=UTC), tick=False)
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    assert "送信 0 件・送信済みのため省略 1 件・失敗 0 件・別の実行が送信中のため省略 1 件" in (
        result.output
    )
    time_machine.move_to(datetime(2027, 3, 1, 6, 21, tzinfo=UTC), tick=False)
    result = runner.invoke(args=["send-reminders", "--today", "2027-03-01"])
    assert result.exit_code == 0, result.output
    assert "送信 1 件・送信済みのため省略 1 件・失敗 0 件" in result.output
    assert to(outbox(app)).count(scene.staff.email) == 1
    db.rollback()
    row = db.scalar(sa.select(ReminderLog).where(ReminderLog.key == key))
    assert (row.status, row.attempts, row.claimed_at) == ("sent", 1, None)


def test_overlapping_runs_send_every_message_once(app, db, scene, monkeypatch):
    """A second run starts while the first is sending its first message (cron and a run by
    hand; two hosts): each message is claimed by one of them and sent once."""
    day = date(2027, 3, 1)
    real_send = mail_service.send
    second: dict[str, reminders.RunReport | None] = {}

    def send_while_another_run_starts(to, subject, template, **context):
        if not second:
            second["report"] = None  # one more run, not one per message
            session = app.extensions["db_sessionmaker"]()
            try:
                second["report"] = reminders.run(session, day, dry_run=False, escalation_days=14)
            finally:
                session.close()
        return real_send(to, subject, template, **context)

    monkeypatch.setattr(mail_service, "send", send_while_another_run_starts)
    first = send(app, db, day)
    other = second["report"]
    assert other is not None
    # The first run was sending the request (planned first); the second skipped it and sent
    # the 30-day reminders, which the first then found sent.
    assert [r.stage for r in first.sent] == ["request"]
    assert [r.stage for r in other.busy] == ["request"]
    assert sorted(r.recipient for r in other.sent) == sorted(
        [scene.staff.email, scene.vendor.email]
    )
    assert {r.key for r in first.already_sent} == {r.key for r in other.sent}
    assert first.failed == other.failed == []
    assert to(outbox(app)) == sorted([scene.vendor.email, scene.vendor.email, scene.staff.email])
    db.rollback()
    rows = db.scalars(sa.select(ReminderLog)).all()
    assert len(rows) == 3 and all((r.status, r.attempts) == ("sent", 1) for r in rows)


# Mail sent from the web: durable, retried by the job, links from BASE_URL ------------------------

INCIDENT = {
    "kind": "incident",
    "occurred_on": "2026-11-13",
    "occurred_time": "22:15",
    "summary": "受託システムの管理者アカウントに不正ログインがあった。",
    "information_affected": "住民票の写しの交付申請データ（約1,200件）",
    "personal_data_affected": "y",
    "measures": "当該アカウントを停止し、ログを保全した。",
}


def _signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return browser


def _report_incident(app, scene, *, host: str = "localhost"):
    """The vendor reports an incident through the form; ``host`` is the Host header sent."""
    browser = _signed_in(app, scene.vendor)
    url = f"/vendor/reports/new?schedule={scene.schedule.id}&kind=incident"
    form = soup(browser.get(url)).select_one("main form[method=post]")
    values = {**form_fields(form), **INCIDENT}
    client = browser.client
    if host != "localhost":  # the session cookie goes wherever the request goes
        name = app.config["SESSION_COOKIE_NAME"]
        client.set_cookie(name, client.get_cookie(name).value, domain=host)
    response = client.post(
        urljoin(url, form.get("action") or url), data=values, headers={"Host": host}
    )
    assert response.status_code == 303, response.status_code
    return browser, response


def _alerts(messages) -> list:
    return [m for m in messages if m["Subject"].startswith("【至急】委託先から事故")]


def test_the_alert_link_comes_from_base_url_whatever_host_the_vendor_sent(
    app, db, scene, time_machine
):
    time_machine.move_to("2026-11-14 10:00 +09:00")
    _report_incident(app, scene, host="phish.example")
    db.rollback()
    report = db.scalar(sa.select(VendorReport))
    alerts = _alerts(outbox(app))
    assert to(alerts) == sorted([scene.staff.email, scene.network.email, scene.ciso.email])
    for message in alerts:
        assert link_in(message) == f"http://localhost/reports/{report.id}"  # BASE_URL
        assert "phish.example" not in message.get_content()


def test_an_alert_the_mail_server_refused_is_sent_by_the_next_run_once(
    app, db, runner, scene, time_machine
):
    time_machine.move_to("2026-11-14 10:00 +09:00")
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=_closed_port(), MAIL_STARTTLS=False)
    browser, response = _report_incident(app, scene)
    page = browser.get(response.headers["Location"])
    accepted, queued = flashes(page)
    assert accepted.startswith("事故（インシデント）の報告を受け付けました（受付番号 第")
    assert "通知しました" not in accepted
    assert "自動的に再送されます" in queued and "緊急連絡先" in queued
    assert outbox(app) == []
    db.rollback()
    report = db.scalar(sa.select(VendorReport))
    rows = db.scalars(sa.select(ReminderLog).where(ReminderLog.stage == "report_alert")).all()
    recipients = sorted([scene.staff.email, scene.network.email, scene.ciso.email])
    assert sorted(r.recipient for r in rows) == recipients
    assert {r.item for r in rows} == {f"report:{report.id}"}
    assert all((r.status, r.attempts, r.sent_at) == ("failed", 1, None) for r in rows)
    keys = {r.key for r in rows}

    app.config.update(MAIL_SERVER="")
    result = runner.invoke(args=["send-reminders", "--today", "2026-11-14"])
    assert result.exit_code == 0, result.output
    alerts = _alerts(outbox(app))
    assert to(alerts) == recipients
    assert all(link_in(m) == f"http://localhost/reports/{report.id}" for m in alerts)
    sent = [line for line in result.output.splitlines() if "[事故・変更の報告の通知]" in line]
    assert len(sent) == 3 and all(line.startswith("送信: ") for line in sent)
    db.rollback()
    rows = db.scalars(sa.select(ReminderLog).where(ReminderLog.stage == "report_alert")).all()
    assert {r.key for r in rows} == keys
    assert all((r.status, r.attempts) == ("sent", 2) for r in rows)

    runner.invoke(args=["send-reminders", "--today", "2026-11-15"])
    assert len(_alerts(outbox(app))) == 3


def _open_confirmation(app, scene):
    browser = _signed_in(app, scene.staff)
    url = f"/reviews/{scene.schedule.id}"
    response = browser.submit(url, selector="form[data-form=open]")
    assert response.status_code == 303
    return browser, browser.get(response.headers["Location"])


def _request_key(db, scene) -> tuple[Confirmation, str]:
    db.rollback()
    confirmation = db.scalar(sa.select(Confirmation))
    key = reminders.make_key(
        f"confirmation:{confirmation.id}", "request", confirmation.due_on, scene.vendor.email
    )
    return confirmation, key


def test_a_request_the_mail_server_refused_is_sent_by_the_next_run_once(
    app, db, runner, scene, time_machine
):
    time_machine.move_to("2026-11-24 10:00 +09:00")  # the contract is due in four months
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=_closed_port(), MAIL_STARTTLS=False)
    _browser, page = _open_confirmation(app, scene)
    opened, queued = flashes(page)
    assert "に回答を依頼しました" in opened
    assert "自動送信で改めて送信されます" in queued and "やり直す必要はありません" in queued
    assert outbox(app) == []
    confirmation, key = _request_key(db, scene)
    [row] = db.scalars(sa.select(ReminderLog)).all()
    assert (row.key, row.stage, row.recipient) == (key, "request", scene.vendor.email)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)

    app.config.update(MAIL_SERVER="")
    result = runner.invoke(args=["send-reminders", "--today", "2026-11-24"])
    assert result.exit_code == 0, result.output
    assert "送信 1 件・送信済みのため省略 0 件・失敗 0 件" in result.output
    [request] = outbox(app)
    assert request["To"] == scene.vendor.email and "定期確認のお願い" in request["Subject"]
    assert path_of(request) == f"/vendor/confirmations/{confirmation.id}"
    db.rollback()
    db.refresh(row)
    assert (row.status, row.attempts) == ("sent", 2)
    runner.invoke(args=["send-reminders", "--today", "2026-11-25"])
    assert len(outbox(app)) == 1


def test_a_request_the_web_sent_is_never_sent_again_by_the_job(
    app, db, runner, scene, time_machine
):
    time_machine.move_to("2026-11-24 10:00 +09:00")
    _browser, page = _open_confirmation(app, scene)
    assert len(flashes(page)) == 1
    [request] = outbox(app)
    assert request["To"] == scene.vendor.email
    _confirmation, key = _request_key(db, scene)
    row = db.scalar(sa.select(ReminderLog))
    assert (row.key, row.status, row.attempts) == (key, "sent", 1)
    result = runner.invoke(args=["send-reminders", "--today", "2026-11-24"])
    assert "送信 0 件・送信済みのため省略 0 件・失敗 0 件" in result.output
    assert len(outbox(app)) == 1


# The end of a contract prompts the exit (9.1(2)⑨) ------------------------------------------------

ENDS = date(2027, 3, 31)


def _contract_endings(messages) -> list:
    return [m for m in messages if m["Subject"].startswith("【契約終了】")]


def test_the_end_of_a_contract_prompts_the_exit_once_per_end_date(app, db, scene):
    scene.assessment.engagement.period_end = ENDS  # the job copies it to the schedule
    scene.schedule.due_on = scene.schedule.regular_due_on = date(2028, 3, 31)
    db.commit()
    box = Mailbox(app)

    send(app, db, ENDS - timedelta(days=31))
    assert box.new() == []
    send(app, db, ENDS - timedelta(days=30))
    [message] = box.new()
    assert message["To"] == scene.staff.email  # the department's staff, not the vendor
    assert (
        message["Subject"]
        == "【契約終了】契約期間が2027年3月31日に終了します（住民票発行窓口業務委託）"
    )
    body = message.get_content()
    assert body.startswith("市民 一郎 様")
    assert (
        "契約期間が2027年3月31日に終了します。"
        "契約終了時の確認（情報の返還・消去、消去証明書の受領等）を開始してください"
    ) in body
    assert "あと30日" in body and "9.1(2)⑨" in body and "株式会社窓口サービス" in body
    assert path_of(message) == f"/reviews/{scene.schedule.id}/exit"

    # Once per end date: not again before or after the end.
    for day in (ENDS - timedelta(days=29), ENDS, ENDS + timedelta(days=10)):
        send(app, db, day)
        assert _contract_endings(box.new()) == []

    # The contract was extended to September, and has ended since without an exit begun.
    db.rollback()
    scene.assessment.engagement.period_end = date(2027, 9, 30)
    db.commit()
    send(app, db, date(2027, 8, 30))
    assert _contract_endings(box.new()) == []  # 31 days ahead
    send(app, db, date(2027, 10, 5))
    [ended] = _contract_endings(box.new())
    assert ended["To"] == scene.staff.email
    assert "2027年9月30日に終了しました" in ended["Subject"]
    assert "契約期間が2027年9月30日に終了しました。" in ended.get_content()
    assert "5日経過" in ended.get_content()
    send(app, db, date(2027, 10, 12))
    assert _contract_endings(box.new()) == []

    db.rollback()
    rows = db.scalars(sa.select(ReminderLog).where(ReminderLog.stage == "contract_ending")).all()
    assert sorted(r.key for r in rows) == [
        f"schedule:{scene.schedule.id}:contract_ending:{day}:{scene.staff.email}"
        for day in ("2027-03-31", "2027-09-30")
    ]
    assert reminders.STAGE_LABELS["contract_ending"] == "契約期間の終了"


def test_only_contracts_still_confirmed_with_an_end_are_prompted(app, db, make, scene):
    """Not a contract whose exit has begun or ended, nor one without an end date, nor an
    external service (it ends through its register entry, 9.2(7))."""
    scene.assessment.engagement.period_end = ENDS
    db.commit()
    subjects = {}
    for status in ("ending", "ended"):
        engagement = make.engagement(
            scene.org, scene.department, scene.staff, title=status, period_end=ENDS
        )
        assessment = make.assessment(engagement, scene.company, scene.staff, status="decided")
        schedule = _schedule(
            db,
            scene.org,
            scene.department,
            scene.company,
            {"assessment_id": assessment.id},
            title=status,
        )
        schedule.status, schedule.ending_on = status, ENDS
        subjects[status] = schedule
    engagement = make.engagement(scene.org, scene.department, scene.staff, title="期間の定めなし")
    assessment = make.assessment(engagement, scene.company, scene.staff, status="decided")
    subjects["no end"] = _schedule(
        db,
        scene.org,
        scene.department,
        scene.company,
        {"assessment_id": assessment.id},
        title="期間の定めなし",
    )
    application = _application(db, scene, "窓口予約クラウド", scene.department)
    service = _schedule(
        db,
        scene.org,
        scene.department,
        scene.company,
        {"application_id": application.id},
        title="窓口予約クラウド",
    )
    service.ending_on = ENDS
    subjects["service"] = service
    db.commit()

    with app.app_context():
        schedules.sync(db, ENDS - timedelta(days=3))
        planned = reminders.plan(db, ENDS - timedelta(days=3), escalation_days=14)
    prompted = {r.item for r in planned if r.stage == "contract_ending"}
    assert prompted == {f"schedule:{scene.schedule.id}"}
    assert db.get(ReviewSchedule, subjects["no end"].id).ending_on is None
    assert all(
        db.get(ReviewSchedule, s.id).ending_on == ENDS for k, s in subjects.items() if k != "no end"
    )


# The plan's queries do not grow with the schedules ------------------------------------------------

TODAY = date(2027, 3, 1)


def _confirmation(schedule, number, status, due, sections=()):
    return Confirmation(
        organisation_id=schedule.organisation_id,
        schedule_id=schedule.id,
        number=number,
        reason="scheduled",
        questionnaire_key="confirmation",
        questionnaire_version="1",
        period_from=date(2026, 4, 1),
        period_to=TODAY,
        due_on=due,
        status=status,
        completed_on=date(2026, 10, 1) if status == "completed" else None,
        sections=[
            ConfirmationSection(section_key=key, changed=True, values=json.dumps(values))
            for key, values in sections
        ],
    )


def _many(db, make, scene, start: int, stop: int) -> None:
    """Schedules of both kinds in two departments, each with something to remind: escalated,
    due in 7 days, overdue, due in 30 days in turn; certificates expiring (a contractor's as
    confirmed); a confirmation waiting for the vendor; contracts ending; services with their
    外部サービス管理者. The first three already reach every kind of recipient."""
    for n in range(start, stop):
        department = scene.department if n % 2 else scene.other_department
        due = TODAY + timedelta(days=(-20, 7, -1, 30)[n % 4])
        if n % 3:
            engagement = make.engagement(
                scene.org,
                department,
                scene.staff,
                title=f"委託{n:02d}",
                period_end=TODAY + timedelta(days=10 + n),
            )
            assessment = make.assessment(engagement, scene.company, scene.staff, status="decided")
            certificate = {"kind": "iso27001", "number": f"IS {n}", "expires": "2027-01-31"}
            store.save(db, assessment, "certifications.others", [certificate], scene.staff)
            schedule = _schedule(
                db,
                scene.org,
                department,
                scene.company,
                {"assessment_id": assessment.id},
                title=engagement.title,
                due=due,
            )
            renewed = {**certificate, "expires": "2027-03-31"}
            db.add_all(
                [
                    _confirmation(
                        schedule,
                        1,
                        "completed",
                        date(2026, 10, 1),
                        [("certifications", {"certifications.others": [renewed]})],
                    ),
                    _confirmation(schedule, 2, "open", due),
                ]
            )
        else:
            service = ExternalService(
                organisation_id=scene.org.id,
                vendor_company_id=scene.company.id,
                name=f"サービス{n:02d}",
            )
            certificate = {"kind": "iso27001", "label": "ISO/IEC 27001", "number": f"C {n}"}
            service.set_rows("certificates", [{**certificate, "expires": "2027-06-29"}])
            service.refresh_derived()
            db.add(service)
            db.flush()
            application = _application(db, scene, service.name, department, service)
            manager = make.user(
                scene.org, roles={Role.SERVICE_MANAGER}, email=f"kanri{n}@city.example.jp"
            )
            db.add(
                ManagerAssignment(
                    application_id=application.id,
                    user_id=manager.id,
                    appointed_on=date(2026, 4, 1),
                    appointed_by_id=scene.ciso.id,
                )
            )
            _schedule(
                db,
                scene.org,
                department,
                scene.company,
                {"application_id": application.id},
                title=service.name,
                due=due,
            )
        db.commit()


def test_the_daily_jobs_queries_do_not_grow_with_the_schedules(app, db, make, scene):
    """``schedules.sync`` and ``reminders.plan`` load what they read with the schedules and the
    certificates of all in a fixed number of queries (the recipients: once per department,
    vendor company and organisation)."""
    scene.schedule.status = "ended"  # only the schedules made here
    db.commit()

    def measure() -> tuple[int, int, list[reminders.Reminder]]:
        with app.app_context():
            schedules.sync(db, TODAY)  # the expiry triggers: written once, then nothing
            db.commit()
            with QueryCounter(app) as synced:
                schedules.sync(db, TODAY)
            db.rollback()
            with QueryCounter(app) as planned:
                found = reminders.plan(db, TODAY, escalation_days=14)
            db.rollback()
        return synced.count, planned.count, found

    _many(db, make, scene, 0, 3)
    *three, planned_three = measure()
    _many(db, make, scene, 3, 12)
    *twelve, planned_twelve = measure()
    assert twelve == three, (three, twelve)

    every_kind = {"escalation", "overdue", "due_7", "expiry_30", "expiry_120", "contract_ending"}
    assert {r.stage for r in planned_three} >= every_kind

    assert {r.stage for r in planned_twelve} >= every_kind | {"due_30"}
    assert len(planned_twelve) > len(planned_three)
    vendor_mails = [r for r in planned_twelve if r.recipient == scene.vendor.email]
    assert {r.item for r in vendor_mails if r.stage == "due_7"} == {
        f"confirmation:{c.id}"
        for c in db.scalars(sa.select(Confirmation).where(Confirmation.status == "open"))
        if c.due_on == TODAY + timedelta(days=7)
    }
    # The managers of the services are reminded with the department's staff.
    assert {r.recipient for r in planned_twelve} >= {
        f"kanri{n}@city.example.jp" for n in range(0, 12, 3)
    }
