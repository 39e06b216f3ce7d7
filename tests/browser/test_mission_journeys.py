"""The whole mission in a real browser (headless Chromium), one journey per user type, each
continuing from the world the previous one left:

1. the システム管理者 adds a department and registers a member of staff, who accepts the
   invitation from the mail, sets a password, logs in and enrols TOTP;
2. that member of staff registers a 案件 (an external service, 機密性2: 対策基準9.2) and asks a
   new vendor to answer; the invitation reaches the outbox;
3. the vendor accepts it, answers every question (autosave observed), uploads a certificate (a
   PDF made here) and submits;
4. staff return one answer with a comment; the vendor sees it, revises it and resubmits;
5. staff review every answer and record the decision, which the 許可権限者 confirms (a second
   person, as the organisation requires);
6. staff generate the 特記事項 PDF and download it; the download is read back;
7. staff register the service from the answers and apply for its use (利用申請); the 許可権限者
   approves and designates the 外部サービス管理者, who finds it among the services they manage;
   the register (台帳) shows it;
8. the clock moves to 30 days before the 定期確認 is due; the daily job sends the reminder to the
   外部サービス管理者 (and to the department's staff).

Everything is done through the pages, as each user would: links and buttons found by their role
and name, fields by their label. The database is checked after each step; the pages must log no
console error and no CSP violation.

The world (an app, its live server, the browser pages of every user) lives for the module; each
test runs the steps before its own when they have not run yet, so any test runs on its own too.
When a step fails, every open page is photographed into ``test-artifacts/`` (``mission-<step>-
<user>.png``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pyotp
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from weasyprint import HTML
from werkzeug.serving import make_server

from portal import create_app
from portal.approvals.models import UseApplication
from portal.assessments import store
from portal.assessments.demo import sample_answer
from portal.assessments.models import Answer, Assessment
from portal.clauses.models import ClauseVersion
from portal.engagements.models import Engagement
from portal.evaluations.models import Outcome
from portal.evidence.models import EvidenceFile
from portal.permissions import Role
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_sections
from portal.reviews.models import ReviewSchedule
from portal.users.models import User
from portal.vendors.corporate_number import with_check_digit
from portal.web import JST, today_jst
from tests.browser.conftest import ARTIFACTS
from tests.conftest import CHEAP_ARGON2
from tests.factories import PASSWORD, Factory
from tests.helpers import empty_database, link_in, outbox
from tests.pdf_helpers import pdf_text

BANK = loader.latest("assessment")

ORGANISATION = "桜台市"
DEPARTMENT = "情報政策課"
STAFF_NAME = "担当 花子"
STAFF_EMAIL = "tanto@sakuradai.example.jp"
STAFF_PASSPHRASE = "朝の港で珈琲を二杯ゆっくり飲んでから出勤する"
ENGAGEMENT = "電子申請サービスの利用"
COMPANY = "株式会社さくらクラウド"
CORPORATE_NUMBER = with_check_digit("700000000001")
VENDOR_NAME = "回答 太郎"
VENDOR_EMAIL = "kaito@sakura-cloud.example.com"
VENDOR_PASSPHRASE = "夕焼けの丘で三毛猫が昼寝をしている午後"
SERVICE = "さくら電子申請クラウド"
RETURNED_KEY = "company.security_officer"
RETURN_COMMENT = "役職だけでなく、責任者の氏名もご記入ください。"
CERTIFICATE = "ISO27001登録証.pdf"

INVITATION_SUBJECT = "【利用登録のご案内】委託先・外部サービス リスク評価ポータル"
RETURN_SUBJECT = "【回答の差戻し】委託先・外部サービス 情報セキュリティ評価票"
REMINDER_SUBJECT = f"【定期確認】確認期限まであと30日です（{SERVICE}）"

# Accounts the organisation already has (the administrator, the 許可権限者 and the
# 外部サービス管理者); the member of staff and the vendor are created through the pages.
ACCOUNTS = {
    "admin": ("admin@sakuradai.example.jp", "管理 一郎", {Role.ADMIN}),
    "approver": ("approver@sakuradai.example.jp", "許可 次郎", {Role.APPROVER}),
    "manager": ("manager@sakuradai.example.jp", "管理者 三郎", {Role.SERVICE_MANAGER}),
}


def _answers(today: date) -> dict[str, object]:
    """What the vendor answers where the demo's sample answer will not do: the facts of this
    company, and certificates whose expiry lies well after the first 定期確認 (so that nothing
    brings it forward)."""
    return {
        "company.address": "東京都千代田区霞が関一丁目1番1号",
        "company.representative": "代表取締役 桜井 一郎",
        "company.security_officer": "情報セキュリティ部長",
        "certifications.ismap": "ismap",
        "certifications.ismap_service_name": SERVICE,
        "certifications.ismap_number": "C24-0001-1",
        "certifications.ismap_registered_on": (today - timedelta(days=300)).isoformat(),
        "certifications.ismap_audit_period_end": (today - timedelta(days=1)).isoformat(),
        "certifications.others": [
            {
                "kind": "iso27001",
                "number": "IS 654321",
                "body": "日本情報認証機構",
                "scope": "クラウドサービスの提供",
                "issued": (today - timedelta(days=400)).isoformat(),
                "expires": (today + timedelta(days=3 * 365)).isoformat(),
            }
        ],
    }


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------


@dataclass
class Mission:
    app: object
    base_url: str
    chromium: object
    db: object  # a session for arranging and checking
    accounts: dict[str, User]
    pages: dict[str, Page] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    stopped_at: str | None = None
    clock: object | None = None  # the time_machine of the test that moves the clock

    # Browsers -------------------------------------------------------------------------------

    def page(self, who: str) -> Page:
        """``who``'s browser: a context of its own, console errors kept in ``page.problems``."""
        if who not in self.pages:
            context = self.chromium.new_context(
                locale="ja-JP", viewport={"width": 1200, "height": 900}, accept_downloads=True
            )
            self.adopt(who, context.new_page())
        return self.pages[who]

    def adopt(self, name: str, page: Page) -> Page:
        """Watch ``page`` for console errors (CSP violations are logged as such), and photograph
        it when a step fails."""
        page.problems = []
        page.expected = []  # console errors a step expects (see ``_autosaved``)
        page.on(
            "console",
            lambda message: page.problems.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        self.pages[name] = page
        return page

    def log_in(self, who: str, email: str, password: str, totp_secret: str | None) -> Page:
        """The real login form: password, then the TOTP code for staff roles."""
        page = self.page(who)
        page.goto(f"{self.base_url}/auth/login")
        page.get_by_label("メールアドレス").fill(email)
        page.get_by_label("パスワード").fill(password)
        page.get_by_role("button", name="ログイン").click()
        if totp_secret:
            page.wait_for_url(f"{self.base_url}/auth/mfa")
            page.get_by_label("確認コード").fill(pyotp.TOTP(totp_secret).now())
            page.get_by_role("button", name="確認").click()
        page.wait_for_url(f"{self.base_url}/")
        return page

    def account(self, who: str) -> Page:
        """The page of one of the organisation's existing accounts, logged in once."""
        if who not in self.pages:
            user = self.accounts[who]
            self.log_in(who, user.email, PASSWORD, user.totp_secret)
        return self.pages[who]

    def photograph(self, step: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        for who, page in self.pages.items():
            if page.is_closed():
                continue
            try:
                page.screenshot(path=str(ARTIFACTS / f"mission-{step}-{who}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001 - never hide the failure being reported
                print(f"no screenshot of {who}'s page: {exc}")

    # Steps ----------------------------------------------------------------------------------

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A step of the mission: a failure photographs every open page and stops the mission
        (the later steps report which step they could not continue from)."""
        try:
            yield
            for who, page in self.pages.items():
                assert page.problems == page.expected, f"{who}'s page logged: {page.problems}"
        except BaseException:
            self.stopped_at = name
            self.photograph(name)
            raise

    def run(self, step: Callable[[Mission], None]) -> None:
        """``step``, after every earlier step that has not run yet."""
        for earlier in STEPS[: STEPS.index(step) + 1]:
            if earlier.__name__ in self.done:
                continue
            if self.stopped_at:
                pytest.fail(f"the mission stopped at the step {self.stopped_at}")
            with self.step(earlier.__name__):
                earlier(self)
            self.done.add(earlier.__name__)

    # Reading the database -------------------------------------------------------------------

    def fresh(self):
        """The session, with its read snapshot ended: what is committed now."""
        self.db.rollback()
        return self.db

    def assessment(self) -> Assessment:
        return self.fresh().scalar(
            sa.select(Assessment).join(Engagement).where(Engagement.title == ENGAGEMENT)
        )

    def saved(self) -> dict[str, object]:
        return store.values(self.fresh(), self.assessment())

    def mail_to(self, address: str, subject: str) -> list:
        return [m for m in outbox(self.app) if m["To"] == address and m["Subject"] == subject]


@pytest.fixture(scope="module")
def mission(database_url, chromium, tmp_path_factory):
    """An app on the test database, served on loopback for the module, with the organisation
    and its existing accounts; the tables are emptied afterwards as the ``app`` fixture leaves
    them."""
    tmp = tmp_path_factory.mktemp("mission")
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "MAIL_OUTBOX": str(tmp / "outbox"),
            "EVIDENCE_DIR": str(tmp / "evidence"),
            "BASE_URL": "http://localhost",
            # The browser keeps the stylesheets and scripts for the module, as it would behind
            # the production web server, instead of asking for each again on every page.
            "SEND_FILE_MAX_AGE_DEFAULT": 3600,
            **CHEAP_ARGON2,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = base_url  # the links in the mails open the live server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    session = app.extensions["db_sessionmaker"]()
    world = None
    try:
        make = Factory(session, app)
        org = make.org(ORGANISATION, self_designation="本市")
        accounts = {
            who: make.user(org, email=email, name=name, roles=roles)
            for who, (email, name, roles) in ACCOUNTS.items()
        }
        thread.start()
        world = Mission(app, base_url, chromium, session, accounts)
        yield world
    finally:
        for context in {page.context for page in world.pages.values()} if world else ():
            context.close()
        session.close()
        if thread.is_alive():
            server.shutdown()
            thread.join(timeout=10)
        server.server_close()
        empty_database(app)


def _jdate(day: date) -> str:
    """A date as the pages and mails write it."""
    return f"{day.year}年{day.month}月{day.day}日"


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="メインメニュー").get_by_role(
        "link", name=name, exact=True
    ).click()


def _flash(page: Page, text: str, kind: str = "success") -> None:
    expect(page.locator(f".flash--{kind}", has_text=text)).to_be_visible()


# ---------------------------------------------------------------------------------------------
# 1. The administrator registers a member of staff, who enrols TOTP
# ---------------------------------------------------------------------------------------------


def admin_registers_staff_who_enrols_totp(m: Mission) -> None:
    admin = m.account("admin")
    _nav(admin, "所属（課等）")
    admin.get_by_label("名称").fill(DEPARTMENT)
    admin.get_by_role("button", name="追加する").click()
    _flash(admin, f"所属「{DEPARTMENT}」を追加しました。")
    expect(admin.locator("[data-table=departments]")).to_contain_text(DEPARTMENT)

    _nav(admin, "利用者管理")
    admin.get_by_role("link", name="職員を登録する").click()
    admin.get_by_label("氏名").fill(STAFF_NAME)
    admin.get_by_label("メールアドレス").fill(STAFF_EMAIL)
    admin.get_by_label("担当職員", exact=True).check()
    admin.get_by_label(DEPARTMENT, exact=True).check()
    admin.get_by_role("button", name="登録して案内メールを送る").click()
    _flash(admin, f"{STAFF_NAME} さんを登録し、利用登録の案内メールを送信しました。")

    staff_user = m.fresh().scalar(sa.select(User).where(User.email == STAFF_EMAIL))
    assert staff_user is not None and staff_user.name == STAFF_NAME
    assert staff_user.role_set == {Role.STAFF}
    assert [d.name for d in staff_user.departments] == [DEPARTMENT]
    assert staff_user.password_hash is None and not staff_user.totp_enabled
    _nav(admin, "利用者管理")
    row = admin.locator("[data-table=users] tr", has_text=STAFF_EMAIL)
    expect(row.locator("[data-field=status]")).to_have_text("登録待ち")

    # The member of staff opens the link of the invitation mail and sets a password.
    [invitation] = m.mail_to(STAFF_EMAIL, INVITATION_SUBJECT)
    staff = m.page("staff")
    staff.goto(link_in(invitation))
    expect(staff.get_by_role("heading", level=1)).to_have_text("利用登録")
    expect(staff.locator("[data-field=email]")).to_have_text(STAFF_EMAIL)
    staff.get_by_label("新しいパスワード（必須）", exact=True).fill(STAFF_PASSPHRASE)
    staff.get_by_label("新しいパスワード（確認）（必須）", exact=True).fill(STAFF_PASSPHRASE)
    staff.get_by_role("button", name="登録する").click()
    staff.wait_for_url(f"{m.base_url}/auth/login")
    _flash(staff, "パスワードを設定しました。")

    # First login: the password, then TOTP enrolment with the secret shown on the page.
    staff.get_by_label("メールアドレス").fill(STAFF_EMAIL)
    staff.get_by_label("パスワード").fill(STAFF_PASSPHRASE)
    staff.get_by_role("button", name="ログイン").click()
    staff.wait_for_url(f"{m.base_url}/auth/mfa/setup")
    expect(staff.get_by_role("img", name="認証アプリ登録用のQRコード")).to_be_visible()
    secret = staff.locator("[data-field=totp-secret]").inner_text().strip()
    staff.get_by_label("確認コード").fill(pyotp.TOTP(secret).now())
    staff.get_by_role("button", name="設定する").click()
    expect(staff.locator("[data-field=recovery-codes] li")).to_have_count(10)
    staff.get_by_role("link", name="保管しました。続ける").click()
    staff.wait_for_url(f"{m.base_url}/")
    expect(staff.locator(".site-user__name")).to_have_text(f"{STAFF_NAME} さん")

    staff_user = m.fresh().scalar(sa.select(User).where(User.email == STAFF_EMAIL))
    assert staff_user.password_hash and not staff_user.password_is_temporary
    assert staff_user.totp_enabled
    assert staff_user.last_login_at is not None
    admin.reload()
    expect(row.locator("[data-field=status]")).to_have_text("有効")


# ---------------------------------------------------------------------------------------------
# 2. Staff register the 案件 and ask a new vendor to answer
# ---------------------------------------------------------------------------------------------


def staff_register_engagement_and_invite_vendor(m: Mission) -> None:
    staff = m.page("staff")
    _nav(staff, "案件")
    staff.get_by_role("link", name="案件を登録する").click()
    staff.get_by_label("外部サービス利用", exact=True).check()
    staff.get_by_label("件名").fill(ENGAGEMENT)
    expect(staff.get_by_label("担当課")).to_have_value(str(_department_id(m)))
    staff.get_by_label("目的・業務の内容").fill(
        "住民が行政手続をオンラインで申請できるようにする。"
    )
    staff.get_by_label("期間（開始日）").fill("2027-04-01")
    staff.get_by_label("期間（終了日）").fill("2030-03-31")
    staff.get_by_label("取り扱う情報").fill("申請書の記載事項（公開前の行政情報）")
    staff.get_by_label("機密性2（公開することを予定していない情報）").check()
    staff.get_by_label("完全性1（それ以外の情報）").check()
    staff.get_by_label("可用性1（それ以外の情報）").check()
    staff.get_by_role("button", name="保存する").click()
    _flash(staff, "案件を登録しました。")
    expect(staff.get_by_role("heading", level=1)).to_have_text(ENGAGEMENT)
    expect(staff.locator("[data-field=track]")).to_have_text(
        "外部サービス・機密性2以上（対策基準9.2）"
    )

    engagement = m.fresh().scalar(sa.select(Engagement).where(Engagement.title == ENGAGEMENT))
    assert (engagement.kind, engagement.confidentiality, engagement.track) == (
        "external_service",
        2,
        "9.2",
    )
    assert engagement.period_end == date(2030, 3, 31)

    # A company not yet registered, by its 法人番号, and its contact.
    expect(staff.get_by_label("事業者", exact=True)).to_have_value("")
    staff.get_by_label("法人番号（新しい事業者の場合）").fill(CORPORATE_NUMBER)
    staff.get_by_label("商号又は名称（新しい事業者の場合）").fill(COMPANY)
    staff.get_by_label("担当者の氏名").fill(VENDOR_NAME)
    staff.get_by_label("担当者のメールアドレス").fill(VENDOR_EMAIL)
    staff.get_by_role("button", name="回答を依頼する").click()
    _flash(staff, f"{COMPANY} に回答を依頼しました。")
    row = staff.locator("[data-table=assessments] tbody tr", has_text=COMPANY)
    expect(row.locator("[data-field=status]")).to_have_text("回答中")

    assessment = m.assessment()
    assert assessment.status == "draft"
    assert assessment.vendor_company.corporate_number == CORPORATE_NUMBER
    vendor = m.fresh().scalar(sa.select(User).where(User.email == VENDOR_EMAIL))
    assert vendor.vendor_company_id == assessment.vendor_company_id
    assert vendor.role_set == {Role.VENDOR} and vendor.password_hash is None
    [invitation] = m.mail_to(VENDOR_EMAIL, INVITATION_SUBJECT)
    assert link_in(invitation).startswith(f"{m.base_url}/auth/invitation/")


def _department_id(m: Mission) -> int:
    user = m.fresh().scalar(sa.select(User).where(User.email == STAFF_EMAIL))
    return user.departments[0].id


# ---------------------------------------------------------------------------------------------
# 3. The vendor accepts the invitation, answers (autosave), uploads a certificate, submits
# ---------------------------------------------------------------------------------------------


def _certificate_pdf() -> bytes:
    return HTML(
        string=(
            "<html lang='ja'><body><h1>登録証</h1>"
            f"<p>{COMPANY}</p><p>ISO/IEC 27001:2022 登録番号 IS 654321</p></body></html>"
        )
    ).write_pdf()


def _choice_label(question, value: str) -> str:
    return next(c.label for c in question.choices if c.value == value)


SAVED = "自動保存しました。"
REFUSED = (
    "Failed to load resource: the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
)


def _autosaved(page: Page, key: str, action: Callable[[], None]) -> str:
    """Do ``action`` (a change to one question's fields), wait for the autosave it starts and
    return what the question's status line then says. The next change waits for this one, as
    it would at a person's pace. A refused value (HTTP 422) is logged by Chromium as a failed
    resource: expected here, and only here."""
    with page.expect_response(
        lambda r: (
            r.url.endswith("/autosave")
            and r.request.method == "POST"
            and parse_qs(r.request.post_data or "").get("question") == [key]
        )
    ) as reply:
        action()
    message = reply.value.json()["message"]
    expect(page.locator(f'[data-status-for="{key}"]')).to_have_text(message)
    if reply.value.status == 422:
        page.expected.append(REFUSED)
    return message


def _typed(field_, text: str) -> Callable[[], None]:
    """Type ``text`` into a field and leave it (Tab): the change is saved at once."""
    return lambda: (field_.fill(text), field_.press("Tab"))


def _fill(page: Page, question, value) -> str | None:
    """Answer one question in its box, as a person would (choices from the keyboard: Space
    ticks the focused one); each change is autosaved (a text field when it is left). Returns the key when its save is still to come
    or on its way (a question of one field: the page goes on with the next one meanwhile); a
    question of several fields waits for each save, as each save of it must know the
    revision the previous one made."""
    key, kind = question.key, question.type
    box = page.locator(f'#answers [data-question="{key}"]')
    if kind in ("yes_no", "single"):
        box.get_by_label(_choice_label(question, value), exact=True).press("Space")
    elif kind == "multiple":
        for one in value:
            choice = box.get_by_label(_choice_label(question, one), exact=True)
            assert _autosaved(page, key, lambda c=choice: c.press("Space")) == SAVED
        return None
    elif kind == "country":
        box.get_by_role("combobox").select_option(value)
    elif kind == "table":
        # Cell by cell: the row is refused (HTTP 422, the reason beside the table) until
        # every required cell of it is filled, then saved.
        row = value[0]  # the first row (the page offers one empty row)
        message = None
        for column in question.columns:
            if not row.get(column.key) or column.type == "evidence":
                continue  # left empty
            cell = box.get_by_label(f"1行目 {column.label}", exact=True)
            if column.type == "country" or column.choices:
                chosen = row[column.key]
                message = _autosaved(page, key, lambda c=cell, v=chosen: c.select_option(v))
            else:
                message = _autosaved(page, key, _typed(cell, str(row[column.key])))
        assert message == SAVED
        return None
    else:  # text, long_text, number, url, date: saved when the field is left
        box.locator(f"#q-{key.replace('.', '-')}").fill(str(value))
    return key


ALL_SAVED = """keys => keys.every(key => {
    const status = document.querySelector('[data-status-for="' + CSS.escape(key) + '"]');
    return status && status.textContent === "自動保存しました。";
})"""


def _all_autosaved(page: Page, keys: list[str]) -> None:
    """Wait until the status line of each question says it was autosaved."""
    try:
        page.wait_for_function(ALL_SAVED, arg=keys, timeout=15_000)
    except PlaywrightTimeoutError:
        statuses = {key: page.locator(f'[data-status-for="{key}"]').inner_text() for key in keys}
        raise AssertionError(
            f"not autosaved: { {k: v for k, v in statuses.items() if v != SAVED} }"
        ) from None


def _answer_section(m: Mission, page: Page, answers: dict[str, object]) -> None:
    """Answer every question of the open section not answered yet, save the page (prefilled
    answers are saved with it), and again for the follow-up questions the answers reveal."""
    company = m.assessment().vendor_company
    for _round in range(5):
        saved = m.saved()
        keys = page.locator("#answers [data-question]").evaluate_all(
            "boxes => boxes.map(box => box.dataset.question)"
        )
        todo = [
            BANK.question(key)
            for key in keys
            if key not in saved and BANK.question(key).type != "evidence"
        ]
        if not todo and _round:
            return
        typed: list[str] = []
        for question in todo:
            field_ = page.locator(f"#q-{question.key.replace('.', '-')}")
            if question.prefill and field_.count() and field_.input_value():
                continue  # prefilled from the company's profile: saved with the page
            value = answers.get(question.key, sample_answer(question, company))
            if pending := _fill(page, question, value):
                typed.append(pending)
        page.keyboard.press("Tab")  # leave the last field
        _all_autosaved(page, typed)
        with page.expect_navigation():
            page.get_by_role("button", name="保存する", exact=True).click()
        # Autosave stored the answers typed; the button saves the prefilled ones.
        expect(page.locator(".flash--success")).to_have_text(
            re.compile("保存しました。|変更はありませんでした。")
        )
        saved = m.saved()
        assert [q.key for q in todo if q.key not in saved] == []
    raise AssertionError("follow-up questions keep appearing")


def vendor_answers_uploads_certificate_and_submits(m: Mission) -> None:
    vendor = m.page("vendor")
    [invitation] = m.mail_to(VENDOR_EMAIL, INVITATION_SUBJECT)
    vendor.goto(link_in(invitation))
    expect(vendor.get_by_text(f"{VENDOR_NAME} 様")).to_be_visible()
    vendor.get_by_label("新しいパスワード（必須）", exact=True).fill(VENDOR_PASSPHRASE)
    vendor.get_by_label("新しいパスワード（確認）（必須）", exact=True).fill(VENDOR_PASSPHRASE)
    vendor.get_by_role("button", name="登録する").click()
    vendor.wait_for_url(f"{m.base_url}/auth/login")
    # Vendors log in with the password alone (TOTP is optional for them).
    m.log_in("vendor", VENDOR_EMAIL, VENDOR_PASSPHRASE, None)
    requests = vendor.locator("[data-table=my-assessments]")
    expect(requests.locator("tr", has_text=ENGAGEMENT).locator("[data-field=status]")).to_have_text(
        "回答中"
    )
    requests.get_by_role("link", name=ENGAGEMENT).click()
    assessment = m.assessment()
    vendor.wait_for_url(f"{m.base_url}/assessments/{assessment.id}/sections/company")

    # No button pressed: the answer typed is saved as the field is left, the status line says
    # so and the database has it.
    answers = _answers(today_jst())
    status = vendor.locator(f'[data-status-for="{RETURNED_KEY}"]')
    expect(status).to_have_text("")
    field_ = vendor.locator(f"#q-{RETURNED_KEY.replace('.', '-')}")
    assert _autosaved(vendor, RETURNED_KEY, _typed(field_, answers[RETURNED_KEY])) == SAVED
    expect(status).to_have_text("自動保存しました。")
    assert m.saved()[RETURNED_KEY] == answers[RETURNED_KEY]

    # Every section in turn, from the section menu (answers may reveal more sections).
    sections = vendor.get_by_role("navigation", name="セクション")
    done: list[str] = []
    while todo := [s for s in _visible_sections(m) if s.key not in done]:
        section = todo[0]
        sections.get_by_role("link", name=section.title).click()
        expect(vendor.get_by_role("heading", level=2)).to_have_text(section.title)
        _answer_section(m, vendor, answers)
        if section.key == "certifications":
            _upload_certificate(m, vendor)
        done.append(section.key)
    assert done == ["company", "certifications", "contract", "external", "lifecycle"]

    saved = m.saved()
    assert saved["company.address"] == answers["company.address"]
    assert saved["company.legal_name"] == COMPANY  # prefilled from the invitation
    assert saved["certifications.others"][0]["number"] == "IS 654321"

    # The submit page lists nothing missing; the vendor submits.
    sections.get_by_role("link", name="提出").click()
    expect(vendor.get_by_role("heading", level=1)).to_have_text("回答の提出")
    expect(vendor.locator("[data-field=missing]")).to_have_count(0)
    vendor.get_by_role("button", name="回答を提出する").click()
    _flash(vendor, "回答を提出しました。ご協力ありがとうございました。")
    expect(vendor.locator("[data-field=status]")).to_have_text("状態: 提出済み")
    assessment = m.assessment()
    assert assessment.status == "submitted" and assessment.submitted_at is not None


def _visible(m: Mission) -> list:
    """(section, questions) the vendor is asked, given the answers saved."""
    return visible_sections(BANK, m.assessment().engagement.facts, m.saved())


def _visible_sections(m: Mission) -> list:
    return [section for section, _questions in _visible(m)]


def _upload_certificate(m: Mission, vendor: Page) -> None:
    box = vendor.locator('[data-question="certifications.certificate_evidence"]')
    box.get_by_label("ファイルを選ぶ", exact=False).set_input_files(
        {"name": CERTIFICATE, "mimeType": "application/pdf", "buffer": _certificate_pdf()}
    )
    box.get_by_role("button", name="アップロードする").click()
    _flash(vendor, "ファイルを添付しました（1件）。")
    listed = vendor.locator('[data-evidence-for="certifications.certificate_evidence"]')
    expect(listed.get_by_role("link", name=CERTIFICATE)).to_be_visible()
    [evidence] = m.fresh().scalars(
        sa.select(EvidenceFile).where(EvidenceFile.assessment_id == m.assessment().id)
    )
    assert (evidence.question_key, evidence.original_name) == (
        "certifications.certificate_evidence",
        CERTIFICATE,
    )
    assert evidence.content_type == "application/pdf" and evidence.scan_status == "clean"


# ---------------------------------------------------------------------------------------------
# 4. Staff return one answer with a comment; the vendor revises it and resubmits
# ---------------------------------------------------------------------------------------------


def _open_engagement(page: Page) -> None:
    _nav(page, "案件")
    page.locator("[data-table=engagements]").get_by_role("link", name=ENGAGEMENT).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ENGAGEMENT)


def _assessment_row(page: Page):
    return page.locator("[data-table=assessments] tbody tr", has_text=COMPANY)


def staff_return_an_answer_and_the_vendor_resubmits(m: Mission) -> None:
    staff = m.page("staff")
    _open_engagement(staff)
    expect(_assessment_row(staff).locator("[data-field=status]")).to_have_text("提出済み")
    _assessment_row(staff).get_by_role("link", name=COMPANY).click()
    expect(staff.get_by_role("heading", level=1)).to_have_text(f"{COMPANY} の回答")
    answer = staff.locator(f'dd[data-answer="{RETURNED_KEY}"]')
    expect(answer).to_contain_text("情報セキュリティ部長")
    answer.get_by_label("この設問を差し戻す").check()
    answer.get_by_label(re.compile("^差戻しのコメント")).fill(RETURN_COMMENT)
    staff.get_by_role("button", name="選んだ設問を差し戻す").click()
    _flash(staff, "1件の回答を差し戻しました。")
    expect(staff.locator("dd[data-field=status]")).to_have_text("差戻し中")
    expect(answer.locator("[data-returned]")).to_have_text(f"差戻し中: {RETURN_COMMENT}")

    assessment = m.assessment()
    assert assessment.status == "returned"
    returned = (
        m.fresh()
        .scalars(
            sa.select(Answer).where(
                Answer.assessment_id == assessment.id, Answer.returned.is_(True)
            )
        )
        .all()
    )
    assert [(a.question_key, a.return_comment) for a in returned] == [
        (RETURNED_KEY, RETURN_COMMENT)
    ]
    [message] = m.mail_to(VENDOR_EMAIL, RETURN_SUBJECT)
    assert link_in(message) == f"{m.base_url}/assessments/{assessment.id}"

    # The vendor sees the request on the home page and opens the link of the mail.
    vendor = m.page("vendor")
    _nav(vendor, "ホーム")
    requests = vendor.locator("[data-table=my-assessments]")
    expect(requests.locator("tr", has_text=ENGAGEMENT).locator("[data-field=status]")).to_have_text(
        "差戻し中"
    )
    vendor.goto(link_in(message))
    notice = vendor.locator(f'[data-returned="{RETURNED_KEY}"]')
    expect(notice.locator("[data-field=return-comment]")).to_have_text(RETURN_COMMENT)
    expect(vendor.locator("#q-company-address")).not_to_be_editable()  # only the returned one
    revised = "情報セキュリティ部長 港 一郎"
    field_ = vendor.locator(f"#q-{RETURNED_KEY.replace('.', '-')}")
    assert _autosaved(vendor, RETURNED_KEY, _typed(field_, revised)) == SAVED
    assert m.saved()[RETURNED_KEY] == revised

    vendor.get_by_role("navigation", name="セクション").get_by_role("link", name="提出").click()
    vendor.get_by_role("button", name="回答を提出する").click()
    _flash(vendor, "回答を提出しました。ご協力ありがとうございました。")
    expect(vendor.locator("[data-field=status]")).to_have_text("状態: 提出済み")
    assessment = m.assessment()
    assert assessment.status == "submitted"
    assert (
        m.fresh().scalar(
            sa.select(sa.func.count())
            .select_from(Answer)
            .where(Answer.assessment_id == assessment.id, Answer.returned.is_(True))
        )
        == 0
    )

    # Staff see the revision in the answer's history.
    staff.reload()
    expect(answer).to_contain_text(revised)
    expect(staff.locator(f'[data-history="{RETURNED_KEY}"]')).to_contain_text("変更の履歴（2件）")


# ---------------------------------------------------------------------------------------------
# 5. Staff review every answer and decide; the 許可権限者 confirms the decision
# ---------------------------------------------------------------------------------------------


def _unchecked(page: Page):
    """The review forms of answers not yet ticked as checked."""
    return page.locator("form.review-form").filter(
        has=page.locator("input[name=checked]:not(:checked)")
    )


def staff_review_and_decide_and_the_approver_confirms(m: Mission) -> None:
    staff = m.page("staff")
    _open_engagement(staff)
    _assessment_row(staff).get_by_role("link", name="審査する").click()
    expect(staff.get_by_role("heading", level=1)).to_have_text(f"審査: {COMPANY}")
    # Every question the vendor was asked, the evidence ones included.
    total = sum(len(questions) for _s, questions in _visible(m))
    progress = staff.locator("[data-field=review-progress]")
    expect(progress).to_contain_text(f"0 / {total} 問 確認済み")

    # Section by section, each answer ticked as checked and its review saved (the page reloads
    # at that answer), from the keyboard: Space ticks the box, Enter presses the button.
    table = staff.locator("[data-table=review-sections]")
    titles = table.locator("th a").all_inner_texts()
    assert len(titles) == len(_visible(m)) == 5
    reviewed = 0
    for title in titles:
        table.get_by_role("link", name=title).click()
        expect(staff.get_by_role("heading", level=1)).to_have_text(f"審査: {title}")
        keys = _unchecked(staff).evaluate_all("forms => forms.map(f => f.dataset.reviewForm)")
        for key in keys:
            form = staff.locator(f'form[data-review-form="{key}"]')
            form.get_by_label("この回答を確認した").press("Space")
            with staff.expect_navigation(wait_until="domcontentloaded"):
                form.get_by_role("button", name="この回答の審査を保存する").press("Enter")
        _flash(staff, "審査の内容を保存しました。")
        expect(_unchecked(staff)).to_have_count(0)
        reviewed += len(keys)
        staff.locator(".breadcrumb").get_by_role("link", name="審査", exact=True).click()
    assert reviewed == total

    expect(progress).to_contain_text(f"{total} / {total} 問 確認済み（100%）")
    staff.get_by_role("link", name="審査を終えて判定する").click()
    expect(staff.locator("[data-field=unchecked]")).to_have_count(0)
    expect(staff.locator("[data-field=decision]")).to_contain_text("ルールによる推奨: 可")
    expect(staff.get_by_label("可", exact=True)).to_be_checked()
    staff.get_by_label("判定の理由・所見").fill(
        "すべての回答と証明書を確認し、基準を満たすと判断した。"
    )
    staff.get_by_role("button", name="判定を記録する").click()
    _flash(staff, "判定を記録しました。別の職員の確認を待っています。")
    expect(staff.locator("dd[data-field=status]")).to_have_text("判定の確認待ち")

    assessment = m.assessment()
    outcome = m.fresh().scalar(sa.select(Outcome).where(Outcome.assessment_id == assessment.id))
    staff_user = m.fresh().scalar(sa.select(User).where(User.email == STAFF_EMAIL))
    assert (assessment.status, outcome.decision) == ("reviewed", "approve")
    assert outcome.recommended_by_id == staff_user.id and outcome.confirmed_by_id is None

    # A second person confirms the decision (兼務の禁止).
    approver = m.account("approver")
    _open_engagement(approver)
    _assessment_row(approver).get_by_role("link", name="審査結果").click()
    expect(approver.locator("[data-field=confirmed-by]")).to_have_text(
        "確認待ち（判定者以外の職員が確認します）"
    )
    approver.get_by_label("コメント（差し戻す場合は必須）").fill("審査の記録を確認しました。")
    approver.get_by_role("button", name="判定を確認する").click()
    _flash(approver, "判定を確認し、評価を完了しました。")
    expect(approver.locator("dd[data-field=status]")).to_have_text("評価完了")
    expect(approver.locator("dd[data-field=decision]")).to_have_text("可")
    expect(approver.locator("[data-field=confirmed-by]")).to_contain_text(ACCOUNTS["approver"][1])
    assessment = m.assessment()
    outcome = m.fresh().scalar(sa.select(Outcome).where(Outcome.assessment_id == assessment.id))
    assert assessment.status == "decided"
    assert outcome.confirmed_by_id == m.accounts["approver"].id


# ---------------------------------------------------------------------------------------------
# 6. Staff generate the 特記事項 PDF and download it
# ---------------------------------------------------------------------------------------------


def staff_generate_and_download_the_clauses(m: Mission) -> None:
    staff = m.page("staff")
    _open_engagement(staff)
    _assessment_row(staff).get_by_role("link", name="特記事項").click()
    expect(staff.get_by_role("heading", level=1)).to_have_text(
        f"情報セキュリティに関する特記事項: {COMPANY}"
    )
    expect(staff.locator("[data-section=missing]")).to_have_count(0)
    expect(staff.locator("[data-table=articles]")).to_contain_text("秘密の保持")
    staff.get_by_role("button", name="新しい版を作成する").click()
    _flash(staff, "第1版を作成しました（SHA-256")
    row = staff.locator('[data-table=versions] tr[data-version="1"]')
    expect(row).to_contain_text(STAFF_NAME)

    with staff.expect_download() as info:
        row.get_by_role("button", name="ダウンロード").click()
    download = info.value
    assert download.suggested_filename.startswith(f"特記事項_{COMPANY}_")
    assert download.suggested_filename.endswith("_第1版.pdf")
    data = Path(download.path()).read_bytes()
    [version] = m.fresh().scalars(sa.select(ClauseVersion))
    assert hashlib.sha256(data).hexdigest() == version.sha256
    text = pdf_text(data).replace("\n", "")
    assert "情報セキュリティに関する特記事項" in text
    assert COMPANY in text
    assert "秘密の保持" in text and "データの保存場所及びリージョン" in text


# ---------------------------------------------------------------------------------------------
# 7. Staff apply for the service; the 許可権限者 approves and designates its manager
# ---------------------------------------------------------------------------------------------


def staff_apply_and_the_approver_approves(m: Mission) -> None:
    staff = m.page("staff")
    _open_engagement(staff)
    _assessment_row(staff).get_by_role("link", name="回答から外部サービスを登録する").click()
    expect(staff.locator("[data-field=prefilled]")).to_contain_text(
        f"{ENGAGEMENT}／{COMPANY}」の回答から取り込んでいます"
    )
    expect(staff.get_by_label("サービス名")).to_have_value(SERVICE)
    expect(staff.get_by_label("ISMAP", exact=True)).to_be_checked()
    staff.get_by_role("button", name="保存する").click()
    _flash(staff, "外部サービスを登録しました。")
    expect(staff.get_by_role("heading", level=1)).to_have_text(SERVICE)

    staff.get_by_role("link", name="このサービスの利用を申請する").click()
    expect(staff.get_by_role("heading", level=1)).to_have_text("外部サービスの利用申請")
    staff.get_by_label("紐づける評価（提供者に対するもの）").select_option(
        label=f"{ENGAGEMENT}／{COMPANY}（評価完了）"
    )
    staff.get_by_label("利用目的").fill("住民からの各種申請をオンラインで受け付けるため。")
    staff.get_by_label("利用する業務（利用を認める範囲）").fill("電子申請の受付と審査。")
    staff.get_by_label("利用するネットワークの区分").select_option(label="インターネット接続系")
    staff.get_by_label("機密性2（公開することを予定していない情報）").check()
    staff.get_by_role("button", name="申請する").click()
    _flash(staff, "利用申請を提出しました。許可権限者の判断をお待ちください。")
    expect(staff.locator("[data-field=status]")).to_have_text("状態: 申請中")
    expect(staff.locator("[data-field=category]")).to_contain_text("対策基準9.2")

    application = m.fresh().scalar(sa.select(UseApplication))
    assert application.status == "submitted" and application.title == SERVICE
    assert application.assessment_id == m.assessment().id
    assert application.applicant.email == STAFF_EMAIL

    # The 許可権限者 finds it from the home page, approves it and designates the manager.
    approver = m.page("approver")
    _nav(approver, "ホーム")
    approver.locator("[data-field=awaiting-count]").click()
    approver.get_by_role("link", name=SERVICE).click()
    expect(approver.get_by_role("heading", level=1)).to_have_text(SERVICE)
    decide = approver.locator("[data-section=decide]")
    decide.get_by_label("承認", exact=True).check()
    decide.get_by_label("判断の理由").fill("評価は可。申請の範囲は評価の範囲内である。")
    manager_name = ACCOUNTS["manager"][1]
    decide.get_by_label("外部サービス管理者（承認・条件付承認の場合）").select_option(
        label=f"{manager_name}（所属なし）"
    )
    decide.get_by_role("button", name="判断を記録する").click()
    _flash(approver, "申請を「承認」としました。")
    expect(approver.locator("[data-field=status]")).to_have_text("状態: 承認")
    expect(approver.locator("[data-table=managers] tr[data-current=true]")).to_contain_text(
        f"{manager_name}（現任）"
    )

    application = m.fresh().scalar(sa.select(UseApplication))
    assert application.status == "approved"
    assert application.decided_by_id == m.accounts["approver"].id
    assert application.current_manager.user_id == m.accounts["manager"].id
    schedule = m.fresh().scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.application_id == application.id)
    )
    assert schedule is not None and schedule.due_on == application.next_review_on
    # The organisation's interval (12 months), nothing bringing it forward.
    assert schedule.interval_months == 12 and schedule.due_on == schedule.regular_due_on
    assert schedule.due_on > today_jst() + timedelta(days=360)

    # The register shows the service, its manager and the next 定期確認.
    _nav(approver, "外部サービス台帳")
    entry = approver.locator(f'[data-table=register] tr[data-application-id="{application.id}"]')
    expect(entry.locator("[data-field=service]")).to_have_text(SERVICE)
    expect(entry.locator("[data-field=provider]")).to_have_text(COMPANY)
    expect(entry.locator("[data-field=status]")).to_have_text("承認")
    expect(entry.locator("[data-field=manager]")).to_contain_text(manager_name)
    expect(entry.locator("[data-field=next-review]")).to_have_text(_jdate(schedule.due_on))

    # The 外部サービス管理者 finds it among the services they manage.
    manager = m.account("manager")
    manager.locator("[data-field=managed-count]").click()
    expect(manager.locator("[data-table=my-services]")).to_contain_text(SERVICE)


# ---------------------------------------------------------------------------------------------
# 8. The clock moves; the daily job reminds the 外部サービス管理者 of the 定期確認
# ---------------------------------------------------------------------------------------------


def the_clock_moves_and_the_reminder_is_sent(m: Mission) -> None:
    assert m.clock is not None, "the test gives the mission its time_machine"
    application = m.fresh().scalar(sa.select(UseApplication))
    schedule = m.fresh().scalar(
        sa.select(ReviewSchedule).where(ReviewSchedule.application_id == application.id)
    )
    manager = m.accounts["manager"]
    runner = m.app.test_cli_runner()

    # Today the 定期確認 is months away: the job sends no reminder of it.
    result = runner.invoke(args=["send-reminders"])
    assert result.exit_code == 0, result.output
    assert f"基準日 {today_jst().isoformat()}" in result.output
    assert [x for x in outbox(m.app) if x["Subject"] == REMINDER_SUBJECT] == []

    # 30 days before it is due, the cron job's morning run reminds its manager and the staff.
    day = schedule.due_on - timedelta(days=30)
    m.clock.move_to(datetime.combine(day, time(6, 15), JST))
    result = runner.invoke(args=["send-reminders"])
    assert result.exit_code == 0, result.output
    assert f"基準日 {day.isoformat()}" in result.output
    reminders = [x for x in outbox(m.app) if x["Subject"] == REMINDER_SUBJECT]
    assert sorted(x["To"] for x in reminders) == sorted([manager.email, STAFF_EMAIL])
    [message] = m.mail_to(manager.email, REMINDER_SUBJECT)
    body = message.get_content()
    assert f"{manager.name} 様" in body
    assert f"確認期限: {_jdate(schedule.due_on)}（あと30日）" in body
    assert link_in(message) == f"{m.base_url}/reviews/{schedule.id}"

    # The same day again: nothing is sent twice.
    result = runner.invoke(args=["send-reminders"])
    assert result.exit_code == 0, result.output
    assert len([x for x in outbox(m.app) if x["Subject"] == REMINDER_SUBJECT]) == 2

    # The manager follows the link; the session has long expired, so they log in again and
    # land on the 定期確認 the mail is about.
    page = m.page("manager")
    page.goto(link_in(message))
    page.wait_for_url(re.compile(r"/auth/login"))
    page.get_by_label("メールアドレス").fill(manager.email)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(f"{m.base_url}/auth/mfa")
    page.get_by_label("確認コード").fill(pyotp.TOTP(manager.totp_secret).now())
    page.get_by_role("button", name="確認").click()
    page.wait_for_url(link_in(message))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"定期確認: {SERVICE}")
    expect(page.locator("dd[data-field=due]")).to_have_text(_jdate(schedule.due_on))
    expect(page.locator("[data-field=state]")).to_have_text("90日以内に期限")


STEPS: list[Callable[[Mission], None]] = [
    admin_registers_staff_who_enrols_totp,
    staff_register_engagement_and_invite_vendor,
    vendor_answers_uploads_certificate_and_submits,
    staff_return_an_answer_and_the_vendor_resubmits,
    staff_review_and_decide_and_the_approver_confirms,
    staff_generate_and_download_the_clauses,
    staff_apply_and_the_approver_approves,
    the_clock_moves_and_the_reminder_is_sent,
]


# ---------------------------------------------------------------------------------------------
# The tests: each user's part of the mission, in the mission's order
# ---------------------------------------------------------------------------------------------


def test_the_administrator_registers_staff_who_enrol_totp(mission):
    mission.run(admin_registers_staff_who_enrols_totp)


def test_staff_register_an_engagement_and_invite_a_vendor(mission):
    mission.run(staff_register_engagement_and_invite_vendor)


def test_the_vendor_answers_uploads_a_certificate_and_submits(mission):
    mission.run(vendor_answers_uploads_certificate_and_submits)


def test_staff_return_an_answer_and_the_vendor_resubmits(mission):
    mission.run(staff_return_an_answer_and_the_vendor_resubmits)


def test_staff_review_and_decide_and_the_approver_confirms(mission):
    mission.run(staff_review_and_decide_and_the_approver_confirms)


def test_staff_generate_and_download_the_clauses(mission):
    mission.run(staff_generate_and_download_the_clauses)


def test_staff_apply_and_the_approver_approves_and_designates_the_manager(mission):
    mission.run(staff_apply_and_the_approver_approves)


def test_the_clock_moves_and_the_reminder_reaches_the_service_manager(mission, time_machine):
    mission.clock = time_machine
    mission.run(the_clock_moves_and_the_reminder_is_sent)
