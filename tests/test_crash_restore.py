"""Crash and restore (SECURITY.md "Reliability"): gunicorn's master is killed with SIGKILL while
vendors autosave; its orphaned workers are killed by process group; gunicorn is started again.
Every save the server acknowledged is in the database with its value, the last one of each
question is the answer, the database and its audit chain are sound, every stored file is whole,
and a backup taken afterwards restores into a fresh location with the same rows and files.

The scenario runs once for the module (``tests/crash.py``, also ``python -m tests.crash``) on the
test database: SQLite by default, PostgreSQL under ``TEST_DATABASE_URL``.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from portal import create_app
from tests import crash
from tests.helpers import empty_database

CLIENTS = 4


@pytest.fixture(scope="module")
def crashed(database_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("crash")
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "EVIDENCE_DIR": str(work / "evidence"),
            "MAIL_OUTBOX": str(work / "outbox"),
            "BASE_URL": "http://localhost",
            **crash.CHEAP_ARGON2,
        }
    )
    try:
        scene = crash.arrange(app, CLIENTS)
        outcome = crash.run(app, scene, work, warm_up=4, after=4)
        yield SimpleNamespace(
            app=app,
            scene=scene,
            outcome=outcome,
            now=crash.stored(app, scene.assessment_id),
            work=work,
            sqlite=make_url(database_url).get_backend_name() == "sqlite",
        )
    finally:
        empty_database(app)  # as the app fixture leaves the database for the next test


def by_phase(items, *phases) -> list:
    return [item for item in items if item.phase in phases]


# ---------------------------------------------------------------------------------------------
# The run itself
# ---------------------------------------------------------------------------------------------


def test_every_client_saved_before_the_kill_lost_saves_while_down_and_saved_after_restart(
    crashed,
):
    outcome = crashed.outcome
    assert len(outcome.clients) == CLIENTS
    for client in outcome.clients:
        assert by_phase(client.acks, crash.BEFORE_KILL), client.describe()
        assert by_phase(client.acks, crash.RESTARTED), client.describe()
        # While no server ran, every client kept posting and was refused a connection (a client
        # busy attaching a file in that window was refused that upload instead).
        tried_while_down = [*client.lost, *client.uploads_lost]
        assert any(a.phase == crash.DOWN and a.connection_error for a in tried_while_down), (
            client.describe()
        )
    # Each client has questions of its own: a save is refused as stale (409) only when an
    # earlier save of the same question went through although its reply was lost; the client
    # then reloads its page, as the message asks (any other refusal stops the run).
    stored_values = {value for value, _by in crashed.now.revisions.values()}
    went_through = {a.question for a in outcome.cut_off() if a.value in stored_values}
    for attempt in outcome.refused:
        assert attempt.outcome.startswith("409 "), attempt
        assert attempt.question in went_through, attempt


def test_the_master_died_its_orphans_kept_the_port_until_their_group_was_killed(crashed):
    outcome = crashed.outcome
    assert len(outcome.workers_before_kill) == 2
    # SIGKILL reaches the master alone: its workers live on, orphaned (a sync worker looks for
    # its parent only when no connection is waiting, and the clients keep it busy).
    assert outcome.orphans and set(outcome.orphans) <= set(outcome.workers_before_kill)
    if outcome.orphans_after_probe:
        # An orphan still holds the listening socket: a new gunicorn could not bind the port.
        assert outcome.port_free_while_orphaned is False
    # Killed by process group, none is left and the port is free for the restart.
    assert crash.group_members(outcome.pgid) == []
    assert not any(crash.alive(pid) for pid in [outcome.pgid, *outcome.orphans])
    assert outcome.port_free_after_kill is True


# ---------------------------------------------------------------------------------------------
# What the database holds
# ---------------------------------------------------------------------------------------------


def test_every_acknowledged_save_is_stored_with_the_value_acknowledged(crashed):
    outcome, now = crashed.outcome, crashed.now
    users = {client.name: client.user_id for client in outcome.clients}
    missing = [
        ack
        for ack in outcome.acks
        if now.revisions.get((ack.question, ack.revision)) != (ack.value, users[ack.client])
    ]
    assert missing == []
    assert len(outcome.acks) >= CLIENTS * 8


def test_each_answer_is_the_last_value_acknowledged_for_its_question(crashed):
    outcome, now = crashed.outcome, crashed.now
    last = outcome.last_acked()
    asked = {key for client in outcome.clients for key in client.questions}
    assert set(last) == asked
    assert now.answers == {key: (ack.value, ack.revision) for key, ack in last.items()}


def test_only_acknowledged_saves_and_saves_cut_off_by_the_kill_are_stored(crashed):
    """A save whose reply was lost may have been committed only if it reached a server before
    every process was dead; nothing sent while no server ran (connection refused) is there."""
    outcome, now = crashed.outcome, crashed.now
    stored_values = {value for value, _by in now.revisions.values()}
    acked = {ack.value for ack in outcome.acks}
    assert stored_values - acked <= {a.value for a in outcome.cut_off()}
    sent_while_down = {a.value for a in outcome.sent_while_down()}
    assert sent_while_down
    assert sent_while_down & stored_values == set()


def test_each_revision_has_its_audit_event_and_the_audit_chain_verifies(crashed):
    now = crashed.now
    revisions_per_question: dict[str, int] = {}
    for key, _revision in now.revisions:
        revisions_per_question[key] = revisions_per_question.get(key, 0) + 1
    # The answer, its revision and the audit event are one transaction: all or none.
    assert now.saved_events == revisions_per_question
    assert now.chain_ok, now.chain_reason
    assert now.chain_checked >= len(now.revisions)


def test_sqlite_integrity_check_passes_after_the_crash_and_after_the_restart(crashed):
    if not crashed.sqlite:
        pytest.skip("PRAGMA integrity_check is SQLite's; PostgreSQL is checked by the others")
    assert crashed.outcome.integrity_after_crash == ["ok"]
    assert crash.sqlite_integrity(crashed.app.config["DATABASE_URL"]) == ["ok"]


def test_acknowledged_uploads_are_stored_whole_and_every_file_row_has_its_file(crashed):
    outcome, now = crashed.outcome, crashed.now
    assert outcome.uploaded, "the uploading client had no upload acknowledged"
    rows = {row.sha256: row for row in now.evidence}
    for upload in outcome.uploaded:
        assert upload.sha256 in rows, upload
        assert rows[upload.sha256].original_name == upload.name
    # No row without its file, and no row the clients did not send.
    for row in now.evidence:
        path = now.files_by_name.get(row.stored_name)
        assert path is not None, f"file of {row.original_name} missing"
        assert crash.sha256_of(path) == row.sha256
    sent = {u.sha256 for u in outcome.uploaded} | {a.value for a in outcome.uploads_lost}
    assert set(rows) <= sent


# ---------------------------------------------------------------------------------------------
# Backup after the crash, restored into a fresh location
# ---------------------------------------------------------------------------------------------


def test_a_backup_after_the_crash_restores_database_and_evidence_into_a_fresh_location(crashed):
    if not crashed.sqlite and shutil.which("pg_dump") is None:
        pytest.skip("PostgreSQL client tools (pg_dump, pg_restore) are not installed")
    trip = crash.backup_round_trip(crashed.app, crashed.work)

    assert trip.archive.name.startswith("portal-backup-")
    assert trip.table_differences() == []
    # Not an empty comparison: the answers and files of the run are there.
    answers = trip.rows_restored["answer"]
    assert len(answers) == len(crashed.now.answers)
    assert len(trip.rows_restored["answer_revision"]) == len(crashed.now.revisions)
    assert len(trip.rows_restored["evidence_file"]) == len(crashed.now.evidence) > 0
    # The evidence store: the same files with the same SHA-256, each row's file intact.
    assert trip.files_restored == trip.files_before
    assert len(trip.files_restored) >= len(crashed.now.evidence)
    assert trip.restored_unverified == []
    # The restore is recorded in the restored audit trail, whose chain still verifies.
    assert trip.events_restored[-1] == "backup.restored"
    assert trip.restored_chain_ok
