"""Reminders and escalation, sent by ``flask --app wsgi send-reminders`` (run daily by cron;
対策基準 9.1(3), 9.2(6), 10.1(4)). What is due and to whom: ``reminder_plan``.

A run brings the schedules up to date (``schedules.sync``: missing schedules, expiry
triggers), opens the confirmations coming due (``confirmations.open_due``) and queues the
request to answer each, then sends every planned message whose key is not yet marked sent.

Idempotent and loss-free: each message is recorded in ``ReminderLog`` as soon as it is sent
(``sent``, never sent again) or has failed (``failed``, with attempts and the last error; the
next run tries it again), each in a short transaction of its own, so a crash or an SMTP outage
loses nothing and repeats nothing. A confirmation request is queued in the transaction that
opens the confirmation. ``run`` commits; a dry run rolls everything back and sends nothing."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import service as audit
from portal.db import reset_write_intent, set_write_intent, utcnow
from portal.mail import service as mail
from portal.reviews import confirmations, schedules
from portal.reviews.models import ReminderLog
from portal.reviews.reminder_plan import (
    KEY_LENGTH,
    STAGE_LABELS,
    People,
    Reminder,
    due_stage,
    expiry_stage,
    make_key,
    plan,
    request_reminders,
)

__all__ = [
    "KEY_LENGTH",
    "STAGE_LABELS",
    "Failure",
    "Reminder",
    "RunReport",
    "due_stage",
    "expiry_stage",
    "make_key",
    "plan",
    "run",
]

log = logging.getLogger(__name__)

QUEUED = "未送信（送信待ち）"


@dataclass
class Failure:
    reminder: Reminder
    error: str


@dataclass
class RunReport:
    planned: list[Reminder] = field(default_factory=list)
    sent: list[Reminder] = field(default_factory=list)
    already_sent: list[Reminder] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    dry_run: bool = False

    @property
    def to_send(self) -> list[Reminder]:
        """Planned and not yet sent (what a dry run would send)."""
        done = {r.key for r in self.already_sent}
        return [r for r in self.planned if r.key not in done]


@contextmanager
def _writing(session: Session) -> Iterator[None]:
    """A transaction of its own that writes (BEGIN IMMEDIATE on SQLite), committed at the end;
    whatever read snapshot the session held (rendering a message) is ended first."""
    session.commit()
    token = set_write_intent(True)
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        reset_write_intent(token)


def run(session: Session, today: date, *, dry_run: bool, escalation_days: int) -> RunReport:
    """Bring the schedules up to date, open the confirmations now due, then send what ``plan``
    finds and has not been sent. A dry run writes and sends nothing; its report lists the plan
    (``to_send`` and ``already_sent``)."""
    report = RunReport(dry_run=dry_run)
    with _writing(session):
        schedules.sync(session, today)
        people = People(session)
        for confirmation in confirmations.open_due(session, today):
            for reminder in request_reminders(confirmation, people):
                _queue(session, reminder)
        session.flush()
        report.planned = plan(session, today, escalation_days=escalation_days)
        sent_keys = _sent_keys(session, [r.key for r in report.planned])
        report.already_sent = [r for r in report.planned if r.key in sent_keys]
        if dry_run:
            session.rollback()
    if dry_run:
        return report
    for reminder in report.to_send:
        error = _deliver(reminder)
        with _writing(session):
            _record_attempt(session, reminder, error)
        if error is None:
            report.sent.append(reminder)
            log.info("reminder sent: %s to %s", reminder.key, reminder.recipient)
        else:
            report.failed.append(Failure(reminder, error))
            log.warning("reminder failed: %s to %s: %s", reminder.key, reminder.recipient, error)
    with _writing(session):
        _audit(session, report, today)
    return report


def _sent_keys(session: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        found.update(
            session.scalars(
                sa.select(ReminderLog.key).where(
                    ReminderLog.key.in_(keys[start : start + 500]), ReminderLog.status == "sent"
                )
            )
        )
    return found


def _queue(session: Session, reminder: Reminder) -> None:
    """Record a request as not yet sent, in the transaction that opened the confirmation: if
    the run stops before sending it, the next run finds it (``reminder_plan.pending_requests``)."""
    if session.scalar(sa.select(ReminderLog.id).where(ReminderLog.key == reminder.key)) is None:
        session.add(_log_row(reminder, attempts=0, error=QUEUED))


def _log_row(reminder: Reminder, *, attempts: int, error: str) -> ReminderLog:
    return ReminderLog(
        organisation_id=reminder.organisation_id,
        key=reminder.key,
        item=reminder.item[:100],
        stage=reminder.stage,
        recipient=reminder.recipient,
        subject=reminder.subject,
        status="failed",
        attempts=attempts,
        last_error=error,
    )


def _deliver(reminder: Reminder) -> str | None:
    """Send one message; the error in words when the mail server or the outbox failed."""
    try:
        mail.send(reminder.recipient, reminder.subject, reminder.template, **reminder.context)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:2000]
    return None


def _record_attempt(session: Session, reminder: Reminder, error: str | None) -> None:
    row = session.scalar(sa.select(ReminderLog).where(ReminderLog.key == reminder.key))
    if row is None:
        row = _log_row(reminder, attempts=0, error="")
        session.add(row)
    row.attempts += 1
    row.subject = reminder.subject
    if error is None:
        row.status, row.sent_at, row.last_error = "sent", utcnow(), ""
    else:
        row.status, row.last_error = "failed", error
    session.flush()


def _audit(session: Session, report: RunReport, today: date) -> None:
    """One audit event per organisation that was sent (or failed to be sent) anything."""
    counts: dict[int, dict[str, int]] = {}
    for reminder, outcome in [(r, "sent") for r in report.sent] + [
        (f.reminder, "failed") for f in report.failed
    ]:
        counts.setdefault(reminder.organisation_id, {"sent": 0, "failed": 0})[outcome] += 1
    for organisation_id, numbers in sorted(counts.items()):
        audit.record(
            session,
            "reminders.sent",
            actor_label="定期処理",
            organisation_id=organisation_id,
            details={"today": today.isoformat(), **numbers},
        )
