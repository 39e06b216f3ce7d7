"""Findings (指摘事項) with corrective actions: raised on a 定期確認 by the staff who manage its
schedule, closed with a note by the owner or those staff, refused with a clear message and no
change on bad input, read department by department (対策基準 9.1(3), 9.2(6), 10.1(4))."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import openpyxl
import pytest
import sqlalchemy as sa

from portal.approvals.models import ExternalService, ManagerAssignment, UseApplication
from portal.audit.models import AuditEvent
from portal.contractor_audits.models import ContractorAudit
from portal.permissions import Role
from portal.reviews import findings
from portal.reviews.findings import FindingError, FindingInput
from portal.reviews.models import Confirmation, Finding, ReviewSchedule
from tests.helpers import flashes, soup, text_of
from tests.test_routes import signed_in

TODAY = date(2026, 11, 20)  # a Friday
NOW = "2026-11-20 10:00 +09:00"


def arrange_contract(db, make, org, *, prefix: str = ""):
    """A decided 業務委託 of 情報政策課 with its schedule and a submitted confirmation (the rows),
    the department's staff, staff of another department, an auditor and a vendor contact."""
    own = make.department(org, f"{prefix}情報政策課")
    other = make.department(org, f"{prefix}税務課")
    staff = make.user(org, roles={Role.STAFF}, departments=[own], name=f"{prefix}担当 一郎")
    colleague = make.user(org, roles={Role.STAFF}, departments=[own], name=f"{prefix}担当 二郎")
    outsider = make.user(org, roles={Role.STAFF}, departments=[other], name=f"{prefix}税務 花子")
    auditor = make.user(org, roles={Role.AUDITOR}, departments=[other], name=f"{prefix}監査 三郎")
    company = make.company(org, f"{prefix}株式会社委託先")
    vendor = make.user(company=company, invited_by=org, name=f"{prefix}委託先 担当")
    engagement = make.engagement(org, own, staff, title=f"{prefix}住民情報システム運用保守")
    assessment = make.assessment(engagement, company, staff, status="decided")
    schedule = ReviewSchedule(
        organisation_id=org.id,
        department_id=own.id,
        vendor_company_id=company.id,
        assessment_id=assessment.id,
        title=engagement.title,
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
    )
    db.add(schedule)
    db.flush()
    confirmation = Confirmation(
        organisation_id=org.id,
        schedule_id=schedule.id,
        number=1,
        reason="scheduled",
        questionnaire_key="periodic",
        questionnaire_version="2026.11",
        period_from=date(2026, 4, 1),
        period_to=TODAY,
        due_on=date(2026, 12, 1),
        status="submitted",
        opened_by_id=staff.id,
        answered_by_id=vendor.id,
    )
    db.add(confirmation)
    db.commit()
    return SimpleNamespace(
        org=org,
        own=own,
        other=other,
        staff=staff,
        colleague=colleague,
        outsider=outsider,
        auditor=auditor,
        company=company,
        vendor=vendor,
        engagement=engagement,
        schedule=schedule,
        confirmation=confirmation,
    )


def finding_input(**changes) -> FindingInput:
    values = {
        "severity": "high",
        "title": "教育の記録がない",
        "description": "委託先従業員への情報セキュリティ教育の記録が提出されていない。",
        "corrective_action": "今年度の教育実施記録を提出させ、未受講者に受講させる。",
        "owner_id": None,
        "due_on": date(2027, 1, 29),
        **changes,
    }
    return FindingInput(**values)


@pytest.fixture
def contract(db, make, org):
    return arrange_contract(db, make, org)


def raise_one(db, c, *, owner=None, **changes) -> Finding:
    finding = findings.raise_finding(
        db,
        c.staff,
        source=c.confirmation,
        data=finding_input(owner_id=(owner or c.colleague).id, **changes),
        today=TODAY,
    )
    db.commit()
    return finding


def events(db, action: str) -> list[AuditEvent]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


