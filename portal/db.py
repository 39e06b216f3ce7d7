"""Database engine, the declarative ``Base`` and one session per request.

SQLite gets WAL, foreign keys and a busy timeout on every connection. Transactions of requests
that change state (POST …) and of CLI commands start with ``BEGIN IMMEDIATE`` on SQLite, so a
read snapshot never has to be upgraded to a write lock (which SQLite refuses under concurrency).
PostgreSQL needs none of this and runs the same code unchanged.

A view marked ``@defer_write`` (the autosave call) is the one exception to "a POST writes from
its first query": its request reads in a plain ``BEGIN`` transaction, ends it, and only then
opens the write transaction with ``write_phase`` — so the single SQLite writer lock is held for
the write alone, never for the reading and validating before it, and still no snapshot is ever
upgraded. Such a view must re-check in the write phase whatever it decided while reading.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask, g
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 15000

_write_intent: contextvars.ContextVar[bool] = contextvars.ContextVar("write_intent", default=False)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def set_write_intent(value: bool) -> contextvars.Token:
    """Declare that the coming transaction will write (BEGIN IMMEDIATE on SQLite)."""
    return _write_intent.set(value)


def reset_write_intent(token: contextvars.Token) -> None:
    _write_intent.reset(token)


def defer_write(view: Callable) -> Callable:
    """Mark a state-changing view that reads first and writes only inside ``write_phase``."""
    view.defers_write = True  # type: ignore[attr-defined]
    return view


def defers_write(view: Callable | None) -> bool:
    return bool(getattr(view, "defers_write", False))


@contextmanager
def write_phase(session: Session) -> Iterator[Session]:
    """End the session's read transaction, then run the block in a write transaction
    (``BEGIN IMMEDIATE`` on SQLite): committed when the block ends, rolled back on an exception.

    The read transaction wrote nothing, so ending it (a commit) only releases its snapshot; a
    snapshot is never upgraded to the write lock. Loaded objects keep what the read phase saw:
    the block must read again under the lock (``populate_existing``, or plain column queries)
    everything it re-checks, since a concurrent change may have come in between.
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("the read phase changed objects; it must not write")
    session.commit()
    with _write_transaction(session):
        yield session


@contextmanager
def _write_transaction(session: Session) -> Iterator[None]:
    """The block's transaction writes (BEGIN IMMEDIATE on SQLite); committed when it ends, rolled
    back on an exception."""
    token = set_write_intent(True)
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        reset_write_intent(token)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_on_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["db_engine"] = engine
    app.extensions["db_sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine_for(app: Flask) -> sa.Engine:
    return app.extensions["db_engine"]


def get_session() -> Session:
    """The session of the current request or CLI command (one per app context)."""
    from flask import current_app

    if "db_session" not in g:
        g.db_session = current_app.extensions["db_sessionmaker"]()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


@contextmanager
def writing() -> Iterator[Session]:
    """A session whose transaction will write; commits on success (for CLI commands)."""
    session = get_session()
    with _write_transaction(session):
        yield session
