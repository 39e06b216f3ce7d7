"""Administration UI: users (invite, roles, departments, disable, unlock, reset), departments,
the organisation profile, optimistic locking and forged form fields."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pyotp
import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.orgs.models import Department, Organisation
from portal.permissions import Role
from portal.users import service as users
from portal.users.models import User
from tests.helpers import (
    Browser,
    field_errors,
    flashes,
    form_fields,
    link_in,
    outbox,
    soup,
    text_of,
)
from tests.test_routes import MAIN_FORM, changed_tables, error_title, signed_in, snapshot

NEW_PASSWORD = "春の小川はさらさら行くよ 2026"
LOGIN_FAILED = "ログインできませんでした。"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def japanese(message: str) -> bool:
    """A message a Japanese user can read: Japanese text and no English sentence in it."""
    return bool(JAPANESE.search(message)) and not re.search(r"[A-Za-z]{4,}", message)


def fresh(db, model, id_):
    """The committed state now (ends the test session's read transaction, which would keep
    showing an older snapshot) and reloads every object."""
    db.rollback()
    db.expire_all()
    return db.get(model, id_)


def role_values(db, user_id: int) -> set[str]:
    return {r.value for r in fresh(db, User, user_id).role_set}


def department_ids(db, user_id: int) -> set[int]:
    return {d.id for d in fresh(db, User, user_id).departments}


def actions(db) -> list[str]:
    db.rollback()
    db.expire_all()
    return list(db.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)))


def open_form(browser: Browser, url: str, selector: str = MAIN_FORM) -> dict:
    """The values a browser would send for the form as it stands now (opened, not yet sent)."""
    page = browser.get(url)
    assert page.status_code == 200, url
    form = soup(page).select_one(selector)
    assert form is not None, f"no {selector} on {url}"
    return form_fields(form)


def password_login_refused(app, user, password: str) -> bool:
    response = Browser(app.test_client()).submit(
        "/auth/login", {"email": user.email, "password": password}
    )
    return response.status_code == 200 and any(LOGIN_FAILED in f for f in flashes(response))


@pytest.fixture
def admin(make, org):
    return make.user(org, roles={Role.ADMIN}, name="管理 花子")


@pytest.fixture
def admin_browser(app, admin):
    return signed_in(app, admin)


@pytest.fixture
def departments(make, org):
    return make.department(org, name="総務課"), make.department(org, name="情報政策課")


# ---------------------------------------------------------------------------------------------
# Users: invitation to first login
# ---------------------------------------------------------------------------------------------


def test_a_new_staff_user_is_invited_sets_a_password_enrols_totp_and_logs_in(
    app, db, org, admin_browser, departments
):
    general, _it = departments
    response = admin_browser.submit(
        "/admin/users/new",
        {
            "name": "新人 一郎",
            "email": "Shinjin@Example.JP",
            "roles": ["staff", "approver"],
            "departments": [str(general.id)],
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    created = db.scalar(sa.select(User).where(User.email == "shinjin@example.jp"))
    assert created is not None
    assert urlsplit(response.location).path == f"/admin/users/{created.id}"
    assert created.organisation_id == org.id
    assert created.vendor_company_id is None
    assert {r.value for r in created.role_set} == {"staff", "approver"}
    assert [d.id for d in created.departments] == [general.id]
    assert created.password_hash is None
    page = admin_browser.get(response.location)
    assert any("案内メールを送信しました" in f for f in flashes(page))
    assert text_of(page, "[data-field=status]") == "登録待ち"
    assert {"user.created", "user.invited"} <= set(actions(db))

    (message,) = outbox(app)
    assert message["To"] == "shinjin@example.jp"
    assert "利用登録" in message["Subject"]
    link = urlsplit(link_in(message))
    assert link.path.startswith("/auth/invitation/")

    invitee = Browser(app.test_client())
    invitation = invitee.get(link.path)
    assert invitation.status_code == 200
    assert text_of(invitation, "[data-field=email]") == "shinjin@example.jp"
    accepted = invitee.submit(
        link.path, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, MAIN_FORM
    )
    assert accepted.status_code == 302
    assert urlsplit(accepted.location).path == "/auth/login"
    # The link works once.
    assert invitee.get(link.path).status_code == 404

    login = invitee.submit("/auth/login", {"email": "shinjin@example.jp", "password": NEW_PASSWORD})
    assert urlsplit(login.location).path == "/auth/mfa/setup"
    secret = text_of(invitee.get("/auth/mfa/setup"), "[data-field=totp-secret]")
    codes = invitee.submit(
        "/auth/mfa/setup",
        {"code": pyotp.TOTP(secret).now()},
        "form[method=post]",
        follow_redirects=True,
    )
    assert codes.status_code == 200
    assert len(soup(codes).select("[data-field=recovery-codes] li")) == 10
    home = invitee.get("/")
    assert home.status_code == 200
    assert text_of(home, ".site-user__name") == "新人 一郎 さん"
    assert fresh(db, User, created.id).totp_enabled


def test_an_invitation_can_be_sent_again_and_only_the_newest_link_works(
    app, db, make, org, admin_browser
):
    pending = make.user(org, roles={Role.STAFF}, password=None, email="pending@example.jp")
    for _ in range(2):
        response = admin_browser.submit(
            f"/admin/users/{pending.id}",
            selector=f"form[action='/admin/users/{pending.id}/invite']",
        )
        assert response.status_code == 302
    first, second = (urlsplit(link_in(m)).path for m in outbox(app))
    visitor = Browser(app.test_client())
    assert visitor.get(first).status_code == 404
    assert visitor.get(second).status_code == 200


# ---------------------------------------------------------------------------------------------
# Users: roles, departments, disable / enable, unlock, reset
# ---------------------------------------------------------------------------------------------


def test_admin_changes_roles_and_departments(app, db, make, org, admin_browser, departments):
    general, it = departments
    target = make.user(org, roles={Role.STAFF}, departments=[general])
    session_version = target.session_version

    response = admin_browser.submit(
        f"/admin/users/{target.id}",
        {"roles": ["staff", "auditor"], "departments": [str(it.id)]},
        MAIN_FORM,
    )
    assert response.status_code == 302
    assert flashes(admin_browser.get(response.location)) == ["利用者の情報を更新しました。"]
    assert role_values(db, target.id) == {"staff", "auditor"}
    assert department_ids(db, target.id) == {it.id}
    # A role change ends every live session of the user.
    assert fresh(db, User, target.id).session_version > session_version
    assert "user.roles_changed" in actions(db)

    # The form shows what was saved.
    values = open_form(admin_browser, f"/admin/users/{target.id}")
    assert sorted(values["roles"]) == ["auditor", "staff"]
    assert values["departments"] == str(it.id)

    # Departments can all be removed.
    response = admin_browser.submit(f"/admin/users/{target.id}", {"departments": None}, MAIN_FORM)
    assert response.status_code == 302
    assert department_ids(db, target.id) == set()


def test_admin_disables_and_enables_an_account(app, db, make, org, admin_browser):
    target = make.user(org, roles={Role.STAFF}, name="対象 次郎")
    page = f"/admin/users/{target.id}"

    response = admin_browser.submit(page, selector=f"form[action='{page}/disable']")
    assert response.status_code == 302
    assert flashes(admin_browser.get(page)) == [
        "対象 次郎 さんのアカウントを無効にしました。ログイン中のセッションも終了しました。"
    ]
    assert fresh(db, User, target.id).active is False
    assert text_of(admin_browser.get(page), "[data-field=status]") == "無効"
    assert password_login_refused(app, target, "テスト用の長いパスフレーズ 2026")

    response = admin_browser.submit(page, selector=f"form[action='{page}/enable']")
    assert response.status_code == 302
    assert fresh(db, User, target.id).active is True
    assert {"user.disabled", "user.enabled"} <= set(actions(db))


def test_admin_unlocks_a_locked_account(app, db, make, org, admin_browser):
    target = make.user(org, roles={Role.STAFF})
    target.locked_until = utcnow() + timedelta(minutes=20)
    target.failed_login_count = 5
    db.commit()
    page = f"/admin/users/{target.id}"
    assert text_of(admin_browser.get(page), "[data-field=status]") == "ロック中"

    response = admin_browser.submit(page, selector=f"form[action='{page}/unlock']")
    assert response.status_code == 302
    unlocked = fresh(db, User, target.id)
    assert unlocked.locked_until is None
    assert unlocked.failed_login_count == 0
    assert text_of(admin_browser.get(page), "[data-field=status]") == "有効"
    assert "user.unlocked" in actions(db)


def test_admin_resets_a_password_the_old_one_stops_working_and_the_link_sets_a_new_one(
    app, db, make, org, admin_browser
):
    target = make.user(org, roles={Role.STAFF}, email="reset-me@example.jp", name="再設定 三郎")
    old_password = "テスト用の長いパスフレーズ 2026"
    page = f"/admin/users/{target.id}"

    response = admin_browser.submit(page, selector=f"form[action='{page}/reset']")
    assert response.status_code == 302
    assert fresh(db, User, target.id).password_hash is None
    (message,) = outbox(app)
    assert message["To"] == "reset-me@example.jp"
    assert "パスワード再設定" in message["Subject"]
    assert password_login_refused(app, target, old_password)

    visitor = Browser(app.test_client())
    link = urlsplit(link_in(message)).path
    assert link.startswith("/auth/reset/")
    done = visitor.submit(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, MAIN_FORM)
    assert done.status_code == 302
    assert password_login_refused(app, target, old_password)
    assert signed_in(app, target, password=NEW_PASSWORD).get("/").status_code == 200


def test_reset_can_also_clear_the_second_factor(app, db, make, org, admin_browser):
    target = make.user(org, roles={Role.STAFF})
    assert target.totp_enabled
    page = f"/admin/users/{target.id}"
    response = admin_browser.submit(
        page, {"reset_mfa": "y"}, selector=f"form[action='{page}/reset']"
    )
    assert response.status_code == 302
    cleared = fresh(db, User, target.id)
    assert (cleared.totp_enabled, cleared.totp_secret) == (False, None)


# ---------------------------------------------------------------------------------------------
# Users: what may not be done
# ---------------------------------------------------------------------------------------------


def test_the_last_admin_cannot_give_up_the_admin_role(app, db, admin, admin_browser):
    response = admin_browser.submit(f"/admin/users/{admin.id}", {"roles": ["staff"]}, MAIN_FORM)
    assert response.status_code == 200
    assert flashes(response) == [
        "団体のシステム管理者が1人もいなくなるため、この変更はできません。"
    ]
    assert role_values(db, admin.id) == {"admin"}


def test_an_admin_cannot_disable_itself(app, db, admin, admin_browser):
    page = admin_browser.get(f"/admin/users/{admin.id}")
    assert soup(page).select_one(f"form[action='/admin/users/{admin.id}/disable']") is None

    response = admin_browser.post(
        f"/admin/users/{admin.id}/disable", token_from=f"/admin/users/{admin.id}"
    )
    assert response.status_code == 302
    assert flashes(admin_browser.get(response.location)) == [
        "自分自身のアカウントは無効にできません。"
    ]
    assert fresh(db, User, admin.id).active is True


def test_admins_cannot_disable_or_demote_their_way_to_no_admin(
    app, db, make, org, admin, admin_browser
):
    second = make.user(org, roles={Role.ADMIN}, name="管理 二号")
    # With two admins one may leave …
    response = admin_browser.submit(
        f"/admin/users/{second.id}", selector=f"form[action='/admin/users/{second.id}/disable']"
    )
    assert response.status_code == 302
    assert fresh(db, User, second.id).active is False
    # … but a disabled admin does not count: the remaining one must keep the role.
    response = admin_browser.submit(f"/admin/users/{admin.id}", {"roles": ["staff"]}, MAIN_FORM)
    assert response.status_code == 200
    assert role_values(db, admin.id) == {"admin"}


def test_forged_fields_do_not_reach_the_account(app, db, make, org, other_org, admin_browser):
    company = make.company(org)
    target = make.user(org, roles={Role.STAFF}, email="target@example.jp")
    before = fresh(db, User, target.id)
    expected = (before.email, before.organisation_id, before.vendor_company_id, before.active)

    response = admin_browser.submit(
        f"/admin/users/{target.id}",
        {
            "name": "正当な変更",
            "email": "forged@example.jp",
            "organisation_id": str(other_org.id),
            "vendor_company_id": str(company.id),
            "invited_by_organisation_id": str(other_org.id),
            "active": "",
            "password_hash": "x",
            "totp_enabled": "",
            "session_version": "99",
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    after = fresh(db, User, target.id)
    assert after.name == "正当な変更"
    assert (after.email, after.organisation_id, after.vendor_company_id, after.active) == expected
    assert after.invited_by_organisation_id is None
    assert after.totp_enabled and after.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("role", ["vendor", "superuser", ""])
def test_a_role_not_offered_is_refused_with_a_japanese_message(
    app, db, make, org, admin_browser, role
):
    target = make.user(org, roles={Role.STAFF})
    before = snapshot(app)
    response = admin_browser.submit(
        f"/admin/users/{target.id}", {"roles": ["staff", role]}, MAIN_FORM
    )
    assert response.status_code == 200
    errors = field_errors(response)
    assert set(errors) == {"roles"}
    assert japanese(errors["roles"]), errors["roles"]
    assert changed_tables(before, snapshot(app)) == []


def test_a_vendor_account_cannot_be_given_a_staff_role(app, db, make, org, admin_browser):
    company = make.company(org)
    vendor = make.user(company=company, invited_by=org)
    page = f"/admin/users/{vendor.id}"
    offered = {
        i["value"] for i in soup(admin_browser.get(page)).select(f"{MAIN_FORM} [name=roles]")
    }
    assert offered == {"vendor"}
    before = snapshot(app)
    response = admin_browser.submit(page, {"roles": ["vendor", "admin"]}, MAIN_FORM)
    assert response.status_code == 200
    assert japanese(field_errors(response)["roles"])
    assert changed_tables(before, snapshot(app)) == []


def test_a_new_user_with_a_role_not_offered_is_not_created(app, db, admin_browser):
    before = snapshot(app)
    response = admin_browser.submit(
        "/admin/users/new",
        {"name": "偽装 業者", "email": "fake@example.jp", "roles": ["vendor"]},
        MAIN_FORM,
    )
    assert response.status_code == 200
    assert japanese(field_errors(response)["roles"])
    assert changed_tables(before, snapshot(app)) == []
    assert outbox(app) == []


@pytest.mark.parametrize("email", ["not-an-address", "a@b", "二重@@example.jp", "x" * 260])
def test_a_new_user_with_an_invalid_email_is_refused_in_japanese(app, admin_browser, email):
    before = snapshot(app)
    response = admin_browser.submit(
        "/admin/users/new", {"name": "宛先 不明", "email": email, "roles": ["staff"]}, MAIN_FORM
    )
    assert response.status_code == 200
    messages = flashes(response) + list(field_errors(response).values())
    assert messages and all(japanese(m) for m in messages), messages
    assert changed_tables(before, snapshot(app)) == []


def test_an_email_already_registered_is_refused(app, make, org, admin_browser):
    make.user(org, email="taken@example.jp")
    before = snapshot(app)
    response = admin_browser.submit(
        "/admin/users/new",
        {"name": "重複 太郎", "email": "TAKEN@example.jp", "roles": ["staff"]},
        MAIN_FORM,
    )
    assert flashes(response) == ["このメールアドレスはすでに登録されています。"]
    assert changed_tables(before, snapshot(app)) == []


def test_a_non_admin_cannot_create_an_admin_or_raise_its_own_roles(app, db, make, org):
    staff = make.user(org, roles={Role.STAFF, Role.AUDITOR})
    browser = signed_in(app, staff)
    before = snapshot(app)
    created = browser.post(
        "/admin/users/new",
        {"name": "昇格 狙い", "email": "climb@example.jp", "roles": "admin", "version": "1"},
    )
    raised = browser.post(
        f"/admin/users/{staff.id}", {"name": "昇格", "roles": "admin", "version": "1"}
    )
    assert created.status_code == raised.status_code == 403
    assert error_title(raised) == "アクセス権限がありません"
    assert changed_tables(before, snapshot(app)) == []


def test_departments_of_another_organisation_cannot_be_assigned(
    app, db, make, org, other_org, admin, admin_browser, departments
):
    foreign = make.department(other_org, name="他団体の課")
    retired = make.department(org, name="廃止された課")
    retired.active = False
    db.commit()
    target = make.user(org, roles={Role.STAFF}, departments=[departments[0]])
    page = f"/admin/users/{target.id}"
    offered = {int(i["value"]) for i in soup(admin_browser.get(page)).select("[name=departments]")}
    assert offered == {d.id for d in departments}

    before = snapshot(app)
    for department in (foreign, retired):
        response = admin_browser.submit(page, {"departments": [str(department.id)]}, MAIN_FORM)
        assert response.status_code == 200
        assert japanese(field_errors(response)["departments"])
        new = admin_browser.submit(
            "/admin/users/new",
            {
                "name": "越境",
                "email": f"cross{department.id}@example.jp",
                "roles": ["staff"],
                "departments": [str(department.id)],
            },
            MAIN_FORM,
        )
        assert new.status_code == 200
        assert japanese(field_errors(new)["departments"])
    assert changed_tables(before, snapshot(app)) == []

    # The service refuses them as well, whatever a form lets through.
    session = app.extensions["db_sessionmaker"]()
    actor, victim = session.get(User, admin.id), session.get(User, target.id)
    with pytest.raises(users.UserAdminError, match="選択された所属が見つかりません"):
        users.update_user(
            session,
            actor,
            victim,
            name=victim.name,
            roles={Role.STAFF},
            department_ids=[foreign.id],
            expected_version=victim.version,
        )
    session.rollback()
    session.close()


# ---------------------------------------------------------------------------------------------
# Optimistic locking
# ---------------------------------------------------------------------------------------------


def test_two_admins_edit_the_same_user_the_second_gets_a_conflict(app, db, make, org, admin):
    second_admin = make.user(org, roles={Role.ADMIN}, name="管理 二号")
    target = make.user(org, roles={Role.STAFF}, name="元の氏名")
    first, second = signed_in(app, admin), signed_in(app, second_admin)
    url = f"/admin/users/{target.id}"
    first_form, second_form = open_form(first, url), open_form(second, url)

    saved = first.client.post(url, data={**first_form, "name": "一人目の変更"})
    assert saved.status_code == 302
    conflict = second.client.post(
        url, data={**second_form, "name": "二人目の変更", "roles": ["staff", "ciso"]}
    )
    assert conflict.status_code == 409
    assert error_title(conflict) == "他の操作と競合しました"
    assert soup(conflict).html["lang"] == "ja"
    kept = fresh(db, User, target.id)
    assert kept.name == "一人目の変更"
    assert {r.value for r in kept.role_set} == {"staff"}

    # Reloading shows the saved change and lets the second admin try again.
    retry = second.submit(url, {"name": "二人目の変更"}, MAIN_FORM)
    assert retry.status_code == 302
    assert fresh(db, User, target.id).name == "二人目の変更"


def test_a_double_submit_of_the_same_form_changes_nothing_twice(app, db, make, org, admin_browser):
    target = make.user(org, roles={Role.STAFF}, name="元の氏名")
    version_before = target.version
    url = f"/admin/users/{target.id}"
    values = {**open_form(admin_browser, url), "name": "一度だけの変更"}
    assert admin_browser.client.post(url, data=values).status_code == 302
    events = len(actions(db))
    again = admin_browser.client.post(url, data=values)
    # The same values again: nothing left to save, so no conflict, no second change or event.
    assert again.status_code == 302
    assert len(actions(db)) == events
    assert fresh(db, User, target.id).name == "一度だけの変更"
    assert fresh(db, User, target.id).version == version_before + 1


def test_a_login_between_opening_and_saving_the_form_is_not_a_conflict(
    app, db, make, org, admin_browser
):
    """The version counts administrative edits, not the target's own logins."""
    target = make.user(org, roles={Role.STAFF}, name="元の氏名")
    url = f"/admin/users/{target.id}"
    values = {**open_form(admin_browser, url), "name": "管理者の変更"}

    assert Browser(app.test_client()).login(target).status_code == 302

    assert admin_browser.client.post(url, data=values).status_code == 302
    assert fresh(db, User, target.id).name == "管理者の変更"