def count_findings(db) -> int:
    db.rollback()
    return db.scalar(sa.select(sa.func.count()).select_from(Finding))


# ---------------------------------------------------------------------------------------------
# Raising and closing (service)
# ---------------------------------------------------------------------------------------------


def test_staff_raise_a_finding_and_its_owner_closes_it(db, contract):
    c = contract
    finding = raise_one(db, c)
    assert (finding.status, finding.severity, finding.owner_id) == ("open", "high", c.colleague.id)
    assert finding.department_id == c.own.id and finding.confirmation_id == c.confirmation.id
    assert finding.audit_id is None and finding.created_by_id == c.staff.id
    [raised] = events(db, "finding.raised")
    assert raised.object_type == "finding" and raised.object_id == str(finding.id)
    assert raised.actor_user_id == c.staff.id and raised.organisation_id == c.org.id

    findings.close(
        db,
        finding,
        c.colleague,
        note="教育実施記録を受領し、全員の受講を確認した。",
        today=date(2027, 1, 15),
        version=finding.version,
    )
    db.commit()
    assert (finding.status, finding.closed_on, finding.closed_by_id) == (
        "closed",
        date(2027, 1, 15),
        c.colleague.id,
    )
    assert finding.closing_note == "教育実施記録を受領し、全員の受講を確認した。"
    [closed] = events(db, "finding.closed")
    assert closed.object_id == str(finding.id) and closed.actor_user_id == c.colleague.id


def test_staff_who_manage_the_schedule_close_findings_they_do_not_own(db, contract):
    finding = raise_one(db, contract, owner=contract.outsider)  # staff of another department
    findings.close(
        db, finding, contract.staff, note="是正を確認した。", today=TODAY, version=finding.version
    )
    db.commit()
    assert finding.status == "closed" and finding.closed_by_id == contract.staff.id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"severity": "critical"}, "重要度を選んでください"),
        ({"severity": ""}, "重要度を選んでください"),
        ({"title": ""}, "指摘事項を入力してください"),
        ({"title": "　 "}, "指摘事項を入力してください"),
        ({"title": "長" * 201}, "指摘事項は200文字以内"),
        ({"description": "長" * 4001}, "指摘の内容は4000文字以内"),
        ({"corrective_action": ""}, "是正措置を入力してください"),
        ({"corrective_action": "長" * 4001}, "是正措置は4000文字以内"),
        ({"due_on": None}, "是正の期限を入力してください"),
        ({"due_on": date(2026, 11, 19)}, "過去の日付"),
        ({"due_on": date(2028, 11, 21)}, "2年以内（2028年11月20日まで）"),
    ],
    ids=[
        "unknown severity",
        "no severity",
        "empty title",
        "blank title",
        "title too long",
        "description too long",
        "no corrective action",
        "corrective action too long",
        "no due date",
        "due yesterday",
        "due beyond two years",
    ],
)
def test_bad_findings_are_refused_and_nothing_is_written(db, contract, changes, message):
    with pytest.raises(FindingError, match=message):
        findings.raise_finding(
            db,
            contract.staff,
            source=contract.confirmation,
            data=finding_input(owner_id=contract.colleague.id, **changes),
            today=TODAY,
        )
    assert count_findings(db) == 0
    assert events(db, "finding.raised") == []


def test_due_dates_today_and_exactly_two_years_ahead_are_accepted(db, contract):
    assert raise_one(db, contract, due_on=TODAY).due_on == TODAY
    assert raise_one(db, contract, due_on=date(2028, 11, 20)).due_on == date(2028, 11, 20)
    assert findings.latest_due(date(2028, 2, 29)) == date(2030, 2, 28)


READ_ONLY_ROLES = {
    "auditor": Role.AUDITOR,
    "approver": Role.APPROVER,
    "ciso": Role.CISO,
    "network admin": Role.NETWORK_ADMIN,
}


