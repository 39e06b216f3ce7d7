"""Audits of contractors and their subcontractors (対策基準 10.1(4)): planned, carried out and
reported by an auditor who never belongs to the audited department (10.1(2)①, SECURITY.md
"Separation of duties"), with a report file and findings; the auditor role reads everything of
its organisation, staff their departments' audits, nobody else anything."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.contractor_audits import service
from portal.contractor_audits.models import ContractorAudit
from portal.contractor_audits.service import AuditError, AuditPlan
from portal.permissions import Role
from portal.reviews import findings
from portal.reviews.findings import FindingError
from portal.reviews.models import Finding, ReviewFile
from tests.helpers import flashes, form_fields, soup, text_of
from tests.test_evidence import multipart
from tests.test_evidence_files import pdf_bytes
from tests.test_findings import TODAY, arrange_contract, finding_input
from tests.test_routes import csrf_token, signed_in

NOW = "2026-11-20 10:00 +09:00"


@pytest.fixture
def world(db, make, org, time_machine):
    time_machine.move_to(NOW)
    c = arrange_contract(db, make, org)
    c.ciso = make.user(org, roles={Role.CISO}, name="CISO 副市長")
    # An auditor who belongs to the audited department may never audit it.
    c.insider = make.user(org, roles={Role.AUDITOR}, departments=[c.own], name="監査 課内")
    return c


def plan_input(c, **changes) -> AuditPlan:
    values = {
        "vendor_company_id": c.company.id,
        "schedule_id": c.schedule.id,
        "department_id": None,
        "subcontractor": "",
        "title": "運用保守業務の委託先監査",
        "scope": "アクセス管理、個人情報の取扱い、再委託の管理",
        "method": "onsite",
        "auditor_id": c.auditor.id,
        "planned_on": TODAY,
        **changes,
    }
    return AuditPlan(**values)


def planned(db, c, **changes) -> ContractorAudit:
    audit_row = service.plan(db, c.ciso, plan_input(c, **changes), TODAY)
    db.commit()
    return audit_row


def audit_count(db) -> int:
    db.rollback()
    return db.scalar(sa.select(sa.func.count()).select_from(ContractorAudit))


def actions(db) -> list[str]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.object_type == "contractor_audit")
            .order_by(AuditEvent.seq)
        )
    )


# ---------------------------------------------------------------------------------------------
# The whole audit through the pages
# ---------------------------------------------------------------------------------------------


def test_plan_perform_and_report_an_audit_with_a_file_and_a_finding(app, db, world):
    c = world
    auditor = signed_in(app, c.auditor)
    new = auditor.get(f"/contractor-audits/new?schedule={c.schedule.id}")
    assert new.status_code == 200
    fields = form_fields(soup(new).select_one("form[data-form=plan-audit]"))
    assert fields["schedule_id"] == str(c.schedule.id)  # prefilled from the contract
    assert fields["vendor_company_id"] == str(c.company.id)
    auditors = [o.get_text() for o in soup(new).select("[name=auditor_id] option")]
    assert any(c.auditor.name in label for label in auditors)

    response = auditor.submit(
        f"/contractor-audits/new?schedule={c.schedule.id}",
        {
            "subcontractor": "株式会社再委託先",
            "title": "運用保守業務の委託先監査",
            "scope": "再委託先のデータセンターにおける入退室管理",
            "method": "onsite",
            "auditor_id": str(c.auditor.id),
            "planned_on": "2026-11-20",
        },
        "form[data-form=plan-audit]",
    )
    assert response.status_code == 303, flashes(auditor.get("/"))
    detail_url = response.headers["Location"]
    audit_row = db.scalar(sa.select(ContractorAudit))
    assert detail_url == f"/contractor-audits/{audit_row.id}"
    assert audit_row.department_id == c.own.id  # the contract's department
    assert audit_row.subcontractor == "株式会社再委託先" and audit_row.created_by_id == c.auditor.id

    page = auditor.get(detail_url)
    assert text_of(page, "[data-field=status]") == "計画"
    assert text_of(page, "[data-field=audited]") == "株式会社委託先（再委託先: 株式会社再委託先）"
    assert soup(page).select_one("[data-field=raise-finding]") is None  # not carried out yet

    response = auditor.submit(
        detail_url,
        {"evidence": "入退室記録（2026年10月分）を閲覧。写しは監査調書に保管。"},
        "form[data-form=performed]",
    )
    assert response.status_code == 303

    body, content_type = multipart(
        {"csrf_token": csrf_token(auditor, detail_url), "purpose": "audit_report"},
        [("監査報告書.pdf", pdf_bytes())],
    )
    response = auditor.client.post(f"{detail_url}/files", data=body, content_type=content_type)
    assert response.status_code == 303

    owner = c.staff
    response = auditor.submit(
        detail_url,
        {
            "severity": "high",
            "title": "入退室記録の確認が月1回行われていない",
            "corrective_action": "委託先に月次の確認手順を定めさせ、その記録を提出させる。",
            "owner_id": str(owner.id),
            "due_on": "2027-01-29",
        },
        "form[data-form=raise-finding]",
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{detail_url}#findings"

    response = auditor.submit(
        detail_url,
        {"report": "概ね適切。入退室記録の確認に指摘1件。"},
        "form[data-form=report]",
        follow_redirects=True,
    )
    assert "監査の結果を報告済みとして記録しました。" in flashes(response)
    assert text_of(response, "[data-field=status]") == "報告済み"
    assert text_of(response, "[data-field=performed-on]") == "2026年11月20日"
    assert text_of(response, "[data-field=report]") == "概ね適切。入退室記録の確認に指摘1件。"
    assert [
        n.get_text(strip=True) for n in soup(response).select(".file-list [data-field=name]")
    ] == ["監査報告書.pdf"]
    [finding_row] = soup(response).select("[data-table=findings] tbody tr")
    assert finding_row.select_one("[data-field=owner]").get_text(strip=True) == owner.name
    assert soup(response).select_one("form[data-form=performed]") is None
    assert soup(response).select_one("form[data-form=report]") is None

    db.rollback()
    db.refresh(audit_row)
    assert (audit_row.status, audit_row.performed_on, audit_row.reported_on) == (
        "reported",
        TODAY,
        TODAY,
    )
    stored = db.scalar(sa.select(ReviewFile))
    assert (stored.audit_id, stored.purpose, stored.scan_status) == (
        audit_row.id,
        "audit_report",
        "clean",
    )
    finding = db.scalar(sa.select(Finding))
    assert (finding.audit_id, finding.department_id) == (audit_row.id, c.own.id)
    assert actions(db) == [
        "contractor_audit.planned",
        "contractor_audit.performed",
        "contractor_audit.reported",
    ]

    # The audited department's staff read the audit and their finding; the list shows it.
    staff = signed_in(app, c.staff)
    listing = staff.get("/contractor-audits")
    row = soup(listing).select_one(f"[data-audit-id='{audit_row.id}']")
    assert row.select_one("[data-field=status]").get_text(strip=True) == "報告済み"
    assert row.select_one("[data-field=open-findings]").get_text(strip=True) == "1件"
    finding_page = staff.get(f"/findings/{finding.id}")
    assert soup(finding_page).select_one("[data-link=source]")["href"] == detail_url


# ---------------------------------------------------------------------------------------------
# Separation of duties and the other refusals
# ---------------------------------------------------------------------------------------------


def test_an_auditor_from_the_audited_department_is_refused(app, db, world):
    c = world
    with pytest.raises(AuditError, match=r"10\.1\(2\)①"):
        service.plan(db, c.ciso, plan_input(c, auditor_id=c.insider.id), TODAY)
    db.rollback()
    # Without a contract, the department chosen is the audited one.
    with pytest.raises(AuditError, match=r"10\.1\(2\)①"):
        service.plan(
            db,
            c.ciso,
            plan_input(c, schedule_id=None, department_id=c.own.id, auditor_id=c.insider.id),
            TODAY,
        )
    db.rollback()
    assert audit_count(db) == 0

    # Through the page too: the server refuses whatever the form offers.
    browser = signed_in(app, c.ciso)
    response = browser.submit(
        "/contractor-audits/new",
        {
            "vendor_company_id": str(c.company.id),
            "schedule_id": str(c.schedule.id),
            "title": "自課の監査",
            "scope": "全般",
            "method": "document",
            "auditor_id": str(c.insider.id),
            "planned_on": "2026-11-20",
        },
        "form[data-form=plan-audit]",
    )
    assert response.status_code == 422
    assert any("10.1(2)①" in message for message in flashes(response))
    assert audit_count(db) == 0
    assert actions(db) == []


def test_an_auditor_who_joins_the_audited_department_can_no_longer_record(db, world):
    c = world
    audit_row = planned(db, c)
    c.auditor.departments = [c.other, c.own]
    db.commit()
    with pytest.raises(AuditError, match=r"所属しているため.*10\.1\(2\)①"):
        service.record_performed(
            db,
            audit_row,
            c.auditor,
            performed_on=TODAY,
            evidence="x",
            today=TODAY,
            version=audit_row.version,
        )
    db.rollback()
    assert db.get(ContractorAudit, audit_row.id).status == "planned"


def test_only_the_assigned_auditor_outside_the_department_raises_and_closes_findings(
    app, db, world
):
    """10.1(2)①, 10.1(4), SECURITY.md "an auditor cannot audit their own department": an
    audit's findings are raised and closed only by its assigned auditor while outside the
    audited department — not by another auditor or the CISO, nor by the finding's owner, who
    carries out the corrective action while the auditor confirms it."""
    c = world
    audit_row = planned(db, c)
    service.record_performed(
        db,
        audit_row,
        c.auditor,
        performed_on=TODAY,
        evidence="入退室記録を確認",
        today=TODAY,
        version=audit_row.version,
    )
    db.commit()
    data = finding_input(owner_id=c.staff.id)
    finding = findings.raise_finding(db, c.auditor, source=audit_row, data=data, today=TODAY)
    db.commit()

    # An auditor of the audited department (and the CISO, not assigned) may do neither.
    for actor in (c.insider, c.ciso):
        assert not findings.can_raise(actor, audit_row)
        assert not findings.can_close(db, actor, finding)
        with pytest.raises(FindingError, match="この監査の担当者"):
            findings.raise_finding(db, actor, source=audit_row, data=data, today=TODAY)
        db.rollback()
    # The owner acts on it but does not close it; through the page neither.
    with pytest.raises(FindingError, match="監査の担当者.*だけです"):
        findings.close(db, finding, c.staff, note="是正した", today=TODAY, version=finding.version)
    db.rollback()
    owner = signed_in(app, c.staff)
    page = owner.get(f"/findings/{finding.id}")
    assert soup(page).select_one("form[data-form=close-finding]") is None
    assert "監査の担当者" in text_of(page, "[data-field=who-closes]")
    response = owner.post(
        f"/findings/{finding.id}/close",
        {"note": "是正した", "version": str(finding.version)},
        token_from=f"/findings/{finding.id}",
        follow_redirects=True,
    )
    assert any("監査の担当者" in message for message in flashes(response))

    # The assigned auditor who joins the audited department loses both.
    c.auditor.departments = [c.other, c.own]
    db.commit()
    assert not findings.can_raise(c.auditor, audit_row)
    with pytest.raises(FindingError, match="この監査の担当者"):
        findings.raise_finding(db, c.auditor, source=audit_row, data=data, today=TODAY)
    db.rollback()
    with pytest.raises(FindingError, match="監査の担当者.*だけです"):
        findings.close(db, finding, c.auditor, note="確認", today=TODAY, version=finding.version)
    db.rollback()
    auditor = signed_in(app, c.auditor)
    detail = auditor.get(f"/contractor-audits/{audit_row.id}")
    assert soup(detail).select_one("form[data-form=raise-finding]") is None
    refused = auditor.post(
        f"/contractor-audits/{audit_row.id}/findings",
        {
            "severity": "low",
            "title": "自課の監査での指摘",
            "corrective_action": "是正する",
            "owner_id": str(c.staff.id),
            "due_on": "2026-12-25",
        },
        token_from=f"/contractor-audits/{audit_row.id}",
    )
    assert refused.status_code == 303

    # Back outside the department, the auditor confirms the closure.
    c.auditor.departments = [c.other]
    db.commit()
    findings.close(db, finding, c.auditor, note="是正を確認", today=TODAY, version=finding.version)
    db.commit()
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Finding)) == 1
    assert db.get(Finding, finding.id).closed_by_id == c.auditor.id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vendor_company_id": None}, "監査する委託先"),
        ({"title": ""}, "監査の件名を入力してください"),
        ({"title": "長" * 201}, "200文字以内"),
        ({"scope": " "}, "監査の範囲を入力してください"),
        ({"subcontractor": "長" * 201}, "再委託先は200文字以内"),
        ({"method": "telepathy"}, "監査の方法を選んでください"),
        ({"planned_on": None}, "実施予定日を入力してください"),
        ({"planned_on": date(2026, 11, 19)}, "過去の日付"),
        ({"auditor_id": None}, "監査担当者を選んでください"),
        ({"schedule_id": None}, "課（委託している課）を選んでください"),
    ],
    ids=[
        "no company",
        "no title",
        "long title",
        "no scope",
        "long subcontractor",
        "unknown method",
        "no date",
        "date in the past",
        "no auditor",
        "no contract and no department",
    ],
)
def test_bad_plans_are_refused_and_nothing_is_written(db, world, changes, message):
    with pytest.raises(AuditError, match=message):
        service.plan(db, world.ciso, plan_input(world, **changes), TODAY)
    db.rollback()
    assert audit_count(db) == 0


def test_the_audited_contractor_and_auditor_belong_to_the_organisation(db, make, other_org, world):
    c = world
    theirs = arrange_contract(db, make, other_org, prefix="他団体")
    another = make.company(c.org, "別の委託先株式会社")
    cases = [
        (
            plan_input(
                c, vendor_company_id=theirs.company.id, schedule_id=None, department_id=c.own.id
            ),
            "この団体の取引先",
        ),
        (plan_input(c, schedule_id=theirs.schedule.id), "見つかりません"),
        (plan_input(c, vendor_company_id=another.id), "監査する委託先のものではありません"),
        (plan_input(c, department_id=c.other.id), "その担当課になります"),
        (plan_input(c, schedule_id=None, department_id=theirs.own.id), "課（委託している課）"),
        (plan_input(c, auditor_id=theirs.auditor.id), "この団体の有効な職員"),
        (plan_input(c, auditor_id=c.staff.id), "監査担当又はCISO"),  # no audit permission
        (plan_input(c, auditor_id=c.vendor.id), "この団体の有効な職員"),
    ]
    for data, message in cases:
        with pytest.raises(AuditError, match=message):
            service.plan(db, c.ciso, data, TODAY)
        db.rollback()
    with pytest.raises(AuditError, match="監査担当者とCISO"):
        service.plan(db, c.staff, plan_input(c), TODAY)
    db.rollback()
    assert audit_count(db) == 0


def test_recording_follows_the_order_and_the_dates(db, world, time_machine):
    c = world
    audit_row = planned(db, c)

    def perform(day, version=None, evidence="記録を確認", actor=None):
        service.record_performed(
            db,
            audit_row,
            actor or c.auditor,
            performed_on=day,
            evidence=evidence,
            today=date(2026, 12, 2),
            version=audit_row.version if version is None else version,
        )

    def report(day, text="適切"):
        service.record_report(
            db,
            audit_row,
            c.auditor,
            report=text,
            reported_on=day,
            today=date(2026, 12, 2),
            version=audit_row.version,
        )

    refusals = [
        (lambda: report(date(2026, 12, 1)), "先に監査の実施を記録"),
        (lambda: perform(date(2026, 12, 3)), "未来の日付"),
        (lambda: perform(date(2026, 11, 19)), "計画した日（2026年11月20日）以降"),
        (lambda: perform(None), "実施日を入力"),
        (lambda: perform(date(2026, 12, 1), evidence=""), "確認した証跡を入力"),
        (lambda: perform(date(2026, 12, 1), version=audit_row.version + 1), "他の利用者が先に"),
        (lambda: perform(date(2026, 12, 1), actor=c.ciso), "この監査の担当者だけ"),
    ]
    for attempt, message in refusals:
        with pytest.raises(AuditError, match=message):
            attempt()
        db.rollback()
        assert db.get(ContractorAudit, audit_row.id).status == "planned"

    perform(date(2026, 12, 1))
    db.commit()
    with pytest.raises(AuditError, match="既に実施済み"):
        perform(date(2026, 12, 1))
    db.rollback()
    for day, text, message in [
        (date(2026, 11, 30), "適切", "実施日（2026年12月1日）以降"),
        (date(2026, 12, 3), "適切", "未来の日付"),
        (date(2026, 12, 2), "", "報告の内容）を入力"),
    ]:
        with pytest.raises(AuditError, match=message):
            report(day, text)
        db.rollback()
    report(date(2026, 12, 2))
    db.commit()
    with pytest.raises(AuditError, match="既に報告済み"):
        report(date(2026, 12, 2))
    assert actions(db) == [
        "contractor_audit.planned",
        "contractor_audit.performed",
        "contractor_audit.reported",
    ]


# ---------------------------------------------------------------------------------------------
# Who reads and who changes
# ---------------------------------------------------------------------------------------------


def test_vendors_other_bodies_and_other_departments_do_not_reach_an_audit(
    app, db, make, other_org, world
):
    c = world
    audit_row = planned(db, c)
    url = f"/contractor-audits/{audit_row.id}"
    theirs = arrange_contract(db, make, other_org, prefix="他団体")

    vendor = signed_in(app, c.vendor)
    assert vendor.get("/contractor-audits").status_code == 403
    assert vendor.get(url).status_code == 403  # no permission: no existence oracle either

    foreign = signed_in(app, theirs.auditor)
    assert foreign.get(url).status_code == 404
    assert (
        foreign.post(
            f"{url}/performed", {"performed_on": "2026-11-20", "evidence": "x", "version": "1"}
        ).status_code
        == 404
    )
    assert (
        foreign.post(
            f"{url}/report", {"reported_on": "2026-11-20", "report": "x", "version": "1"}
        ).status_code
        == 404
    )
    assert foreign.post(f"{url}/findings", {"title": "x"}).status_code == 404
    assert foreign.post(f"{url}/files", {"purpose": "evidence"}).status_code == 404
    listing = foreign.get("/contractor-audits")
    assert audit_row.title not in soup(listing).get_text()

    outsider = signed_in(app, c.outsider)  # staff of another department
    assert outsider.get(url).status_code == 404
    assert soup(outsider.get("/contractor-audits")).select("[data-audit-id]") == []
    assert outsider.get("/contractor-audits/new").status_code == 403

    db.rollback()
    assert db.get(ContractorAudit, audit_row.id).status == "planned"


def test_the_auditor_role_reads_everything_and_changes_nothing_else(app, db, make, world):
    c = world
    second = make.user(c.org, roles={Role.AUDITOR}, name="監査 四郎")
    audit_row = planned(db, c, auditor_id=second.id)  # assigned to the other auditor
    browser = signed_in(app, c.auditor)
    listing = browser.get("/contractor-audits")
    assert [r["data-audit-id"] for r in soup(listing).select("[data-audit-id]")] == [
        str(audit_row.id)
    ]
    page = browser.get(f"/contractor-audits/{audit_row.id}")
    assert page.status_code == 200
    assert soup(page).select_one("form[data-form=performed]") is None
    assert text_of(page, "[data-field=who-records]").startswith("監査の実施と結果を記録するのは")

    response = browser.post(
        f"/contractor-audits/{audit_row.id}/performed",
        {"performed_on": "2026-11-20", "evidence": "見た", "version": str(audit_row.version)},
        token_from=f"/contractor-audits/{audit_row.id}",
        follow_redirects=True,
    )
    assert "監査の記録をできるのは、この監査の担当者だけです。" in flashes(response)
    db.rollback()
    assert db.get(ContractorAudit, audit_row.id).status == "planned"
    assert actions(db) == ["contractor_audit.planned"]