def test_a_retired_department_membership_survives_an_edit(db, make, org, admin_browser):
    retired = make.department(org, "廃止された課")
    current = make.department(org, "今の課")
    target = make.user(org, roles={Role.STAFF}, departments=[retired, current])
    retired.active = False
    db.commit()

    response = admin_browser.submit(
        f"/admin/users/{target.id}", {"name": "名前だけ変更"}, MAIN_FORM
    )

    assert response.status_code == 302
    assert {d.name for d in fresh(db, User, target.id).departments} == {"廃止された課", "今の課"}


def test_two_admins_edit_the_organisation_profile_the_second_gets_a_conflict(
    app, db, make, org, admin
):
    second_admin = make.user(org, roles={Role.ADMIN})
    first, second = signed_in(app, admin), signed_in(app, second_admin)
    first_form = open_form(first, "/admin/organisation")
    second_form = open_form(second, "/admin/organisation")

    assert (
        first.client.post(
            "/admin/organisation", data={**first_form, "self_designation": "本村"}
        ).status_code
        == 302
    )
    conflict = second.client.post(
        "/admin/organisation", data={**second_form, "self_designation": "本組合"}
    )
    assert conflict.status_code == 409
    assert error_title(conflict) == "他の操作と競合しました"
    assert fresh(db, Organisation, org.id).self_designation == "本村"