@pytest.mark.parametrize(
    "who", ["nobody", "vendor", "other organisation", "inactive", "admin", *READ_ONLY_ROLES]
)
def test_the_owner_must_be_an_active_staff_user_of_the_organisation_who_can_act(
    db, make, other_org, contract, who
):
    """Read-only roles read findings but change nothing (DESIGN.md), so they own none."""
    owners = {
        "nobody": None,
        "vendor": contract.vendor,
        "other organisation": make.user(other_org, roles={Role.STAFF}),
        "inactive": make.user(contract.org, roles={Role.STAFF}, active=False),
        "admin": make.user(contract.org, roles={Role.ADMIN}),  # cannot even read findings
        **{
            name: make.user(contract.org, roles={role}, departments=[contract.own])
            for name, role in READ_ONLY_ROLES.items()
        },
    }
    owner = owners[who]
    message = "担当者を選んでください" if owner is None else "この団体の有効な職員"
    with pytest.raises(FindingError, match=message):
        findings.raise_finding(
            db,
            contract.staff,
            source=contract.confirmation,
            data=finding_input(owner_id=owner.id if owner else None),
            today=TODAY,
        )
    assert count_findings(db) == 0


def test_the_owner_choices_are_the_staff_and_service_managers_who_can_act(db, make, contract):
    c = contract
    manager = make.user(c.org, roles={Role.SERVICE_MANAGER}, name="管理 五郎")
    both = make.user(c.org, roles={Role.AUDITOR, Role.STAFF}, departments=[c.own], name="兼務 六郎")
    for role in READ_ONLY_ROLES.values():
        make.user(c.org, roles={role}, departments=[c.own], name=f"閲覧のみ {role.value}")
    make.user(c.org, roles={Role.STAFF}, active=False, name="退職 七郎")
    make.user(c.org, roles={Role.ADMIN}, name="管理者 八郎")
    chosen = {u.id for u in findings.eligible_owners(db, c.org.id)}
    assert chosen == {c.staff.id, c.colleague.id, c.outsider.id, manager.id, both.id}
    # A 外部サービス管理者 may own a corrective action.
    assert raise_one(db, c, owner=manager).owner_id == manager.id


@pytest.mark.parametrize("who", ["outsider", "auditor", "vendor"])
def test_only_the_staff_who_manage_the_schedule_raise_confirmation_findings(db, contract, who):
    actor = getattr(contract, who)
    with pytest.raises(FindingError, match="担当課の職員"):
        findings.raise_finding(
            db,
            actor,
            source=contract.confirmation,
            data=finding_input(owner_id=contract.colleague.id),
            today=TODAY,
        )
    assert count_findings(db) == 0


def test_closing_is_refused_without_a_note_by_others_twice_or_on_a_stale_form(db, contract):
    c = contract
    finding = raise_one(db, c)
    version = finding.version
    refusals = [
        (c.colleague, "", version, "対応の内容を入力してください"),
        (c.colleague, "長" * 2001, version, "2000文字以内"),
        (c.outsider, "完了", version, "完了にできるのは"),
        (c.auditor, "完了", version, "完了にできるのは"),  # reads everything, changes nothing
        (c.vendor, "完了", version, "完了にできるのは"),
        (c.colleague, "完了", version + 1, "他の利用者が先に"),
    ]
    for actor, note, given_version, message in refusals:
        with pytest.raises(FindingError, match=message):
            findings.close(db, finding, actor, note=note, today=TODAY, version=given_version)
        db.rollback()
        assert db.get(Finding, finding.id).status == "open"
    findings.close(db, finding, c.colleague, note="済み", today=TODAY, version=version)
    db.commit()
    with pytest.raises(FindingError, match="既に完了"):
        findings.close(db, finding, c.staff, note="再度", today=TODAY, version=finding.version)
    assert len(events(db, "finding.closed")) == 1


# ---------------------------------------------------------------------------------------------
# Who reads what; the overdue filter
# ---------------------------------------------------------------------------------------------


def visible_titles(db, actor) -> set[str]:
    return {f.title for f in db.scalars(findings.visible_query(actor))}


