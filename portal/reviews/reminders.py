"""Reminders and escalation, sent by ``flask --app wsgi send-reminders`` (run daily by cron;
対策基準 9.1(3), 9.2(6), 10.1(4)). What is due and to whom: ``reminder_plan``.

A run brings the schedules up to date (``schedules.sync``: missing schedules, expiry
triggers), opens the confirmations coming due (``confirmations.open_due``) and queues the
request to answer each, then sends every planned message whose key is not yet marked sent.

Idempotent and loss-free: each message is recorded in ``ReminderLog`` as soon as it is sent
(``sent``, never sent again) or has failed (``failed``, with attempts and the last error; the
next run tries it again), each in a short transaction of its own, so a crash or an SMTP outage
loses nothing and repeats nothing. Before sending, a message is claimed (``sending``, in a
transaction of its own): a run that overlaps another (cron started twice, a slow run) or a web
request sending the same message skips it, unless the claim is older than ``CLAIM_TIMEOUT``
(the one who claimed it stopped). A message that cannot be rendered or sent — whatever the
error — is logged with its key and recorded as failed; the run goes on with the next.

Messages from the web are queued the same way (``queue``) in the transaction that opens the
confirmation (the request to answer it) or takes a vendor's report (the alert to staff), then
sent at once after the commit (``send_queued``); what the mail server refused, the next run
sends (``reminder_plan.pending_requests`` / ``pending_alerts``). The job queues the requests of
the confirmations it opens in the same way. ``run`` commits; a dry run rolls everything back
and sends nothing."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

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
    "CLAIM_TIMEOUT",
    "KEY_LENGTH",
    "STAGE_LABELS",
    "Failure",
    "Reminder",
    "RunReport",
    "due_stage",
    "expiry_stage",
    "make_key",
    "plan",
    "queue",
    "run",
    "send_queued",
]

log = logging.getLogger(__name__)

QUEUED = "未送信（送信待ち）"
# A claim older than this is taken to belong to a run that stopped; the message is sent again.
# Far longer than one message takes (the SMTP timeout is 30 seconds).
CLAIM_TIMEOUT = timedelta(minutes=15)
CLAIMED, SENT, BUSY = "claimed", "sent", "busy"


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
    busy: list[Reminder] = field(default_factory=list)  # being sent by another run
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
            queue(session, request_reminders(confirmation, people))
        report.planned = plan(session, today, escalation_days=escalation_days)
        sent_keys = _sent_keys(session, [r.key for r in report.planned])
        report.already_sent = [r for r in report.planned if r.key in sent_keys]
        if dry_run:
            session.rollback()
    if dry_run:
        return report
    for reminder in report.to_send:
        _send_one(session, reminder, report)
    with _writing(session):
        _audit(session, report, today)
    return report


def queue(session: Session, messages: Iterable[Reminder]) -> None:
    """Record ``messages`` as not yet sent (``failed`` with no attempt), in the caller's
    transaction — the one that opens the confirmation or takes the report — so that if they
    are never sent after the commit, the next run finds them. A key already recorded is left
    as it is. Flushes; the caller commits."""
    for reminder in messages:
        if session.scalar(sa.select(ReminderLog.id).where(ReminderLog.key == reminder.key)) is None:
            session.add(_log_row(reminder, attempts=0, error=QUEUED))
    session.flush()


def send_queued(session: Session, messages: Iterable[Reminder]) -> RunReport:
    """Send messages ``queue`` recorded and the caller committed (the web, right after the
    commit): each claimed, sent and recorded like a run's. Those not sent stay for the next
    run. Commits its own short transactions; the caller's work must be committed first."""
    report = RunReport(planned=list(messages))
    for reminder in report.planned:
        _send_one(session, reminder, report)
    return report


def _send_one(session: Session, reminder: Reminder, report: RunReport) -> None:
    with _writing(session):
        claim = _claim(session, reminder, utcnow())
    if claim == SENT:
        report.already_sent.append(reminder)
        return
    if claim == BUSY:
        report.busy.append(reminder)
        log.info("reminder skipped, being sent by another run: %s", reminder.key)
        return
    error = _deliver(session, reminder)
    with _writing(session):
        _record_attempt(session, reminder, error)
    if error is None:
        report.sent.append(reminder)
        log.info("reminder sent: %s to %s", reminder.key, reminder.recipient)
    else:
        report.failed.append(Failure(reminder, error))
        log.warning("reminder failed: %s to %s: %s", reminder.key, reminder.recipient, error)


def _claim(session: Session, reminder: Reminder, now: datetime) -> str:
    """Take the message for this run: CLAIMED (send it), SENT (someone sent it meanwhile) or
    BUSY (another run claimed it less than ``CLAIM_TIMEOUT`` ago). One conditional UPDATE, or
    an INSERT the unique key lets only one run make, so two runs never both claim it."""
    stale = now - CLAIM_TIMEOUT
    taken = session.execute(
        sa.update(ReminderLog)
        .where(
            ReminderLog.key == reminder.key,
            sa.or_(
                ReminderLog.status == "failed",
                sa.and_(
                    ReminderLog.status == "sending",
                    sa.or_(ReminderLog.claimed_at.is_(None), ReminderLog.claimed_at < stale),
                ),
            ),
        )
        .values(status="sending", claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount == 1:
        return CLAIMED
    status = session.scalar(sa.select(ReminderLog.status).where(ReminderLog.key == reminder.key))
    if status is not None:
        return SENT if status == "sent" else BUSY
    row = _log_row(reminder, attempts=0, error="")
    row.status, row.claimed_at = "sending", now
    try:
        with session.begin_nested():
            session.add(row)
    except sa.exc.IntegrityError:  # another run recorded it first
        return BUSY
    return CLAIMED


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


def _deliver(session: Session, reminder: Reminder) -> str | None:
    """Render and send one message; the error in words when it failed — the mail server, the
    outbox, or anything else (a template error): one bad message never stops the others."""
    try:
        mail.send(reminder.recipient, reminder.subject, reminder.template, **reminder.context)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:2000]
    except Exception as exc:
        log.exception("reminder %s to %s could not be sent", reminder.key, reminder.recipient)
        session.rollback()  # whatever the error left of the read transaction
        return f"{type(exc).__name__}: {exc}"[:2000]
    return None


def _record_attempt(session: Session, reminder: Reminder, error: str | None) -> None:
    row = session.scalar(
        sa.select(ReminderLog)
        .where(ReminderLog.key == reminder.key)
        .execution_options(populate_existing=True)
    )
    if row is None:
        row = _log_row(reminder, attempts=0, error="")
        session.add(row)
    row.attempts += 1
    row.subject = reminder.subject
    row.claimed_at = None
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
