"""The offline path: download the questionnaire as .xlsx, fill it in, upload it through the real
form; what is valid is imported, everything else is listed by row and reason (issue 3, "Excel
round trip" and "Bad input"), and nothing already saved is lost."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from types import SimpleNamespace
from urllib.parse import quote

import openpyxl
import openpyxl.xml
import pytest
import sqlalchemy as sa

from portal.assessments import excel_checks, store
from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.audit.models import AuditEvent
from portal.engagements.models import Engagement
from portal.evidence import filetypes
from portal.permissions import Role
from tests.helpers import Browser, soup

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _assessment(db, org, department, staff, company, **engagement) -> Assessment:
    fields = {
        "kind": "outsourcing",
        "title": "窓口業務委託",
        "purpose": "窓口",
        "information": "住民情報",
        "confidentiality": 2,
        "integrity": 1,
        "availability": 1,
        **engagement,
    }
    row = Engagement(
        organisation_id=org.id, department_id=department.id, created_by_id=staff.id, **fields
    )
    db.add(row)
    db.flush()
    assessment = Assessment(
        organisation_id=org.id,
        engagement_id=row.id,
        vendor_company_id=company.id,
        questionnaire_key="assessment",
        questionnaire_version="2026.11",
        created_by_id=staff.id,
    )
    db.add(assessment)
    db.commit()
    return assessment


@pytest.fixture
def world(app, db, make, org):
    department = make.department(org)
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, name="テスト情報システム株式会社")
    vendor = make.user(company=company, invited_by=org)
    assessment = _assessment(db, org, department, staff, company)
    browser = Browser(app.test_client())
    assert browser.login(vendor).status_code == 302
    return SimpleNamespace(
        org=org,
        department=department,
        staff=staff,
        company=company,
        vendor=vendor,
        assessment=assessment,
        browser=browser,
    )


# --- helpers ---------------------------------------------------------------------------------


def download(browser: Browser, assessment_id: int) -> bytes:
    response = browser.get(f"/assessments/{assessment_id}/excel")
    assert response.status_code == 200
    assert response.mimetype == XLSX
    return response.get_data()


def fill(data: bytes, answers: dict | None = None, tables: dict | None = None, edit=None) -> bytes:
    """Answers by question key into the 回答 column; table rows by sheet name from row 2."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["回答"]
    rows = {row[0].value: row[0].row for row in sheet.iter_rows(min_row=2)}
    for key, value in (answers or {}).items():
        sheet.cell(row=rows[key], column=6, value=value)
    for name, table_rows in (tables or {}).items():
        for n, values in enumerate(table_rows, start=2):
            for col, value in enumerate(values, start=1):
                book[name].cell(row=n, column=col, value=value)
    if edit:
        edit(book, rows)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def upload(browser: Browser, assessment_id: int, data: bytes, name: str = "評価票.xlsx"):
    return browser.submit(
        f"/assessments/{assessment_id}/excel/import",
        {"file": (io.BytesIO(data), name)},
        selector="form#excel-import",
    )


def problems(response) -> list[tuple[str, str]]:
    return [
        (
            row.select_one("[data-field=where]").get_text(strip=True),
            row.select_one("[data-field=reason]").get_text(strip=True),
        )
        for row in soup(response).select("[data-problem]")
    ]


def reason_for(response, where: str) -> str:
    found = [reason for place, reason in problems(response) if place == where]
    assert found, f"no problem reported at {where}: {problems(response)}"
    return " ".join(found)


def saved(db, assessment) -> dict:
    db.rollback()
    return store.values(db, assessment)


def answer_rows(db) -> list:
    db.rollback()
    return [
        *db.execute(sa.select(Answer.question_key, Answer.value, Answer.revision)).all(),
        *db.execute(sa.select(AnswerRevision.answer_id, AnswerRevision.revision)).all(),
    ]