def test_findings_are_read_by_department_owner_and_organisation_wide_readers(
    db, make, other_org, contract
):
    c = contract
    raise_one(db, c, title="課の指摘")
    raise_one(db, c, title="税務課の職員が担当", owner=c.outsider)
    theirs = arrange_contract(db, make, other_org, prefix="他団体")
    raise_one(db, theirs, title="他団体の指摘")
    both = {"課の指摘", "税務課の職員が担当"}
    assert visible_titles(db, c.staff) == both
    assert visible_titles(db, c.auditor) == both  # organisation-wide, never another body's
    assert visible_titles(db, c.outsider) == {"税務課の職員が担当"}  # only what they own
    assert visible_titles(db, c.vendor) == set()
    assert visible_titles(db, theirs.auditor) == {"他団体の指摘"}


def test_overdue_means_open_and_past_its_due_date(db, contract):
    c = contract
    late = raise_one(db, c, title="期限を過ぎた指摘", due_on=date(2026, 11, 25))
    raise_one(db, c, title="期限前の指摘", due_on=date(2026, 12, 25))
    done = raise_one(db, c, title="完了した指摘", due_on=date(2026, 11, 24))
    findings.close(db, done, c.staff, note="済み", today=TODAY, version=done.version)
    db.commit()
    day = date(2026, 11, 30)
    query = findings.visible_query(c.staff)
    assert [f.title for f in db.scalars(findings.overdue(query, day))] == ["期限を過ぎた指摘"]
    assert findings.is_overdue(late, day) and not findings.is_overdue(late, date(2026, 11, 25))
    assert not findings.is_overdue(done, day)


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


def listed(response) -> list[str]:
    return [
        a.get_text(strip=True)
        for a in soup(response).select("[data-table=findings] [data-field=title] a")
    ]


def test_the_list_filters_by_status_and_severity_and_marks_the_overdue(
    app, db, contract, time_machine
):
    c = contract
    raise_one(db, c, title="期限を過ぎた指摘", due_on=date(2026, 11, 25))
    raise_one(db, c, title="期限前の軽微な指摘", due_on=date(2026, 12, 25), severity="low")
    done = raise_one(db, c, title="完了した指摘", due_on=date(2026, 11, 24))
    findings.close(db, done, c.staff, note="済み", today=TODAY, version=done.version)
    db.commit()
    time_machine.move_to("2026-11-30 10:00 +09:00")
    browser = signed_in(app, c.staff)

    default = browser.get("/findings")
    assert default.status_code == 200
    assert sorted(listed(default)) == ["期限を過ぎた指摘", "期限前の軽微な指摘"]  # open ones
    overdue = browser.get("/findings?status=overdue")
    assert listed(overdue) == ["期限を過ぎた指摘"]
    assert text_of(overdue, "[data-count=total]") == "1"
    row = soup(overdue).select_one("[data-table=findings] tbody tr")
    assert row.select_one("[data-mark=overdue]").get_text(strip=True) == "期限超過"
    assert "住民情報システム運用保守" in row.select_one("[data-field=source]").get_text()
    assert listed(browser.get("/findings?status=closed")) == ["完了した指摘"]
    assert len(listed(browser.get("/findings?status=all"))) == 3
    assert listed(browser.get("/findings?status=open&severity=low")) == ["期限前の軽微な指摘"]
    # Unknown values fall back to the default instead of failing.
    assert browser.get("/findings?status=bogus&severity=x&page=abc").status_code == 200


