"""Fixtures: an app on a migrated database (SQLite, or TEST_DATABASE_URL), emptied after each test.

CSRF stays on: tests submit the real forms, token included (see ``tests/helpers.py``).
"""

from __future__ import annotations

import os

os.environ["PORTAL_ENV"] = "testing"
os.environ.setdefault("PORTAL_SECRET_KEY", "test-secret-key-that-is-long-enough-0123456789")

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.cli import upgrade
from tests import factories
from tests.helpers import Browser, empty_database

CHEAP_ARGON2 = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 1024, "ARGON2_PARALLELISM": 1}


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    upgrade(url)  # the real migrations, never create_all
    return url


@pytest.fixture
def app(database_url, tmp_path):
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "MAIL_OUTBOX": str(tmp_path / "outbox"),
            "EVIDENCE_DIR": str(tmp_path / "evidence"),
            "BASE_URL": "http://localhost",
            **CHEAP_ARGON2,
        }
    )
    yield app
    empty_database(app)


@pytest.fixture
def db(app):
    """A session for arranging and checking data, separate from the requests' sessions.

    No app context stays pushed: requests made by the test client must get their own ``g``.
    """
    session = app.extensions["db_sessionmaker"]()
    yield session
    session.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make(db, app):
    """Factories bound to the test session: ``make.user(...)``, ``make.org(...)`` …"""
    return factories.Factory(db, app)


@pytest.fixture
def org(make):
    return make.org()


@pytest.fixture
def other_org(make):
    return make.org(name="別の村", self_designation="本村")
