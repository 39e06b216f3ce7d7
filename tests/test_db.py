"""The data layer (SECURITY.md "Reliability"): SQLite pragmas on every connection, migrations that
match the models, no ``create_all`` in the app, one transaction per business action, and
optimistic locking whose conflicts reach the user as the Japanese 409 page."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.orm.exc import StaleDataError

import portal
import portal.models  # noqa: F401 - every table on Base.metadata
from portal.audit import service as audit
from portal.audit.models import AuditChain, AuditEvent
from portal.auth.models import ActionToken
from portal.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    Base,
    engine_for,
    get_session,
    reset_write_intent,
    set_write_intent,
    writing,
)
from portal.errors import ConflictError
from portal.orgs.models import Organisation
from portal.permissions import Role
from portal.users import service as users_service
from portal.users.models import User, UserRole
from tests.helpers import form_fields, soup, text_of

ON_SQLITE = os.environ.get("TEST_DATABASE_URL", "sqlite").startswith("sqlite")
sqlite_only = pytest.mark.skipif(not ON_SQLITE, reason="SQLite connection settings")


def fresh(db):
    db.rollback()
    return db


def audit_count(db) -> int:
    return fresh(db).scalar(sa.select(sa.func.count()).select_from(AuditEvent))


# SQLite settings on every connection -----------------------------------------------------------


def _pragmas(connection) -> dict[str, object]:
    return {
        name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("journal_mode", "foreign_keys", "busy_timeout")
    }


@sqlite_only
def test_every_sqlite_connection_has_wal_foreign_keys_and_a_busy_timeout(app):
    engine = engine_for(app)
    expected = {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": SQLITE_BUSY_TIMEOUT_MS}

    with engine.connect() as first, engine.connect() as second:
        assert first.connection.dbapi_connection is not second.connection.dbapi_connection
        assert _pragmas(first) == expected
        assert _pragmas(second) == expected
    engine.dispose()  # brand-new connections, not pooled ones
    with engine.connect() as third:
        assert _pragmas(third) == expected
    assert SQLITE_BUSY_TIMEOUT_MS >= 5000


@sqlite_only
def test_sessions_of_the_app_get_the_same_settings(app):
    with app.app_context():
        connection = get_session().connection()
        assert _pragmas(connection)["foreign_keys"] == 1
        assert _pragmas(connection)["journal_mode"] == "wal"


@sqlite_only
def test_a_writing_transaction_takes_the_write_lock_at_begin(app, tmp_path):
    """BEGIN IMMEDIATE: a writer never has to upgrade a read snapshot (which SQLite refuses)."""
    engine = engine_for(app)
    path = engine.url.database

    def other_writer_blocked() -> bool:
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return True
        probe.execute("ROLLBACK")
        probe.close()
        return False

    with engine.connect() as connection, connection.begin():
        connection.exec_driver_sql("SELECT 1")
        assert not other_writer_blocked()  # a reading transaction leaves writers alone
    token = set_write_intent(True)
    try:
        with engine.connect() as connection, connection.begin():
            assert other_writer_blocked()
    finally:
        reset_write_intent(token)


def test_foreign_keys_are_enforced(db):
    db.add(UserRole(user_id=987654, role="staff"))

    with pytest.raises(sa.exc.IntegrityError):
        db.commit()
    db.rollback()


# Migrations --------------------------------------------------------------------------------------


def test_the_migrations_match_the_models_exactly(app):
    with engine_for(app).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)

    assert diff == []


def test_the_migrated_database_has_every_model_table(app):
    tables = set(sa.inspect(engine_for(app)).get_table_names())

    assert {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"} == tables


def test_the_app_never_creates_tables_by_itself():
    root = Path(portal.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"\bcreate_all\b", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert len(list(root.rglob("*.py"))) > 10  # the walk really saw the sources


# One business action, one transaction ----------------------------------------------------------


@pytest.fixture
def admin_browser(browser, make, org):
    admin = make.user(org, roles={Role.ADMIN})
    browser.login(admin)
    browser.admin = admin
    return browser


NEW_USER = {"name": "途中 失敗", "email": "halfway@example.jp", "roles": ["staff"]}


def _nothing_left_behind(db, events_before: int, head_before: tuple[int, str]) -> None:
    fresh(db)
    assert db.scalar(sa.select(User).where(User.email == NEW_USER["email"])) is None
    assert db.scalar(sa.select(sa.func.count()).select_from(ActionToken)) == 0
    assert audit_count(db) == events_before
    head = db.get(AuditChain, audit.CHAIN_ID, populate_existing=True)
    assert (head.last_seq, head.last_hash) == head_before
    assert audit.verify(db).ok


def _head(db) -> tuple[int, str]:
    head = fresh(db).get(AuditChain, audit.CHAIN_ID, populate_existing=True)
    return head.last_seq, head.last_hash


def test_an_error_after_the_first_write_leaves_nothing_behind(admin_browser, db, monkeypatch):
    before, head = audit_count(db), _head(db)

    def broken_record(*_args, **_kwargs):
        raise RuntimeError("the audit store failed")

    # The user row is already flushed when recording its audit event fails.
    monkeypatch.setattr(audit, "record", broken_record)
    response = admin_browser.submit("/admin/users/new", NEW_USER, selector="main form")

    assert response.status_code == 500
    assert text_of(response, "h1") == "システムエラーが発生しました"
    assert "RuntimeError" not in response.get_data(as_text=True)
    monkeypatch.undo()
    _nothing_left_behind(db, before, head)


def test_an_error_after_the_audit_row_leaves_nothing_behind(admin_browser, db, monkeypatch):
    before, head = audit_count(db), _head(db)

    def broken_invitation(*_args, **_kwargs):
        raise RuntimeError("the invitation could not be issued")

    # The user and its "user.created" audit row are flushed; then the invitation fails.
    monkeypatch.setattr(users_service, "issue_invitation", broken_invitation)
    response = admin_browser.submit("/admin/users/new", NEW_USER, selector="main form")

    assert response.status_code == 500
    _nothing_left_behind(db, before, head)


def test_a_service_call_that_fails_before_commit_leaves_nothing_behind(app, db, admin_browser):
    before, head = audit_count(db), _head(db)

    with app.app_context(), pytest.raises(RuntimeError), writing() as session:
        actor = session.get(User, admin_browser.admin.id)
        users_service.create_staff_user(
            session,
            actor,
            email=NEW_USER["email"],
            name=NEW_USER["name"],
            roles={Role.STAFF},
            department_ids=[],
        )
        assert session.scalar(sa.select(User.id).where(User.email == NEW_USER["email"]))
        raise RuntimeError("something failed before the commit")

    _nothing_left_behind(db, before, head)


def test_a_database_error_mid_request_shows_the_japanese_error_page_and_saves_nothing(
    admin_browser, make, org, db, monkeypatch
):
    target = make.user(org, name="元の名前")
    before = audit_count(db)
    original = users_service.update_user

    def failing_update(session, actor, user, **kwargs):
        original(session, actor, user, **kwargs)
        session.add(UserRole(user_id=987654, role="staff"))  # violates a foreign key
        session.flush()

    monkeypatch.setattr(users_service, "update_user", failing_update)
    response = admin_browser.submit(
        f"/admin/users/{target.id}", {"name": "新しい名前"}, selector="main form"
    )

    assert response.status_code == 500
    assert text_of(response, "h1") == "システムエラーが発生しました"
    assert "IntegrityError" not in response.get_data(as_text=True)
    assert fresh(db).get(User, target.id).name == "元の名前"
    assert audit_count(db) == before


def test_the_same_action_without_an_error_is_committed_whole(admin_browser, db):
    before = audit_count(db)

    response = admin_browser.submit("/admin/users/new", NEW_USER, selector="main form")

    assert response.status_code == 302
    user = fresh(db).scalar(sa.select(User).where(User.email == NEW_USER["email"]))
    assert user is not None
    assert audit_count(db) == before + 2  # user.created + user.invited
    assert db.scalar(sa.select(sa.func.count()).select_from(ActionToken)) == 1


# Optimistic locking ------------------------------------------------------------------------------


def test_the_second_of_two_concurrent_writers_gets_stale_data_error(app, make):
    """Mapper-level optimistic locking (``version_id_col``) on the organisation profile."""
    target = make.org(name="元の名前市")
    maker = app.extensions["db_sessionmaker"]
    first, second = maker(), maker()
    try:
        mine, theirs = first.get(Organisation, target.id), second.get(Organisation, target.id)
        first.commit()  # both have loaded version 1 and ended their read transactions
        second.commit()
        mine.name, theirs.name = "先に保存した市", "後から保存した市"

        first.commit()
        with pytest.raises(StaleDataError):
            second.commit()
        second.rollback()

        assert second.get(Organisation, target.id).name == "先に保存した市"
        assert second.get(Organisation, target.id).version == 2
    finally:
        first.close()
        second.close()


def test_every_profile_update_raises_the_version(db, make):
    org = make.org()
    version = org.version

    org.self_designation = "本町"
    db.commit()

    assert fresh(db).get(Organisation, org.id).version == version + 1


def test_two_administrative_edits_from_the_same_version_the_second_conflicts(app, make, org):
    """Users: the version is claimed by a conditional UPDATE (users.service._claim_version)."""
    admin = make.user(org, roles={Role.ADMIN})
    target = make.user(org, name="元の名前")
    maker = app.extensions["db_sessionmaker"]
    first, second = maker(), maker()
    try:
        edit = {"roles": {Role.STAFF}, "department_ids": [], "expected_version": 1}
        with app.app_context():
            users_service.update_user(
                first,
                first.get(User, admin.id),
                first.get(User, target.id),
                name="先に保存した名前",
                **edit,
            )
            first.commit()
            with pytest.raises(ConflictError):
                users_service.update_user(
                    second,
                    second.get(User, admin.id),
                    second.get(User, target.id),
                    name="後から保存した名前",
                    **edit,
                )
            second.rollback()
        assert second.get(User, target.id).name == "先に保存した名前"
        assert second.get(User, target.id).version == 2
    finally:
        first.close()
        second.close()


def test_a_stale_data_error_reaches_the_user_as_the_japanese_conflict_page(
    admin_browser, make, org, db, monkeypatch
):
    target = make.user(org, name="元の名前")
    original = users_service.update_user

    def racing_update(session, actor, user, **kwargs):
        # Another writer commits between this request's read and its write.
        session.execute(
            sa.text("UPDATE user_account SET version = version + 1 WHERE id = :id"),
            {"id": user.id},
        )
        return original(session, actor, user, **kwargs)

    monkeypatch.setattr(users_service, "update_user", racing_update)
    response = admin_browser.submit(
        f"/admin/users/{target.id}", {"name": "上書きしたい名前"}, selector="main form"
    )

    assert response.status_code == 409
    assert text_of(response, "h1") == "他の操作と競合しました"
    assert "StaleDataError" not in response.get_data(as_text=True)
    assert fresh(db).get(User, target.id).name == "元の名前"


def test_a_form_showing_an_old_version_gets_the_conflict_page_and_loses_nothing(
    admin_browser, make, org, db
):
    target = make.user(org, name="元の名前")
    url = f"/admin/users/{target.id}"
    page = admin_browser.get(url)
    values = form_fields(soup(page).select_one("main form"))
    # Another administrator saves first (an administrative edit moves the version on).
    other = fresh(db).get(User, target.id)
    other.name, other.version = "他の人の変更", other.version + 1
    db.commit()

    values["name"] = "古い画面からの変更"
    response = admin_browser.client.post(url, data=values)

    assert response.status_code == 409
    assert text_of(response, "h1") == "他の操作と競合しました"
    assert fresh(db).get(User, target.id).name == "他の人の変更"