def test_the_list_pages_fifty_at_a_time(app, db, contract, time_machine):
    time_machine.move_to(NOW)
    for n in range(52):
        db.add(
            Finding(
                organisation_id=contract.org.id,
                department_id=contract.own.id,
                confirmation_id=contract.confirmation.id,
                severity="low",
                title=f"指摘{n:02d}",
                corrective_action="是正する",
                owner_id=contract.colleague.id,
                due_on=date(2027, 1, 1),
                created_by_id=contract.staff.id,
            )
        )
    db.commit()
    browser = signed_in(app, contract.staff)
    first = browser.get("/findings")
    assert len(listed(first)) == 50
    assert soup(first).select_one(".pager a[rel=next]")["href"] == "/findings?page=2&status=open"
    assert len(listed(browser.get("/findings?page=2&status=open"))) == 2
    assert len(listed(browser.get("/findings?page=9"))) == 2  # past the end: the last page


def test_the_owner_closes_a_finding_on_its_page(app, db, contract, time_machine):
    time_machine.move_to(NOW)
    finding = raise_one(db, contract)
    browser = signed_in(app, contract.colleague)
    page = browser.get(f"/findings/{finding.id}")
    assert page.status_code == 200
    assert text_of(page, "[data-field=owner]") == contract.colleague.name
    assert text_of(page, "[data-field=department]") == "情報政策課"
    assert text_of(page, "[data-field=status]") == "対応中"
    source = soup(page).select_one("[data-link=source]")
    assert source["href"] == f"/confirmations/{contract.confirmation.id}"

    refused = browser.submit(
        f"/findings/{finding.id}", {"note": ""}, "form[data-form=close-finding]"
    )
    assert refused.status_code == 303
    assert db.get(Finding, finding.id).status == "open"
    response = browser.submit(
        f"/findings/{finding.id}",
        {"note": "教育記録を受領した。"},
        "form[data-form=close-finding]",
        follow_redirects=True,
    )
    assert "指摘事項を完了にしました。" in flashes(response)
    assert text_of(response, "[data-field=status]") == "完了"
    assert text_of(response, "[data-field=closing-note]") == "教育記録を受領した。"
    assert soup(response).select_one("form[data-form=close-finding]") is None


def test_a_stale_close_form_is_refused_with_a_clear_message(app, db, contract, time_machine):
    time_machine.move_to(NOW)
    finding = raise_one(db, contract)
    browser = signed_in(app, contract.colleague)
    response = browser.submit(
        f"/findings/{finding.id}",
        {"note": "済み", "version": str(finding.version + 5)},
        "form[data-form=close-finding]",
        follow_redirects=True,
    )
    assert any("他の利用者が先に" in m for m in flashes(response))
    db.rollback()
    assert db.get(Finding, finding.id).status == "open"


def test_staff_raise_a_finding_on_a_confirmation(app, db, contract, time_machine):
    time_machine.move_to(NOW)
    browser = signed_in(app, contract.staff)
    url = f"/confirmations/{contract.confirmation.id}/findings"
    form = {
        "severity": "medium",
        "title": "再委託先の届出漏れ",
        "description": "",
        "corrective_action": "再委託承認申請書を提出させる。",
        "owner_id": str(contract.colleague.id),
        "due_on": "2026-12-18",
    }
    bad = browser.post(url, {**form, "due_on": "2026-11-19"})
    assert bad.status_code == 303
    assert count_findings(db) == 0
    bad = browser.post(url, {**form, "due_on": "2026/12/18"})  # dates are parsed strictly
    assert bad.status_code == 303 and count_findings(db) == 0

    response = browser.post(url, form)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/confirmations/{contract.confirmation.id}#findings"
    db.rollback()
    finding = db.scalar(sa.select(Finding))
    assert (finding.title, finding.severity, finding.due_on) == (
        "再委託先の届出漏れ",
        "medium",
        date(2026, 12, 18),
    )
    assert finding.owner_id == contract.colleague.id
    assert listed(browser.get("/findings")) == ["再委託先の届出漏れ"]


