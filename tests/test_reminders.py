"""``send-reminders``: due-soon, overdue (weekly), escalation to the ネットワーク管理者 and CISO,
certificate and ISMAP expiry warnings, findings; idempotent, ``--dry-run``, and nothing lost when
the mail server is down (対策基準 9.1(3), 9.2(6), 10.1(4))."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.approvals.models import ExternalService, ManagerAssignment, UseApplication
from portal.assessments import store
from portal.audit.models import AuditEvent
from portal.config import ConfigError, load_config
from portal.permissions import Role
from portal.reviews import confirmations, reminders
from portal.reviews.models import Confirmation, Finding, ReminderLog, ReviewSchedule
from tests.helpers import link_in, outbox

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