# ---------------------------------------------------------------------------------------------
# Departments
# ---------------------------------------------------------------------------------------------


def department_rows(browser) -> dict[str, str]:
    page = browser.get("/admin/departments")
    rows = {}
    for tr in soup(page).select("[data-table=departments] tbody tr[data-department-id]"):
        cells = [td.get_text(strip=True) for td in tr.select("td")]
        rows[cells[0]] = cells[2]
    return rows


def test_departments_are_created_renamed_and_retired_with_unique_names(app, db, org, admin_browser):
    created = admin_browser.submit(
        "/admin/departments", {"name": " 総務課 ", "code": "A01"}, MAIN_FORM
    )
    assert created.status_code == 302
    assert department_rows(admin_browser) == {"総務課": "使用中"}

    before = snapshot(app)
    duplicate = admin_browser.submit("/admin/departments", {"name": "総務課"}, MAIN_FORM)
    assert duplicate.status_code == 200
    assert flashes(duplicate) == ["同じ名称の所属がすでにあります。"]
    empty = admin_browser.submit("/admin/departments", {"name": "   "}, MAIN_FORM)
    assert japanese(field_errors(empty)["name"])
    assert changed_tables(before, snapshot(app)) == []

    department = db.scalar(sa.select(Department).where(Department.organisation_id == org.id))
    admin_browser.submit("/admin/departments", {"name": "財政課"}, MAIN_FORM)
    page = f"/admin/departments/{department.id}"
    clash = admin_browser.submit(page, {"name": "財政課"}, MAIN_FORM)
    assert flashes(clash) == ["同じ名称の所属がすでにあります。"]

    renamed = admin_browser.submit(page, {"name": "総務部総務課"}, MAIN_FORM)
    assert renamed.status_code == 302
    retired = admin_browser.submit(page, {"active": None}, MAIN_FORM)
    assert retired.status_code == 302
    assert department_rows(admin_browser) == {"総務部総務課": "廃止", "財政課": "使用中"}
    changed = fresh(db, Department, department.id)
    assert (changed.name, changed.code, changed.active) == ("総務部総務課", "A01", False)
    # A retired department is no longer offered to users.
    offered = {
        i.find_next("label").get_text(strip=True)
        for i in soup(admin_browser.get("/admin/users/new")).select("[name=departments]")
    }
    assert offered == {"財政課"}
    assert {"department.created", "department.updated"} <= set(actions(db))