def arrange_service(db, make, c):
    """An approved external service of 情報政策課 with its 外部サービス管理者 (no REVIEWS_MANAGE),
    a former manager, its schedule and a submitted confirmation."""
    manager = make.user(c.org, roles={Role.SERVICE_MANAGER}, name="外部 管理者")
    former = make.user(c.org, roles={Role.SERVICE_MANAGER}, name="前任 管理者")
    approver = make.user(c.org, roles={Role.APPROVER}, name="許可 権限者")
    service = ExternalService(
        organisation_id=c.org.id, vendor_company_id=c.company.id, name="電子申請クラウド"
    )
    db.add(service)
    db.flush()
    application = UseApplication(
        organisation_id=c.org.id,
        department_id=c.own.id,
        service_id=service.id,
        applicant_id=c.staff.id,
        category="9.2",
        purpose="電子申請",
        business="電子申請の受付",
        network_segment="internet",
        max_confidentiality=2,
        status="approved",
        decision="approve",
        decided_by_id=approver.id,
        decided_at=datetime(2026, 4, 1, tzinfo=UTC),
    )
    db.add(application)
    db.flush()
    for user, ended_on in ((former, date(2026, 9, 30)), (manager, None)):
        db.add(
            ManagerAssignment(
                application_id=application.id,
                user_id=user.id,
                appointed_on=date(2026, 4, 1),
                ended_on=ended_on,
                appointed_by_id=approver.id,
            )
        )
    schedule = ReviewSchedule(
        organisation_id=c.org.id,
        department_id=c.own.id,
        vendor_company_id=c.company.id,
        application_id=application.id,
        title=service.name,
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
    )
    db.add(schedule)
    db.flush()
    confirmation = Confirmation(
        organisation_id=c.org.id,
        schedule_id=schedule.id,
        number=1,
        reason="scheduled",
        questionnaire_key="periodic",
        questionnaire_version="2026.11",
        period_from=date(2026, 4, 1),
        period_to=TODAY,
        due_on=date(2026, 12, 1),
        status="submitted",
        opened_by_id=c.staff.id,
        answered_by_id=c.vendor.id,
    )
    db.add(confirmation)
    db.commit()
    return SimpleNamespace(manager=manager, former=former, confirmation=confirmation)


def test_the_service_manager_raises_a_finding_on_the_services_confirmation(
    app, db, make, contract, time_machine
):
    """The current 外部サービス管理者 manages the service's schedule without REVIEWS_MANAGE: the
    raise route checks the object, not that permission (9.1(3), 9.2(6))."""
    time_machine.move_to(NOW)
    s = arrange_service(db, make, contract)
    url = f"/confirmations/{s.confirmation.id}/findings"
    form = {
        "severity": "low",
        "title": "利用者アカウントの棚卸し漏れ",
        "description": "",
        "corrective_action": "退職者のアカウントを削除し、四半期ごとに棚卸しする。",
        "owner_id": str(s.manager.id),
        "due_on": "2026-12-25",
    }
    former = signed_in(app, s.former)  # no longer the manager: reads, but may not raise
    assert former.post(url, form).status_code == 403
    assert count_findings(db) == 0

    browser = signed_in(app, s.manager)
    page = f"/confirmations/{s.confirmation.id}"
    raise_form = soup(browser.get(page)).select_one("form[data-form=raise-finding]")
    assert raise_form is not None and raise_form["action"] == url  # shown, and it works
    owners = [o["value"] for o in raise_form.select("[name=owner_id] option") if o["value"]]
    assert str(s.manager.id) in owners
    response = browser.submit(page, form, "form[data-form=raise-finding]")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/confirmations/{s.confirmation.id}#findings"
    db.rollback()
    finding = db.scalar(sa.select(Finding))
    assert (finding.title, finding.confirmation_id, finding.created_by_id) == (
        "利用者アカウントの棚卸し漏れ",
        s.confirmation.id,
        s.manager.id,
    )
    assert finding.owner_id == s.manager.id
    assert [e.actor_user_id for e in events(db, "finding.raised")] == [s.manager.id]