def row_of(data: bytes, key: str) -> int:
    sheet = openpyxl.load_workbook(io.BytesIO(data))["回答"]
    return next(row[0].row for row in sheet.iter_rows(min_row=2) if row[0].value == key)


def save_answers(db, world, answers: dict) -> None:
    assessment = db.get(Assessment, world.assessment.id)
    for key, value in answers.items():
        store.save(db, assessment, key, value, world.vendor)
    db.commit()


# --- the workbook ----------------------------------------------------------------------------


def test_the_download_is_an_attachment_with_a_japanese_name(world):
    response = world.browser.get(f"/assessments/{world.assessment.id}/excel")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="assessment-{world.assessment.id}.xlsx"')
    assert f"filename*=UTF-8''{quote('評価票_テスト情報システム株式会社.xlsx')}" in disposition
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"].startswith("sandbox; ")


def test_the_workbook_explains_itself_and_only_answer_cells_are_editable(world):
    data = download(world.browser, world.assessment.id)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames[:3] == ["説明", "回答", "認証"]
    assert book["国一覧"].sheet_state == "hidden"
    assert book["管理用"].sheet_state == "veryHidden"
    assert book.properties.title.startswith("委託先・外部サービス")
    assert book.security.lockStructure
    assert "記入のしかた" in [c.value for c in book["説明"]["A"]]
    sheet = book["回答"]
    assert [c.value for c in sheet[1]] == [
        "設問キー",
        "セクション",
        "設問",
        "必須",
        "回答方法",
        "回答",
        "根拠",
    ]
    assert sheet.protection.sheet
    row = row_of(data, "company.security_policy")
    assert sheet.cell(row=row, column=6).protection.locked is False
    assert sheet.cell(row=row, column=1).protection.locked is True
    assert sheet.cell(row=row, column=5).value.startswith("はい／いいえ／一部／該当なし から選択")
    rules = {str(rule.sqref): rule for rule in sheet.data_validations.dataValidation}
    assert rules[f"F{row}"].type == "list"
    hours = row_of(data, "contract.emergency_notice_hours")
    assert "数値（時間） 0〜720" in sheet.cell(row=hours, column=5).value
    assert (rules[f"F{hours}"].type, rules[f"F{hours}"].formula2) == ("whole", "720")
    country = row_of(data, "company.hq_country")
    assert "国一覧" in rules[f"F{country}"].formula1
    follow_up = row_of(data, "company.past_incident_details")
    assert f"{row_of(data, 'company.past_incidents')}行目の回答が「はい」の場合のみ回答" in (
        sheet.cell(row=follow_up, column=5).value
    )
    # Evidence is uploaded on the portal: no row for it, no column in the 認証 table.
    keys = [r[0].value for r in sheet.iter_rows(min_row=2)]
    assert "certifications.certificate_evidence" not in keys
    assert "証明書" not in [c.value for c in book["認証"][1]]


