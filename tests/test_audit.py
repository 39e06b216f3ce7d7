"""The audit trail (SECURITY.md "Audit trail"; 対策基準 7.1(4)(6), 8.4(3), 10.1(6)).

Events carry UTC time, actor, organisation, object, IP and request ID; the chain of row hashes
detects any edited or deleted row; old events are purged under the retention policy without
breaking the chain; auditors browse and export their own organisation's events only.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
import time_machine

from portal.audit import service as audit
from portal.audit.models import AuditChain, AuditEvent
from portal.db import reset_write_intent, set_write_intent
from portal.permissions import Role
from tests.helpers import Browser, soup, text_of

JST = timezone(timedelta(hours=9))
WRONG_PASSWORD = "まちがったパスワードです 0000"
HEX_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


# Helpers ---------------------------------------------------------------------------------------


def events(db, action: str | None = None) -> list[AuditEvent]:
    """All events in chain order, read in a fresh transaction (requests wrote them elsewhere)."""
    db.rollback()
    query = sa.select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.scalars(query))


def only(db, action: str) -> AuditEvent:
    rows = events(db, action)
    assert len(rows) == 1, f"expected one {action} event, got {[r.seq for r in rows]}"
    return rows[0]


def client_at(browser, ip: str, request_id: str | None = None) -> None:
    """Every following request comes from ``ip`` and carries ``X-Request-ID: request_id``.

    The portal keeps an incoming request ID only behind a trusted reverse proxy (which sets it),
    so a given ``request_id`` also turns ``TRUSTED_PROXIES`` on (set after ``create_app``, so no
    ProxyFix is installed and ``ip`` stays the remote address).
    """
    browser.client.environ_base["REMOTE_ADDR"] = ip
    if request_id is None:
        browser.client.environ_base.pop("HTTP_X_REQUEST_ID", None)
    else:
        browser.client.application.config["TRUSTED_PROXIES"] = 1
        browser.client.environ_base["HTTP_X_REQUEST_ID"] = request_id


def assert_event(event, *, actor, organisation_id, object_type, object_id, ip, request_id):
    assert event.actor_user_id == (actor.id if actor is not None else None)
    assert event.actor_label == (actor.email if actor is not None else event.actor_label)
    assert event.organisation_id == organisation_id
    assert event.object_type == object_type
    assert event.object_id == str(object_id)
    assert event.ip == ip
    assert event.request_id == request_id
    assert event.occurred_at.utcoffset() == timedelta(0)


def verify(db) -> audit.VerifyResult:
    db.rollback()
    return audit.verify(db)


def audit_rows(page) -> list[dict[str, str]]:
    """The audit table as a list of {column header: cell text}, read by meaning."""
    table = soup(page).select_one("table[data-table=audit-events]")
    assert table is not None, "no audit table"
    headers = [th.get_text(strip=True) for th in table.select("thead th")]
    return [
        dict(zip(headers, (td.get_text(" ", strip=True) for td in tr.select("td")), strict=True))
        for tr in table.select("tbody tr[data-seq]")
    ]


def read_csv(response) -> list[list[str]]:
    body = response.get_data()
    assert body.startswith(b"\xef\xbb\xbf"), "the CSV must start with a UTF-8 BOM for Excel"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def record_events(db, organisation_id: int | None, count: int, **kwargs) -> list[AuditEvent]:
    rows = [
        audit.record(
            db,
            kwargs.get("action", "user.updated"),
            actor_label=f"actor{i}@example.jp",
            organisation_id=organisation_id,
            object_type="user_account",
            object_id=i,
            details={"n": i},
            at=kwargs.get("at"),
        )
        for i in range(count)
    ]
    db.commit()
    return rows


# Security events recorded through the web UI ---------------------------------------------------


def test_login_is_recorded_with_utc_time_actor_organisation_object_ip_and_request_id(
    browser, make, org, db
):
    user = make.user(org, roles={Role.STAFF})
    client_at(browser, "203.0.113.7", "login-request-0001")

    # 09:15:30 in Japan is 00:15:30 UTC: the trail stores UTC.
    with time_machine.travel(datetime(2026, 4, 1, 9, 15, 30, tzinfo=JST), tick=False):
        response = browser.login(user)

    assert response.status_code == 302
    event = only(db, "auth.login")
    assert event.occurred_at == datetime(2026, 4, 1, 0, 15, 30, tzinfo=UTC)
    assert_event(
        event,
        actor=user,
        organisation_id=org.id,
        object_type="user_account",
        object_id=user.id,
        ip="203.0.113.7",
        request_id="login-request-0001",
    )
    assert json.loads(event.details) == {"mfa": "totp"}


def test_failed_logins_and_the_lockout_are_recorded(browser, make, org, db):
    user = make.user(org)
    client_at(browser, "198.51.100.9", "failed-login-0001")

    for _ in range(5):
        response = browser.submit("/auth/login", {"email": user.email, "password": WRONG_PASSWORD})
        assert response.status_code == 200

    failures = events(db, "auth.login_failed")
    assert len(failures) == 5
    for event in failures:
        # Nobody is authenticated at a failed login: no actor; the account is the object.
        assert_event(
            event,
            actor=None,
            organisation_id=org.id,
            object_type="user_account",
            object_id=user.id,
            ip="198.51.100.9",
            request_id="failed-login-0001",
        )
        assert json.loads(event.details) == {"step": "password", "email": user.email}
        assert event.actor_label == ""
    locked = only(db, "auth.locked")
    assert_event(
        locked,
        actor=None,
        organisation_id=org.id,
        object_type="user_account",
        object_id=user.id,
        ip="198.51.100.9",
        request_id="failed-login-0001",
    )
    assert locked.seq == failures[-1].seq + 1  # the lock belongs to the fifth failure
    assert datetime.fromisoformat(json.loads(locked.details)["until"]) > locked.occurred_at


def test_a_failed_login_for_an_unknown_address_records_what_was_typed(browser, db):
    client_at(browser, "192.0.2.44", "unknown-user-0001")

    browser.submit("/auth/login", {"email": " Nobody@Example.JP ", "password": WRONG_PASSWORD})

    event = only(db, "auth.login_failed")
    assert event.actor_user_id is None
    assert json.loads(event.details)["email"] == "nobody@example.jp"
    assert event.organisation_id is None
    assert (event.ip, event.request_id) == ("192.0.2.44", "unknown-user-0001")


def test_logout_is_recorded(browser, make, org, db):
    user = make.user(org)
    browser.login(user)
    client_at(browser, "203.0.113.8", "logout-request-01")

    response = browser.logout()

    assert response.status_code == 302
    assert_event(
        only(db, "auth.logout"),
        actor=user,
        organisation_id=org.id,
        object_type="user_account",
        object_id=user.id,
        ip="203.0.113.8",
        request_id="logout-request-01",
    )


@pytest.fixture
def admin_browser(browser, make, org):
    admin = make.user(org, roles={Role.ADMIN}, email="admin@example.jp")
    browser.login(admin)
    browser.admin = admin
    return browser


def test_user_creation_and_its_invitation_are_recorded(admin_browser, make, org, db):
    department = make.department(org, "情報政策課")
    client_at(admin_browser, "203.0.113.20", "create-user-0001")

    response = admin_browser.submit(
        "/admin/users/new",
        {
            "name": "新任 花子",
            "email": "Hanako@Example.jp",
            "roles": ["staff", "approver"],
            "departments": [str(department.id)],
        },
        selector="main form",
    )

    assert response.status_code == 302
    created = only(db, "user.created")
    new_id = int(created.object_id)
    for event in (created, only(db, "user.invited")):
        assert_event(
            event,
            actor=admin_browser.admin,
            organisation_id=org.id,
            object_type="user_account",
            object_id=new_id,
            ip="203.0.113.20",
            request_id="create-user-0001",
        )
    assert json.loads(created.details) == {
        "email": "hanako@example.jp",
        "roles": ["approver", "staff"],
        "departments": [department.id],
    }


def test_role_change_is_recorded(admin_browser, make, org, db):
    target = make.user(org, roles={Role.STAFF})
    client_at(admin_browser, "203.0.113.21", "role-change-0001")

    response = admin_browser.submit(
        f"/admin/users/{target.id}", {"roles": ["staff", "auditor"]}, selector="main form"
    )

    assert response.status_code == 302
    event = only(db, "user.roles_changed")
    assert_event(
        event,
        actor=admin_browser.admin,
        organisation_id=org.id,
        object_type="user_account",
        object_id=target.id,
        ip="203.0.113.21",
        request_id="role-change-0001",
    )
    assert json.loads(event.details)["roles"] == [["staff"], ["auditor", "staff"]]


def test_disabling_an_account_is_recorded(admin_browser, make, org, db):
    target = make.user(org)
    client_at(admin_browser, "203.0.113.22", "disable-user-0001")

    response = admin_browser.submit(
        f"/admin/users/{target.id}", selector=f"form[action$='/admin/users/{target.id}/disable']"
    )

    assert response.status_code == 302
    assert_event(
        only(db, "user.disabled"),
        actor=admin_browser.admin,
        organisation_id=org.id,
        object_type="user_account",
        object_id=target.id,
        ip="203.0.113.22",
        request_id="disable-user-0001",
    )


def test_a_resent_invitation_is_recorded(admin_browser, make, org, db):
    target = make.user(org, password=None, totp=False)
    client_at(admin_browser, "203.0.113.23", "invite-user-0001")

    response = admin_browser.submit(
        f"/admin/users/{target.id}", selector=f"form[action$='/admin/users/{target.id}/invite']"
    )

    assert response.status_code == 302
    assert_event(
        only(db, "user.invited"),
        actor=admin_browser.admin,
        organisation_id=org.id,
        object_type="user_account",
        object_id=target.id,
        ip="203.0.113.23",
        request_id="invite-user-0001",
    )


# Request IDs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-DEF_123.456", "a" * 64, "01234567"])
def test_a_well_formed_request_id_from_the_client_is_kept(browser, db, request_id):
    client_at(browser, "192.0.2.1", request_id)

    response = browser.submit("/auth/login", {"email": "x@example.jp", "password": WRONG_PASSWORD})

    assert only(db, "auth.login_failed").request_id == request_id
    assert response.headers["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "short",
        "a" * 65,
        "has spaces in it",
        "semi;colon;1234",
        "<script>1</script>",
        "quote'123456",
    ],
)
def test_a_malformed_request_id_is_replaced(browser, db, request_id):
    client_at(browser, "192.0.2.1", request_id)

    response = browser.submit("/auth/login", {"email": "x@example.jp", "password": WRONG_PASSWORD})

    stored = only(db, "auth.login_failed").request_id
    assert stored != request_id
    assert HEX_REQUEST_ID.match(stored)
    assert response.headers["X-Request-ID"] == stored


def test_a_request_id_from_the_client_is_replaced_when_no_proxy_is_trusted(app, browser, db):
    app.config["TRUSTED_PROXIES"] = 0
    browser.client.environ_base["HTTP_X_REQUEST_ID"] = "client-chosen-id-0001"

    response = browser.submit("/auth/login", {"email": "x@example.jp", "password": WRONG_PASSWORD})

    stored = only(db, "auth.login_failed").request_id
    assert stored != "client-chosen-id-0001"
    assert HEX_REQUEST_ID.match(stored)
    assert response.headers["X-Request-ID"] == stored


def test_without_a_request_id_each_request_gets_its_own(browser, db):
    client_at(browser, "192.0.2.1", None)

    for _ in range(2):
        browser.submit("/auth/login", {"email": "x@example.jp", "password": WRONG_PASSWORD})

    ids = [e.request_id for e in events(db, "auth.login_failed")]
    assert len(ids) == 2
    assert all(HEX_REQUEST_ID.match(i) for i in ids)
    assert ids[0] != ids[1]


# The hash chain ----------------------------------------------------------------------------------


def test_each_row_carries_the_hash_of_the_previous_row(browser, make, org, db):
    user = make.user(org)
    browser.submit("/auth/login", {"email": user.email, "password": WRONG_PASSWORD})
    browser.login(user)
    browser.logout()
    record_events(db, org.id, 3)

    rows = events(db)

    assert len(rows) >= 6
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == audit.GENESIS_HASH
    for previous, row in zip(rows, rows[1:], strict=False):
        assert row.prev_hash == previous.row_hash
    for row in rows:
        assert row.row_hash == audit.compute_hash(row)
    assert len({r.row_hash for r in rows}) == len(rows)
    head = db.get(AuditChain, audit.CHAIN_ID)
    assert (head.last_seq, head.last_hash) == (rows[-1].seq, rows[-1].row_hash)
    assert verify(db) == audit.VerifyResult(True, len(rows))


def test_verify_passes_on_an_empty_trail(db):
    assert verify(db).ok


@pytest.fixture
def chain(db, org) -> list[AuditEvent]:
    """Five events, seq 1 … 5."""
    rows = record_events(db, org.id, 5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert verify(db).ok
    return rows


def _tamper(db, sql: str) -> None:
    db.rollback()
    db.execute(sa.text(sql))
    db.commit()


def test_a_raw_sql_edit_is_detected_and_named(chain, db):
    _tamper(db, "UPDATE audit_event SET actor_label='x' WHERE seq=3")

    result = verify(db)

    assert not result.ok
    assert result.broken_seq == 3
    assert result.checked == 2


TAMPERED_VALUES = {
    "seq": 1000,
    "occurred_at": datetime(2001, 1, 1, tzinfo=UTC),
    "action": "auth.login",
    "actor_user_id": 999,
    "actor_label": "someone-else@example.jp",
    "organisation_id": 999_999,
    "object_type": "organisation",
    "object_id": "999",
    "ip": "192.0.2.250",
    "request_id": "forged-request-id",
    "details": '{"n": 999}',
    "prev_hash": "f" * 64,
    "row_hash": "e" * 64,
}


def test_the_tamper_test_covers_every_column():
    assert set(TAMPERED_VALUES) == {c.name for c in AuditEvent.__table__.columns}


@pytest.mark.parametrize("column", sorted(TAMPERED_VALUES))
def test_editing_any_column_of_a_row_is_detected_and_named(chain, db, column):
    table = AuditEvent.__table__
    db.rollback()
    db.execute(sa.update(table).where(table.c.seq == 3).values({column: TAMPERED_VALUES[column]}))
    db.commit()

    result = verify(db)

    assert not result.ok
    assert result.broken_seq == 3
    assert result.reason


def test_a_row_edited_and_rehashed_breaks_the_link_to_the_next_row(chain, db):
    db.rollback()
    row = db.get(AuditEvent, 3)
    row.actor_label = "x"
    row.row_hash = audit.compute_hash(row)
    db.commit()

    result = verify(db)

    assert not result.ok
    assert result.broken_seq == 4


@pytest.mark.parametrize("seq", [1, 3])
def test_deleting_a_row_is_detected_and_named(chain, db, seq):
    _tamper(db, f"DELETE FROM audit_event WHERE seq={seq}")  # noqa: S608 (an int)

    result = verify(db)

    assert not result.ok
    assert result.broken_seq == seq


def test_deleting_the_last_row_is_detected(chain, db):
    _tamper(db, "DELETE FROM audit_event WHERE seq=5")

    result = verify(db)

    assert not result.ok
    assert result.broken_seq == 5


def test_deleting_every_row_is_detected(chain, db):
    _tamper(db, "DELETE FROM audit_event")

    assert not verify(db).ok


def test_editing_the_chain_head_is_detected(chain, db):
    _tamper(db, "UPDATE audit_chain SET last_hash='" + "a" * 64 + "'")

    assert not verify(db).ok


def test_audit_verify_command_reports_ok_on_an_untouched_chain(chain, runner):
    result = runner.invoke(args=["audit", "verify"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK")
    assert "5 件" in result.stdout


def test_audit_verify_command_fails_and_names_the_broken_row(chain, db, runner):
    _tamper(db, "UPDATE audit_event SET ip='10.0.0.1' WHERE seq=3")

    result = runner.invoke(args=["audit", "verify"])

    assert result.exit_code != 0
    assert "NG" in result.stderr
    assert "連番 3 " in result.stderr
    assert "OK" not in result.stdout


def test_audit_verify_command_detects_a_deleted_row(chain, db, runner):
    _tamper(db, "DELETE FROM audit_event WHERE seq=2")

    result = runner.invoke(args=["audit", "verify"])

    assert result.exit_code != 0
    assert "連番 2 " in result.stderr


# Retention ---------------------------------------------------------------------------------------

START = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)


def test_purge_removes_events_past_retention_keeps_the_chain_and_is_audited(app, db, org, runner):
    record_events(db, org.id, 3, at=START)
    record_events(db, org.id, 2, at=START + timedelta(days=200))
    app.config["AUDIT_RETENTION_DAYS"] = 365
    purge_time = START + timedelta(days=400)

    with time_machine.travel(purge_time, tick=False):
        result = runner.invoke(args=["audit", "purge"])

    assert result.exit_code == 0, result.output
    assert "3 件を削除しました" in result.stdout
    rows = events(db)
    assert [r.seq for r in rows] == [4, 5, 6]
    purged = rows[-1]
    assert purged.action == "audit.purged"
    assert purged.occurred_at == purge_time
    assert purged.actor_label == "cli"
    assert json.loads(purged.details) == {"deleted": 3, "retention_days": 365}
    assert verify(db) == audit.VerifyResult(True, 3)

    # Nothing more to purge: nothing deleted, nothing recorded.
    with time_machine.travel(purge_time, tick=False):
        again = runner.invoke(args=["audit", "purge"])
    assert again.exit_code == 0
    assert "0 件" in again.stdout
    assert [r.seq for r in events(db)] == [4, 5, 6]


def test_after_a_purge_tampering_is_still_detected(db, org, runner):
    record_events(db, org.id, 3, at=START)
    record_events(db, org.id, 3, at=START + timedelta(days=300))
    with time_machine.travel(START + timedelta(days=330), tick=False):
        assert runner.invoke(args=["audit", "purge", "--days", "100"]).exit_code == 0
    assert verify(db).ok

    _tamper(db, "DELETE FROM audit_event WHERE seq=4")

    result = verify(db)
    assert not result.ok
    assert result.broken_seq == 4


def test_purge_keeps_the_newest_event_even_when_everything_is_old(db, org):
    record_events(db, org.id, 4, at=START)

    deleted = audit.purge_older_than(db, 30, now=START + timedelta(days=31))
    db.commit()

    assert deleted == 3
    assert [r.seq for r in events(db)] == [4]
    assert verify(db).ok


def test_purge_refuses_a_retention_shorter_than_30_days(db, org, runner):
    record_events(db, org.id, 3, at=START)

    result = runner.invoke(args=["audit", "purge", "--days", "7"])

    assert result.exit_code != 0
    assert len(events(db)) == 3


# Concurrency -------------------------------------------------------------------------------------


def test_two_sessions_recording_one_after_another_build_one_chain(app, db):
    maker = app.extensions["db_sessionmaker"]
    first, second = maker(), maker()
    try:
        for i in range(3):
            audit.record(first, "user.updated", actor_label="first", details={"i": i})
            first.commit()
            # ``first`` keeps a copy of the chain head that goes stale; it must not matter.
            first.get(AuditChain, audit.CHAIN_ID)
            first.commit()
            audit.record(second, "user.updated", actor_label="second", details={"i": i})
            second.commit()
        assert audit.verify(first) == audit.VerifyResult(True, 6)
    finally:
        first.close()
        second.close()

    rows = events(db)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.actor_label for r in rows] == ["first", "second"] * 3
    for previous, row in zip(rows, rows[1:], strict=False):
        assert row.prev_hash == previous.row_hash


def test_concurrent_writers_are_serialised_into_one_chain(app, db):
    audit.record(db, "user.updated", actor_label="setup")  # the chain head exists
    db.commit()
    maker = app.extensions["db_sessionmaker"]
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def writer(name: str) -> None:
        token = set_write_intent(True)  # as in a POST request: BEGIN IMMEDIATE on SQLite
        session = maker()
        try:
            barrier.wait(timeout=30)
            for i in range(10):
                audit.record(session, "user.updated", actor_label=name, details={"i": i})
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            session.close()
            reset_write_intent(token)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []

    rows = events(db)
    assert [r.seq for r in rows] == list(range(1, 22))
    for name in ("a", "b"):
        mine = [json.loads(r.details)["i"] for r in rows if r.actor_label == name]
        assert mine == list(range(10))
    assert verify(db) == audit.VerifyResult(True, 21)


# The auditor's view ------------------------------------------------------------------------------


@pytest.fixture
def auditor_browser(browser, make, org):
    auditor = make.user(org, roles={Role.AUDITOR}, email="auditor@example.jp")
    browser.login(auditor)
    browser.auditor = auditor
    return browser


def test_auditors_see_their_organisation_only(auditor_browser, db, org, other_org):
    audit.record(db, "user.created", actor_label="own@example.jp", organisation_id=org.id)
    audit.record(db, "user.created", actor_label="foreign@example.jp", organisation_id=other_org.id)
    audit.record(db, "auth.login_failed", actor_label="stranger@example.jp")
    db.commit()

    page = auditor_browser.get("/audit/")

    assert page.status_code == 200
    actors = {row["操作者"] for row in audit_rows(page)}
    assert "own@example.jp" in actors
    assert "auditor@example.jp" in actors  # their own login
    assert "foreign@example.jp" not in actors
    assert "stranger@example.jp" not in actors
    assert "foreign@example.jp" not in soup(page).get_text()


def test_auditors_filter_by_action(auditor_browser, db, org):
    audit.record(db, "user.created", actor_label="a@example.jp", organisation_id=org.id)
    audit.record(db, "user.disabled", actor_label="b@example.jp", organisation_id=org.id)
    db.commit()

    rows = audit_rows(auditor_browser.get("/audit/?action=user.disabled"))

    assert [(r["操作"], r["操作者"]) for r in rows] == [("アカウントの無効化", "b@example.jp")]
    everything = audit_rows(auditor_browser.get("/audit/"))
    assert {"利用者の登録", "アカウントの無効化", "ログイン"} <= {r["操作"] for r in everything}


def test_auditors_filter_by_japanese_calendar_date(auditor_browser, db, org):
    def at(utc: datetime, label: str) -> None:
        audit.record(db, "user.updated", actor_label=label, organisation_id=org.id, at=utc)

    at(datetime(2026, 2, 28, 14, 59, 59, tzinfo=UTC), "feb28-late@example.jp")  # 2/28 23:59 JST
    at(datetime(2026, 2, 28, 15, 0, tzinfo=UTC), "mar1-early@example.jp")  # 3/1 00:00 JST
    at(datetime(2026, 3, 1, 14, 59, 59, tzinfo=UTC), "mar1-late@example.jp")  # 3/1 23:59 JST
    at(datetime(2026, 3, 1, 15, 0, tzinfo=UTC), "mar2-early@example.jp")  # 3/2 00:00 JST
    db.commit()

    def actors(query: str) -> set[str]:
        page = auditor_browser.get(f"/audit/?action=user.updated&{query}")
        assert page.status_code == 200
        return {r["操作者"] for r in audit_rows(page)}

    assert actors("date_from=2026-03-01&date_to=2026-03-01") == {
        "mar1-early@example.jp",
        "mar1-late@example.jp",
    }
    assert actors("date_from=2026-03-02") == {"mar2-early@example.jp"}
    assert actors("date_to=2026-02-28") == {"feb28-late@example.jp"}


def test_an_invalid_filter_shows_no_rows_and_no_error(auditor_browser):
    page = auditor_browser.get("/audit/?date_from=not-a-date&page=-3")

    assert page.status_code == 200
    assert audit_rows(page) == []


CSV_HEADER = [
    "連番",
    "日時（日本時間）",
    "日時（UTC）",
    "操作",
    "操作コード",
    "操作者",
    "操作者ID",
    "対象種別",
    "対象ID",
    "IPアドレス",
    "リクエストID",
    "詳細",
    "ハッシュ",
    "直前のハッシュ",
]


def test_csv_export_has_bom_japanese_header_and_only_own_rows_and_is_audited(
    auditor_browser, db, org, other_org
):
    audit.record(db, "user.created", actor_label="own@example.jp", organisation_id=org.id)
    audit.record(db, "user.created", actor_label="foreign@example.jp", organisation_id=other_org.id)
    db.commit()
    client_at(auditor_browser, "203.0.113.99", "csv-export-0001")
    visible = {r.seq for r in events(db) if r.organisation_id == org.id}

    response = auditor_browser.submit("/audit/", selector="form[action$='export.csv']")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    table = read_csv(response)
    assert table[0] == CSV_HEADER
    records = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert {int(r["連番"]) for r in records} == visible
    own = next(r for r in records if r["操作者"] == "own@example.jp")
    assert own["操作"] == "利用者の登録"
    assert own["操作コード"] == "user.created"
    assert datetime.fromisoformat(own["日時（UTC）"]).utcoffset() == timedelta(0)
    assert "foreign@example.jp" not in response.get_data(as_text=True)

    exported = only(db, "audit.exported")
    assert_event(
        exported,
        actor=auditor_browser.auditor,
        organisation_id=org.id,
        object_type="",
        object_id="",
        ip="203.0.113.99",
        request_id="csv-export-0001",
    )
    assert json.loads(exported.details) == {"rows": len(records)}


def test_csv_export_follows_the_filter(auditor_browser, db, org):
    audit.record(db, "user.created", actor_label="a@example.jp", organisation_id=org.id)
    audit.record(db, "user.disabled", actor_label="b@example.jp", organisation_id=org.id)
    db.commit()

    response = auditor_browser.submit(
        "/audit/?action=user.disabled", selector="form[action$='export.csv']"
    )

    table = read_csv(response)
    assert [row[5] for row in table[1:]] == ["b@example.jp"]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def test_csv_export_neutralises_formula_injection(app, auditor_browser, make, db, org):
    # A real account whose (valid) e-mail address starts with "=": its failed login is recorded.
    evil = make.user(org, email="=1+2@example.jp", name='=HYPERLINK("http://evil.example/","x")')
    attacker = Browser(app.test_client())
    client_at(attacker, "192.0.2.66", "-2-3-4-5-6")
    attacker.submit("/auth/login", {"email": evil.email, "password": WRONG_PASSWORD})
    # And an event whose every text field was chosen by an attacker.
    token = audit.audit_context.set(audit.AuditContext(ip="@SUM(1)", request_id="+cmd-12345"))
    try:
        audit.record(
            db,
            "=cmd|' /C calc'!A0",
            actor_label='=HYPERLINK("http://evil.example/","x")',
            organisation_id=org.id,
            object_type="-2+3",
            object_id="@SUM(A1)",
            details={"name": evil.name},
        )
        db.commit()
    finally:
        audit.audit_context.reset(token)

    response = auditor_browser.submit("/audit/", selector="form[action$='export.csv']")

    table = read_csv(response)
    cells = [cell for row in table[1:] for cell in row]
    assert "'" + '=HYPERLINK("http://evil.example/","x")' in cells
    # The address typed at the failed login is kept inside the JSON details (a safe cell).
    assert any("=1+2@example.jp" in cell and cell.startswith("{") for cell in cells)
    assert "'-2-3-4-5-6" in cells
    assert {"'=cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1)", "'@SUM(1)", "'+cmd-12345"} <= set(cells)
    dangerous = [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert dangerous == []


def test_the_page_shows_attacker_text_as_text(auditor_browser, db, org):
    audit.record(
        db, "user.updated", actor_label="<script>alert(1)</script>", organisation_id=org.id
    )
    db.commit()

    page = auditor_browser.get("/audit/")

    assert soup(page).select("main script") == []
    assert "<script>alert(1)</script>" in {r["操作者"] for r in audit_rows(page)}


# Who may read the trail --------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.CISO, Role.NETWORK_ADMIN])
def test_audit_readers_may_browse(browser, make, org, role):
    browser.login(make.user(org, roles={role}))

    assert browser.get("/audit/").status_code == 200


@pytest.mark.parametrize(
    "role", [Role.ADMIN, Role.STAFF, Role.APPROVER, Role.SERVICE_MANAGER, Role.VENDOR]
)
def test_others_get_403_for_the_trail_and_its_export(browser, make, org, db, role):
    if role is Role.VENDOR:
        user = make.user(company=make.company(org), invited_by=org)
    else:
        user = make.user(org, roles={role})
    browser.login(user)

    page = browser.get("/audit/")
    export = browser.post("/audit/export.csv")

    assert page.status_code == 403
    assert text_of(page, "h1") == "アクセス権限がありません"
    assert export.status_code == 403
    assert events(db, "audit.exported") == []


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get("/audit/")

    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