def test_other_departments_other_bodies_and_vendors_do_not_reach_a_finding(
    app, db, make, other_org, contract, time_machine
):
    time_machine.move_to(NOW)
    finding = raise_one(db, contract)
    theirs = arrange_contract(db, make, other_org, prefix="他団体")

    outsider = signed_in(app, contract.outsider)
    assert outsider.get(f"/findings/{finding.id}").status_code == 404
    assert listed(outsider.get("/findings")) == []
    closing = outsider.post(f"/findings/{finding.id}/close", {"note": "x", "version": "1"})
    assert closing.status_code == 404
    raising = outsider.post(
        f"/confirmations/{contract.confirmation.id}/findings",
        {"severity": "low", "title": "x", "corrective_action": "x", "due_on": "2026-12-01"},
    )
    assert raising.status_code == 404

    foreign = signed_in(app, theirs.auditor)
    assert foreign.get(f"/findings/{finding.id}").status_code == 404
    assert foreign.post(f"/findings/{finding.id}/close", {"note": "x"}).status_code == 404

    vendor = signed_in(app, contract.vendor)
    assert vendor.get("/findings").status_code == 403
    assert vendor.get(f"/findings/{finding.id}").status_code == 403

    db.rollback()
    assert db.get(Finding, finding.id).status == "open"
    assert count_findings(db) == 1


def test_the_auditor_reads_findings_but_neither_raises_nor_closes_them(
    app, db, contract, time_machine
):
    time_machine.move_to(NOW)
    finding = raise_one(db, contract)
    browser = signed_in(app, contract.auditor)
    assert listed(browser.get("/findings")) == [finding.title]
    page = browser.get(f"/findings/{finding.id}")
    assert page.status_code == 200
    assert soup(page).select_one("form[data-form=close-finding]") is None
    assert text_of(page, "[data-field=who-closes]")
    response = browser.post(f"/findings/{finding.id}/close", {"note": "x", "version": "1"})
    assert response.status_code == 303
    raising = browser.post(
        f"/confirmations/{contract.confirmation.id}/findings",
        {"severity": "low", "title": "x", "corrective_action": "x", "due_on": "2026-12-01"},
    )
    assert raising.status_code == 403
    db.rollback()
    assert db.get(Finding, finding.id).status == "open"
    assert count_findings(db) == 1


def test_audit_findings_need_an_audit_manager_and_a_performed_audit(db, contract):
    c = contract
    audit_row = ContractorAudit(
        organisation_id=c.org.id,
        department_id=c.own.id,
        vendor_company_id=c.company.id,
        title="運用保守の委託先監査",
        scope="アクセス管理",
        method="onsite",
        auditor_id=c.auditor.id,
        planned_on=TODAY,
        created_by_id=c.auditor.id,
    )
    db.add(audit_row)
    db.commit()
    data = finding_input(owner_id=c.staff.id)
    with pytest.raises(FindingError, match="監査の実施を記録してから"):
        findings.raise_finding(db, c.auditor, source=audit_row, data=data, today=TODAY)
    audit_row.status, audit_row.performed_on = "performed", TODAY
    db.commit()
    with pytest.raises(FindingError, match="この監査の担当者"):
        findings.raise_finding(db, c.staff, source=audit_row, data=data, today=TODAY)
    finding = findings.raise_finding(db, c.auditor, source=audit_row, data=data, today=TODAY)
    db.commit()
    assert finding.audit_id == audit_row.id and finding.department_id == c.own.id
    # The audited department's staff own it and act on it; only the auditor confirms the
    # closure — neither the owner nor a colleague closes it (10.1(4)).
    for actor in (c.staff, c.colleague):
        with pytest.raises(FindingError, match="監査の担当者.*だけです"):
            findings.close(db, finding, actor, note="x", today=TODAY, version=finding.version)
        db.rollback()
        assert db.get(Finding, finding.id).status == "open"
    findings.close(db, finding, c.auditor, note="是正を確認", today=TODAY, version=finding.version)
    db.commit()
    assert finding.status == "closed"


# ---------------------------------------------------------------------------------------------
# Exports of the list (CSV / XLSX)
# ---------------------------------------------------------------------------------------------


