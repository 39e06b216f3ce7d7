"""Constant query counts: every main page sends as many SQL statements on a small world as on
one with several times more of everything it lists (no N+1).

The world is built with the factories and the real services: 案件 with assessments answered,
submitted, scored and reviewed, 利用申請 decided into the register, 定期確認 schedules with
confirmations answered and completed, findings, vendor reports, contractor audits — and the
audit trail all of that writes. ``grow`` adds units (2 for the small world, 8 for the larger);
each unit brings its own department, staff, approver, service manager, auditor, vendor company
and contacts, so that a relation loaded row by row shows as a growing count instead of hiding
behind one shared, already loaded object. The focal objects (an engagement, the assessment
under review, the vendor's questionnaire, a schedule, a confirmation, an application) grow
with every unit too.

The counts must be equal, page by page: no page needs an allowance, the paged lists (findings
at 50, the audit trail at 100) cost the same on either side of a page boundary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals import service as approvals
from portal.approvals.models import UseApplication
from portal.assessments import store
from portal.assessments.answers import validate
from portal.assessments.demo import sample_answer
from portal.assessments.models import Answer, Assessment
from portal.contractor_audits import service as contractor_audits
from portal.evaluations import service as evaluations
from portal.evaluations.models import Outcome, Score
from portal.evidence.models import EvidenceFile
from portal.lifecycle import checklists
from portal.lifecycle import service as lifecycle
from portal.permissions import Role
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_questions
from portal.reviews import confirmations, findings, reports, schedules
from portal.reviews.models import Confirmation, ReviewFile, ReviewSchedule
from portal.web import JST
from tests.helpers import Browser, QueryCounter, soup
from tests.test_confirmations import answer_all
from tests.test_register import Entry, attach_contract, certificate, ismap, make_entry
from tests.test_review_web import submitted

TODAY = date(2026, 11, 20)
NOW = datetime.combine(TODAY, time(10), JST)
SMALL, LARGER = 2, 8


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel("2026-11-20 10:00 +0900", tick=False):
        yield


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------


@dataclass
class World:
    people: dict  # the readers (see ``pages``), the shared departments and the vendor's company
    engagement: object = None  # a 案件 addressed to many companies (its page lists them)
    review: Assessment | None = None  # the assessment under review
    answering: Assessment | None = None  # the vendor's questionnaire
    schedule: ReviewSchedule | None = None  # a contract with a confirmation per unit
    confirmation: Confirmation | None = None  # a confirmation with findings and files
    application: UseApplication | None = None  # a 約款型 entry with terms, checks, handovers
    units: int = 0


@pytest.fixture
def world(make, org) -> World:
    policy, general = make.department(org, "情報政策課"), make.department(org, "総務課")
    company = make.company(org, name="株式会社委託先")
    people = {
        "org": org,
        "policy": policy,
        "department": policy,
        "general": general,
        "staff": make.user(org, roles={Role.STAFF}, departments=[policy], name="担当 一郎"),
        "approver": make.user(org, roles={Role.APPROVER}, departments=[general], name="許可 三郎"),
        "manager": make.user(
            org, roles={Role.STAFF, Role.SERVICE_MANAGER}, departments=[policy], name="管理 四郎"
        ),
        "ciso": make.user(org, roles={Role.CISO}, name="統括 五郎"),
        "company": company,
        "vendor": make.user(org, company=company, name="事業者 七郎"),
    }
    return World(people=people)


def unit_people(db, make, w: World, n: int) -> dict:
    """The people and company of unit ``n`` (the keys ``submitted`` and ``make_entry`` read);
    the reading staff member joins the unit's department."""
    p = w.people
    org = p["org"]
    department = make.department(org, f"第{n}課")
    p["staff"].departments.append(department)
    db.commit()
    company = make.company(org, name=f"委託先{n:02d}株式会社")
    return {
        "org": org,
        "department": department,
        "policy": department,  # make_entry's default department key
        "staff": make.user(
            org, roles={Role.STAFF}, departments=[department, p["policy"]], name=f"職員 {n}"
        ),
        "approver": make.user(org, roles={Role.APPROVER}, name=f"許可 {n}"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name=f"管理 {n}",
        ),
        "auditor": make.user(
            org, roles={Role.AUDITOR}, departments=[p["general"]], name=f"監査 {n}"
        ),
        "company": company,
        "vendor": make.user(org, company=company, name=f"事業者 {n}"),
        # Another contact of the reading vendor's company (it answers that company's part).
        "contact": make.user(org, company=p["company"], name=f"連絡先 {n}"),
    }


