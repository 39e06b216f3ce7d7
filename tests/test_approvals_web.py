"""利用申請 through the web: a service recorded from an assessment, the application, the
approver's decision and the 外部サービス管理者, handover, 停止 / 廃止, the terms of 約款型
services, the report to the ネットワーク管理者 and CISO — and every refusal the issue lists."""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals import service as approvals
from portal.approvals.models import ExternalService, ManagerAssignment, UseApplication
from portal.audit.models import AuditEvent
from portal.evaluations.models import Score
from portal.permissions import Role
from portal.reviews.schedules import schedule_of_application
from tests.helpers import flashes, outbox, reload, soup, text_of
from tests.test_review_web import signed_in, submitted

TODAY = date(2026, 11, 20)
TERMS = "第1条 本規約は、当社のオンライン会議サービスの利用条件を定める。".encode()


@pytest.fixture
def cloud(make, org):
    department = make.department(org, "情報政策課")
    other_department = make.department(org, "市民課")
    people = {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="申請 一郎"),
        "stranger": make.user(
            org, roles={Role.STAFF}, departments=[other_department], name="他課 二郎"
        ),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 三郎"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="管理 四郎",
        ),
        "successor": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="後任 五郎",
        ),
        "ciso": make.user(org, roles={Role.CISO}, name="副市長 六郎"),
        "netadmin": make.user(org, roles={Role.NETWORK_ADMIN}, name="情報 七子"),
        "company": make.company(org, name="株式会社クラウド提供"),
    }
    people["vendor"] = make.user(org, company=people["company"], name="事業者 八郎")
    # ``submitted`` (from the review tests) answers as this vendor.
    people["colleague"] = people["stranger"]
    return people


def decided(db, make, org, cloud, **kwargs):
    """A submitted assessment whose review is finished (the review itself is tested elsewhere)."""
    assessment = submitted(db, make, org, cloud, **kwargs)
    assessment.status = "decided"
    db.commit()
    return assessment


def service_from(db, cloud, assessment, name="オンライン会議サービス") -> ExternalService:
    data = approvals.prefill_from(db, assessment)
    data.name = name
    service = approvals.create_service(db, cloud["staff"], cloud["company"].id, data, assessment)
    db.commit()
    return service


def filed(db, cloud, service, assessment=None, **changes) -> UseApplication:
    data = approvals.ApplicationInput(
        department_id=cloud["department"].id,
        service_id=service.id,
        plan_id=None,
        assessment_id=assessment.id if assessment else None,
        purpose="庁内の会議をオンラインで開催するため。",
        business="庁内会議と職員研修。住民の個人情報は取り扱わない。",
        network_segment="internet",
        max_confidentiality=2 if assessment else 1,
        personal_data=False,
        specific_personal_data=False,
        sensitive_personal_data=False,
    )
    for key, value in changes.items():
        setattr(data, key, value)
    application = approvals.file(db, changes.pop("actor", cloud["staff"]), data)
    db.commit()
    return application


def decision_events(db, application) -> list[AuditEvent]:
    return list(
        db.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.object_type == "use_application",
                AuditEvent.object_id == str(application.id),
                AuditEvent.action.in_(
                    [
                        "application.approve",
                        "application.conditional",
                        "application.reject",
                        "application.return",
                    ]
                ),
            )
        )
    )


def decide_form(browser, application, **data):
    return browser.submit(
        f"/applications/{application.id}",
        {"reason": "業務上必要であり、評価の結果も良好であるため。", **data},
        selector="form[action$='/decide']",
    )


# ---------------------------------------------------------------------------------------------
# The whole way: service → application → decision → register entry → handover
# ---------------------------------------------------------------------------------------------


