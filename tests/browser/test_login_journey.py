"""A staff member logs in through password and TOTP in a real browser, under the strict CSP."""

from __future__ import annotations

import pyotp

from portal.permissions import Role
from tests.factories import PASSWORD


def test_staff_login_with_totp_in_chromium_shows_previous_login_and_no_csp_violation(
    live_server, page, make, org
):
    department = make.department(org, "情報政策課")
    user = make.user(org, roles={Role.STAFF}, departments=[department], name="担当 花子")

    page.goto(f"{live_server}/")
    assert page.url.startswith(f"{live_server}/auth/login")
    page.get_by_label("メールアドレス").fill(user.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()

    page.wait_for_url(f"{live_server}/auth/mfa")
    page.get_by_label("確認コード").fill(pyotp.TOTP(user.totp_secret).now())
    page.get_by_role("button", name="確認").click()

    page.wait_for_url(f"{live_server}/")
    assert page.get_by_role("heading", level=1).inner_text() == "ホーム"
    assert page.locator("[data-field=failed-attempts]").inner_text() == "0 回"
    assert page.get_by_role("navigation", name="メインメニュー").is_visible()
    # The stylesheet loaded under the CSP: the header has its brand colour.
    background = page.locator(".site-header").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(11, 79, 138)"

    page.get_by_role("button", name="ログアウト").click()
    page.wait_for_url(f"{live_server}/auth/login")
    assert page.problems == []


def test_staff_without_totp_enrols_by_scanning_the_server_drawn_qr_code(
    live_server, page, make, org
):
    user = make.user(org, roles={Role.AUDITOR}, totp=False)

    page.goto(f"{live_server}/auth/login")
    page.get_by_label("メールアドレス").fill(user.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()

    page.wait_for_url(f"{live_server}/auth/mfa/setup")
    qr = page.get_by_role("img", name="認証アプリ登録用のQRコード")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = page.locator("[data-field=totp-secret]").inner_text()
    page.get_by_label("確認コード").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="設定する").click()

    codes = page.locator("[data-field=recovery-codes] li")
    assert codes.count() == 10
    page.get_by_role("link", name="保管しました。続ける").click()
    page.wait_for_url(f"{live_server}/")
    assert page.problems == []