def _decide(db, assessment: Assessment, staff) -> None:
    """Decided 条件付き可 on its automatic score (the review itself is measured elsewhere)."""
    score = db.scalar(sa.select(Score).where(Score.assessment_id == assessment.id))
    db.add(
        Outcome(
            assessment_id=assessment.id,
            decision="conditional",
            conditions="年1回、対策の実施状況を報告させること。",
            reasoning="主要な要件を満たしている。",
            score_id=score.id,
            recommended_by_id=staff.id,
        )
    )
    assessment.status = "decided"
    db.flush()


def _confirm_once(db, schedule: ReviewSchedule, staff, vendor) -> Confirmation:
    """Open, answer (every section 変更なし), submit and complete a confirmation."""
    confirmation = confirmations.open_confirmation(db, schedule, staff, TODAY)
    answer_all(db, confirmation, vendor)
    confirmations.submit(db, confirmation, vendor, confirmation.version)
    confirmations.complete(
        db,
        confirmation,
        staff,
        method="document",
        result="報告書により対策の実施を確認した。",
        today=TODAY,
        version=confirmation.version,
    )
    return confirmation


def _finding(db, actor, source, n: int, owner) -> None:
    """A finding, its severity by ``n``; every third is closed by the one who raised it."""
    row = findings.raise_finding(
        db,
        actor,
        source=source,
        data=findings.FindingInput(
            severity=("low", "medium", "high")[n % 3],
            title=f"指摘{n}",
            description="記録の一部が提出されていない。",
            corrective_action="記録を提出させる。",
            owner_id=owner.id,
            due_on=TODAY + timedelta(days=10 * (n % 4)),
        ),
        today=TODAY,
    )
    if n % 3 == 0:
        findings.close(db, row, actor, note="提出を受けた。", today=TODAY, version=row.version)


def _report(db, vendor, schedule: ReviewSchedule, n: int) -> None:
    reports.submit_report(
        db,
        vendor,
        schedule,
        reports.ReportInput(
            kind=("incident", "subcontractor_change", "location_change")[n % 3],
            occurred_at=NOW - timedelta(days=n % 5 + 1),
            summary=f"報告{n}",
            information_affected="業務手順書",
        ),
        NOW.astimezone(UTC),
    )


def _evidence(db, assessment: Assessment, vendor, n: int) -> None:
    """One more clean file (the row only) for every evidence question of ``assessment``."""
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    for k, question in enumerate(q for s in questionnaire.sections for q in s.questions):
        if question.type == "evidence":
            db.add(
                EvidenceFile(
                    organisation_id=assessment.organisation_id,
                    assessment_id=assessment.id,
                    vendor_company_id=assessment.vendor_company_id,
                    question_key=question.key,
                    original_name=f"証明書{n}.pdf",
                    stored_name=f"{assessment.id:016x}{n:016x}{k:032x}",
                    content_type="application/pdf",
                    size=1,
                    sha256="0" * 64,
                    scan_status="clean",
                    uploaded_by_id=vendor.id,
                )
            )


def _review_file(db, confirmation: Confirmation, vendor, n: int) -> None:
    db.add(
        ReviewFile(
            organisation_id=confirmation.organisation_id,
            confirmation_id=confirmation.id,
            purpose="evidence",
            original_name=f"証跡{n}.pdf",
            stored_name=f"{confirmation.id:032x}{n:032x}",
            content_type="application/pdf",
            size=1,
            sha256="0" * 64,
            scan_status="clean",
            uploaded_by_id=vendor.id,
            uploaded_at=NOW.astimezone(UTC),
        )
    )


