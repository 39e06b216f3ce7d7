"""``seed-demo --size large`` at a small scale: the same code loads counts proportional to the
full dataset, answers valid for their questions, valid 法人番号, consistent schedules, register
entries and decisions, an audit chain that verifies, and pages that render for staff."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals.models import (
    ACTIVE_STATES,
    REGISTER_STATES,
    ExternalService,
    ManagerAssignment,
    TermsVersion,
    UseApplication,
)
from portal.assessments.answers import validate
from portal.assessments.models import STATUSES, Answer, AnswerRevision, Assessment
from portal.audit.models import AuditChain, AuditEvent
from portal.db import writing
from portal.engagements.models import Engagement
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.orgs.models import Organisation
from portal.permissions import Role
from portal.questionnaires import loader
from portal.reviews.models import Confirmation, Finding, ReviewSchedule
from portal.scoring import engine, rules
from portal.seeding import large
from portal.seeding.answers import PROFILES
from portal.users.models import User
from portal.vendors.corporate_number import is_valid
from portal.vendors.models import OrganisationVendor, VendorCompany
from tests.helpers import Browser, soup

SCALE = 0.005  # 25 companies, 100 案件, about 10,000 answers
PASSWORD = "large-demo-password-2026"
TODAY = date(2026, 11, 20)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel("2026-11-20 10:00 +0900", tick=False):
        yield


@pytest.fixture
def seeded(app):
    with app.app_context(), writing() as session:
        result = large.seed_large(session, password=PASSWORD, scale=SCALE)
    assert result.created
    return result


@pytest.fixture
def org_id(db, seeded) -> int:
    return db.scalar(
        sa.select(Organisation.id).where(Organisation.name == large.LARGE_ORGANISATION)
    )


def count(db, model, *where) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_counts_are_proportional_to_the_full_dataset(db, seeded, org_id):
    counts = seeded.counts
    assert counts["事業者"] == round(large.COMPANIES * SCALE)
    assert counts["案件"] == counts["評価"] == round(large.ASSESSMENTS * SCALE)
    # About a hundred answers per assessment: two million at full scale.
    assert 90 * counts["評価"] <= counts["回答"] <= 115 * counts["評価"]
    assert counts["回答の履歴"] == counts["回答"]
    # What was reported is what is there.
    in_org = Assessment.organisation_id == org_id
    assert count(db, Assessment, in_org) == counts["評価"]
    assert count(db, Engagement, Engagement.organisation_id == org_id) == counts["案件"]
    answers = sa.select(Assessment.id).where(in_org)
    assert count(db, Answer, Answer.assessment_id.in_(answers)) == counts["回答"]
    assert (
        count(db, OrganisationVendor, OrganisationVendor.organisation_id == org_id)
        == (counts["事業者"])
    )
    assert (
        count(db, UseApplication, UseApplication.organisation_id == org_id) == (counts["利用申請"])
    )
    assert (
        count(db, ReviewSchedule, ReviewSchedule.organisation_id == org_id)
        == (counts["定期確認の予定"])
    )
    assert count(db, Finding, Finding.organisation_id == org_id) == counts["指摘事項"]
    assert count(db, AuditEvent, AuditEvent.organisation_id == org_id) == counts["監査ログ"]
    assert all(seconds >= 0 for seconds in seeded.phases.values())


def test_every_state_department_and_track_occurs(db, seeded, org_id):
    states = Counter(
        db.scalars(sa.select(Assessment.status).where(Assessment.organisation_id == org_id))
    )
    assert set(states) == set(STATUSES)
    departments = db.scalar(
        sa.select(sa.func.count(sa.distinct(Engagement.department_id))).where(
            Engagement.organisation_id == org_id
        )
    )
    assert departments >= 10
    kinds = set(
        db.execute(
            sa.select(Engagement.kind, Engagement.confidentiality).where(
                Engagement.organisation_id == org_id
            )
        )
    )
    assert {"outsourcing", "external_service"} == {kind for kind, _c in kinds}
    assert ("external_service", 1) in kinds  # 約款型 (9.3)


def test_every_answer_is_valid_for_its_question(db, seeded, org_id):
    questionnaire = loader.latest("assessment")
    rows = db.execute(
        sa.select(Answer.question_key, Answer.value, Answer.revision, Answer.id)
        .join(Assessment, Assessment.id == Answer.assessment_id)
        .where(Assessment.organisation_id == org_id)
    ).all()
    assert rows
    for key, value, revision, _id in rows:
        question = questionnaire.question(key)
        assert question is not None, key
        decoded = json.loads(value)
        assert validate(question, decoded) == decoded, key
        assert revision == 1
    # Each answer's history holds its first revision with the same value.
    history = dict(
        db.execute(
            sa.select(AnswerRevision.answer_id, AnswerRevision.value).where(
                AnswerRevision.answer_id.in_([row.id for row in rows])
            )
        ).all()
    )
    assert history == {row.id: row.value for row in rows}


def test_prefilled_answers_are_the_company_s_own_and_numbers_are_valid(db, seeded, org_id):
    companies = db.scalars(
        sa.select(VendorCompany)
        .join(OrganisationVendor, OrganisationVendor.vendor_company_id == VendorCompany.id)
        .where(OrganisationVendor.organisation_id == org_id)
    ).all()
    assert len(companies) == seeded.counts["事業者"]
    assert all(is_valid(c.corporate_number) for c in companies)
    assert len({c.corporate_number for c in companies}) == len(companies)
    legal_names = db.execute(
        sa.select(VendorCompany.name, Answer.value)
        .join(Assessment, Assessment.vendor_company_id == VendorCompany.id)
        .join(Answer, Answer.assessment_id == Assessment.id)
        .where(Assessment.organisation_id == org_id, Answer.question_key == "company.legal_name")
    ).all()
    assert legal_names
    assert all(json.loads(value) == name for name, value in legal_names)
    # Every company has its vendor contact, who may see this organisation's requests.
    contacts = db.scalars(
        sa.select(User).where(User.vendor_company_id.in_([c.id for c in companies]))
    ).all()
    assert len(contacts) == len(companies)
    assert all(u.vendor_organisation_ids == {org_id} for u in contacts)


def test_decisions_reviews_and_scores_follow_the_state(db, seeded, org_id):
    questionnaire = loader.latest("assessment")
    ruleset = rules.latest("assessment")
    assessments = db.scalars(
        sa.select(Assessment).where(Assessment.organisation_id == org_id)
    ).all()
    for assessment in assessments:
        outcome = db.scalar(sa.select(Outcome).where(Outcome.assessment_id == assessment.id))
        kinds = sorted(
            db.scalars(sa.select(Score.kind).where(Score.assessment_id == assessment.id))
        )
        if assessment.status == "draft":
            assert assessment.submitted_at is None and not kinds and outcome is None
            continue
        assert assessment.submitted_at is not None
        if assessment.status in ("submitted", "returned"):
            assert kinds == ["automatic"] and outcome is None
            continue
        assert kinds == ["automatic", "final"]
        assert (outcome.confirmed_by_id is not None) == (assessment.status == "decided")
        assert outcome.confirmed_by_id != outcome.recommended_by_id
        # The stored decision is what the rules allow, and every question was checked.
        values = {
            key: json.loads(value)
            for key, value in db.execute(
                sa.select(Answer.question_key, Answer.value).where(
                    Answer.assessment_id == assessment.id
                )
            )
        }
        card = engine.score(questionnaire, values, assessment.engagement.facts, ruleset, TODAY)
        assert outcome.decision == card.suggested_decision
        checked = set(
            db.scalars(
                sa.select(AnswerReview.question_key).where(
                    AnswerReview.assessment_id == assessment.id, AnswerReview.checked
                )
            )
        )
        assert set(card.questions) <= checked
    returned = [a for a in assessments if a.status == "returned"]
    assert returned
    for assessment in returned:
        assert count(db, Answer, Answer.assessment_id == assessment.id, Answer.returned) == 1


def test_register_entries_and_schedules_are_consistent(db, seeded, org_id):
    applications = db.scalars(
        sa.select(UseApplication).where(UseApplication.organisation_id == org_id)
    ).all()
    assert {a.status for a in applications} & set(REGISTER_STATES)
    for application in applications:
        service = db.get(ExternalService, application.service_id)
        assessment = application.assessment
        assert service.organisation_id == org_id
        assert service.vendor_company_id == assessment.vendor_company_id
        assert application.category == assessment.engagement.track
        assert application.department_id == assessment.engagement.department_id
        schedule = db.scalar(
            sa.select(ReviewSchedule).where(ReviewSchedule.application_id == application.id)
        )
        if application.status in (*ACTIVE_STATES, "suspended"):
            assert assessment.status == "decided"
            assert application.decided_by_id not in (None, application.applicant_id)
            assert application.current_manager is not None
            assert schedule is not None and application.next_review_on == schedule.due_on
        else:
            assert schedule is None and not application.managers
        if application.category == "9.3":
            assert application.max_confidentiality == 1
            assert count(db, TermsVersion, TermsVersion.application_id == application.id) == 1
    schedules = db.scalars(
        sa.select(ReviewSchedule).where(ReviewSchedule.organisation_id == org_id)
    ).all()
    contracts = [s for s in schedules if s.assessment_id]
    assert contracts and len(contracts) < len(schedules)
    for schedule in contracts:
        assert schedule.assessment.status == "decided"
        assert schedule.assessment.engagement.kind == "outsourcing"
    for schedule in schedules:
        assert schedule.due_on <= schedule.regular_due_on
        assert schedule.starts_on <= TODAY
        if schedule.last_confirmed_on:
            (confirmation,) = schedule.confirmations
            assert confirmation.status == "completed"
            assert confirmation.completed_on == schedule.last_confirmed_on
            assert confirmation.checked_by_id != confirmation.answered_by_id
            assert confirmation.sections
    # Due dates spread over the year ahead, some already overdue.
    assert any(s.due_on < TODAY for s in schedules)
    assert any(s.due_on > TODAY for s in schedules)
    assert seeded.counts["期限超過の定期確認"] == sum(s.due_on < TODAY for s in schedules)
    for finding in db.scalars(sa.select(Finding).where(Finding.organisation_id == org_id)):
        confirmation = db.get(Confirmation, finding.confirmation_id)
        assert confirmation.organisation_id == org_id
        assert (finding.closed_on is not None) == (finding.status == "closed")
    assert count(db, ManagerAssignment) >= 1


def test_rows_added_afterwards_get_fresh_ids(make, seeded):
    # PostgreSQL: the sequences were moved past the ids the load took.
    org = make.org("後から登録する村")
    department = make.department(org, "総務課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org)
    engagement = make.engagement(org, department, staff)
    assessment = make.assessment(engagement, company, staff)
    assert assessment.id > round(large.ASSESSMENTS * SCALE)


def test_foreign_keys_hold(db, seeded):
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("PostgreSQL checks every foreign key as the rows go in")
    assert db.execute(sa.text("PRAGMA foreign_key_check")).all() == []


def test_the_audit_chain_verifies(runner, db, seeded):
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    head = db.get(AuditChain, 1)
    assert head.last_seq == count(db, AuditEvent)


def test_a_second_run_adds_nothing(app, db, seeded):
    before = count(db, Answer)
    with app.app_context(), writing() as session:
        again = large.seed_large(session, password=PASSWORD, scale=SCALE)
    assert not again.created
    assert again.counts["回答"] == seeded.counts["回答"]
    assert count(db, Answer) == before
    lines = large.report(again, PASSWORD, again.seconds, again.seconds)
    assert "登録済み" in lines[0]


def test_seed_demo_size_large_loads_both_and_prints_time_and_counts(runner, monkeypatch):
    monkeypatch.setattr(large, "COMPANIES", 10)  # the command at a tiny scale
    monkeypatch.setattr(large, "ASSESSMENTS", 40)
    result = runner.invoke(args=["seed-demo", "--password", PASSWORD, "--size", "large"])
    assert result.exit_code == 0, result.output
    assert "デモデータを登録しました。" in result.output  # the small demo first
    assert "大規模デモデータを登録しました（大規模デモ市）。所要時間" in result.output
    assert "  評価：40 件" in result.output.splitlines()
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    wrong = runner.invoke(args=["seed-demo", "--size", "huge"])
    assert wrong.exit_code == 2


def test_the_report_names_time_counts_and_accounts(seeded):
    lines = large.report(seeded, PASSWORD, 12.3, 20.0)
    assert "12.3 秒" in lines[0] and "20.0 秒" in lines[0]
    assert any(line.strip().startswith("回答：") for line in lines)
    assert any("staff01" in line for line in lines)


def staff_browser(app, db, email: str) -> Browser:
    user = db.scalar(sa.select(User).where(User.email == email))
    browser = Browser(app.test_client())
    response = browser.login(user, PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return browser


def test_the_main_pages_render_for_staff(app, db, seeded, org_id):
    staff = db.scalar(sa.select(User).where(User.email == f"staff01@{large.DOMAIN}"))
    (department,) = staff.departments
    browser = staff_browser(app, db, staff.email)

    home = browser.get("/")
    assert home.status_code == 200
    overdue = count(
        db,
        ReviewSchedule,
        ReviewSchedule.department_id == department.id,
        ReviewSchedule.due_on < TODAY,
    )
    figure = soup(home).select_one("[data-figure=overdue]")
    assert figure is not None and figure.get_text(strip=True) == f"{overdue} 件"

    listing = browser.get("/engagements/?track=9.2")
    assert listing.status_code == 200
    rows = soup(listing).select("[data-engagement-id]")
    expected = count(
        db,
        Engagement,
        Engagement.department_id == department.id,
        Engagement.kind == "external_service",
        Engagement.confidentiality >= 2,
    )
    assert len(rows) == expected
    assert all(r.select_one("[data-field=track]").get_text(strip=True) == "9.2" for r in rows)

    register = browser.get("/register")
    assert register.status_code == 200
    entries = count(
        db,
        UseApplication,
        UseApplication.organisation_id == org_id,
        UseApplication.status.in_(REGISTER_STATES),
    )
    assert soup(register).select_one("[data-count=total]").get_text(strip=True) == str(entries)

    reviews = browser.get("/reviews")
    assert reviews.status_code == 200
    mine = count(db, ReviewSchedule, ReviewSchedule.department_id == department.id)
    assert soup(reviews).select_one("[data-count=total]").get_text(strip=True) == str(mine)
    assert browser.get("/reviews/dashboard").status_code == 200


def test_profiles_cover_every_track():
    assert {p.track for p in PROFILES} == {"9.1", "9.2", "9.3"}