def exported_titles(browser, query: str, fmt: str) -> list[str]:
    """The 指摘事項 column of the list's export (the form on the page, with its filter)."""
    response = browser.submit(f"/findings{query}", selector=f"form[data-export={fmt}]")
    assert response.status_code == 200
    if fmt == "csv":
        text = response.get_data().decode("utf-8")
        assert text.startswith("\ufeff") and "\r\n" in text
        table = list(csv.reader(io.StringIO(text[1:], newline="")))
        return [dict(zip(table[0], row, strict=True))["指摘事項"] for row in table[1:]]
    sheet = openpyxl.load_workbook(io.BytesIO(response.get_data())).active
    header = [c.value for c in sheet[1]]
    column = header.index("指摘事項")
    return [row[column].value for row in sheet.iter_rows(min_row=2)]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_export_has_the_rows_the_list_shows_each_reader(
    app, db, make, other_org, contract, time_machine, fmt
):
    """The department's staff, an owner from another department (only what they own) and the
    organisation-wide auditor each export exactly what their list shows — in its order, with
    its status and severity filters; another body's finding never appears (9.1(3), 10.1(4))."""
    time_machine.move_to(NOW)
    c = contract
    raise_one(db, c, title="課の指摘", due_on=date(2026, 12, 25))
    raise_one(db, c, title="税務課の職員が担当", owner=c.outsider, due_on=date(2026, 12, 1))
    low = raise_one(db, c, title="軽微な指摘", severity="low", due_on=date(2026, 12, 10))
    findings.close(db, low, c.staff, note="対応済み", today=TODAY, version=low.version)
    db.commit()
    theirs = arrange_contract(db, make, other_org, prefix="他団体")
    raise_one(db, theirs, title="他団体の指摘")

    cases = {
        "staff": ["", "?status=all", "?status=closed", "?status=all&severity=low"],
        "outsider": ["", "?status=all"],
        "auditor": ["?status=all", "?status=open&severity=high"],
    }
    expected = {
        ("staff", ""): ["税務課の職員が担当", "課の指摘"],
        ("staff", "?status=all"): ["税務課の職員が担当", "課の指摘", "軽微な指摘"],
        ("staff", "?status=closed"): ["軽微な指摘"],
        ("staff", "?status=all&severity=low"): ["軽微な指摘"],
        ("outsider", ""): ["税務課の職員が担当"],
        ("outsider", "?status=all"): ["税務課の職員が担当"],
        ("auditor", "?status=all"): ["税務課の職員が担当", "課の指摘", "軽微な指摘"],
        ("auditor", "?status=open&severity=high"): ["税務課の職員が担当", "課の指摘"],
    }
    for who, queries in cases.items():
        browser = signed_in(app, getattr(c, who))
        for query in queries:
            shown = listed(browser.get(f"/findings{query}"))
            assert shown == expected[(who, query)], (who, query)
            assert exported_titles(browser, query, fmt) == shown, (who, query)

    exported = events(db, "findings.export")
    assert [json.loads(e.details) for e in exported][:2] == [
        {"format": fmt, "count": 2, "filters": {"status": "open"}},
        {"format": fmt, "count": 3, "filters": {"status": "all"}},
    ]
    assert [e.actor_user_id for e in exported] == [c.staff.id] * 4 + [c.outsider.id] * 2 + [
        c.auditor.id
    ] * 2
    assert all(e.organisation_id == c.org.id for e in exported)


def test_the_export_is_refused_without_a_token_or_by_get(app, db, contract, time_machine):
    time_machine.move_to(NOW)
    raise_one(db, contract)
    browser = signed_in(app, contract.staff)
    for fmt in ("csv", "xlsx"):
        assert browser.get(f"/findings/export.{fmt}").status_code == 405
        assert browser.client.post(f"/findings/export.{fmt}").status_code == 400
    vendor = signed_in(app, contract.vendor)
    assert vendor.post("/findings/export.csv").status_code == 403
    assert events(db, "findings.export") == []