def _focal(db, make, w: World) -> None:
    """The objects whose own pages are measured; every unit adds to each of them."""
    p = w.people
    w.engagement = make.engagement(
        p["org"], p["policy"], p["staff"], title="複数の事業者を比較する案件"
    )
    w.review = submitted(db, make, p["org"], p, title="審査中のクラウドサービス")
    w.answering = make.assessment(
        make.engagement(
            p["org"],
            p["policy"],
            p["staff"],
            title="回答中のクラウドサービス",
            kind="external_service",
            confidentiality=2,
            personal_data=True,
        ),
        p["company"],
        p["staff"],
    )
    contract = submitted(db, make, p["org"], p, title="定期確認を重ねる委託", kind="outsourcing")
    _decide(db, contract, p["staff"])
    w.schedule = schedules.open_for_assessment(db, contract, p["staff"])
    w.confirmation = _confirm_once(db, w.schedule, p["staff"], p["vendor"])
    w.application = make_entry(
        db,
        make,
        p["org"],
        p,
        Entry(
            "規約を記録する約款型サービス",
            track="9.3",
            decided_on=TODAY - timedelta(days=30),
            service={"tables": certificate("2027-01-01")},
        ),
    )
    db.commit()


def grow(db, make, w: World, units: int) -> None:
    """Add units until there are ``units``. Every unit holds every variant a list shows (each
    state, kind and link), so that the small world already loads every relation the larger
    one does: only the number of rows differs."""
    if w.units == 0:
        _focal(db, make, w)
    for n in range(w.units, units):
        u = unit_people(db, make, w, n)
        _contract(db, make, w, u, n, u["company"], u["vendor"])
        _contract(db, make, w, u, n, w.people["company"], u["contact"])
        _applications(db, make, w, u, n)
        _compared(db, make, w, u, n)
        _review_more(db, w, u, n)
        _confirm_once(db, w.schedule, u["staff"], u["contact"])
        _report(db, u["contact"], w.schedule, n)
        for k in range(3):
            _finding(db, u["staff"], w.confirmation, 3 * n + k, u["staff"])
            _review_file(db, w.confirmation, u["contact"], 3 * n + k)
        _evidence(db, w.review, u["contact"], n)
        _evidence(db, w.answering, u["contact"], n)
        _application_more(db, w, u, n)
        db.commit()
    _answer_share(db, w.answering, w.people["vendor"], units)
    db.commit()
    w.units = units


def _contract(db, make, w: World, u: dict, n: int, company, vendor) -> None:
    """A 業務委託 of ``company`` decided, with its schedule, a completed confirmation with
    findings (open and closed), the next one open, vendor reports of every kind and contractor
    audits (planned, and reported with a finding)."""
    people = {**u, "company": company, "vendor": vendor}
    contract = submitted(db, make, u["org"], people, title=f"委託{n:02d}", kind="outsourcing")
    _decide(db, contract, u["staff"])
    schedule = schedules.open_for_assessment(db, contract, u["staff"])
    done = _confirm_once(db, schedule, u["staff"], vendor)
    for k in range(3):
        _finding(db, u["staff"], done, 3 * n + k, u["staff"] if k else w.people["staff"])
    confirmations.open_confirmation(db, schedule, u["staff"], TODAY)
    for k in range(3):
        _report(db, vendor, schedule, k)
    for performed in (False, True):
        audit_row = contractor_audits.plan(
            db,
            u["auditor"],
            contractor_audits.AuditPlan(
                vendor_company_id=company.id,
                schedule_id=schedule.id,
                department_id=None,
                subcontractor="",
                title=f"監査{n}",
                scope="アクセスログ",
                method="remote",
                auditor_id=u["auditor"].id,
                planned_on=TODAY,
            ),
            TODAY,
        )
        if performed:
            contractor_audits.record_performed(
                db,
                audit_row,
                u["auditor"],
                performed_on=TODAY,
                evidence="入退室記録",
                today=TODAY,
                version=audit_row.version,
            )
            contractor_audits.record_report(
                db,
                audit_row,
                u["auditor"],
                report="おおむね適切。",
                reported_on=TODAY,
                today=TODAY,
                version=audit_row.version,
            )
            _finding(db, u["auditor"], audit_row, n, u["staff"])


