"""Commands under ``flask --app wsgi …``: create-admin, seed-demo, demo-code and db upgrade."""

from __future__ import annotations

import json
import re

import pyotp
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from portal.audit.models import AuditChain, AuditEvent
from portal.auth import passwords, totp
from portal.auth.models import ActionToken
from portal.cli import alembic_config
from portal.db import Base, utcnow
from portal.demo import DEMO_ORGANISATION, SECOND_ORGANISATION
from portal.orgs.models import Department, Organisation
from portal.permissions import STAFF_ROLES, Role
from portal.users.models import User
from portal.vendors.models import OrganisationVendor, VendorCompany
from tests.helpers import Browser, soup, text_of

TEMPORARY_PASSWORD = re.compile(r"仮パスワード: (\S+)")
DEMO_PASSWORD = "さくら台のデモ用パスフレーズ 2026"
NEW_PASSWORD = "新しい管理者のパスフレーズ 2026 春"


def fresh(db):
    db.rollback()
    return db


def counts(db) -> dict[str, int]:
    """Rows in every table (the whole database, not just what a test looks at), except the
    audit chain's head row, which the migration creates and which is always there."""
    fresh(db)
    return {
        table.name: db.scalar(sa.select(sa.func.count()).select_from(table))
        for table in Base.metadata.sorted_tables
        if table.name != "audit_chain"
    }


# create-admin ------------------------------------------------------------------------------------

ADMIN_ARGS = [
    "create-admin",
    "--email",
    " Admin@Nishihara.Example.JP ",
    "--name",
    "管理 一郎",
    "--organisation",
    "西原村",
    "--self-designation",
    "本村",
]


def create_admin(runner, args=ADMIN_ARGS):
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    match = TEMPORARY_PASSWORD.search(result.stdout)
    assert match, result.stdout
    return result, match.group(1)


def test_create_admin_creates_an_admin_with_a_temporary_password(runner, db):
    result, password = create_admin(runner)

    assert result.stdout.count(password) == 1  # shown once, never again
    assert len(password) >= passwords.MIN_LENGTH
    user = fresh(db).scalar(sa.select(User).where(User.email == "admin@nishihara.example.jp"))
    assert user is not None
    assert user.name == "管理 一郎"
    assert user.role_set == {Role.ADMIN}
    assert user.password_hash.startswith("$argon2id$")
    assert password not in user.password_hash
    assert user.password_is_temporary is True
    assert user.totp_enabled is False
    assert user.active is True
    org = db.get(Organisation, user.organisation_id)
    assert (org.name, org.self_designation) == ("西原村", "本村")

    created = db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user.created")).one()
    assert (created.actor_label, created.ip) == ("cli", "cli")
    assert (created.organisation_id, created.object_id) == (org.id, str(user.id))
    assert json.loads(created.details)["via"] == "create-admin"
    every_event = " ".join(e.details for e in db.scalars(sa.select(AuditEvent)))
    assert password not in every_event


def test_create_admin_for_an_existing_organisation_does_not_ask_for_its_designation(
    runner, db, org
):
    _result, _password = create_admin(
        runner,
        [
            "create-admin",
            "--email",
            "second@example.jp",
            "--name",
            "二人目",
            "--organisation",
            org.name,
        ],
    )

    user = fresh(db).scalar(sa.select(User).where(User.email == "second@example.jp"))
    assert user.organisation_id == org.id
    assert db.scalar(sa.select(sa.func.count()).select_from(Organisation)) == 1


def test_create_admin_asks_interactively_when_flags_are_missing(runner, db):
    result = runner.invoke(
        args=["create-admin"], input="asked@example.jp\n質問 花子\n問答町\n本町\n"
    )

    assert result.exit_code == 0, result.output
    assert TEMPORARY_PASSWORD.search(result.stdout)
    user = fresh(db).scalar(sa.select(User).where(User.email == "asked@example.jp"))
    assert user.organisation.self_designation == "本町"


