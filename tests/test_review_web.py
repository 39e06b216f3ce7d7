"""The staff review through the web: from a submitted assessment to a decision, overrides with
reasons, concurrent reviewers, the vendor's view, the report (HTML and PDF) and the comparison."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from portal.assessments import service as assessments
from portal.assessments import store
from portal.assessments.demo import _answer_all
from portal.audit.models import AuditEvent
from portal.evaluations import service as evaluations
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.permissions import Role
from tests.helpers import Browser, flashes, reload, soup, text_of
from tests.pdf_helpers import pdf_fonts, pdf_text

TODAY = date(2026, 11, 20)
# Prefilled from the company profile in real use; the factory's company has none.
PROFILE = {
    "company.address": "東京都千代田区霞が関1-1",
    "company.representative": "代表取締役 審査 太郎",
}


@pytest.fixture
def people(make, org):
    department = make.department(org, "情報政策課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department], name="審査 一郎")
    colleague = make.user(org, roles={Role.STAFF}, departments=[department], name="同僚 二郎")
    approver = make.user(org, roles={Role.APPROVER}, name="許可 三郎")
    company = make.company(org, name="株式会社審査対象")
    vendor = make.user(org, company=company, name="事業者 四郎")
    return {
        "department": department,
        "staff": staff,
        "colleague": colleague,
        "approver": approver,
        "company": company,
        "vendor": vendor,
    }


def submitted(db, make, org, people, *, title="クラウド会計サービスの利用", changes=None, **fields):
    """An assessment answered with plausible values (``changes`` overriding some), submitted
    and scored automatically, as the vendor's submission leaves it."""
    engagement = make.engagement(
        org,
        people["department"],
        people["staff"],
        title=title,
        **({"kind": "external_service", "confidentiality": 2} | fields),
    )
    assessment = make.assessment(engagement, people["company"], people["staff"])
    _answer_all(db, assessment, people["vendor"], 1.0)
    for key, value in (PROFILE | (changes or {})).items():
        store.save(db, assessment, key, value, people["vendor"])
    attach_evidence(db, assessment, people["vendor"])
    assessments.submit(db, assessment, people["vendor"])
    evaluations.score_on_submission(db, assessment, people["vendor"], TODAY)
    db.commit()
    return assessment


def attach_evidence(db, assessment, vendor) -> None:
    """A clean file (the row only) for every evidence question the vendor must answer."""
    from portal.evidence.models import EvidenceFile
    from portal.questionnaires import loader
    from portal.questionnaires.conditions import visible_questions

    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    values = store.values(db, assessment)
    for n, question in enumerate(
        visible_questions(questionnaire, assessment.engagement.facts, values)
    ):
        if question.type == "evidence":
            db.add(
                EvidenceFile(
                    organisation_id=assessment.organisation_id,
                    assessment_id=assessment.id,
                    vendor_company_id=assessment.vendor_company_id,
                    question_key=question.key,
                    original_name="証明書.pdf",
                    stored_name=f"{assessment.id:032x}{n:032x}",
                    content_type="application/pdf",
                    size=1,
                    sha256="0" * 64,
                    scan_status="clean",
                    uploaded_by_id=vendor.id,
                )
            )
    db.commit()


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    browser.login(user)
    return browser


def review_form(page, key):
    return soup(page).select_one(f"form[data-review-form='{key}']")


def save_review(browser, assessment, key, section, **data):
    url = f"/assessments/{assessment.id}/review/{section}"
    return browser.submit(url, data, selector=f"form[data-review-form='{key}']")


def check_everything(db, assessment, user):
    card = evaluations.card_for(db, assessment, TODAY)
    for key in card.questions:
        row = db.scalar(
            sa.select(AnswerReview).where(
                AnswerReview.assessment_id == assessment.id, AnswerReview.question_key == key
            )
        )
        evaluations.save_review(
            db,
            assessment,
            user,
            key,
            evaluations.ReviewInput(
                checked=True,
                manual_points=row.manual_points if row else None,
                dismissed=set(row.dismissed) if row else set(),
                override_reason=(row.override_reason or "") if row else "",
                vendor_comment="",
                internal_note="",
                version=row.version if row else 0,
            ),
            TODAY,
        )
    db.commit()


def events(db, action):
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


# ---------------------------------------------------------------------------------------------


def test_submitting_scores_the_assessment_by_the_rules(db, make, org, people):
    assessment = submitted(db, make, org, people)

    score = db.scalar(sa.select(Score).where(Score.assessment_id == assessment.id))
    assert score.kind == "automatic"
    assert score.rules_version == "2026.11-1"
    assert score.questionnaire_version == assessment.questionnaire_version
    assert score.details["rating"] == score.rating
    assert [e.details for e in events(db, "assessment.scored")]