def test_saved_answers_come_prefilled(db, world):
    save_answers(
        db,
        world,
        {
            "company.security_policy": "partly",
            "contract.access_methods": ["remote", "vpn"],
            "company.hq_country": "JP",
            "certifications.others": [
                {"kind": "iso27001", "number": "IS 123", "issued": "2024-04-01"}
            ],
        },
    )
    data = download(world.browser, world.assessment.id)
    book = openpyxl.load_workbook(io.BytesIO(data))
    cell = lambda key: book["回答"].cell(row=row_of(data, key), column=6).value  # noqa: E731
    assert cell("company.security_policy") == "一部"
    assert (
        cell("contract.access_methods") == "貴社拠点からのリモート保守、VPN等の閉域接続を経由する"
    )
    assert cell("company.hq_country") == "日本"
    assert cell("company.legal_name") == "テスト情報システム株式会社"  # from the company profile
    first = [c.value for c in book["認証"][2]]
    assert first[:2] == ["ISO/IEC 27001（JIS Q 27001）", "IS 123"]
    assert first[4] == datetime(2024, 4, 1)


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_imports_the_answers_and_shows_them_on_the_section_page(db, world):
    data = download(world.browser, world.assessment.id)
    filled = fill(
        data,
        {
            "company.legal_name": "テスト情報システム株式会社（本社）",
            "company.security_policy": "はい",
            "company.foreign_capital_ratio": 12.5,
        },
    )
    response = upload(world.browser, world.assessment.id, filled)
    assert response.status_code == 200
    # The three answers, and the 法人番号 prefilled from the company profile (as on the page).
    assert soup(response).select_one("[data-field=imported]").get_text() == "4"
    assert problems(response) == []

    values = saved(db, world.assessment)
    assert values["company.legal_name"] == "テスト情報システム株式会社（本社）"
    assert values["company.security_policy"] == "yes"
    assert values["company.foreign_capital_ratio"] == 12.5
    assert values["company.corporate_number"] == world.company.corporate_number
    page = soup(world.browser.get(f"/assessments/{world.assessment.id}/sections/company"))
    assert (
        page.select_one("input[name='a:company.legal_name']")["value"]
        == values["company.legal_name"]
    )
    assert page.select_one("input[name='a:company.security_policy'][value=yes]").has_attr("checked")
    links = page.select_one("[data-field=excel-links]")
    assert {a["href"] for a in links.select("a")} == {
        f"/assessments/{world.assessment.id}/excel",
        f"/assessments/{world.assessment.id}/excel/import",
    }
    event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "assessment.imported"))
    assert event is not None
    assert json.loads(event.details)["imported"] == 4

    # The same file again changes nothing and reports nothing.
    again = upload(world.browser, world.assessment.id, filled)
    assert soup(again).select_one("[data-field=imported]").get_text() == "0"
    assert problems(again) == []


def test_every_question_type_is_imported(app, db, make, world):
    external = _assessment(
        db,
        world.org,
        world.department,
        world.staff,
        world.company,
        kind="external_service",
        title="クラウド型窓口サービス",
    )
    data = download(world.browser, external.id)
    filled = fill(
        data,
        {
            "company.legal_name": "テスト情報システム株式会社",
            "company.ownership": "親会社なし。\n株主は役員のみ。",
            "company.security_policy": "はい",
            "company.hq_country": "アメリカ合衆国",
            "certifications.ismap": "ISMAPクラウドサービスリストに登録されている",
            "certifications.ismap_registered_on": datetime(2023, 10, 1),
            "certifications.ismap_audit_period_end": "２０２５/３/３１",
            "contract.training_frequency": "四半期ごと",
            "contract.emergency_notice_hours": "７２",
            "contract.emergency_channels": "電子メール、24時間対応の緊急窓口",
            "contract.audit_acceptance": "リモート（オンライン会議、映像・写真）による監査",
            "contract.subcontract": "はい",
            "external.sla_url": "https://example.jp/sla",
        },
        {
            "再委託先": [["下請システム株式会社", "", "日本", "データセンター運用", "いいえ"]],
            "データの保管場所": [
                ["本番", "日本", "東京"],
                ["バックアップ", "シンガポール", None],
            ],
            "認証": [
                ["SOC 2", "SOC-1", "監査法人", "全サービス", datetime(2024, 1, 5), "2026-01-04"]
            ],
        },
    )
    response = upload(world.browser, external.id, filled)
    assert problems(response) == []
    values = saved(db, external)
    assert values["company.ownership"] == "親会社なし。\n株主は役員のみ。"
    assert values["company.security_policy"] == "yes"
    assert values["company.hq_country"] == "US"
    assert values["certifications.ismap"] == "ismap"
    assert values["certifications.ismap_registered_on"] == "2023-10-01"
    assert values["certifications.ismap_audit_period_end"] == "2025-03-31"
    assert values["contract.training_frequency"] == "quarterly"
    assert values["contract.emergency_notice_hours"] == 72
    assert values["contract.emergency_channels"] == ["email", "hotline"]
    assert values["contract.audit_acceptance"] == ["remote"]  # a label holding 「、」 itself
    assert values["external.sla_url"] == "https://example.jp/sla"
    assert values["contract.subcontractors"] == [
        {
            "name": "下請システム株式会社",
            "country": "JP",
            "role": "データセンター運用",
            "wholly_owned": "no",
        }
    ]
    assert values["external.data_locations"] == [
        {"purpose": "primary", "country": "JP", "region": "東京"},
        {"purpose": "backup", "country": "SG"},
    ]
    assert values["certifications.others"] == [
        {
            "kind": "soc2",
            "number": "SOC-1",
            "body": "監査法人",
            "scope": "全サービス",
            "issued": "2024-01-05",
            "expires": "2026-01-04",
        }
    ]