@time_machine.travel("2026-11-20 10:00 +0900", tick=False)
def test_an_application_goes_from_filing_to_register_entry_and_handover(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    staff = signed_in(app, cloud["staff"])

    # The service record is prefilled from the vendor's answers.
    page = staff.get(f"/services/new?assessment={assessment.id}")
    assert page.status_code == 200
    form = soup(page).select_one("form.form")
    assert form.select_one("[name=ismap_kind][checked]")["value"] == "ismap"
    assert "評価票" in text_of(page, "[data-field=prefilled]")
    response = staff.submit(
        f"/services/new?assessment={assessment.id}", {"name": "オンライン会議サービス"}, "form.form"
    )
    assert response.status_code == 303, flashes(staff.get("/services"))
    db.rollback()
    service = db.scalar(
        sa.select(ExternalService).where(ExternalService.name == "オンライン会議サービス")
    )
    assert service.source_assessment_id == assessment.id
    assert service.rows("data_locations") and service.rows("data_locations")[0]["country"] == "JP"
    detail = staff.get(f"/services/{service.id}")
    assert soup(detail).select("[data-table=data-locations] tbody tr")
    assert "日本" in text_of(detail, "[data-table=data-locations]")

    # A plan, then the application for it.
    staff.submit(f"/services/{service.id}", {"name": "自治体プラン"}, "form[action$='/plans']")
    plan = reload(db, service).plans[0]
    response = staff.submit(
        f"/applications/new?service={service.id}&assessment={assessment.id}",
        {
            "department_id": str(cloud["department"].id),
            "service_id": str(service.id),
            "plan_id": str(plan.id),
            "purpose": "庁内の会議をオンラインで開催するため。",
            "business": "庁内会議と職員研修",
            "network_segment": "lgwan",
            "max_confidentiality": "2",
        },
        "form.form",
    )
    assert response.status_code == 303, flashes(staff.last)
    db.rollback()
    application = db.scalar(
        sa.select(UseApplication).where(UseApplication.service_id == service.id)
    )
    assert application.status == "submitted"
    assert application.category == "9.2"
    assert application.applicant_id == cloud["staff"].id

    # The applicant sees no decision form; the approver does, and approves.
    page = staff.get(f"/applications/{application.id}")
    assert soup(page).select_one("[data-section=decide]") is None
    approver = signed_in(app, cloud["approver"])
    assert approver.get("/").status_code == 200
    assert text_of(approver.get("/"), "[data-field=awaiting-count]") == "1 件"
    response = decide_form(
        approver, application, decision="approve", manager_id=str(cloud["manager"].id)
    )
    assert response.status_code == 303
    application = reload(db, application)
    assert application.status == "approved"
    assert application.decided_by_id == cloud["approver"].id
    assert application.next_review_on is not None and application.next_review_on > TODAY
    assert application.current_manager.user_id == cloud["manager"].id
    assert application.current_manager.appointed_on == TODAY
    assert all(row["approved_on"] for row in reload(db, service).rows("subcontractors"))

    # The entry is in the register and the manager sees it as theirs.
    register = soup(approver.get("/register"))
    row = register.select_one(f"tr[data-application-id='{application.id}']")
    assert row is not None and "管理 四郎" in row.get_text()
    manager = signed_in(app, cloud["manager"])
    mine = manager.get("/my-services")
    assert [r["data-application-id"] for r in soup(mine).select("[data-application-id]")] == [
        str(application.id)
    ]
    entry = manager.get(f"/applications/{application.id}")
    assert text_of(entry, "[data-field=status]").endswith("承認")
    assert "管理 四郎（現任）" in text_of(entry, "[data-table=managers]")

    # A handover cannot be recorded ahead of time …
    approver.submit(
        f"/applications/{application.id}",
        {"manager_id": str(cloud["successor"].id), "appointed_on": "2027-04-01"},
        "form[data-form=handover]",
    )
    assert any("未来の日付" in m for m in flashes(approver.get(f"/applications/{application.id}")))
    assert len(reload(db, application).managers) == 1
    # … but on the day: the predecessor's term ends the day before; history is kept.
    traveller = time_machine.travel("2027-04-01 09:00 +0900", tick=False)
    traveller.start()
    approver = signed_in(app, cloud["approver"])
    response = approver.submit(
        f"/applications/{application.id}",
        {
            "manager_id": str(cloud["successor"].id),
            "appointed_on": "2027-04-01",
            "note": "人事異動による引継ぎ",
        },
        "form[data-form=handover]",
    )
    assert response.status_code == 303, flashes(approver.last)
    db.rollback()
    rows = db.scalars(
        sa.select(ManagerAssignment)
        .where(ManagerAssignment.application_id == application.id)
        .order_by(ManagerAssignment.id)
    ).all()
    assert [(r.user_id, r.appointed_on, r.ended_on) for r in rows] == [
        (cloud["manager"].id, TODAY, date(2027, 3, 31)),
        (cloud["successor"].id, date(2027, 4, 1), None),
    ]
    manager = signed_in(app, cloud["manager"])
    assert soup(manager.get("/my-services")).select("[data-application-id]") == []
    successor = signed_in(app, cloud["successor"])
    assert soup(successor.get("/my-services")).select(f"[data-application-id='{application.id}']")
    history = [
        tr["data-history"]
        for tr in soup(successor.get(f"/applications/{application.id}")).select(
            "[data-table=history] tbody tr"
        )
    ]
    traveller.stop()
    assert history == [
        "利用申請",
        "利用申請の承認",
        "外部サービス管理者の指定",
        "外部サービス管理者の指定",
    ]


# ---------------------------------------------------------------------------------------------
# Refusals: each with a clear message, nothing changed
# ---------------------------------------------------------------------------------------------


def test_deciding_without_the_permission_is_refused(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    for person in ("stranger", "manager", "ciso"):
        browser = signed_in(app, cloud[person])
        response = browser.post(
            f"/applications/{application.id}/decide",
            {"decision": "approve", "reason": "承認", "version": "1"},
        )
        assert response.status_code == 403
    assert reload(db, application).status == "submitted"
    assert decision_events(db, application) == []


def test_the_applicant_can_never_decide_their_own_application(app, db, make, org, cloud):
    both = make.user(
        org,
        roles={Role.STAFF, Role.APPROVER},
        departments=[cloud["department"]],
        name="兼務 九郎",
    )
    assessment = decided(db, make, org, cloud)
    service = service_from(db, cloud, assessment)
    application = filed(db, cloud, service, assessment, actor=both)
    browser = signed_in(app, both)
    page = browser.get(f"/applications/{application.id}")
    assert soup(page).select_one("[data-section=decide]") is None
    assert "兼務の禁止" in page.get_data(as_text=True) and "本人は判断できません" in " ".join(
        soup(page).stripped_strings
    )
    response = browser.post(
        f"/applications/{application.id}/decide",
        {
            "decision": "approve",
            "reason": "自分で承認する",
            "manager_id": str(cloud["manager"].id),
            "version": str(application.version),
        },
        follow_redirects=True,
    )
    assert any("兼務の禁止" in m for m in flashes(response))
    assert reload(db, application).status == "submitted"
    assert decision_events(db, application) == []
    # The rule is the server's: the service refuses it whatever the form shows.
    with pytest.raises(approvals.ApprovalError, match="兼務の禁止"):
        approvals.decide(
            db,
            application,
            both,
            approvals.DecisionInput("approve", "理由", manager_id=cloud["manager"].id, version=1),
            TODAY,
        )


def test_deciding_twice_is_refused(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approver = signed_in(app, cloud["approver"])
    decide_form(approver, application, decision="approve", manager_id=str(cloud["manager"].id))
    assert reload(db, application).status == "approved"
    response = approver.post(
        f"/applications/{application.id}/decide",
        {"decision": "reject", "reason": "やはり却下", "version": str(application.version)},
        follow_redirects=True,
    )
    assert any("既に判断されている" in m for m in flashes(response))
    assert reload(db, application).status == "approved"
    assert len(decision_events(db, application)) == 1


def test_a_stale_form_is_refused_as_a_conflict(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approver = signed_in(app, cloud["approver"])
    response = approver.post(
        f"/applications/{application.id}/decide",
        {
            "decision": "approve",
            "reason": "承認",
            "manager_id": str(cloud["manager"].id),
            "version": str(application.version + 5),
        },
        follow_redirects=True,
    )
    assert any("他の方が更新しました" in m for m in flashes(response))
    assert reload(db, application).status == "submitted"


def test_approving_despite_a_blocker_needs_an_override_reason(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud, changes={"company.antisocial_forces": "no"})
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approver = signed_in(app, cloud["approver"])
    page = approver.get(f"/applications/{application.id}")
    assert "company.antisocial_forces" in text_of(page, "[data-field=blockers]")
    response = decide_form(
        approver, application, decision="approve", manager_id=str(cloud["manager"].id)
    )
    assert response.status_code == 422
    assert any("不可の要因" in m for m in flashes(response))
    # What the approver typed is still there.
    assert (
        soup(response)
        .select_one("textarea[name=reason]")
        .get_text()
        .strip()
        .startswith("業務上必要")
    )
    assert reload(db, application).status == "submitted"

    decide_form(
        approver,
        application,
        decision="approve",
        manager_id=str(cloud["manager"].id),
        override_reason="誓約書を別途受領済みで、回答の誤りと確認したため。",
    )
    application = reload(db, application)
    assert application.status == "approved"
    assert application.override_reason.startswith("誓約書を別途受領済み")
    assert application.reported
    details = json.loads(decision_events(db, application)[0].details)
    assert "company.antisocial_forces.refused" in details["blockers"]
    assert details["override_reason"] == application.override_reason


@pytest.mark.parametrize("who", ["vendor", "other_org", "no_role", "disabled", "nobody"])
def test_the_manager_must_be_an_active_service_manager_of_the_organisation(
    app, db, make, org, cloud, who
):
    other = make.org("ほかの村")
    candidates = {
        "vendor": cloud["vendor"],
        "other_org": make.user(other, roles={Role.STAFF, Role.SERVICE_MANAGER}, name="他村 職員"),
        "no_role": cloud["stranger"],
        "disabled": make.user(org, roles={Role.SERVICE_MANAGER}, name="退職 職員", active=False),
        "nobody": None,
    }
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    candidate = candidates[who]
    with pytest.raises(approvals.ApprovalError, match="外部サービス管理者"):
        approvals.decide(
            db,
            application,
            cloud["approver"],
            approvals.DecisionInput(
                "approve", "承認", manager_id=candidate.id if candidate else None, version=1
            ),
            TODAY,
        )
    db.rollback()
    # Through the web too: refused (by the form's list of eligible staff, or by the service
    # for an empty choice), with a message naming the field, and the page shown again.
    approver = signed_in(app, cloud["approver"])
    response = approver.post(
        f"/applications/{application.id}/decide",
        {
            "decision": "approve",
            "reason": "承認",
            "manager_id": str(candidate.id) if candidate else "",
            "version": "1",
        },
        follow_redirects=True,
    )
    assert response.status_code == 422
    assert any("外部サービス管理者" in m for m in flashes(response))
    application = reload(db, application)
    assert application.status == "submitted"
    assert application.managers == []


def test_an_application_outside_what_was_assessed_is_refused(db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    service = service_from(db, cloud, assessment)
    with pytest.raises(approvals.ApprovalError, match="機密性2までの情報"):
        filed(db, cloud, service, assessment, max_confidentiality=3)
    db.rollback()
    with pytest.raises(approvals.ApprovalError, match="所属する課"):
        filed(db, cloud, service, assessment, actor=cloud["stranger"])
    db.rollback()
    with pytest.raises(approvals.ApprovalError, match="評価（評価完了のもの）を紐づけて"):
        filed(db, cloud, service, None, max_confidentiality=2)
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(UseApplication)) == 0


def test_an_unfinished_assessment_cannot_be_approved(db, make, org, cloud):
    assessment = submitted(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    with pytest.raises(approvals.ApprovalError, match="評価が完了していない"):
        approvals.decide(
            db,
            application,
            cloud["approver"],
            approvals.DecisionInput("approve", "承認", manager_id=cloud["manager"].id, version=1),
            TODAY,
        )


# ---------------------------------------------------------------------------------------------
# Return, revise, conditions and the report to the ネットワーク管理者 and CISO
# ---------------------------------------------------------------------------------------------


def test_a_returned_application_is_revised_and_filed_again(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approver = signed_in(app, cloud["approver"])
    decide_form(approver, application, decision="return", reason="利用する業務を具体的に。")
    assert reload(db, application).status == "returned"

    staff = signed_in(app, cloud["staff"])
    page = staff.get(f"/applications/{application.id}/revise")
    assert "利用する業務を具体的に" in text_of(page, "[data-field=return-reason]")
    response = staff.submit(
        f"/applications/{application.id}/revise",
        {"business": "庁内会議（課長会議・部内会議）の開催に限る。"},
        "form.form",
    )
    assert response.status_code == 303, flashes(staff.last)
    application = reload(db, application)
    assert application.status == "submitted"
    assert application.business.startswith("庁内会議（課長会議")
    # Someone else's department cannot revise it.
    assert (
        signed_in(app, cloud["stranger"]).get(f"/applications/{application.id}/revise").status_code
        == 404
    )


@time_machine.travel("2026-11-20 10:00 +0900", tick=False)
def test_a_conditional_approval_is_reported_by_mail_and_on_the_dashboard(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    before = len(outbox(app))
    approver = signed_in(app, cloud["approver"])
    decide_form(
        approver,
        application,
        decision="conditional",
        conditions="管理者アカウントに多要素認証を設定すること。",
        manager_id=str(cloud["manager"].id),
    )
    application = reload(db, application)
    assert application.status == "conditional" and application.reported
    messages = outbox(app)[before:]
    assert sorted(m["To"] for m in messages) == sorted(
        [cloud["ciso"].email, cloud["netadmin"].email]
    )
    body = messages[0].get_content()
    assert "条件付承認" in body and "多要素認証" in body and "9.1(3)" in body
    for person in ("ciso", "netadmin"):
        home = signed_in(app, cloud[person]).get("/")
        rows = soup(home).select("[data-table=reported] tbody tr[data-application-id]")
        assert [r["data-application-id"] for r in rows] == [str(application.id)]
    # Other roles do not get the report section.
    assert soup(approver.get("/")).select_one("[data-section=reported]") is None


@pytest.mark.parametrize("rating, reported", [("low", False), ("high", True)])
def test_a_plain_approval_is_reported_only_when_the_risk_is_high(
    app, db, make, org, cloud, rating, reported
):
    assessment = decided(db, make, org, cloud)
    score = db.scalar(sa.select(Score).where(Score.assessment_id == assessment.id))
    score.rating = rating
    db.commit()
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    before = len(outbox(app))
    approver = signed_in(app, cloud["approver"])
    decide_form(approver, application, decision="approve", manager_id=str(cloud["manager"].id))
    application = reload(db, application)
    assert application.status == "approved"
    assert application.risk_rating == rating
    assert application.reported is reported
    assert len(outbox(app)) - before == (2 if reported else 0)


# ---------------------------------------------------------------------------------------------
# 停止 / 再開 / 廃止, 約款型 terms, visibility
# ---------------------------------------------------------------------------------------------


def test_suspending_resuming_and_retiring_need_a_reason(app, db, make, org, cloud):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approver = signed_in(app, cloud["approver"])
    decide_form(
        approver,
        application,
        decision="conditional",
        conditions="条件",
        manager_id=str(cloud["manager"].id),
    )
    response = approver.submit(
        f"/applications/{application.id}",
        {"action": "suspend", "reason": ""},
        "form[data-form=status]",
    )
    assert reload(db, application).status == "conditional"
    approver.submit(
        f"/applications/{application.id}",
        {"action": "suspend", "reason": "脆弱性の公表を受けて利用を一時停止する。"},
        "form[data-form=status]",
    )
    assert reload(db, application).status == "suspended"
    page = approver.get(f"/applications/{application.id}")
    assert "脆弱性の公表" in text_of(page, "[data-field=status]")
    approver.submit(
        f"/applications/{application.id}",
        {"action": "resume", "reason": "修正版の適用を確認した。"},
        "form[data-form=status]",
    )
    assert reload(db, application).status == "conditional"
    approver.submit(
        f"/applications/{application.id}",
        {"action": "retire", "reason": "後継サービスへ移行した。"},
        "form[data-form=status]",
    )
    # 廃止 opens the exit checklist (9.2(7)): 廃止手続中 until it is complete.
    assert reload(db, application).status == "ending"
    assert schedule_of_application(db, application).status == "ending"
    page = approver.get(f"/applications/{application.id}")
    assert text_of(page, "[data-field=status]").startswith("状態: 廃止手続中")
    assert "後継サービスへ移行した。" in text_of(page, "[data-field=status]")
    assert soup(page).select_one("form[data-form=status]") is None
    assert soup(page).select_one("[data-section=retirement] form[data-form=retire-override]")
    # Staff cannot change the register's status.
    staff = signed_in(app, cloud["staff"])
    response = staff.post(
        f"/applications/{application.id}/status",
        {"action": "resume", "reason": "x", "version": str(application.version)},
    )
    assert response.status_code == 403


def test_terms_of_a_terms_based_service_are_hashed_and_a_change_asks_for_reconfirmation(
    app, db, make, org, cloud
):
    service = approvals.create_service(
        db,
        cloud["staff"],
        cloud["company"].id,
        approvals.ServiceInput(name="無料アンケートサービス"),
    )
    db.commit()
    staff = signed_in(app, cloud["staff"])
    fields = {
        "department_id": str(cloud["department"].id),
        "service_id": str(service.id),
        "purpose": "研修の受講者アンケート",
        "business": "研修アンケートの集計（氏名は収集しない）",
        "network_segment": "internet",
        "max_confidentiality": "1",
        "terms_url": "https://survey.example.com/terms",
        "terms_text": TERMS.decode(),
    }
    # Without the 9.3(2) confirmation: refused.
    staff.submit("/applications/new", fields, "form.form")
    assert any("9.3(2)" in m for m in flashes(staff.last))
    assert db.scalar(sa.select(sa.func.count()).select_from(UseApplication)) == 0
    response = staff.submit(
        "/applications/new", {**fields, "terms_risks_confirmed": "y"}, "form.form"
    )
    assert response.status_code == 303
    db.rollback()
    application = db.scalar(sa.select(UseApplication))
    assert application.category == "9.3"
    assert application.accepted_terms.sha256 == hashlib.sha256(TERMS).hexdigest()

    approvals.decide(
        db,
        application,
        cloud["approver"],
        approvals.DecisionInput(
            "approve", "承認", manager_id=cloud["manager"].id, version=application.version
        ),
        TODAY,
    )
    db.commit()
    manager = signed_in(app, cloud["manager"])
    # The same text again changes nothing.
    manager.submit(
        f"/applications/{application.id}",
        {"terms_url": "https://survey.example.com/terms", "terms_text": TERMS.decode()},
        "form[data-form=terms]",
    )
    assert len(reload(db, application).terms_versions) == 1
    # A new version (uploaded) marks the entry for re-confirmation.
    new_terms = TERMS + "第2条 当社は本規約を予告なく変更できる。".encode()
    page = manager.get(f"/applications/{application.id}")
    form = soup(page).select_one("form[data-form=terms]")
    token = form.select_one("input[name=csrf_token]")["value"]
    from io import BytesIO

    manager.client.post(
        f"/applications/{application.id}/terms",
        data={
            "csrf_token": token,
            "terms_url": "https://survey.example.com/terms",
            "terms_file": (BytesIO(new_terms), "terms-2027.pdf"),
        },
        content_type="multipart/form-data",
    )
    application = reload(db, application)
    assert application.pending_terms is not None
    assert application.pending_terms.sha256 == hashlib.sha256(new_terms).hexdigest()
    assert application.pending_terms.source == "terms-2027.pdf"
    page = manager.get(f"/applications/{application.id}")
    assert soup(page).select_one("[data-field=terms-pending]") is not None
    # Re-confirming clears it.
    manager.submit(
        f"/applications/{application.id}", {"risks_confirmed": "y"}, "form[data-form=terms-confirm]"
    )
    application = reload(db, application)
    assert application.pending_terms is None
    assert application.accepted_terms.sha256 == hashlib.sha256(new_terms).hexdigest()


def test_a_terms_based_service_never_holds_confidentiality_2(db, make, org, cloud):
    service = approvals.create_service(
        db, cloud["staff"], cloud["company"].id, approvals.ServiceInput(name="無料翻訳サービス")
    )
    with pytest.raises(approvals.ApprovalError, match="評価（評価完了のもの）"):
        filed(db, cloud, service, None, max_confidentiality=2)


def test_applications_are_hidden_from_other_departments_and_organisations_until_approved(
    app, db, make, org, cloud
):
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    other = make.org("となり町")
    outsider = make.user(
        other, roles={Role.STAFF, Role.APPROVER}, departments=[make.department(other)]
    )
    outside = signed_in(app, outsider)
    assert outside.get(f"/applications/{application.id}").status_code == 404
    stranger = signed_in(app, cloud["stranger"])
    assert stranger.get(f"/applications/{application.id}").status_code == 404
    vendor = signed_in(app, cloud["vendor"])
    assert vendor.get(f"/applications/{application.id}").status_code == 403
    approvals.decide(
        db,
        application,
        cloud["approver"],
        approvals.DecisionInput("approve", "承認", manager_id=cloud["manager"].id, version=1),
        TODAY,
    )
    db.commit()
    # Once in the register, the whole organisation may read it — still not another body.
    assert stranger.get(f"/applications/{application.id}").status_code == 200
    assert outside.get(f"/applications/{application.id}").status_code == 404
    response = outside.post(
        f"/applications/{application.id}/status",
        {"action": "suspend", "reason": "x", "version": str(application.version)},
    )
    assert response.status_code == 404
    assert reload(db, application).status == "approved"


def test_a_service_is_recorded_and_edited_by_hand_with_facts_still_unknown(
    app, db, make, org, cloud
):
    staff = signed_in(app, cloud["staff"])
    response = staff.submit(
        "/services/new",
        {"company_id": str(cloud["company"].id), "name": "無料翻訳サービス"},
        "form.form",
    )
    assert response.status_code == 303, flashes(staff.last)
    db.rollback()
    service = db.scalar(
        sa.select(ExternalService).where(ExternalService.name == "無料翻訳サービス")
    )
    assert (service.governing_law, service.jurisdiction, service.ismap_scope_covers) == (
        None,
        None,
        None,
    )
    response = staff.submit(f"/services/{service.id}/edit", {"governing_law": "japan"}, "form.form")
    assert response.status_code == 303, flashes(staff.last)
    service = reload(db, service)
    assert (service.governing_law, service.jurisdiction) == ("japan", None)
    # A name with a line break would break mail subjects and exports: refused.
    staff.submit(f"/services/{service.id}/edit", {"name": "翻訳\r\nサービス"}, "form.form")
    assert reload(db, service).name == "無料翻訳サービス"


def test_only_the_applicant_revises_a_returned_application(db, make, org, cloud):
    colleague = make.user(
        org,
        roles={Role.STAFF, Role.APPROVER},
        departments=[cloud["department"]],
        name="同課 許可者",
    )
    assessment = decided(db, make, org, cloud)
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    approvals.decide(
        db,
        application,
        cloud["approver"],
        approvals.DecisionInput("return", "業務を具体的に", version=application.version),
        TODAY,
    )
    db.commit()
    data = approvals.ApplicationInput(
        department_id=cloud["department"].id,
        service_id=application.service_id,
        plan_id=None,
        assessment_id=assessment.id,
        purpose="目的",
        business="具体的な業務",
        network_segment="internet",
        max_confidentiality=2,
        personal_data=False,
        specific_personal_data=False,
        sensitive_personal_data=False,
    )
    # Otherwise the colleague could revise it and then approve it (兼務の禁止).
    with pytest.raises(approvals.ApprovalError, match="申請者本人"):
        approvals.revise(db, application, colleague, data, application.version)
    db.rollback()
    assert reload(db, application).status == "returned"


def test_an_assessment_judged_conditional_is_approved_only_with_conditions(db, make, org, cloud):
    from portal.evaluations.models import Outcome

    assessment = decided(db, make, org, cloud)
    score = db.scalar(sa.select(Score).where(Score.assessment_id == assessment.id))
    db.add(
        Outcome(
            assessment_id=assessment.id,
            decision="conditional",
            conditions="SLAを契約に明記すること。",
            score_id=score.id,
            recommended_by_id=cloud["staff"].id,
        )
    )
    db.commit()
    application = filed(db, cloud, service_from(db, cloud, assessment), assessment)
    with pytest.raises(approvals.ApprovalError, match="条件付承認"):
        approvals.decide(
            db,
            application,
            cloud["approver"],
            approvals.DecisionInput("approve", "承認", manager_id=cloud["manager"].id, version=1),
            TODAY,
        )
    db.rollback()
    approvals.decide(
        db,
        application,
        cloud["approver"],
        approvals.DecisionInput(
            "conditional",
            "承認",
            conditions="SLAを契約に明記すること。",
            manager_id=cloud["manager"].id,
            version=1,
        ),
        TODAY,
    )
    db.commit()
    assert reload(db, application).status == "conditional"


def test_personal_data_entries_are_reviewed_at_least_yearly(db, make, org, cloud):
    org.review_interval_months = 24
    db.commit()
    assessment = decided(db, make, org, cloud, personal_data=True)
    service = service_from(db, cloud, assessment)
    plain = filed(db, cloud, service, assessment)
    personal = filed(db, cloud, service, assessment, personal_data=True)
    for application in (plain, personal):
        approvals.decide(
            db,
            application,
            cloud["approver"],
            approvals.DecisionInput(
                "conditional", "承認", conditions="条件", manager_id=cloud["manager"].id, version=1
            ),
            TODAY,
        )
    db.commit()
    high = plain.risk_rating in approvals.HIGH_RISK
    # 2028-11-19 is a Sunday: the review moves to the next business day.
    assert plain.next_review_on == (date(2027, 5, 19) if high else date(2028, 11, 20))
    assert personal.next_review_on == (date(2027, 5, 19) if high else date(2027, 11, 19))
