"""Vendor companies by 法人番号, vendor users and the vendor's own company profile."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from portal.permissions import Role
from portal.users.models import User
from portal.vendors import corporate_number
from portal.vendors.corporate_number import check_digit, is_valid, normalise, with_check_digit
from portal.vendors.models import OrganisationVendor, VendorCompany
from tests.helpers import Browser, field_errors, flashes, link_in, outbox, soup, text_of
from tests.test_admin import fresh, japanese, open_form
from tests.test_routes import MAIN_FORM, changed_tables, signed_in, snapshot

NTA = "7000012050002"  # 国税庁's own 法人番号
BAD_NUMBER_MESSAGE = (
    "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。"
)


# ---------------------------------------------------------------------------------------------
# portal/vendors/corporate_number.py
# ---------------------------------------------------------------------------------------------


def test_the_national_tax_agencys_own_number_is_valid():
    assert is_valid(NTA)
    assert check_digit(NTA[1:]) == 7
    assert with_check_digit(NTA[1:]) == NTA


@pytest.mark.parametrize(
    "written",
    [
        "７００００１２０５０００２",  # full-width digits
        "7000-01-2050002",
        "7-0000-1205-0002",
        "７０００－０１２０－５０００２",  # full-width hyphen-minus
        "7000‐0120‐50002",  # U+2010 hyphen
        "7000−0120−50002",  # U+2212 minus sign
        "7000ー0120ー50002",  # katakana long vowel mark typed for a hyphen
        " 7000 0120 50002 ",
        "7000\u30000120\u300050002",  # ideographic space
    ],
)
def test_usual_ways_of_writing_a_number_are_normalised(written):
    assert normalise(written) == NTA
    assert is_valid(written)


@pytest.mark.parametrize(
    "number",
    [
        "8000012050002",  # wrong check digit
        "700001205000",  # 12 digits
        "70000120500021",  # 14 digits
        "7000O12050002",  # letter O for zero
        "ABCDEFGHIJKLM",
        "7000012O50002",
        "٧٠٠٠٠١٢٠٥٠٠٠٢",  # Arabic-Indic digits: digits, but not the ones 国税庁 uses
        "",
        "-",
        "0000000000000",
    ],
)
def test_invalid_numbers_are_refused(number):
    assert not is_valid(number)


def test_none_is_not_a_number():
    assert not is_valid(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "base", ["", "12345678901", "1234567890123", "12345678901a", "１２３４５６７８９０１２"]
)
def test_check_digit_needs_twelve_ascii_digits(base):
    with pytest.raises(ValueError, match="12 ASCII digits"):
        check_digit(base)


twelve_digits = st.text(alphabet="0123456789", min_size=12, max_size=12)


@given(base=twelve_digits)
def test_every_base_with_its_check_digit_is_valid(base):
    number = with_check_digit(base)
    assert len(number) == 13
    assert number[0] in "123456789"
    assert is_valid(number)


@given(base=twelve_digits, other=st.integers(min_value=1, max_value=8))
def test_any_other_check_digit_is_refused(base, other):
    number = with_check_digit(base)
    wrong = str((int(number[0]) - 1 + other) % 9 + 1)
    assert wrong != number[0]
    assert not is_valid(wrong + number[1:])


@given(base=twelve_digits, position=st.integers(0, 11), digit=st.sampled_from("0123456789"))
def test_a_single_mistyped_digit_is_caught_unless_it_is_a_0_9_swap(base, position, digit):
    """Weights 1 and 2 modulo 9 catch every single-digit error except 0 ↔ 9."""
    number = with_check_digit(base)
    typed = number[: position + 1] + digit + number[position + 2 :]
    old = number[position + 1]
    if digit == old or {digit, old} == {"0", "9"}:
        assert is_valid(typed)
    else:
        assert not is_valid(typed)


def test_the_module_is_what_the_form_and_service_use():
    from portal.vendors import forms, service

    assert forms.corporate_number is corporate_number
    assert service.corporate_number is corporate_number


# ---------------------------------------------------------------------------------------------
# Registering companies
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def staff(app, make, org):
    return signed_in(app, make.user(org, roles={Role.STAFF}))


def companies(db) -> list[VendorCompany]:
    db.rollback()
    db.expire_all()
    return list(db.scalars(sa.select(VendorCompany).order_by(VendorCompany.id)))


def links(db, org) -> set[int]:
    db.rollback()
    return set(
        db.scalars(
            sa.select(OrganisationVendor.vendor_company_id).where(
                OrganisationVendor.organisation_id == org.id
            )
        )
    )


def test_staff_register_a_company_with_a_full_width_hyphenated_number(app, db, org, staff):
    response = staff.submit(
        "/vendors/new",
        {
            "corporate_number": "７０００－０１２０－５０００２",
            "name": "国税庁（テスト）",
            "address": "東京都千代田区霞が関3-1-1",
            "representative": "長官 テスト",
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    (company,) = companies(db)
    assert company.corporate_number == NTA
    assert (company.name, company.address) == ("国税庁（テスト）", "東京都千代田区霞が関3-1-1")
    assert urlsplit(response.location).path == f"/vendors/{company.id}"
    assert links(db, org) == {company.id}
    page = staff.get(response.location)
    assert flashes(page) == ["事業者を登録しました。"]
    assert text_of(page, "[data-field=corporate-number]") == NTA
    listed = soup(staff.get("/vendors")).select("[data-table=vendors] tbody tr[data-company-id]")
    assert [tr.select_one("td").get_text(strip=True) for tr in listed] == ["国税庁（テスト）"]


@pytest.mark.parametrize(
    "number",
    ["8000012050002", "700001205000", "70000120500021", "7000O12050002", "ABCDEFGHIJKLM", "1" * 21],
)
def test_an_invalid_number_is_refused_next_to_the_field_and_nothing_is_created(
    app, db, staff, number
):
    before = snapshot(app)
    response = staff.submit(
        "/vendors/new", {"corporate_number": number, "name": "怪しい株式会社"}, MAIN_FORM
    )
    assert response.status_code == 200
    errors = field_errors(response)
    assert set(errors) == {"corporate_number"}
    assert japanese(errors["corporate_number"]), errors
    assert changed_tables(before, snapshot(app)) == []


def test_an_existing_company_is_linked_without_overwriting_its_profile(
    app, db, make, org, other_org, staff
):
    existing = make.company(other_org, name="既存システム株式会社")
    existing.address = "大阪府大阪市北区1-1"
    db.commit()

    response = staff.submit(
        "/vendors/new",
        {
            "corporate_number": existing.corporate_number,
            "name": "名前を書き換えたい株式会社",
            "address": "偽の所在地",
        },
        MAIN_FORM,
    )
    assert response.status_code == 302
    assert flashes(staff.get(response.location)) == [
        "登録済みの事業者を一覧に追加しました（事業者情報は事業者自身が管理します）。"
    ]
    kept = fresh(db, VendorCompany, existing.id)
    assert (kept.name, kept.address) == ("既存システム株式会社", "大阪府大阪市北区1-1")
    assert len(companies(db)) == 1
    assert links(db, org) == {existing.id}
    assert links(db, other_org) == {existing.id}

    before = snapshot(app)
    again = staff.submit(
        "/vendors/new",
        {"corporate_number": existing.corporate_number, "name": "二度目"},
        MAIN_FORM,
    )
    assert again.status_code == 200
    assert flashes(again) == ["この事業者はすでに登録されています。"]
    assert changed_tables(before, snapshot(app)) == []


def test_viewers_cannot_register_companies(app, make, org):
    approver = signed_in(app, make.user(org, roles={Role.APPROVER}))
    assert approver.get("/vendors").status_code == 200
    assert approver.get("/vendors/new").status_code == 403
    listing = soup(approver.get("/vendors"))
    assert listing.select_one("a[href='/vendors/new']") is None


# ---------------------------------------------------------------------------------------------
# Vendor users
# ---------------------------------------------------------------------------------------------


def test_inviting_a_vendor_user_creates_a_vendor_only_account_who_can_then_log_in(
    app, db, make, org, staff
):
    company = make.company(org, name="招待先株式会社")
    page = f"/vendors/{company.id}"
    response = staff.submit(
        page,
        {"name": "委託先 花子", "email": "Hanako@Vendor.Example.JP"},
        f"form[action='{page}/users']",
    )
    assert response.status_code == 302
    assert flashes(staff.get(page)) == ["委託先 花子 様に利用登録の案内メールを送信しました。"]
    invited = db.scalar(sa.select(User).where(User.email == "hanako@vendor.example.jp"))
    assert invited.vendor_company_id == company.id
    assert invited.organisation_id is None
    assert invited.invited_by_organisation_id == org.id
    assert invited.role_set == {Role.VENDOR}
    assert invited.password_hash is None
    contacts = soup(staff.get(page)).select("[data-table=vendor-users] tbody tr[data-user-id]")
    assert [int(tr["data-user-id"]) for tr in contacts] == [invited.id]

    (message,) = outbox(app)
    assert message["To"] == "hanako@vendor.example.jp"
    link = urlsplit(link_in(message)).path
    vendor = Browser(app.test_client())
    password = "委託先のとても長いパスフレーズ 2026"
    done = vendor.submit(link, {"password": password, "confirm": password}, MAIN_FORM)
    assert done.status_code == 302
    login = vendor.submit(
        "/auth/login", {"email": "hanako@vendor.example.jp", "password": password}
    )
    assert login.status_code == 302
    assert login.location == "/"  # vendors are offered TOTP, not forced into it
    home = vendor.get("/")
    assert text_of(home, "#vendor-title") == "招待先株式会社"


@pytest.mark.parametrize(
    "email",
    ["no-at-sign", "two@@example.jp", "spaces in@example.jp", "a@b", "日本語@", "@example.jp"],
)
def test_an_invalid_vendor_email_is_refused_in_japanese(app, db, make, org, staff, email):
    company = make.company(org)
    page = f"/vendors/{company.id}"
    before = snapshot(app)
    response = staff.submit(
        page, {"name": "宛先 不明", "email": email}, f"form[action='{page}/users']"
    )
    assert response.status_code == 302
    assert flashes(staff.get(page)) == ["メールアドレスの形式が正しくありません。"]
    assert changed_tables(before, snapshot(app)) == []
    assert outbox(app) == []


def test_a_missing_name_for_a_vendor_user_is_refused_in_japanese(app, make, org, staff):
    company = make.company(org)
    page = f"/vendors/{company.id}"
    before = snapshot(app)
    staff.submit(page, {"name": "", "email": "ok@example.jp"}, f"form[action='{page}/users']")
    messages = flashes(staff.get(page))
    assert messages and all(japanese(m) for m in messages), messages
    assert changed_tables(before, snapshot(app)) == []


# ---------------------------------------------------------------------------------------------
# The vendor's own profile
# ---------------------------------------------------------------------------------------------


def test_a_vendor_edits_its_own_company_profile(app, db, make, org):
    company = make.company(org, name="旧商号株式会社")
    vendor = make.user(company=company, invited_by=org)
    browser = signed_in(app, vendor)
    response = browser.submit(
        "/vendor/profile",
        {"name": "新商号株式会社", "address": "熊本県阿蘇郡西原村1", "representative": "代表 一郎"},
        MAIN_FORM,
    )
    assert response.status_code == 302
    page = browser.get("/vendor/profile")
    assert flashes(page) == ["会社情報を保存しました。"]
    assert soup(page).select_one("[name=name]")["value"] == "新商号株式会社"
    saved = fresh(db, VendorCompany, company.id)
    assert (saved.name, saved.address, saved.representative) == (
        "新商号株式会社",
        "熊本県阿蘇郡西原村1",
        "代表 一郎",
    )
    # The organisation's staff see the vendor's own profile.
    staff = signed_in(app, make.user(org, roles={Role.STAFF}))
    assert text_of(staff.get(f"/vendors/{company.id}"), "h1") == "新商号株式会社"

    before = snapshot(app)
    refused = browser.submit("/vendor/profile", {"name": ""}, MAIN_FORM)
    assert refused.status_code == 200
    assert japanese(field_errors(refused)["name"])
    assert changed_tables(before, snapshot(app)) == []


def test_double_submits_register_one_company_and_invite_one_user(app, db, org, staff):
    values = {
        **open_form(staff, "/vendors/new"),
        "corporate_number": NTA,
        "name": "二重送信株式会社",
    }
    assert staff.client.post("/vendors/new", data=values).status_code == 302
    assert staff.client.post("/vendors/new", data=values).status_code == 200
    (company,) = companies(db)
    assert links(db, org) == {company.id}

    page = f"/vendors/{company.id}"
    invite = {
        **open_form(staff, page, f"form[action='{page}/users']"),
        "name": "二重 招待",
        "email": "twice@example.jp",
    }
    for _ in range(2):
        assert staff.client.post(f"{page}/users", data=invite).status_code == 302
    assert flashes(staff.get(page)) == [
        "二重 招待 様に利用登録の案内メールを送信しました。",
        "このメールアドレスはすでに登録されています。",
    ]
    db.rollback()
    assert (
        db.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.email == "twice@example.jp")
        )
        == 1
    )
    assert len(outbox(app)) == 1