def test_the_vendors_own_submission_is_scored(app, db, make, org, people):
    engagement = make.engagement(org, people["department"], people["staff"])
    assessment = make.assessment(engagement, people["company"], people["staff"])
    _answer_all(db, assessment, people["vendor"], 1.0)
    for key, value in PROFILE.items():
        store.save(db, assessment, key, value, people["vendor"])
    attach_evidence(db, assessment, people["vendor"])
    vendor = signed_in(app, people["vendor"])

    response = vendor.submit(
        f"/assessments/{assessment.id}/submit", selector="main form[method=post]"
    )

    assert response.status_code == 302
    assert (
        db.scalar(sa.select(Score.kind).where(Score.assessment_id == assessment.id)) == "automatic"
    )


def test_an_assessment_that_is_not_submitted_is_not_scored(app, db, make, org, people):
    engagement = make.engagement(org, people["department"], people["staff"])
    assessment = make.assessment(engagement, people["company"], people["staff"])
    with pytest.raises(evaluations.EvaluationError, match="提出されていない評価票は採点できません"):
        evaluations.card_for(db, assessment, TODAY)

    page = signed_in(app, people["staff"]).get(
        f"/assessments/{assessment.id}/review", follow_redirects=True
    )
    assert "提出されていない評価票は審査できません。提出後に審査してください。" in flashes(page)


def test_the_review_page_shows_both_progress_figures_and_the_rule_results(
    app, db, make, org, people
):
    assessment = submitted(db, make, org, people, changes={"external.incident_notice_hours": 48})
    staff = signed_in(app, people["staff"])

    page = staff.get(f"/assessments/{assessment.id}/review")

    assert page.status_code == 200
    assert "100%" in text_of(page, "[data-field=vendor-progress]")
    assert "0 / " in text_of(page, "[data-field=review-progress]")
    assert text_of(page, "[data-field=rating]") == "不可"
    blockers = soup(page).select("[data-outcomes=blocker] [data-rule]")
    assert [b["data-rule"] for b in blockers] == ["incident.external_notice.late"]

    section = staff.get(f"/assessments/{assessment.id}/review/external")
    item = soup(section).select_one("[data-question='external.incident_notice_hours']")
    assert item.select_one("[data-kind=blocker]")["data-rule"] == "incident.external_notice.late"
    assert "48" in item.select_one("[data-answer]").get_text()


def test_an_override_needs_a_reason_and_is_audited(app, db, make, org, people):
    assessment = submitted(db, make, org, people)
    staff = signed_in(app, people["staff"])
    key = "contract.policy_compliance"  # yes → 10 points by the rules

    refused = save_review(staff, assessment, key, "contract", manual_points="4", checked="1")
    page = staff.get(refused.headers["Location"])
    assert "ルールによる点数や判定を変更するときは、変更の理由を入力してください。" in flashes(page)
    assert db.scalar(sa.select(AnswerReview).where(AnswerReview.question_key == key)) is None

    saved = save_review(
        staff,
        assessment,
        key,
        "contract",
        manual_points="4",
        checked="1",
        override_reason="例外事項が多いため減点する。",
    )
    assert saved.status_code == 302
    db.rollback()
    row = db.scalar(sa.select(AnswerReview).where(AnswerReview.question_key == key))
    assert (row.manual_points, row.checked) == (4, True)
    event = events(db, "assessment.override")[-1]
    assert event.details and "例外事項が多いため減点する。" in event.details
    page = staff.get(f"/assessments/{assessment.id}/review/contract")
    item = soup(page).select_one(f"[data-question='{key}']")
    assert "4 / 10" in item.select_one("[data-field=points]").get_text()


def test_a_dismissed_blocker_needs_a_reason_and_lifts_the_rating(app, db, make, org, people):
    assessment = submitted(db, make, org, people, changes={"external.incident_notice_hours": 48})
    staff = signed_in(app, people["staff"])
    key = "external.incident_notice_hours"

    save_review(staff, assessment, key, "external", dismiss="incident.external_notice.late")
    assert db.scalar(sa.select(AnswerReview).where(AnswerReview.question_key == key)) is None

    save_review(
        staff,
        assessment,
        key,
        "external",
        dismiss="incident.external_notice.late",
        override_reason="契約で24時間以内の通知を義務付けることで合意した。",
    )
    page = staff.get(f"/assessments/{assessment.id}/review")
    assert text_of(page, "[data-field=rating]") != "不可"
    dismissed = soup(page).select("[data-outcomes=dismissed] [data-rule]")
    assert [d["data-rule"] for d in dismissed] == ["incident.external_notice.late"]