def test_a_long_department_name_is_refused_in_japanese(app, admin_browser):
    before = snapshot(app)
    response = admin_browser.submit("/admin/departments", {"name": "課" * 101}, MAIN_FORM)
    assert response.status_code == 200
    assert japanese(field_errors(response)["name"])
    assert changed_tables(before, snapshot(app)) == []


# ---------------------------------------------------------------------------------------------
# Organisation profile
# ---------------------------------------------------------------------------------------------


def test_the_organisation_profile_is_edited(app, db, org, admin_browser):
    response = admin_browser.submit(
        "/admin/organisation",
        {
            "name": "西原村",
            "self_designation": "本村",
            "ciso_title": "副村長",
            "network_admin_title": "総務課長",
            "approver_title": "総務課長",
            "review_interval_months": "24",
            "high_risk_review_interval_months": "12",
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    assert flashes(admin_browser.get("/admin/organisation")) == ["団体情報を更新しました。"]
    saved = fresh(db, Organisation, org.id)
    assert (saved.name, saved.self_designation, saved.ciso_title) == ("西原村", "本村", "副村長")
    assert (saved.review_interval_months, saved.high_risk_review_interval_months) == (24, 12)
    values = open_form(admin_browser, "/admin/organisation")
    assert (values["name"], values["self_designation"]) == ("西原村", "本村")
    assert text_of(admin_browser.get("/"), ".site-user__home") == "西原村"
    assert "organisation.updated" in actions(db)


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"review_interval_months": "0"}, "review_interval_months"),
        ({"review_interval_months": "61"}, "review_interval_months"),
        ({"high_risk_review_interval_months": "十二"}, "high_risk_review_interval_months"),
        ({"kind": "empire"}, "kind"),
        ({"self_designation": ""}, "self_designation"),
        ({"self_designation": "本" * 21}, "self_designation"),
    ],
)
def test_invalid_organisation_values_are_refused_in_japanese(app, admin_browser, changes, where):
    before = snapshot(app)
    response = admin_browser.submit("/admin/organisation", changes, MAIN_FORM)
    assert response.status_code == 200
    errors = field_errors(response)
    assert where in errors
    assert japanese(errors[where]), errors[where]
    assert changed_tables(before, snapshot(app)) == []


