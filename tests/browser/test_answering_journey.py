"""A vendor answers in a real browser: autosave as they type (no button pressed), the answer is
still there after a reload, and a yes/no answer reveals its follow-up question once saved — all
under the strict CSP, without console errors."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from playwright.sync_api import expect

from portal.assessments import store
from portal.assessments.models import Answer
from portal.permissions import Role
from tests.factories import PASSWORD

TYPED = "情報セキュリティ部長 港 一郎"


def _saved(db, assessment_id: int) -> dict:
    db.rollback()
    rows = db.scalars(sa.select(Answer).where(Answer.assessment_id == assessment_id))
    return {row.question_key: json.loads(row.value) for row in rows}


def test_a_vendor_answer_is_autosaved_while_typing_and_a_follow_up_appears_after_saving(
    live_server, page, db, make, org
):
    department = make.department(org, "市民課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, "みなと情報システム株式会社")
    vendor = make.user(company=company, invited_by=org, name="回答 花子")
    assessment = make.assessment(make.engagement(org, department, staff), company, staff)
    section = f"{live_server}/assessments/{assessment.id}/sections/company"

    page.goto(f"{live_server}/auth/login")
    page.get_by_label("メールアドレス").fill(vendor.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(f"{live_server}/")
    page.locator("[data-table=my-assessments]").get_by_role("link", name="窓口業務委託").click()
    page.wait_for_url(section)

    # Typing alone saves the answer: its status line says so, and the database has it.
    field = page.locator("#q-company-security_officer")
    status = page.locator('[data-status-for="company.security_officer"]')
    expect(status).to_have_text("")
    field.fill(TYPED)
    expect(status).to_have_text("自動保存しました。")
    assert _saved(db, assessment.id)["company.security_officer"] == TYPED

    page.reload()
    expect(page.locator("#q-company-security_officer")).to_have_value(TYPED)

    # A yes/no answer is autosaved on change; its follow-up is asked once the page is saved.
    follow_up = page.locator('[data-question="company.past_incident_details"]')
    expect(follow_up).to_have_count(0)
    page.locator("#q-company-past_incidents-yes").check()
    expect(page.locator('[data-status-for="company.past_incidents"]')).to_have_text(
        "自動保存しました。"
    )
    page.get_by_role("button", name="保存する").click()
    page.wait_for_url(section)
    expect(page.locator(".flash--success")).to_have_text("保存しました。")
    expect(follow_up).to_be_visible()
    expect(page.locator("#q-company-past_incidents-yes")).to_be_checked()
    assert _saved(db, assessment.id)["company.past_incidents"] == "yes"

    # The follow-up autosaves too, and a refused value is reported beside it.
    details = page.locator("#q-company-past_incident_details")
    details.fill("2025年に委託先の端末でマルウェア感染。全端末のEDR導入で再発を防止。")
    expect(page.locator('[data-status-for="company.past_incident_details"]')).to_have_text(
        "自動保存しました。"
    )
    assert page.problems == []

    ratio = page.locator("#q-company-foreign_capital_ratio")
    ratio.fill("150")
    ratio_status = page.locator('[data-status-for="company.foreign_capital_ratio"]')
    expect(ratio_status).to_have_text("100以下の値を入力してください。")
    expect(ratio_status).to_have_class("autosave-status autosave-status--error")
    assert "company.foreign_capital_ratio" not in _saved(db, assessment.id)
    # Chromium logs the refused autosave (HTTP 422) as a failed resource; nothing else.
    assert page.problems == [
        "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
    ]


def test_quick_changes_to_one_question_are_saved_one_after_another(
    live_server, page, db, make, org, monkeypatch
):
    """Ticking several boxes of one question faster than the server answers: each save waits for
    the previous reply (whose revision it carries), so none is refused as someone else's."""
    department = make.department(org, "市民課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, "みなと情報システム株式会社")
    vendor = make.user(company=company, invited_by=org, name="回答 花子")
    assessment = make.assessment(make.engagement(org, department, staff), company, staff)
    slow_save = store.save

    def save(*args, **kwargs):
        time.sleep(0.4)  # a slow server: the next tick comes before this reply
        return slow_save(*args, **kwargs)

    monkeypatch.setattr(store, "save", save)
    started: list[str] = []
    page.on(
        "request",
        lambda request: (
            started.append(request.post_data or "") if request.url.endswith("/autosave") else None
        ),
    )

    page.goto(f"{live_server}/auth/login")
    page.get_by_label("メールアドレス").fill(vendor.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(f"{live_server}/")
    page.goto(f"{live_server}/assessments/{assessment.id}/sections/contract")
    for choice in ("onsite", "remote", "vpn"):
        page.locator(f"#q-contract-access_methods-{choice}").check()
    status = page.locator('[data-status-for="contract.access_methods"]')
    expect(status).to_have_text("自動保存しました。", timeout=10_000)
    expect(status).not_to_have_class("autosave-status autosave-status--error")

    assert sorted(_saved(db, assessment.id)["contract.access_methods"]) == [
        "onsite",
        "remote",
        "vpn",
    ]
    # The first tick went out alone; the two made meanwhile were sent together, once.
    assert len(started) == 2
    assert page.problems == []