def test_the_second_reviewer_sees_a_conflict_and_loses_nothing(app, db, make, org, people):
    assessment = submitted(db, make, org, people)
    first, second = signed_in(app, people["staff"]), signed_in(app, people["colleague"])
    key, url = "company.ownership", f"/assessments/{assessment.id}/review/company"
    page_of_second = second.get(url)  # opened before the first reviewer saves
    stale = {**_fields(review_form(page_of_second, key))}

    save_review(first, assessment, key, "company", internal_note="一郎のメモ", checked="1")
    stale.update(internal_note="二郎のメモ", vendor_comment="二郎から事業者へ")
    conflict = second.client.post(f"/assessments/{assessment.id}/review/company/{key}", data=stale)

    assert conflict.status_code == 409
    table = soup(conflict).select_one("[data-table=conflict]")
    row = table.select_one("[data-row=internal_note]").get_text(" ", strip=True)
    assert "一郎のメモ" in row and "二郎のメモ" in row
    saved = db.scalar(sa.select(AnswerReview).where(AnswerReview.question_key == key))
    assert saved.internal_note == "一郎のメモ"  # nothing overwritten silently

    again = soup(conflict).select_one(f"form[data-review-form='{key}']")
    retried = second.client.post(again["action"], data=_fields(again))
    assert retried.status_code == 302
    db.rollback()
    db.refresh(saved)
    assert (saved.internal_note, saved.vendor_comment) == ("二郎のメモ", "二郎から事業者へ")


def _fields(form) -> dict:
    from tests.helpers import form_fields

    return {k: v for k, v in form_fields(form).items() if v is not None}


def test_the_review_ends_with_a_decision_confirmed_by_a_second_person(app, db, make, org, people):
    assessment = submitted(db, make, org, people, changes={"external.governing_law": "selectable"})
    staff = signed_in(app, people["staff"])
    url = f"/assessments/{assessment.id}/decision"

    refused = staff.submit(url, {"decision": "conditional"}, selector="form.decision-form")
    assert "すべての回答を確認してから判定してください" in " ".join(flashes(refused))

    check_everything(db, assessment, people["staff"])
    approve = staff.submit(url, {"decision": "approve"}, selector="form.decision-form")
    assert "利用の条件があるため、「条件付き可」を選んでください。" in flashes(approve)
    decided = staff.submit(url, {"decision": "conditional"}, selector="form.decision-form")
    assert decided.status_code == 302
    assert reload(db, assessment).status == "reviewed"
    outcome = db.scalar(sa.select(Outcome))
    assert "日本法" in outcome.conditions  # the rule's condition, prefilled
    assert db.scalar(sa.select(Score.kind).where(Score.id == outcome.score_id)) == "final"

    # 兼務の禁止: the recommender cannot confirm, not even by posting the form directly.
    own = staff.post(f"/assessments/{assessment.id}/decision/confirm", {"action": "confirm"})
    assert "判定を行った本人は確認できません（兼務の禁止）。" in flashes(
        staff.get(own.headers["Location"])
    )
    assert reload(db, assessment).status == "reviewed"

    approver = signed_in(app, people["approver"])
    overview = approver.get(f"/assessments/{assessment.id}/review")
    assert soup(overview).select_one("form.confirm-form") is not None
    approver.submit(
        f"/assessments/{assessment.id}/review", {"action": "confirm"}, selector="form.confirm-form"
    )
    assert reload(db, assessment).status == "decided"
    db.refresh(outcome)
    assert outcome.confirmed_by_id == people["approver"].id
    assert events(db, "assessment.confirm")


def test_without_second_person_the_decision_is_final(app, db, make, org, people):
    org.decision_requires_confirmation = False
    db.commit()
    assessment = submitted(db, make, org, people, changes={"external.incident_notice_hours": 48})
    check_everything(db, assessment, people["staff"])
    staff = signed_in(app, people["staff"])
    url = f"/assessments/{assessment.id}/decision"

    approve = staff.submit(url, {"decision": "approve"}, selector="form.decision-form")
    assert "不可の要因が残っているため" in " ".join(flashes(approve))
    reject = staff.submit(
        url, {"decision": "reject", "reasoning": ""}, selector="form.decision-form"
    )
    assert "「不可」とする理由を入力してください。" in flashes(reject)
    staff.submit(
        url,
        {"decision": "reject", "reasoning": "通知時間の条件が合わない。"},
        selector="form.decision-form",
    )
    assert reload(db, assessment).status == "decided"
    assert db.scalar(sa.select(Outcome.decision)) == "reject"