# --- a deliberately broken workbook: each cell reported, the saved draft untouched -------------


DRAFT = {
    "company.legal_name": "保存済み株式会社",
    "company.security_policy": "yes",
    "company.foreign_capital_ratio": 10,
    "company.past_incidents": "no",
    "contract.access_methods": ["onsite"],
    "contract.subcontract": "yes",
    "contract.subcontractors": [
        {"name": "保存済みの再委託先", "country": "JP", "role": "保守", "wholly_owned": "yes"}
    ],
}


def test_a_broken_workbook_reports_each_cell_and_keeps_the_saved_draft(db, world):
    save_answers(db, world, DRAFT)
    data = download(world.browser, world.assessment.id)
    row = lambda key: row_of(data, key)  # noqa: E731

    def change_keys(book, rows):
        sheet = book["回答"]
        sheet.cell(row=rows["company.representative"], column=1, value="company.address")
        sheet.cell(row=rows["company.representative"], column=6, value="代表 太郎")
        sheet.cell(row=rows["company.officers"], column=1, value="company.no_such_question")
        sheet.cell(row=rows["company.officers"], column=6, value="役員一覧")

    filled = fill(
        data,
        {
            "company.legal_name": "長" * 201,  # over the 200-character limit
            "company.security_policy": "たぶん",  # no such choice
            "company.foreign_capital_ratio": "たくさん",  # not a number
            "company.past_incident_details": "事故の詳細",  # hidden: past_incidents is いいえ
            "contract.access_methods": "庁舎内、伝書鳩",  # one choice unknown
            "certifications.ismap": "ISMAPクラウドサービスリストに登録されている",
            "certifications.ismap_registered_on": date(2019, 5, 1),  # before 2020-01-01
            "contract.emergency_notice_hours": 1000,  # over 720
            "company.security_officer": "情報セキュリティ責任者 山田",  # valid: imported
        },
        {"再委託先": [["新しい再委託先", "", "月の裏側", "保守", "はい"]]},
        edit=change_keys,
    )
    response = upload(world.browser, world.assessment.id, filled)
    assert response.status_code == 200
    place = lambda key: f"回答シート {row(key)}行目（{key}）"  # noqa: E731

    assert "200文字以内" in reason_for(response, place("company.legal_name"))
    assert "選択肢の中から選んでください" in reason_for(response, place("company.security_policy"))
    assert "「たぶん」" in reason_for(response, place("company.security_policy"))
    assert "数値" in reason_for(response, place("company.foreign_capital_ratio"))
    assert "対象外" in reason_for(response, place("company.past_incident_details"))
    assert "「庁舎内」" in reason_for(response, place("contract.access_methods"))
    assert "「伝書鳩」" in reason_for(response, place("contract.access_methods"))
    assert "2020-01-01から" in reason_for(response, place("certifications.ismap_registered_on"))
    assert "720以下" in reason_for(response, place("contract.emergency_notice_hours"))
    representative = f"回答シート {row('company.representative')}行目（company.address）"
    assert "設問キーまたは設問文が変更されている" in reason_for(response, representative)
    unknown = f"回答シート {row('company.officers')}行目（company.no_such_question）"
    assert "この評価票にない設問キー" in reason_for(response, unknown)
    assert "国を一覧から選んでください" in reason_for(response, "再委託先シート 2行目")
    assert "取り込んでいません" in reason_for(response, "再委託先シート")

    values = saved(db, world.assessment)
    assert {key: values[key] for key in DRAFT} == DRAFT  # nothing saved was lost or changed
    assert values["company.security_officer"] == "情報セキュリティ責任者 山田"
    assert values["certifications.ismap"] == "ismap"
    assert "company.past_incident_details" not in values
    assert "company.representative" not in values and "company.address" not in values
    assert "certifications.ismap_registered_on" not in values
    assert soup(response).select_one("[data-field=imported]").get_text() == "3"  # + 法人番号


