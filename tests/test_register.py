"""The 承認済み外部サービス台帳: the list and each of its filters, pagination, the CSV and XLSX
exports read back (BOM, headers, values, formula neutralisation, audit), the printable view,
who may read it (never a vendor, never another body) and a constant number of queries."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date

import openpyxl
import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals import service as approvals
from portal.approvals.models import ExternalService, UseApplication
from portal.audit.models import AuditEvent
from portal.clauses.models import ClauseDocument, ClauseVersion, Contract
from portal.lifecycle import checklists, retirement
from portal.lifecycle.models import LifecycleCheck
from portal.permissions import Role
from portal.register import service as register
from portal.register.columns import COLUMNS, HEADERS
from tests.helpers import Browser, QueryCounter, soup

TODAY = date(2026, 11, 20)
TERMS = "第1条 本規約は、サービスの利用条件を定める。".encode()


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel("2026-11-20 10:00 +0900", tick=False):
        yield


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    response = browser.login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return browser


# ---------------------------------------------------------------------------------------------
# Arranging register entries through portal.approvals.service
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def people(make, org):
    policy, citizens = make.department(org, "情報政策課"), make.department(org, "市民課")
    found = {
        "policy": policy,
        "citizens": citizens,
        "staff": make.user(org, roles={Role.STAFF}, departments=[policy], name="申請 一郎"),
        "citizen_staff": make.user(
            org, roles={Role.STAFF}, departments=[citizens], name="市民 二郎"
        ),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 三郎"),
        "manager": make.user(
            org, roles={Role.STAFF, Role.SERVICE_MANAGER}, departments=[policy], name="管理 四郎"
        ),
        "successor": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[citizens],
            name="後任 五郎",
        ),
        "auditor": make.user(org, roles={Role.AUDITOR}, name="監査 六子"),
        "company": make.company(org, name="株式会社クラウド提供"),
        "odd_company": make.company(org, name="データ_100%株式会社"),
    }
    found["vendor"] = make.user(org, company=found["company"], name="事業者 七郎")
    return found


@dataclass
class Entry:
    name: str
    track: str = "9.2"  # 9.1 / 9.2 need an assessment; 9.3 accepts terms
    department: str = "policy"
    applicant: str = "staff"
    company: str = "company"
    confidentiality: int | None = None
    segment: str = "internet"
    specific_personal_data: bool = False
    decision: str | None = "approve"  # None: left submitted
    decided_on: date = TODAY
    # After the decision: suspend / retire (→ 廃止手続中) / retire_override (→ 廃止 by the
    # approver before the exit checklist is complete, with the reason).
    status_action: str | None = None
    service: dict = field(default_factory=dict)  # ServiceInput fields


def make_entry(db, make, org, people, spec: Entry) -> UseApplication:
    applicant = people[spec.applicant]
    company = people[spec.company]
    department = people[spec.department]
    confidentiality = spec.confidentiality or (1 if spec.track == "9.3" else 2)
    service = approvals.create_service(
        db, applicant, company.id, approvals.ServiceInput(name=spec.name, **spec.service)
    )
    assessment = None
    if spec.track != "9.3":
        engagement = make.engagement(
            org,
            department,
            applicant,
            kind="outsourcing" if spec.track == "9.1" else "external_service",
            title=f"{spec.name}の評価",
            confidentiality=confidentiality,
            specific_personal_data=spec.specific_personal_data,
        )
        assessment = make.assessment(engagement, company, applicant, status="decided")
    application = approvals.file(
        db,
        applicant,
        approvals.ApplicationInput(
            department_id=department.id,
            service_id=service.id,
            plan_id=None,
            assessment_id=assessment.id if assessment else None,
            purpose=f"{spec.name}を業務で使うため。",
            business="庁内の事務。",
            network_segment=spec.segment,
            max_confidentiality=confidentiality,
            personal_data=spec.specific_personal_data,
            specific_personal_data=spec.specific_personal_data,
            sensitive_personal_data=False,
            terms=approvals.TermsInput(
                url="https://example.com/terms", content=TERMS, risks_confirmed=True
            ),
        ),
    )
    if spec.decision:
        approvals.decide(
            db,
            application,
            people["approver"],
            approvals.DecisionInput(
                decision=spec.decision,
                reason="業務上必要であるため。",
                conditions="-月次で利用状況を報告すること"
                if spec.decision == "conditional"
                else "",
                manager_id=people["manager"].id,
                version=application.version,
            ),
            spec.decided_on,
        )
    if spec.status_action:
        approvals.change_status(
            db,
            application,
            people["approver"],
            "retire" if spec.status_action == "retire_override" else spec.status_action,
            "テストのための変更",
            application.version,
        )
    if spec.status_action == "retire_override":
        retirement.retire_with_override(
            db,
            application,
            people["approver"],
            reason="消去証明書の提出を待たずに廃止する。",
            version=application.version,
        )
    db.commit()
    return application


def ismap(audit_end: date, pending: bool = False) -> dict:
    return {
        "ismap_kind": "ismap",
        "ismap_number": "ISMAP-C-0001",
        "ismap_registered_on": date(2022, 4, 1),
        "ismap_audit_period_end": audit_end,
        "ismap_renewal_pending": pending,
        "ismap_scope_covers": "yes",
        "ismap_checked_on": date(2026, 10, 1),
    }


def certificate(expires: str) -> dict:
    return {
        "certificates": [
            {
                "kind": "iso27001",
                "label": "ISO/IEC 27001（JIS Q 27001）",
                "number": "IS 123456",
                "body": "審査機関",
                "scope": "全社",
                "expires": expires,
            }
        ]
    }


def attach_contract(db, application, author) -> ClauseVersion:
    """特記事項 第1版 and 第2版, and the contract with 第2版 attached (as the clauses do)."""
    document = ClauseDocument(
        organisation_id=application.organisation_id,
        assessment_id=application.assessment_id,
        number=f"情政-2026-{application.id:03d}",
    )
    db.add(document)
    db.flush()
    versions = []
    for number in (1, 2):
        pdf = f"%PDF-1.7 version {number}".encode()
        versions.append(
            ClauseVersion(
                document_id=document.id,
                number=number,
                catalogue_version="1",
                questionnaire_version="1",
                articles="[]",
                pdf=pdf,
                sha256=hashlib.sha256(pdf).hexdigest(),
                size=len(pdf),
                created_by_id=author.id,
            )
        )
    db.add_all(versions)
    db.flush()
    db.add(
        Contract(
            organisation_id=application.organisation_id,
            document_id=document.id,
            contract_number=f"令和8年度情政第{application.id}号",
            contract_date=date(2026, 4, 1),
            period_start=date(2026, 4, 1),
            period_end=date(2027, 3, 31),
            signatory="代表取締役 甲野 太郎",
            attached_version_id=versions[1].id,
            recorded_by_id=author.id,
        )
    )
    db.commit()
    return versions[1]


@pytest.fixture
def entries(db, make, org, people):
    """Seven applications: five in the register in four states, one waiting, one rejected."""
    found = {}
    found["meeting"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "オンライン会議サービス",
            segment="lgwan",
            decided_on=date(2026, 4, 1),
            service={
                **ismap(date(2026, 3, 31)),  # valid until 2027-07-31
                "tables": {
                    **certificate("2028-03-31"),
                    "data_locations": [{"purpose": "primary", "country": "JP", "region": "東京"}],
                    "subcontractors": [
                        {"name": "株式会社下請運用", "country": "JP", "role": "運用保守"}
                    ],
                },
                "governing_law": "japan",
                "jurisdiction": "japan",
                "sla_availability": 99.9,
                "rto_hours": 4,
                "rpo_hours": 24,
                "backup": "日次で別リージョンに保管",
                "exit_plan": "CSVで出力し、消去証明書を提出する。",
            },
        ),
    )
    found["accounting"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "=会計システム運用",
            track="9.1",
            department="citizens",
            applicant="citizen_staff",
            confidentiality=3,
            segment="mynumber",
            specific_personal_data=True,
            decision="conditional",
            service=ismap(date(2025, 9, 30)),  # valid until 2027-01-31: expiring
        ),
    )
    found["video"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "研修動画配信",
            track="9.3",
            company="odd_company",
            service={"tables": certificate("2026-10-01")},  # expired ISO certificate
            status_action="suspend",
        ),
    )
    found["storage"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "ファイル保管サービス",
            service=ismap(date(2025, 3, 31)),
            status_action="retire_override",
        ),
    )
    found["mail"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "メール配信サービス",
            department="citizens",
            applicant="citizen_staff",
            segment="lgwan",
            decision=None,
            service=ismap(date(2025, 3, 31), pending=True),
        ),
    )
    found["chat"] = make_entry(
        db,
        make,
        org,
        people,
        Entry(
            "チャットサービス",
            track="9.3",
            department="citizens",
            applicant="citizen_staff",
            decision="reject",
        ),
    )
    found["survey"] = make_entry(db, make, org, people, Entry("アンケート作成", track="9.3"))
    # An ISMAP registration whose audit period is not known (only possible in old records).
    survey_service = db.get(ExternalService, found["survey"].service_id)
    survey_service.ismap_kind, survey_service.ismap_number = "ismap_liu", "ISMAP-L-9"
    survey_service.refresh_derived()
    # Reviews: one overdue, one soon; the retired entry's old date no longer counts.
    found["accounting"].next_review_on = date(2026, 10, 31)
    found["video"].next_review_on = date(2027, 1, 15)
    found["storage"].next_review_on = date(2026, 1, 1)
    db.commit()
    approvals.hand_over(
        db,
        found["meeting"],
        people["approver"],
        user_id=people["successor"].id,
        on=date(2026, 10, 1),
        note="異動のため",
        version=found["meeting"].version,
        today=date(2026, 10, 1),
    )
    approvals.record_terms(
        db,
        db.get(UseApplication, found["survey"].id),
        people["staff"],
        approvals.TermsInput(url="https://example.com/terms", content=b"new terms"),
    )
    db.commit()
    found["version"] = attach_contract(db, found["accounting"], people["citizen_staff"])
    return found


def listed(browser, query: str = "") -> list[int]:
    page = browser.get(f"/register{query}")
    assert page.status_code == 200, query
    return [
        int(tr["data-application-id"])
        for tr in soup(page).select("[data-table=register] tbody tr[data-application-id]")
    ]


def ids(entries, *names) -> set[int]:
    return {entries[name].id for name in names}


IN_REGISTER = ("meeting", "accounting", "video", "storage", "survey")


# ---------------------------------------------------------------------------------------------
# The list and its filters
# ---------------------------------------------------------------------------------------------


def test_the_list_shows_the_register_entries_with_marks_and_links(app, entries, people):
    browser = signed_in(app, people["auditor"])
    page = browser.get("/register")
    assert page.status_code == 200
    html = soup(page)
    rows = {
        int(tr["data-application-id"]): tr
        for tr in html.select("[data-table=register] tbody tr[data-application-id]")
    }
    assert set(rows) == ids(entries, *IN_REGISTER)
    assert html.select_one("[data-count=total]").get_text() == "5"
    assert html.select_one("[data-count=review_overdue]").get_text() == "1"
    assert html.select_one("[data-count=certificate_expired]").get_text() == "2"

    meeting = rows[entries["meeting"].id]
    link = meeting.select_one("[data-field=service] a")
    assert link["href"] == f"/applications/{entries['meeting'].id}"
    assert link.get_text(strip=True) == "オンライン会議サービス"
    assert (
        meeting.select_one("[data-field=manager]").get_text(" ", strip=True).startswith("後任 五郎")
    )
    assert meeting.select_one("[data-field=ismap]")["data-ismap"] == "valid"
    assert "構築: 未着手" in meeting.select_one("[data-field=checklists]").get_text(" ")

    accounting = rows[entries["accounting"].id]
    assert accounting.select_one("[data-field=status]").get_text(strip=True) == "条件付承認"
    assert accounting.select_one("[data-mark=overdue]").get_text() == "期限超過"
    assert accounting.select_one("[data-mark=expiring]").get_text() == "期限間近"
    contract = accounting.select_one("[data-field=contract]").get_text(" ", strip=True)
    assert f"令和8年度情政第{entries['accounting'].id}号" in contract and "第2版" in contract

    video = rows[entries["video"].id]
    assert video.select_one("[data-mark=expired]").get_text() == "期限切れ"
    assert video.select_one("[data-mark=soon]").get_text() == "期限間近"
    assert video.select_one("[data-field=status]").get_text(strip=True) == "停止"
    assert rows[entries["survey"].id].select_one("[data-mark=terms]") is not None
    # The retired entry's past review date is not flagged.
    assert rows[entries["storage"].id].select_one("[data-mark=overdue]") is None

    # Exports and the printable view carry the filters.
    filtered = soup(browser.get("/register?segment=lgwan&keyword=会議"))
    for kind in ("csv", "xlsx"):
        form = filtered.select_one(f"form[data-export={kind}]")
        hidden = {i["name"]: i["value"] for i in form.select("input[type=hidden]")}
        assert hidden["segment"] == "lgwan" and hidden["keyword"] == "会議"
    print_link = filtered.select_one("a[data-link=print]")["href"]
    assert print_link.startswith("/register/print?") and "segment=lgwan" in print_link


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?status=all", IN_REGISTER + ("mail", "chat")),
        ("?status=approved", ("meeting", "survey")),
        ("?status=conditional", ("accounting",)),
        ("?status=suspended", ("video",)),
        ("?status=retired", ("storage",)),
        ("?status=submitted", ("mail",)),
        ("?status=rejected", ("chat",)),
        ("?status=bogus", IN_REGISTER),
        ("?max_classification=3", ("accounting",)),
        ("?max_classification=1", ("video", "survey")),
        ("?max_classification=2", ("meeting", "storage")),
        ("?segment=mynumber", ("accounting",)),
        ("?segment=lgwan", ("meeting",)),
        ("?segment=lgwan&status=all", ("meeting", "mail")),
        ("?ismap=valid", ("meeting",)),
        ("?ismap=expiring", ("accounting",)),
        ("?ismap=expired", ("storage",)),
        ("?ismap=renewal_pending", ()),
        ("?ismap=renewal_pending&status=all", ("mail",)),
        ("?ismap=none", ("video",)),
        ("?ismap=unknown", ("survey",)),
        ("?review=overdue", ("accounting",)),
        # The survey's terms changed: its review is brought forward to within 30 days.
        ("?review=soon", ("video", "survey")),
        ("?expiring_certificates=1", ("accounting", "video", "storage")),
        ("?keyword=会議", ("meeting",)),
        ("?keyword=100%25", ("video",)),  # the provider's name, % taken literally
        ("?keyword=%25", ("video",)),
        ("?keyword=_", ("video",)),
        ("?keyword=クラウド提供&max_classification=2", ("meeting", "storage")),
        ("?department_id=abc&max_classification=9&ismap=x&review=y&segment=z&page=-3", IN_REGISTER),
        ("?keyword=" + "あ" * 500, ()),
    ],
)
def test_each_filter_finds_the_right_entries(app, entries, people, query, expected):
    browser = signed_in(app, people["approver"])  # reads every application of the body
    assert sorted(listed(browser, query)) == sorted(ids(entries, *expected))


def test_the_department_filter(app, entries, people):
    browser = signed_in(app, people["approver"])
    citizens = people["citizens"].id
    assert set(listed(browser, f"?department_id={citizens}")) == ids(entries, "accounting")
    assert set(listed(browser, f"?department_id={citizens}&status=all")) == ids(
        entries, "accounting", "mail", "chat"
    )
    page = soup(browser.get(f"/register?department_id={citizens}"))
    assert page.select_one("#department_id option[selected]").get_text() == "市民課"


def test_the_ismap_filter_agrees_with_the_ismap_status_of_every_entry(db, entries, people):
    approver = people["approver"]
    everything = register.rows(
        db, approver.organisation_id, register.RegisterFilter(status="all"), TODAY, approver
    )
    assert len(everything) == 7
    by_status: dict[str, set[int]] = {}
    for row in everything:
        by_status.setdefault(row.ismap.status, set()).add(row.application.id)
    assert set(by_status) == set(register.ISMAP_FILTERS)
    for status in register.ISMAP_FILTERS:
        filters = register.RegisterFilter(status="all", ismap=status)
        found = register.rows(db, approver.organisation_id, filters, TODAY, approver)
        assert {r.application.id for r in found} == by_status[status], status


def test_applications_in_progress_are_listed_only_to_those_who_may_read_them(app, entries, people):
    # Staff of 情報政策課 see the register and their own department's applications only.
    staff = signed_in(app, people["staff"])
    assert set(listed(staff, "?status=all")) == ids(entries, *IN_REGISTER)
    assert listed(staff, "?status=submitted") == []
    citizen = signed_in(app, people["citizen_staff"])
    assert set(listed(citizen, "?status=all")) == ids(entries, *IN_REGISTER, "mail", "chat")


def test_pagination(app, entries, people, monkeypatch):
    assert register.PAGE_SIZE == 50
    monkeypatch.setattr(register, "PAGE_SIZE", 2)
    browser = signed_in(app, people["auditor"])
    pages = [listed(browser, f"?page={n}") for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert set().union(*map(set, pages)) == ids(entries, *IN_REGISTER)
    assert listed(browser, "?page=99") == pages[2]  # beyond the end: the last page
    assert listed(browser, "?page=x") == pages[0]
    pager = soup(browser.get("/register?page=2&segment=internet"))
    links = {a["rel"][0]: a["href"] for a in pager.select(".pager a")}
    assert "page=1" in links["prev"] and "segment=internet" in links["prev"]
    assert "next" not in links  # internet: 3 entries, 2 pages


@pytest.mark.parametrize(
    "args", [{"status": "all"}, {"keyword": "クラウド提供", "status": "all"}, {"ismap": "expired"}]
)
def test_a_page_is_the_same_slice_of_the_register_as_the_whole_list(db, entries, people, args):
    # The list takes a page's ids first and loads only those; the exports load everything in
    # one query. Both must give the same entries in the same order, and the counts must agree.
    approver = people["approver"]
    filters = register.RegisterFilter.parse(args)
    whole = [r.application.id for r in register.rows(db, approver.organisation_id, filters, TODAY)]
    whole_as_viewer = [
        r.application.id
        for r in register.rows(db, approver.organisation_id, filters, TODAY, approver)
    ]
    assert whole_as_viewer  # every case finds something
    paged = [
        r.application.id
        for offset in range(0, len(whole_as_viewer) + 2, 2)
        for r in register.rows(
            db, approver.organisation_id, filters, TODAY, approver, limit=2, offset=offset
        )
    ]
    assert paged == whole_as_viewer
    assert set(whole) <= set(whole_as_viewer)
    counts = register.count(db, approver.organisation_id, filters, TODAY, approver)
    assert counts["total"] == len(whole_as_viewer)
    expired = sum(
        1
        for r in register.rows(db, approver.organisation_id, filters, TODAY, approver)
        if r.certificate_expired
    )
    assert counts["certificate_expired"] == expired


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------


def export(browser, kind: str, query: str = ""):
    return browser.submit(f"/register{query}", selector=f"form[data-export={kind}]")


def export_events(db) -> list[dict]:
    db.rollback()
    return [
        json.loads(e.details)
        for e in db.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action == "register.export")
            .order_by(AuditEvent.seq)
        )
    ]


def test_the_csv_has_every_column_and_is_safe_in_a_spreadsheet(app, db, entries, people):
    browser = signed_in(app, people["auditor"])
    response = export(browser, "csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%E5%A4%96%E9%83%A8" in disposition and "20261120.csv" in disposition
    raw = response.get_data()
    assert raw.startswith("\ufeff".encode())
    text = raw.decode("utf-8")
    assert "\r\n" in text
    table = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert tuple(table[0]) == HEADERS
    records = {int(r[0]): dict(zip(HEADERS, r, strict=True)) for r in table[1:]}
    assert set(records) == ids(entries, *IN_REGISTER)

    accounting = records[entries["accounting"].id]
    assert accounting["サービス名"] == "'=会計システム運用"  # formula neutralised
    assert accounting["利用の条件"] == "'-月次で利用状況を報告すること"
    assert accounting["状態"] == "条件付承認"
    assert accounting["利用課"] == "市民課"
    assert accounting["個人情報の取扱い"] == "個人情報、特定個人情報"
    assert accounting["次回の定期確認の期限"] == "2026年10月31日（期限超過）"
    assert accounting["ISMAPの状態"] == "有効（期限が近い）"
    assert accounting["ISMAP登録の有効期限"] == "2027年1月31日"
    assert accounting["契約番号（契約日）"] == (
        f"令和8年度情政第{entries['accounting'].id}号（2026年4月1日契約）"
    )
    assert accounting["契約に添付した特記事項の版"].startswith("第2版（文書番号 情政-2026-")
    assert entries["version"].sha256 in accounting["契約に添付した特記事項の版"]

    meeting = records[entries["meeting"].id]
    assert meeting["提供者（法人名）"] == "株式会社クラウド提供"
    assert meeting["外部サービス管理者"] == "後任 五郎"
    assert meeting["外部サービス管理者の所属"] == "市民課"
    assert meeting["外部サービス管理者の指定日"] == "2026年10月1日"
    assert meeting["外部サービス管理者の引継ぎ回数"] == "1"
    assert meeting["外部サービス管理者の履歴"].splitlines() == [
        "管理 四郎（2026年4月1日〜2026年9月30日）",
        "後任 五郎（2026年10月1日〜）",
    ]
    assert meeting["判断した許可権限者"] == "許可 三郎"
    assert meeting["判断日"] == "2026年11月20日"  # the day the approver recorded it
    assert meeting["データの保存場所（用途・国・地域）"] == "本番　日本　東京"
    assert meeting["再委託先（名称・国・役割・承認日）"] == (
        "株式会社下請運用（日本）　運用保守　承認日 2026年4月1日"
    )
    assert meeting["準拠法"] == "日本法" and meeting["管轄裁判所"] == "日本の裁判所"
    assert meeting["稼働率（SLA）"] == "99.9%" and meeting["目標復旧時間（RTO）"] == "4時間"
    assert meeting["その他の認証（有効期限）"] == (
        "ISO/IEC 27001（JIS Q 27001） IS 123456 認証機関 審査機関 範囲 全社（有効期限 2028年3月31日）"
    )
    assert meeting["導入・構築時の確認"] == "未着手"

    video = records[entries["video"].id]
    assert video["状態"] == "停止" and video["停止・廃止・再開の理由"] == "テストのための変更"
    assert video["最も早い証明書の有効期限"] == "2026年10月1日（期限切れ）"
    assert video["利用規約のURL"] == "https://example.com/terms"
    assert video["同意した利用規約の版のSHA-256"] == hashlib.sha256(TERMS).hexdigest()
    assert video["利用規約の再確認"] == ""
    assert video["リスク評価"] == "評価なし"
    assert records[entries["survey"].id]["利用規約の再確認"].startswith("要再確認")
    storage = records[entries["storage"].id]
    assert storage["状態"] == "廃止"
    assert (
        storage["利用終了時の確認を終えずに廃止した理由"] == "消去証明書の提出を待たずに廃止する。"
    )
    assert storage["利用終了時の確認"] == "未着手"

    [event] = export_events(db)
    assert event == {"format": "csv", "count": 5, "filters": {}}


def test_the_xlsx_has_the_same_columns_and_keeps_text_as_text(app, db, entries, people):
    browser = signed_in(app, people["auditor"])
    response = export(browser, "xlsx", "?max_classification=3")
    assert response.status_code == 200
    assert response.mimetype.endswith("spreadsheetml.sheet")
    assert "20261120.xlsx" in response.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()))
    sheet = book.active
    assert sheet.title == "外部サービス台帳"
    header = [c.value for c in sheet[1]]
    assert tuple(header) == HEADERS
    assert all(c.font.bold for c in sheet[1])
    assert sheet.freeze_panes == "C2"
    assert sheet.column_dimensions["B"].width == COLUMNS[1].width
    assert sheet.max_row == 2
    values = dict(zip(header, sheet[2], strict=True))
    name = values["サービス名"]
    assert name.value == "=会計システム運用" and name.data_type == "s"
    assert values["利用の条件"].data_type == "s"
    assert values["利用課"].value == "市民課"
    assert values["ISMAP登録の有効期限"].value.date() == date(2027, 1, 31)
    assert values["申請番号"].value == entries["accounting"].id
    assert export_events(db) == [
        {"format": "xlsx", "count": 1, "filters": {"max_classification": "3"}}
    ]


def test_exports_need_a_csrf_token(app, entries, people):
    browser = signed_in(app, people["auditor"])
    assert browser.client.post("/register/export.csv").status_code == 400
    assert browser.client.get("/register/export.csv").status_code == 405


# ---------------------------------------------------------------------------------------------
# Printable view
# ---------------------------------------------------------------------------------------------


def test_the_printable_view_has_every_entry_with_every_field(app, org, entries, people):
    browser = signed_in(app, people["approver"])
    page = browser.get("/register/print?review=overdue&status=all")
    assert page.status_code == 200
    html = soup(page)
    assert html.select_one("h1").get_text(strip=True) == "承認済み外部サービス台帳"
    assert html.select_one("[data-field=organisation]").get_text(strip=True) == org.name
    assert "2026年11月20日 10:00" in html.select_one("[data-field=printed-at]").get_text()
    conditions = [li.get_text(strip=True) for li in html.select("[data-field=conditions] li")]
    assert "定期確認: 期限を過ぎている" in conditions
    assert any(c.startswith("状態: すべて") for c in conditions)
    [entry] = html.select(".register-entry")
    assert int(entry["data-application-id"]) == entries["accounting"].id

    everything = soup(browser.get("/register/print"))
    sections = everything.select(".register-entry")
    assert {int(s["data-application-id"]) for s in sections} == ids(entries, *IN_REGISTER)
    for section in sections:
        headers = tuple(th.get_text(strip=True) for th in section.select("th[scope=row]"))
        assert headers == HEADERS
    video = everything.select_one(f".register-entry[data-application-id='{entries['video'].id}']")
    assert video.select_one("[data-column=status] td").get_text(strip=True) == "停止"
    assert "期限切れ" in video.select_one("[data-column=earliest_expiry] td").get_text()
    # Print rules: one entry a page, no navigation.
    css = app.static_folder + "/css/print.css"
    with open(css, encoding="utf-8") as handle:
        rules = handle.read()
    assert ".register-entry { break-before: page;" in rules and ".site-nav" in rules
    assert everything.select_one("link[rel=stylesheet][media=print]") is not None


# ---------------------------------------------------------------------------------------------
# Who may read it
# ---------------------------------------------------------------------------------------------


def test_a_vendor_cannot_open_the_register(app, entries, people):
    browser = signed_in(app, people["vendor"])
    assert browser.get("/register").status_code == 403
    assert browser.get("/register/print").status_code == 403
    assert browser.post("/register/export.csv", token_from="/").status_code == 403
    assert browser.post("/register/export.xlsx", token_from="/").status_code == 403


def test_another_body_sees_none_of_our_entries(app, db, make, other_org, entries, people):
    department = make.department(other_org, "総務課")
    stranger = make.user(other_org, roles={Role.APPROVER, Role.STAFF}, departments=[department])
    browser = signed_in(app, stranger)
    ours = people["citizens"].id
    assert listed(browser, "?status=all") == []
    assert listed(browser, f"?department_id={ours}&status=all") == []
    assert not soup(browser.get("/register/print?status=all")).select(".register-entry")
    response = export(browser, "csv", "?status=all")
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True)[1:])))
    assert table == [list(HEADERS)]
    page = soup(browser.get("/register"))
    assert "市民課" not in page.select_one("#department_id").get_text()


def test_the_navigation_shows_the_register_to_those_who_may_read_it(app, people):
    staff = soup(signed_in(app, people["staff"]).get("/"))
    assert [a.get_text() for a in staff.select(".site-nav a[href='/register']")] == [
        "外部サービス台帳"
    ]
    vendor = soup(signed_in(app, people["vendor"]).get("/"))
    assert vendor.select(".site-nav a[href='/register']") == []


# ---------------------------------------------------------------------------------------------
# Queries and the column definition
# ---------------------------------------------------------------------------------------------


def many(db, make, org, people, start: int, stop: int) -> None:
    for n in range(start, stop):
        application = make_entry(
            db,
            make,
            org,
            people,
            Entry(
                f"サービス{n:02d}",
                track="9.3" if n % 2 else "9.2",
                department="policy" if n % 3 else "citizens",
                applicant="staff" if n % 3 else "citizen_staff",
                service={**ismap(date(2026, 3, 31)), "tables": certificate("2027-01-01")},
            ),
        )
        if application.assessment_id and n % 4 == 0:
            attach_contract(db, application, people["staff"])
        if n % 2:
            build = checklists.latest().phase("build").items_for(application.category)[0]
            db.add(
                LifecycleCheck(
                    application_id=application.id,
                    phase="build",
                    item_key=build.key,
                    checklist_version=checklists.latest().version,
                    result="done",
                    checked_on=TODAY,
                    evidence="構築手順書",
                    recorded_by_id=people["manager"].id,
                )
            )
            db.commit()


def test_the_number_of_queries_does_not_grow_with_the_entries(app, db, make, org, people):
    browser = signed_in(app, people["auditor"])
    urls = ("/register", "/register/print")

    def measure() -> list[int]:
        counts = []
        for url in urls:
            with QueryCounter(app) as counter:
                assert browser.get(url).status_code == 200
            counts.append(counter.count)
        with QueryCounter(app) as counter:
            assert export(browser, "csv").status_code == 200
        counts.append(counter.count)
        return counts

    many(db, make, org, people, 0, 2)
    two = measure()
    many(db, make, org, people, 2, 10)
    assert len(listed(browser)) == 10
    ten = measure()
    # The export's own page load (the form) is counted with it: same on both sides.
    assert ten == two, (two, ten)


def test_the_columns_are_defined_once_with_unique_headers():
    assert len(set(HEADERS)) == len(HEADERS) == len(COLUMNS)
    assert len({c.key for c in COLUMNS}) == len(COLUMNS)
    assert register.COLUMNS is COLUMNS
    for needed in (
        "サービス名",
        "プラン・エディション",
        "提供者（法人名）",
        "提供者の国",
        "契約の相手方",
        "区分",
        "利用を認める業務",
        "利用目的",
        "利用するネットワーク",
        "取り扱う情報の最高の機密性",
        "個人情報の取扱い",
        "申請者",
        "申請日",
        "判断した許可権限者",
        "判断日",
        "利用の条件",
        "状態",
        "停止・廃止・再開の理由",
        "利用終了時の確認を終えずに廃止した理由",
        "外部サービス管理者",
        "外部サービス管理者の所属",
        "外部サービス管理者の指定日",
        "外部サービス管理者の引継ぎ回数",
        "ISMAP登録番号",
        "ISMAP登録の有効期限",
        "ISMAPの状態",
        "言明の範囲にサービスが含まれるか",
        "ISMAP登録の最終確認日",
        "その他の認証（有効期限）",
        "データの保存場所（用途・国・地域）",
        "準拠法",
        "管轄裁判所",
        "再委託先（名称・国・役割・承認日）",
        "稼働率（SLA）",
        "目標復旧時間（RTO）",
        "目標復旧時点（RPO）",
        "バックアップ",
        "利用終了時の計画（移行・データの返却と消去）",
        "利用規約のURL",
        "同意した利用規約の版のSHA-256",
        "利用規約の再確認",
        "導入・構築時の確認",
        "運用・保守時の確認",
        "利用終了時の確認",
        "リスク評価",
        "次回の定期確認の期限",
        "契約番号（契約日）",
        "契約に添付した特記事項の版",
    ):
        assert needed in HEADERS, needed


def test_filters_round_trip_through_their_arguments():
    filters = register.RegisterFilter.parse(
        {
            "status": "all",
            "department_id": "7",
            "max_classification": "2",
            "segment": "lgwan",
            "ismap": "expiring",
            "review": "soon",
            "expiring_certificates": "1",
            "keyword": "  会議   サービス ",
        }
    )
    assert filters.keyword == "会議 サービス"
    assert register.RegisterFilter.parse(filters.as_args()) == filters
    assert register.RegisterFilter.parse({"department_id": str(2**40)}).department_id is None
    assert register.RegisterFilter.parse({}) == register.RegisterFilter()