def _applications(db, make, w: World, u: dict, n: int) -> None:
    """Register entries (9.2 approved with its contract, 9.3 approved with conditions) and
    applications waiting, returned and rejected."""
    entry = make_entry(
        db,
        make,
        u["org"],
        u,
        Entry(
            f"サービス{n:02d}",
            service={**ismap(date(2026, 3, 31)), "tables": certificate("2027-01-01")},
        ),
    )
    attach_contract(db, entry, u["staff"])
    for plan in ("標準プラン", "自治体向けプラン"):
        approvals.add_plan(db, entry.service, u["staff"], plan, "")
    make_entry(  # managed by the reader of /my-services
        db,
        make,
        u["org"],
        {**u, "manager": w.people["manager"]},
        Entry(
            f"約款型サービス{n:02d}",
            track="9.3",
            decision="conditional",
            service={"tables": certificate("2027-06-01")},
        ),
    )
    for decision in (None, "return", "reject"):
        make_entry(
            db,
            make,
            u["org"],
            u,
            Entry(
                f"申請{n:02d}{decision}",
                track="9.3" if decision else "9.2",
                decision=decision,
            ),
        )


def _compared(db, make, w: World, u: dict, n: int) -> None:
    """The focal engagement is addressed to another company in each state; the decided one
    has its 特記事項 and contract (numbered apart from the applications')."""
    for status in ("draft", "submitted", "decided"):
        other = make.company(u["org"], name=f"比較先{n:02d}{status}株式会社")
        compared = make.assessment(w.engagement, other, u["staff"], status=status)
        db.add(Answer(assessment_id=compared.id, question_key="company.hq_country", value='"JP"'))
        if status == "decided":
            attach_contract(
                db,
                SimpleNamespace(
                    organisation_id=compared.organisation_id,
                    assessment_id=compared.id,
                    id=1000 + compared.id,
                ),
                u["staff"],
            )


def _review_more(db, w: World, u: dict, n: int) -> None:
    """The unit's staff member reviews another share of the answers (every section), with
    comments to the vendor, internal notes and an override."""
    card = evaluations.card_for(db, w.review, TODAY, with_reviews=False)
    for index, key in enumerate(list(card.questions)[n::LARGER]):
        entry = card.questions[key]
        override = index == 0 and entry.rule_points is not None and entry.rule_points > 0
        evaluations.save_review(
            db,
            w.review,
            u["staff"],
            key,
            evaluations.ReviewInput(
                checked=True,
                manual_points=entry.rule_points - 1 if override else None,
                dismissed=set(),
                override_reason="根拠資料が古いため。" if override else "",
                vendor_comment="最新の資料を添付してください。" if index % 2 else "",
                internal_note="電話で確認済み。" if index % 3 == 0 else "",
                version=0,
            ),
            TODAY,
        )


def _answer_share(db, assessment: Assessment, vendor, units: int) -> None:
    """The vendor answers ``units`` of every ``LARGER`` questions, in every section: a share
    on the small world, all of it (well over 100 answers) on the larger one."""
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    facts = assessment.engagement.facts
    answered = store.values(db, assessment)
    questions = visible_questions(questionnaire, facts, answered)
    index = 0
    while index < len(questions):  # in order: follow-ups appear as their triggers are answered
        question = questions[index]
        value = sample_answer(question, assessment.vendor_company)
        if index % LARGER < units and question.key not in answered and value is not None:
            answered[question.key] = validate(question, value)
            store.save(db, assessment, question.key, answered[question.key], vendor)
            questions = visible_questions(questionnaire, facts, answered)
        index += 1


def _application_more(db, w: World, u: dict, n: int) -> None:
    """The focal 約款型 entry is handed over to the unit's service manager, who records a new
    terms version (confirmed again) and operation checks."""
    application = w.application
    approvals.hand_over(
        db,
        application,
        w.people["approver"],
        user_id=u["manager"].id,
        on=TODAY - timedelta(days=29 - n),
        note="人事異動による引継ぎ",
        version=application.version,
        today=TODAY,
    )
    version = approvals.record_terms(
        db,
        application,
        u["manager"],
        approvals.TermsInput(
            url="https://example.com/terms", content=f"第{n + 2}版".encode(), source="規約.pdf"
        ),
    )
    approvals.confirm_terms(db, application, u["manager"], version.id)
    items = [
        item
        for item in checklists.latest().phase("operation").items_for(application.category)
        if not item.requires_file
    ]
    for item in items[n % len(items) :][:2]:
        lifecycle.record(
            db,
            application,
            u["manager"],
            phase="operation",
            item_key=item.key,
            result="done",
            checked_on=TODAY,
            evidence="点検記録",
            note="",
            today=TODAY,
        )


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    browser.login(user)
    assert browser.get("/").status_code == 200
    return browser