def test_table_rows_outside_the_table_are_reported(db, world):
    data = download(world.browser, world.assessment.id)

    def outside(book, rows):
        sheet = book["認証"]
        sheet.cell(row=2, column=1, value="SOC 2")
        sheet.cell(row=2, column=8, value="欄外のメモ")
        sheet.cell(row=53, column=1, value="SOC 2")  # past the 50 rows a table may have

    response = upload(world.browser, world.assessment.id, fill(data, edit=outside))
    assert reason_for(response, "認証シート 2行目") == "表の範囲外の列に入力があります。"
    assert reason_for(response, "認証シート 53行目") == "50行以内で入力してください。"
    assert "取り込んでいません" in reason_for(response, "認証シート")


def _rezip(data: bytes, add: dict[str, bytes] | None = None, drop: str = "") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for entry in source.infolist():
            if entry.filename != drop:
                target.writestr(entry, source.read(entry))
        for name, content in (add or {}).items():
            target.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * (60 * 1024 * 1024))
    return out.getvalue()


ANSWER_SHEET_PART = "xl/worksheets/sheet2.xml"  # 「回答」, the second sheet


def _part(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def _replace_part(data: bytes, name: str, content: bytes) -> bytes:
    return _rezip(data, {name: content}, drop=name)


def _utf16_with_entities(data: bytes) -> bytes:
    """The 回答 sheet saved as UTF-16 with a growing entity: no ASCII "<!DOCTYPE" to find."""
    xml = _part(data, ANSWER_SHEET_PART).decode()
    body = xml[xml.index("?>") + 2 :] if xml.startswith("<?xml") else xml
    assert "<t>" in body
    doctype = (
        '<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    )
    xml = '<?xml version="1.0" encoding="UTF-16"?>' + doctype + body.replace("<t>", "<t>&b;", 1)
    return _replace_part(data, ANSWER_SHEET_PART, xml.encode("utf-16"))


def _declared_encoding(data: bytes) -> bytes:
    xml = _part(data, ANSWER_SHEET_PART)
    body = xml[xml.index(b"?>") + 2 :] if xml.startswith(b"<?xml") else xml
    return _replace_part(
        data, ANSWER_SHEET_PART, b'<?xml version="1.0" encoding="ISO-8859-1"?>' + body
    )


def _extra_rows(data: bytes, count: int) -> bytes:
    """``count`` rows appended to the 回答 sheet's XML, far below the filled-in rows."""
    xml = _part(data, ANSWER_SHEET_PART)
    rows = "".join(
        f'<row r="{n}"><c r="H{n}" t="inlineStr"><is><t>x</t></is></c></row>'
        for n in range(5000, 5000 + count)
    )
    return _replace_part(
        data, ANSWER_SHEET_PART, xml.replace(b"</sheetData>", rows.encode() + b"</sheetData>")
    )


def _cell(key: str, value):
    def edit(book, rows):
        book["回答"].cell(row=rows[key], column=6, value=value)

    return edit


def _control(name: str, value: str):
    def edit(book, rows):
        sheet = book["管理用"]
        for row in sheet.iter_rows():
            if row[0].value == name:
                row[1].value = value

    return edit


REFUSED = {
    "extra sheet": (
        lambda data: fill(data, edit=lambda b, r: b.create_sheet("メモ")),
        "想定外のシート「メモ」",
    ),
    "missing sheet": (
        lambda data: fill(data, edit=lambda b, r: b.remove(b["認証"])),
        "シート「認証」がありません",
    ),
    "formula": (
        lambda data: fill(data, edit=_cell("company.legal_name", "=1+1")),
        "数式があります",
    ),
    "formula in a table": (
        lambda data: fill(data, edit=lambda b, r: b["認証"].cell(row=2, column=2, value="=A1")),
        "「認証」シートのB2に数式があります",
    ),
    "merged cells": (
        lambda data: fill(data, edit=lambda b, r: b["回答"].merge_cells("F2:F3")),
        "結合されたセル",
    ),
    "header changed": (
        lambda data: fill(data, edit=lambda b, r: b["回答"].cell(row=1, column=1, value="キー")),
        "見出し行（1行目）が変更されています",
    ),
    "every key changed": (
        lambda data: fill(
            data,
            edit=lambda b, r: [b["回答"].cell(row=n, column=1, value=f"x{n}") for n in r.values()],
        ),
        "設問キー（A列）が変更されている",
    ),
    "another version": (
        lambda data: fill(data, edit=_control("version", "2025.04")),
        "評価票の版が異なります",
    ),
    "another assessment": (
        lambda data: fill(data, edit=_control("assessment", "999999")),
        "この案件の評価票のファイルではありません",
    ),
    "not a workbook": (
        lambda data: "回答,はい\n".encode(),
        "Excel形式（.xlsx）の評価票ではありません",
    ),
    "a PDF": (lambda data: b"%PDF-1.4\n%broken\n", "Excel形式（.xlsx）の評価票ではありません"),
    "a Word file": (
        lambda data: _rezip(
            _rezip(data, drop="xl/workbook.xml"), {"word/document.xml": b"<document/>"}
        ),
        "Excel形式（.xlsx）の評価票ではありません",
    ),
    "legacy xls": (lambda data: filetypes.CFB_MAGIC + b"\0" * 512, "旧形式"),
    "zip bomb": (lambda data: _zip_bomb(), "大きすぎる"),
    "macros": (lambda data: _rezip(data, {"xl/vbaProject.bin": b"\0" * 64}), "マクロを含む"),
    "a DTD": (
        lambda data: _rezip(data, {"xl/extra.xml": b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x/>'}),
        "壊れている",
    ),
    "truncated": (lambda data: data[: len(data) // 2], "壊れている"),
    "a UTF-16 sheet with entities": (_utf16_with_entities, "文字コードがUTF-8ではない"),
    "another encoding declared": (_declared_encoding, "文字コードがUTF-8ではない"),
    "rows over the cap": (
        lambda data: _extra_rows(data, excel_checks.MAX_ROWS + 1),
        "評価票の想定を超える範囲（1シート2000行・100列まで）",
    ),
    "an external link": (
        lambda data: _rezip(data, {"xl/externalLinks/externalLink1.xml": b"<externalLink/>"}),
        "外部リンクを含む",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_refused_file_imports_nothing_and_says_why_in_japanese(app, db, world, case):
    save_answers(db, world, DRAFT)
    build, message = REFUSED[case]
    data = build(fill(download(world.browser, world.assessment.id), {"company.bcp": "はい"}))
    before, events = answer_rows(db), db.scalar(sa.select(sa.func.count()).select_from(AuditEvent))

    response = upload(world.browser, world.assessment.id, data, name="評価票.xlsx")

    assert response.status_code == 400
    refused = soup(response).select_one("[data-field=refused]").get_text(" ", strip=True)
    assert message in refused
    assert "回答は何も変更していません" in refused
    assert answer_rows(db) == before
    assert db.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == events


def test_openpyxl_parses_through_defusedxml(world, monkeypatch):
    assert openpyxl.xml.DEFUSEDXML
    data = _utf16_with_entities(fill(download(world.browser, world.assessment.id)))
    with pytest.raises(excel_checks.WorkbookRefused, match="文字コードがUTF-8ではない"):
        excel_checks.open_workbook(data)
    # Were the encoding check gone, the entity declarations would still be refused in parsing.
    monkeypatch.setattr(excel_checks, "_check_encoding", lambda head: None)
    with pytest.raises(excel_checks.WorkbookRefused, match="壊れている"):
        excel_checks.open_workbook(data)


def test_rows_over_the_cap_are_refused_before_openpyxl_loads_anything(world, monkeypatch):
    untouched = download(world.browser, world.assessment.id)
    data = _extra_rows(untouched, 3000)
    monkeypatch.setattr(
        excel_checks.openpyxl, "load_workbook", lambda *a, **k: pytest.fail("loaded")
    )
    with pytest.raises(excel_checks.WorkbookRefused, match="1シート2000行・100列まで"):
        excel_checks.open_workbook(data)
    monkeypatch.setattr(excel_checks, "MAX_CELLS", 50)  # cells are capped for the whole book
    with pytest.raises(excel_checks.WorkbookRefused, match="1シート2000行・100列まで"):
        excel_checks.open_workbook(untouched)


@pytest.mark.parametrize("rows", [excel_checks.MAX_ROWS, excel_checks.MAX_ROWS + 1])
def test_rows_are_counted_exactly_across_read_chunks(rows):
    padding = "長" * 40  # rows of some 150 bytes: tags are cut at every 64 KiB boundary
    sheet = "".join(
        f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>{padding}</t></is></c></row>'
        for n in range(1, rows + 1)
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "xl/worksheets/sheet1.xml", f"<worksheet><sheetData>{sheet}</sheetData></worksheet>"
        )
    if rows <= excel_checks.MAX_ROWS:
        excel_checks._check_parts(out.getvalue())
    else:
        with pytest.raises(excel_checks.WorkbookRefused, match="2000行"):
            excel_checks._check_parts(out.getvalue())


INJECTION = '=HYPERLINK("http://evil.example/","x")'


def test_text_starting_like_a_formula_is_downloaded_as_text_and_imported_unchanged(db, world):
    company = db.merge(world.company)
    company.name = "@SUM(1)株式会社"
    db.commit()
    answers = {
        **DRAFT,
        "company.legal_name": INJECTION,
        "company.security_officer": "-1+1",
        "contract.subcontractors": [
            {"name": "+cmd|' /C calc'!A0", "country": "JP", "role": "保守", "wholly_owned": "no"}
        ],
    }
    save_answers(db, world, answers)
    data = download(world.browser, world.assessment.id)

    book = openpyxl.load_workbook(io.BytesIO(data))
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
                if isinstance(cell.value, str) and cell.value[:1] in "=+-@":
                    assert cell.data_type == "s" and cell.quotePrefix, cell.coordinate
    legal_name = book["回答"].cell(row=row_of(data, "company.legal_name"), column=6)
    assert (legal_name.value, legal_name.data_type) == (INJECTION, "s")
    assert legal_name.quotePrefix
    assert book["再委託先"]["A2"].value == "+cmd|' /C calc'!A0"
    assert book["再委託先"]["A2"].data_type == "s"
    assert "会社名: @SUM(1)株式会社" in [c.value for c in book["説明"]["A"]]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
        assert not any(b"<f>" in archive.read(n) or b"<f " in archive.read(n) for n in sheets)

    response = upload(world.browser, world.assessment.id, data)  # the download, untouched
    assert response.status_code == 200
    assert problems(response) == []
    values = saved(db, world.assessment)
    assert {key: values[key] for key in answers} == answers


def test_an_upload_without_a_file_is_refused(world):
    response = world.browser.submit(
        f"/assessments/{world.assessment.id}/excel/import", {}, selector="form#excel-import"
    )
    assert response.status_code == 400
    assert (
        "Excelファイル（.xlsx）を選んでください"
        in soup(response).select_one("[data-field=refused]").get_text()
    )


# --- who may, and when -----------------------------------------------------------------------


def test_another_companys_vendor_gets_404_for_download_and_import(app, db, make, world):
    data = fill(download(world.browser, world.assessment.id), {"company.bcp": "はい"})
    other = make.user(company=make.company(world.org), invited_by=world.org)
    browser = Browser(app.test_client())
    browser.login(other)
    before = answer_rows(db)

    assert browser.get(f"/assessments/{world.assessment.id}/excel").status_code == 404
    assert browser.get(f"/assessments/{world.assessment.id}/excel/import").status_code == 404
    response = browser.post(
        f"/assessments/{world.assessment.id}/excel/import",
        {"file": (io.BytesIO(data), "評価票.xlsx")},
    )
    assert response.status_code == 404
    assert answer_rows(db) == before


def test_a_submitted_assessment_is_read_only(db, world):
    data = fill(download(world.browser, world.assessment.id), {"company.bcp": "はい"})
    assessment = db.get(Assessment, world.assessment.id)
    assessment.status = "submitted"
    db.commit()

    page = world.browser.get(f"/assessments/{world.assessment.id}/excel/import")
    assert page.status_code == 200
    assert soup(page).select_one("form#excel-import") is None
    assert "提出済みのため" in soup(page).select_one("[data-field=readonly]").get_text()
    section = soup(world.browser.get(f"/assessments/{world.assessment.id}/sections/company"))
    links = [a["href"] for a in section.select("[data-field=excel-links] a")]
    assert links == [f"/assessments/{world.assessment.id}/excel"]  # download only

    before = answer_rows(db)
    response = world.browser.post(
        f"/assessments/{world.assessment.id}/excel/import",
        {"file": (io.BytesIO(data), "評価票.xlsx")},
    )
    assert response.status_code == 409
    assert answer_rows(db) == before


def test_a_returned_assessment_takes_only_the_returned_answers(db, world):
    save_answers(db, world, DRAFT)
    assessment = db.get(Assessment, world.assessment.id)
    assessment.status = "returned"
    returned = db.scalar(
        sa.select(Answer).where(
            Answer.assessment_id == assessment.id, Answer.question_key == "company.legal_name"
        )
    )
    returned.returned, returned.return_comment = True, "正式名称で記入してください。"
    db.commit()
    data = download(world.browser, world.assessment.id)
    filled = fill(
        data, {"company.legal_name": "正式名称株式会社", "company.security_policy": "いいえ"}
    )

    response = upload(world.browser, world.assessment.id, filled)

    values = saved(db, world.assessment)
    assert values["company.legal_name"] == "正式名称株式会社"
    assert values["company.security_policy"] == "yes"
    where = f"回答シート {row_of(data, 'company.security_policy')}行目（company.security_policy）"
    assert "差し戻された設問ではない" in reason_for(response, where)


def test_an_answer_changed_on_the_portal_after_the_download_is_not_overwritten(db, world):
    save_answers(db, world, {"company.legal_name": "ダウンロード時の名称"})
    data = download(world.browser, world.assessment.id)
    save_answers(db, world, {"company.legal_name": "画面で直した名称"})
    filled = fill(data, {"company.legal_name": "Excelで直した名称", "company.bcp": "はい"})

    response = upload(world.browser, world.assessment.id, filled)

    values = saved(db, world.assessment)
    assert values["company.legal_name"] == "画面で直した名称"
    assert values["company.bcp"] == "yes"
    where = f"回答シート {row_of(data, 'company.legal_name')}行目（company.legal_name）"
    assert "ダウンロードした後にポータルで回答が変更された" in reason_for(response, where)