def test_organisation_rules_across_fields_and_organisations(app, db, other_org, admin_browser):
    before = snapshot(app)
    taken = admin_browser.submit("/admin/organisation", {"name": other_org.name}, MAIN_FORM)
    assert flashes(taken) == ["同じ名称の団体がすでに登録されています。"]
    inverted = admin_browser.submit(
        "/admin/organisation",
        {"review_interval_months": "6", "high_risk_review_interval_months": "12"},
        MAIN_FORM,
    )
    assert flashes(inverted) == ["高リスクの確認間隔は、通常の確認間隔以下にしてください。"]
    forged = admin_browser.submit(
        "/admin/organisation", {"id": str(other_org.id), "active": "", "version": "x"}, MAIN_FORM
    )
    assert forged.status_code in {200, 409}
    assert changed_tables(before, snapshot(app)) == []


def test_a_double_submit_of_the_new_user_form_creates_one_account_and_one_mail(
    app, db, admin_browser
):
    values = {
        **open_form(admin_browser, "/admin/users/new"),
        "name": "二重 送信",
        "email": "double@example.jp",
        "roles": ["staff"],
    }
    first = admin_browser.client.post("/admin/users/new", data=values)
    second = admin_browser.client.post("/admin/users/new", data=values)
    assert first.status_code == 302
    assert second.status_code == 200
    assert flashes(second)[-1] == "このメールアドレスはすでに登録されています。"
    db.rollback()
    assert (
        db.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.email == "double@example.jp")
        )
        == 1
    )
    assert len(outbox(app)) == 1