def test_a_second_create_admin_with_the_same_email_fails_cleanly(runner, db):
    create_admin(runner)
    before = counts(db)

    result = runner.invoke(args=[*ADMIN_ARGS[:2], "admin@nishihara.example.jp", *ADMIN_ARGS[3:]])

    assert result.exit_code == 1
    assert "すでに登録されています" in result.output
    assert "Traceback" not in result.output
    assert not TEMPORARY_PASSWORD.search(result.output)
    assert counts(db) == before


@pytest.mark.parametrize("email", ["not-an-address", "admin@", "@example.jp", "a b@example.jp", ""])
def test_create_admin_refuses_an_invalid_email(runner, db, email):
    result = runner.invoke(
        args=["create-admin", "--email", email, "--name", "管理", "--organisation", "西原村"],
        input="本村\n",
    )

    assert result.exit_code == 2
    assert "メールアドレス" in result.output
    assert not TEMPORARY_PASSWORD.search(result.output)
    assert counts(db)["user_account"] == 0
    assert counts(db)["organisation"] == 0


def test_the_new_admin_logs_in_enrols_totp_and_must_change_the_password(app, runner, db):
    _result, temporary = create_admin(runner)
    browser = Browser(app.test_client())

    response = browser.submit(
        "/auth/login", {"email": "admin@nishihara.example.jp", "password": temporary}
    )

    # First the second factor: nothing else is reachable before it is set up.
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/auth/mfa/setup")
    assert browser.get("/").headers["Location"].startswith("/auth/login")
    assert browser.get("/auth/password").headers["Location"].startswith("/auth/login")
    setup = browser.get("/auth/mfa/setup")
    secret = text_of(setup, "[data-field=totp-secret]")
    enrolled = browser.submit(
        "/auth/mfa/setup", {"code": pyotp.TOTP(secret).now()}, follow_redirects=True
    )
    assert enrolled.status_code == 200
    assert len(soup(enrolled).select("[data-field=recovery-codes] li")) == 10

    # Then the temporary password must go, from every route.
    for path in ("/", "/admin/users", "/auth/account"):
        forced = browser.get(path)
        assert forced.status_code == 302, path
        assert forced.headers["Location"] == "/auth/password"
    changed = browser.submit(
        "/auth/password",
        {"current": temporary, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        selector="main form",
    )
    assert changed.status_code == 302
    assert changed.headers["Location"] == "/"
    home = browser.get("/")
    assert home.status_code == 200
    assert text_of(home, "h1") == "ホーム"
    assert browser.get("/admin/users").status_code == 200

    user = fresh(db).scalar(sa.select(User).where(User.email == "admin@nishihara.example.jp"))
    assert user.password_is_temporary is False
    assert user.totp_enabled is True
    assert user.totp_secret == secret


# seed-demo ---------------------------------------------------------------------------------------


def seed(runner, *extra: str):
    result = runner.invoke(args=["seed-demo", "--password", DEMO_PASSWORD, *extra])
    assert result.exit_code == 0, result.output
    return result


def demo_accounts(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_seed_demo_creates_organisations_departments_roles_vendors_and_states(runner, db):
    seed(runner)
    fresh(db)

    org = db.scalar(sa.select(Organisation).where(Organisation.name == DEMO_ORGANISATION))
    second = db.scalar(sa.select(Organisation).where(Organisation.name == SECOND_ORGANISATION))
    assert org is not None and second is not None
    departments = db.scalars(sa.select(Department).where(Department.organisation_id == org.id))
    assert len(departments.all()) >= 3

    staff = db.scalars(sa.select(User).where(User.organisation_id == org.id)).all()
    active = [u for u in staff if u.active and u.password_hash and not u.locked_until]
    for role in STAFF_ROLES:
        assert any(role in u.role_set for u in active), f"no active demo user with role {role}"
    assert all(u.totp_enabled for u in active)

    companies = db.scalars(
        sa.select(VendorCompany)
        .join(OrganisationVendor)
        .where(OrganisationVendor.organisation_id == org.id)
    ).all()
    assert len(companies) == 3
    for company in companies:
        users = db.scalars(sa.select(User).where(User.vendor_company_id == company.id)).all()
        assert 1 <= len(users) <= 2, company.name
        assert all(u.role_set == {Role.VENDOR} for u in users)

    invited = [u for u in staff if u.password_hash is None]
    assert invited
    for user in invited:
        token = db.scalar(sa.select(ActionToken).where(ActionToken.user_id == user.id))
        assert token is not None and token.purpose == "invitation" and token.used_at is None
    assert any(not u.active for u in staff)
    assert any(u.locked_until is not None and u.locked_until > utcnow() for u in staff)


def test_seed_demo_twice_changes_nothing_and_prints_the_accounts_again(runner, db):
    first = seed(runner)
    before = counts(db)
    head_before = db.get(AuditChain, 1)
    head_before = (head_before.last_seq, head_before.last_hash)

    second = seed(runner)

    assert counts(db) == before
    head = db.get(AuditChain, 1, populate_existing=True)
    assert (head.last_seq, head.last_hash) == head_before
    emails = fresh(db).scalars(sa.select(User.email)).all()
    for email in emails:
        assert email in first.stdout
        assert email in second.stdout
    assert "登録済み" in second.stdout


def test_seed_demo_json_prints_one_account_per_line(runner, db):
    result = seed(runner, "--json")

    accounts = demo_accounts(result)
    emails = set(fresh(db).scalars(sa.select(User.email)))
    assert {a["email"] for a in accounts} == emails
    for account in accounts:
        assert {"email", "roles", "organisation", "company", "totp_secret"} <= account.keys()
        user = db.scalar(sa.select(User).where(User.email == account["email"]))
        assert set(account["roles"]) == {r.value for r in user.role_set}
        assert account["totp_secret"] == (user.totp_secret if user.totp_enabled else None)
        if user.is_vendor:
            assert account["company"] == user.vendor_company.name
            assert account["organisation"] is None
        else:
            assert account["organisation"] == user.organisation.name
            assert account["company"] is None
    assert any(a["totp_secret"] for a in accounts)


def test_a_demo_staff_account_logs_in_with_the_printed_secret(app, runner):
    accounts = demo_accounts(seed(runner, "--json"))
    staff = next(a for a in accounts if a["roles"] == ["staff"] and a["state"] == "active")
    browser = Browser(app.test_client())

    response = browser.submit("/auth/login", {"email": staff["email"], "password": DEMO_PASSWORD})
    assert response.headers["Location"].endswith("/auth/mfa")
    response = browser.submit("/auth/mfa", {"code": pyotp.TOTP(staff["totp_secret"]).now()})

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = browser.get("/")
    assert home.status_code == 200
    assert text_of(home, "h1") == "ホーム"


def test_a_demo_vendor_account_logs_in_with_the_password(app, runner):
    accounts = demo_accounts(seed(runner, "--json"))
    vendor = next(a for a in accounts if a["roles"] == ["vendor"] and a["state"] == "active")
    browser = Browser(app.test_client())

    response = browser.submit("/auth/login", {"email": vendor["email"], "password": DEMO_PASSWORD})

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert browser.get("/").status_code == 200


def test_demo_accounts_in_other_states_cannot_log_in(app, runner):
    accounts = demo_accounts(seed(runner, "--json"))
    blocked = [a for a in accounts if a["state"] in {"disabled", "locked"}]
    assert {a["state"] for a in blocked} == {"disabled", "locked"}
    for account in blocked:
        browser = Browser(app.test_client())
        response = browser.submit(
            "/auth/login", {"email": account["email"], "password": DEMO_PASSWORD}
        )
        assert response.status_code == 200, account["email"]
        assert browser.get("/").status_code == 302


def test_seed_demo_refuses_in_production(app, runner, db):
    app.config["PORTAL_ENV"] = "production"

    result = runner.invoke(args=["seed-demo", "--password", DEMO_PASSWORD])

    assert result.exit_code == 1
    assert "本番" in result.output
    assert set(counts(db).values()) == {0}


def test_seed_demo_refuses_a_short_password(runner, db):
    result = runner.invoke(args=["seed-demo", "--password", "short"])

    assert result.exit_code == 2
    assert set(counts(db).values()) == {0}


# demo-code ---------------------------------------------------------------------------------------


def test_demo_code_prints_a_current_six_digit_code_that_logs_in(app, runner, db):
    seed(runner)
    email = "staff@sakuradai.example.jp"
    user = fresh(db).scalar(sa.select(User).where(User.email == email))

    result = runner.invoke(args=["demo-code", email.upper()])

    assert result.exit_code == 0, result.output
    code = result.stdout.strip()
    assert re.fullmatch(r"\d{6}", code)
    assert totp.matching_step(user.totp_secret, code, 0) is not None
    browser = Browser(app.test_client())
    browser.submit("/auth/login", {"email": email, "password": DEMO_PASSWORD})
    assert browser.submit("/auth/mfa", {"code": code}).headers["Location"] == "/"


@pytest.mark.parametrize(
    "email",
    ["nobody@example.jp", "newcomer@sakuradai.example.jp", "vendor@sakura-cloud.example.com"],
)
def test_demo_code_refuses_accounts_without_totp(runner, email):
    seed(runner)

    result = runner.invoke(args=["demo-code", email])

    assert result.exit_code == 1
    assert not re.search(r"\b\d{6}\b", result.output)


def test_demo_code_refuses_in_production(app, runner):
    seed(runner)
    app.config["PORTAL_ENV"] = "production"

    result = runner.invoke(args=["demo-code", "staff@sakuradai.example.jp"])

    assert result.exit_code == 1
    assert not re.search(r"\b\d{6}\b", result.output)


# db upgrade --------------------------------------------------------------------------------------


def _schema(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            t: sorted(c["name"] for c in inspector.get_columns(t))
            for t in inspector.get_table_names()
        }
    finally:
        engine.dispose()


def _current_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_db_upgrade_on_a_fresh_database_is_idempotent(app, runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'new-folder' / 'portal.db'}"
    app.config["DATABASE_URL"] = url
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()

    first = runner.invoke(args=["db", "upgrade"])
    assert first.exit_code == 0, first.output
    schema = _schema(url)
    second = runner.invoke(args=["db", "upgrade"])

    assert second.exit_code == 0, second.output
    assert _schema(url) == schema
    assert {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"} == set(schema)
    assert _current_revision(url) == head


def test_db_upgrade_on_the_current_database_keeps_the_data(app, runner, db, make, org):
    make.user(org, email="keep@example.jp")
    before = counts(db)
    url = app.config["DATABASE_URL"]

    result = runner.invoke(args=["db", "upgrade"])

    assert result.exit_code == 0, result.output
    assert counts(db) == before
    assert (
        _current_revision(url)
        == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    )


def test_seed_demo_rerun_never_prints_a_password_the_accounts_do_not_have(runner):
    seed(runner)

    rerun = runner.invoke(
        args=["seed-demo", "--password", "別のパスフレーズを指定した 2027", "--json"]
    )
    again = runner.invoke(args=["seed-demo", "--password", DEMO_PASSWORD, "--json"])

    assert rerun.exit_code == 0, rerun.output
    assert {row["password"] for row in demo_accounts(rerun)} == {None}
    with_password = [row for row in demo_accounts(again) if row["password"]]
    assert with_password and {row["password"] for row in with_password} == {DEMO_PASSWORD}
    assert all(row["state"] != "invited" for row in with_password)
