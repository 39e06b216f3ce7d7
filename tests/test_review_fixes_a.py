"""Review fixes: audit filter bounds, error pages for other status codes, backups, request IDs,
seed-demo in production, and Japanese wording."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import abort

from portal.audit import service as audit
from portal.audit.models import AuditChain, AuditEvent
from portal.auth import tokens
from portal.auth.passwords import password_problems
from portal.backup import BackupError, create_backup
from portal.permissions import Role
from portal.users.models import User
from tests.helpers import field_errors, soup, text_of

HEX_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
FILTER_KEYS = {"action", "actor", "date_from", "date_to"}
DATE_RANGE_ERROR = "2000年1月1日から2100年12月31日までの日付を入力してください。"


def audit_rows(page) -> list[dict[str, str]]:
    table = soup(page).select_one("table[data-table=audit-events]")
    assert table is not None, "no audit table"
    headers = [th.get_text(strip=True) for th in table.select("thead th")]
    return [
        dict(zip(headers, (td.get_text(" ", strip=True) for td in tr.select("td")), strict=True))
        for tr in table.select("tbody tr[data-seq]")
    ]


def events(db, action: str) -> list[AuditEvent]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


@pytest.fixture
def auditor_browser(browser, make, org):
    auditor = make.user(org, roles={Role.AUDITOR}, email="auditor@example.jp")
    browser.login(auditor)
    return browser


# 1. The audit log filter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date_to=9999-12-31", "date_to"),
        ("date_from=0001-01-01", "date_from"),
        ("date_from=1999-12-31", "date_from"),
        ("date_to=2101-01-01", "date_to"),
    ],
)
def test_audit_dates_out_of_range_are_refused_next_to_the_field(auditor_browser, query, field):
    page = auditor_browser.get(f"/audit/?{query}")

    assert page.status_code == 200
    assert field_errors(page) == {field: DATE_RANGE_ERROR}
    assert audit_rows(page) == []


def test_audit_dates_at_the_bounds_are_accepted(auditor_browser):
    page = auditor_browser.get("/audit/?date_from=2000-01-01&date_to=2100-12-31")

    assert page.status_code == 200
    assert field_errors(page) == {}
    assert {r["操作"] for r in audit_rows(page)} == {"ログイン"}
    date_input = soup(page).select_one("input[name=date_to]")
    assert (date_input["min"], date_input["max"]) == ("2000-01-01", "2100-12-31")


def test_audit_export_with_an_out_of_range_date_is_no_error(auditor_browser):
    response = auditor_browser.post("/audit/export.csv", {"date_to": "9999-12-31"})

    assert response.status_code == 200
    assert response.mimetype == "text/csv"


@pytest.mark.parametrize(
    "extra",
    [
        "endpoint=x",
        "_external=1&_scheme=javascript&_anchor=x&_method=POST",
        "values=1&page_size=5&csrf_token=abc",
    ],
)
def test_the_pager_and_export_carry_only_the_filter_fields(auditor_browser, db, org, extra):
    for i in range(101):
        audit.record(db, "user.updated", actor_label=f"a{i}@example.jp", organisation_id=org.id)
    db.commit()

    first = auditor_browser.get(f"/audit/?action=user.updated&{extra}")
    second = auditor_browser.get(f"/audit/?page=2&action=user.updated&{extra}")

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(audit_rows(first)) == 100
    assert len(audit_rows(second)) == 1
    links = [a["href"] for page in (first, second) for a in soup(page).select("nav.pager a")]
    assert len(links) == 2
    for href in links:
        query = parse_qs(urlsplit(href).query)
        assert set(query) == {"page", "action"}
        assert query["action"] == ["user.updated"]
    export = soup(first).select_one("form[action$='export.csv']")
    hidden = {i["name"]: i["value"] for i in export.select("input[type=hidden]")}
    assert set(hidden) == {"csrf_token", "action"}


@pytest.mark.parametrize("action", ["no.such.action", "x" * 500, "<script>1</script>"])
def test_an_unknown_action_is_ignored(auditor_browser, db, org, action):
    audit.record(db, "user.disabled", actor_label="b@example.jp", organisation_id=org.id)
    db.commit()

    page = auditor_browser.get("/audit/", query_string={"action": action})

    assert page.status_code == 200
    assert field_errors(page) == {}
    assert {"ログイン", "アカウントの無効化"} <= {r["操作"] for r in audit_rows(page)}
    select = soup(page).select_one("select[name=action]")
    assert select.select("option[selected]") == []
    export = soup(page).select_one("form[action$='export.csv']")
    assert export.select("input[name=action]") == []


def test_a_known_action_stays_selected(auditor_browser):
    page = auditor_browser.get("/audit/?action=user.disabled")

    selected = soup(page).select("select[name=action] option[selected]")
    assert [o["value"] for o in selected] == ["user.disabled"]


def test_the_new_audit_labels(auditor_browser, db, org):
    for action in ("vendor.linked", "audit.purged", "backup.restored"):
        audit.record(db, action, actor_label="cli", organisation_id=org.id)
    db.commit()

    labels = {r["操作"] for r in audit_rows(auditor_browser.get("/audit/"))}

    assert {
        "登録済み事業者の取引先への追加",
        "保存期間を過ぎた監査ログの削除",
        "バックアップからの復元",
    } <= labels


# 2. Error pages for status codes without their own message ---------------------------------------

OTHER_TITLE = "リクエストを処理できません"


@pytest.fixture
def aborting(app):
    """A test-only route that answers with any status code (added before the first request)."""
    app.add_url_rule("/test-only/abort/<int:code>", "test_abort", lambda code: abort(code))
    return app.test_client()


def test_an_unsatisfiable_range_keeps_416(client):
    response = client.get("/static/css/portal.css", headers={"Range": "bytes=999999-"})

    assert response.status_code == 416
    assert text_of(response, "h1") == OTHER_TITLE
    assert response.headers["Content-Range"].startswith("bytes */")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("code", [415, 416, 418, 431])
def test_other_client_errors_keep_their_code_with_a_generic_japanese_page(aborting, code):
    response = aborting.get(f"/test-only/abort/{code}")

    assert response.status_code == code
    assert text_of(response, "h1") == OTHER_TITLE
    assert f"エラーコード: {code}" in soup(response).get_text()
    assert "Traceback" not in response.get_data(as_text=True)


def test_other_client_errors_in_json(aborting):
    response = aborting.get("/test-only/abort/415", headers={"Accept": "application/json"})

    assert response.status_code == 415
    assert response.get_json() == {"error": OTHER_TITLE}


def test_other_server_errors_keep_their_code_with_the_system_error_page(aborting):
    response = aborting.get("/test-only/abort/501")

    assert response.status_code == 501
    assert text_of(response, "h1") == "システムエラーが発生しました"


def test_405_still_sends_allow(client):
    response = client.delete("/auth/login")

    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_the_csrf_message_is_softened(client):
    response = client.post("/auth/login", data={"email": "a@example.jp", "password": "x"})

    assert response.status_code == 400
    assert (
        "フォームの有効期限が切れたか、正しく送信されませんでした。"
        "ページを再読み込みしてから、もう一度お試しください。"
    ) in soup(response).get_text()
    assert "不正な送信" not in response.get_data(as_text=True)


# 3. Backups ----------------------------------------------------------------------------------------


def _sqlite_only(app) -> None:
    if not app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("the SQLite backup path")


def test_a_wrong_sqlite_path_fails_and_creates_nothing(tmp_path):
    missing = tmp_path / "missing.db"

    with pytest.raises(BackupError, match="見つかりません"):
        create_backup(f"sqlite:///{missing}", tmp_path / "evidence", tmp_path / "backups")

    assert not missing.exists()
    assert list((tmp_path / "backups").glob("*")) == []


def test_the_archive_is_owner_only_from_the_start(app, tmp_path, monkeypatch):
    _sqlite_only(app)
    destination = tmp_path / "backups"
    modes: list[int] = []
    original_add = tarfile.TarFile.add

    def add(self, name, *args, **kwargs):
        (archive,) = destination.glob("portal-backup-*.tar.gz")
        modes.append(stat.S_IMODE(archive.stat().st_mode))
        return original_add(self, name, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "add", add)
    previous = os.umask(0)
    try:
        archive = create_backup(app.config["DATABASE_URL"], tmp_path / "evidence", destination)
    finally:
        os.umask(previous)

    assert modes and set(modes) == {0o600}
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_a_restore_is_recorded_in_the_restored_trail(app, db, make, org, runner, tmp_path):
    if not app.config["DATABASE_URL"].startswith("sqlite") and shutil.which("pg_dump") is None:
        pytest.skip("PostgreSQL client tools (pg_dump) are not installed")
    audit.record(db, "user.updated", actor_label="before@example.jp", organisation_id=org.id)
    db.commit()
    archive = create_backup(
        app.config["DATABASE_URL"], Path(app.config["EVIDENCE_DIR"]), tmp_path / "backups"
    )
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    audit.record(db, "user.updated", actor_label="after@example.jp", organisation_id=org.id)
    db.commit()
    head_before = db.scalar(sa.select(AuditChain.last_hash))
    db.close()

    result = runner.invoke(args=["backup", "restore", str(archive), "--yes"])

    assert result.exit_code == 0, result.output
    (restored,) = events(db, "backup.restored")
    assert restored.actor_label == "cli"
    assert restored.actor_user_id is None
    assert json.loads(restored.details) == {
        "archive": archive.name,
        "created_at": manifest["created_at"],
        "chain_head_before": head_before,
    }
    labels = {e.actor_label for e in events(db, "user.updated")}
    assert labels == {"before@example.jp"}  # the restored trail, with the restore appended
    assert audit.verify(db).ok


# 4. Request IDs --------------------------------------------------------------------------------------


def test_a_client_request_id_is_replaced_unless_a_proxy_is_trusted(app, client):
    header = {"X-Request-ID": "proxy-given-id-0001"}

    untrusted = client.get("/auth/login", headers=header).headers["X-Request-ID"]
    app.config["TRUSTED_PROXIES"] = 1
    trusted = client.get("/auth/login", headers=header).headers["X-Request-ID"]

    assert HEX_REQUEST_ID.match(untrusted)
    assert trusted == "proxy-given-id-0001"


# 5. seed-demo never runs in production ------------------------------------------------------------


def test_seed_demo_has_no_production_override(app, runner, db):
    app.config["PORTAL_ENV"] = "production"

    forced = runner.invoke(args=["seed-demo", "--allow-production", "--password", "x" * 16])
    plain = runner.invoke(args=["seed-demo", "--password", "x" * 16])
    helptext = runner.invoke(args=["seed-demo", "--help"]).output

    assert forced.exit_code == 2
    assert "--allow-production" in forced.output  # "No such option"
    assert plain.exit_code == 1
    assert "本番" in plain.output
    assert "--allow-production" not in helptext
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(User)) == 0
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert "--allow-production" not in readme


# 6. Japanese wording -------------------------------------------------------------------------------


def test_the_login_page_says_whom_to_ask_for_a_new_password(client):
    assert text_of(client.get("/auth/login"), "p.form-note") == (
        "パスワードを忘れた場合は、職員の方は所属団体のシステム管理者に、"
        "委託先事業者の方は発注元の担当職員に再設定を依頼してください。"
    )


def test_password_messages_name_the_company_too():
    assert password_problems(
        "株式会社みなとの長いパスワード", organisation_name="株式会社みなと"
    ) == ["メールアドレス、氏名、団体名・会社名を含むパスワードは使用できません。"]
    assert password_problems("abababababababab") == [
        "同じ文字や2種類程度の文字を繰り返しただけのパスワードは使用できません。"
    ]


def test_password_hints_name_the_company_too(browser, make, org):
    browser.login(make.user(org))

    hint = text_of(browser.get("/auth/password"), "[data-field=password] .field__hint")

    assert "メールアドレス、氏名、団体名・会社名を含むもの" in hint


@pytest.mark.parametrize("vendor", [False, True])
def test_the_invitation_page_greets_formally(app, db, make, org, vendor):
    if vendor:
        user = make.user(company=make.company(org), password=None, name="委託 花子")
    else:
        user = make.user(org, password=None, totp=False, name="新任 太郎")
    with app.app_context():
        token = tokens.issue(db, user, tokens.INVITATION, timedelta(hours=1))
    db.commit()

    page = app.test_client().get(f"/auth/invitation/{token}")

    assert page.status_code == 200
    paragraphs = [p.get_text(strip=True) for p in soup(page).select("main p")]
    assert f"{user.name} 様" in paragraphs
    intro = next(p for p in paragraphs if p.startswith("ポータルの利用登録を行います。"))
    assert intro.startswith("ポータルの利用登録を行います。パスワードを設定してください。")
    assert ("二要素認証" in intro) is not vendor
    _hint = soup(page).select_one("[data-field=password] .field__hint").get_text()
    assert "団体名・会社名" in _hint


def test_admin_pages_label_the_last_login(browser, make, org):
    browser.login(make.user(org, roles={Role.ADMIN}))
    target = make.user(org)

    users = browser.get("/admin/users")
    edit = browser.get(f"/admin/users/{target.id}")

    headers = [th.get_text(strip=True) for th in soup(users).select("table[data-table=users] th")]
    assert "最終ログイン日時" in headers
    assert "最終ログイン日時" in [dt.get_text(strip=True) for dt in soup(edit).select("dt")]
    assert "前回ログイン" not in users.get_data(as_text=True) + edit.get_data(as_text=True)


# 7. README corrections -----------------------------------------------------------------------------


def test_readme_corrections():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")

    assert "| `PORTAL_INSTANCE_PATH` | `<project root>/instance` |" in readme
    assert "| `PORTAL_EVIDENCE_DIR` | `instance/evidence` |" in readme
    assert "locked for 30 minutes after the demo data is first loaded" in readme
    assert (
        "| 兼務の禁止 | separation of duties (`permissions.can_confirm`, "
        "`permissions.can_decide_application`; `Outcome` and `UseApplication` check constraints) |"
        in readme
    )