def pages(w: World) -> dict[str, list[str]]:
    """Who reads which pages (reader → URLs)."""
    review = f"/assessments/{w.review.id}/review"
    answering = f"/assessments/{w.answering.id}"
    return {
        "staff": [
            "/",
            "/engagements/",
            "/engagements/?track=9.1&q=委託",
            f"/engagements/{w.engagement.id}",
            review,
            f"{review}/contract",
            f"{answering}/view",
            "/register",
            f"/applications/{w.application.id}",
            f"/applications/{w.application.id}/checks",
            "/applications",
            "/services",
            "/reviews/dashboard",
            "/reviews",
            f"/reviews/{w.schedule.id}",
            f"/confirmations/{w.confirmation.id}",
            "/findings",
            "/reviews/expiring?kind=certificate",
            "/reviews/incidents",
            "/vendors",
            f"/vendors/{w.people['company'].id}",
        ],
        "ciso": [
            "/",
            "/reviews/dashboard",
            "/reviews?state=all",
            "/findings?status=all",
            "/contractor-audits",
            "/audit/",
            "/audit/?action=finding.raised",
        ],
        "manager": ["/", "/my-services"],
        "approver": ["/"],
        "vendor": [
            "/",
            f"{answering}/sections/company",
            f"{answering}/sections/contract",
            "/vendor/confirmations",
            "/vendor/reports",
        ],
    }


def steady(w: World) -> set[str]:
    """The pages that show as many rows (table rows, list items) on both worlds: figures (home
    pages, the dashboard), a questionnaire section (its questions; the answers, reviews and
    files in them grow) and a full page of the audit trail. Every other page lists more."""
    review = f"/assessments/{w.review.id}/review"
    return {
        "staff /",
        "manager /",
        "approver /",
        "staff /reviews/dashboard",
        "ciso /reviews/dashboard",
        f"staff {review}",
        f"staff {review}/contract",
        f"vendor /assessments/{w.answering.id}/sections/company",
        "ciso /audit/",
    }


def autosave(browser: Browser, w: World, value: str, token: str):
    return browser.client.post(
        f"/assessments/{w.answering.id}/autosave",
        data={"csrf_token": token, "question": "company.hq_country", "a:company.hq_country": value},
    )


def measure(app, browsers: dict[str, Browser], w: World) -> tuple[dict, dict]:
    """The statements each page sends, and the rows (table rows, list items) it shows."""
    statements, rows = {}, {}
    for who, urls in pages(w).items():
        for url in urls:
            with QueryCounter(app) as counter:
                response = browsers[who].get(url)
            assert response.status_code == 200, (who, url, response.status_code)
            statements[f"{who} {url}"] = counter.statements
            rows[f"{who} {url}"] = len(soup(response).select("main tr, main li"))
    vendor = browsers["vendor"]
    token = soup(vendor.get("/")).select_one("input[name=csrf_token]")["value"]
    assert autosave(vendor, w, "US", token).status_code == 200  # a change on both sides
    with QueryCounter(app) as counter:
        response = autosave(vendor, w, "JP", token)
    assert response.get_json()["status"] == "saved"
    statements["vendor autosave"] = counter.statements
    return statements, rows


def repeated(small: list[str], larger: list[str]) -> list[str]:
    """The statements the larger world sends more often: where the N+1 is."""
    extra = Counter(larger) - Counter(small)
    return [f"{n}× {statement[:160]}" for statement, n in extra.most_common(3)]


def test_the_number_of_queries_does_not_grow_with_the_data(app, db, make, world):
    grow(db, make, world, SMALL)
    browsers = {who: signed_in(app, world.people[who]) for who in pages(world)}
    measure(app, browsers, world)  # the first requests fill the caches (questionnaires, rules)
    small, small_rows = measure(app, browsers, world)

    grow(db, make, world, LARGER)
    assert len(store.answers(db, world.answering)) >= 100
    larger, larger_rows = measure(app, browsers, world)

    assert {page for page, rows in larger_rows.items() if rows <= small_rows[page]} == steady(world)
    grown = {
        page: (len(small[page]), len(larger[page]), repeated(small[page], larger[page]))
        for page in small
        if len(larger[page]) != len(small[page])
    }
    assert grown == {}, grown