def test_the_confirmer_can_send_the_review_back(app, db, make, org, people):
    assessment = submitted(db, make, org, people)
    check_everything(db, assessment, people["staff"])
    evaluations.finish(
        db,
        assessment,
        people["staff"],
        decision="conditional",
        conditions="条件",
        reasoning="",
        today=TODAY,
    )
    db.commit()
    approver = signed_in(app, people["approver"])
    url = f"/assessments/{assessment.id}/review"

    approver.submit(url, {"action": "reopen", "comment": ""}, selector="form.confirm-form")
    assert reload(db, assessment).status == "reviewed"
    approver.submit(
        url, {"action": "reopen", "comment": "条件を具体的に。"}, selector="form.confirm-form"
    )
    assert reload(db, assessment).status == "submitted"
    assert db.scalar(sa.select(Outcome)) is None


def test_the_vendor_sees_comments_but_no_internal_data(app, db, make, org, people):
    assessment = submitted(db, make, org, people)
    staff = signed_in(app, people["staff"])
    save_review(
        staff,
        assessment,
        "company.ownership",
        "company",
        checked="1",
        vendor_comment="親会社の出資比率を追記してください。",
        internal_note="資本関係に懸念あり",
    )
    save_review(
        staff,
        assessment,
        "company.security_policy",
        "company",
        manual_points="1",
        override_reason="規程が古い（減点）",
    )
    vendor = signed_in(app, people["vendor"])

    page = vendor.get(f"/assessments/{assessment.id}/sections/company")
    assert page.status_code == 200
    comment = soup(page).select_one("[data-vendor-comment='company.ownership']")
    assert "親会社の出資比率を追記してください。" in comment.get_text()
    text = soup(page).get_text(" ")
    for secret in (
        "資本関係に懸念あり",
        "規程が古い",
        "リスク評価:",
        "得点",
        "点数",
        "指摘事項",
        "不可の要因",
        "内部メモ",
    ):
        assert secret not in text
    for path in ("review", "review/company", "report", "compare", "decision"):
        assert vendor.get(f"/assessments/{assessment.id}/{path}").status_code in (403, 404)
    assert vendor.post(f"/assessments/{assessment.id}/report.pdf").status_code in (403, 404)


def test_the_report_page_and_pdf_cite_the_versions(app, db, make, org, people):
    payload = "<script>alert('x')</script><img src=file:///etc/passwd>"
    assessment = submitted(db, make, org, people, changes={"company.officers": payload})
    staff = signed_in(app, people["staff"])

    page = staff.get(f"/assessments/{assessment.id}/report")
    assert text_of(page, "[data-field=rules-version]").endswith("版 2026.11-1")
    assert assessment.questionnaire_version in text_of(page, "[data-field=questionnaire-version]")
    cell = soup(page).select_one("[data-report] tr[data-question='company.officers']")
    assert payload in cell.get_text()
    assert soup(page).select_one("[data-report] script") is None

    response = staff.submit(
        f"/assessments/{assessment.id}/report", selector="form[action$='report.pdf']"
    )
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    text = pdf_text(response.data)
    assert "評価報告書" in text and "2026.11-1" in text
    assert "alert('x')" in text.replace("\n", "")
    assert "root:" not in text
    assert any("IPAex" in font for font in pdf_fonts(response.data))
    assert events(db, "assessment.report_pdf")


def test_pdf_generation_is_rate_limited_per_user(app, db, make, org, people):
    app.config["PDF_PER_MINUTE"] = 1
    assessment = submitted(db, make, org, people, **{"kind": "outsourcing"})
    staff = signed_in(app, people["staff"])
    url = f"/assessments/{assessment.id}/report"

    first = staff.submit(url, selector="form[action$='report.pdf']")
    second = staff.submit(url, selector="form[action$='report.pdf']")

    assert first.status_code == 200
    assert second.status_code == 303
    assert "短時間に多くのPDFを作成しました" in flashes(staff.get(second.headers["Location"]))[0]
    assert len(events(db, "assessment.report_pdf")) == 1


def test_compare_shows_what_changed_answer_by_answer(app, db, make, org, people):
    before = submitted(db, make, org, people, title="前回の評価")
    after = submitted(
        db, make, org, people, title="今回の評価", changes={"external.governing_law": "foreign"}
    )
    staff = signed_in(app, people["staff"])

    page = staff.get(f"/assessments/{after.id}/compare")

    rows = soup(page).select("[data-table=compare] tbody tr[data-question]")
    assert [r["data-question"] for r in rows] == ["external.governing_law"]
    assert "日本法" in rows[0].select("td")[0].get_text()
    assert "外国法" in rows[0].select("td")[1].get_text()
    everything = staff.get(f"/assessments/{after.id}/compare?with={before.id}&all=1")
    assert len(soup(everything).select("[data-table=compare] tbody tr[data-question]")) > 50
    assert staff.get(f"/assessments/{after.id}/compare?with={after.id}").status_code == 404
