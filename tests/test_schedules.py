"""Schedules of 定期確認: business days, intervals by risk and personal data, triggers that bring
the date forward, staff changes and their refusals (対策基準 9.1(3), 9.2(6))."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.reviews import calendar, schedules
from portal.reviews.models import ReviewSchedule
from portal.users.models import Role
from tests.helpers import QueryCounter


@pytest.mark.parametrize(
    ("day", "expected", "why"),
    [
        (date(2026, 11, 20), date(2026, 11, 20), None),  # a Friday
        (date(2026, 11, 21), date(2026, 11, 24), "土曜日"),  # Sat → Sun → 勤労感謝の日 (Mon)
        (date(2026, 11, 23), date(2026, 11, 24), "勤労感謝の日"),
        (date(2026, 12, 29), date(2027, 1, 4), "年末年始の休日"),
        (date(2027, 1, 1), date(2027, 1, 4), "元日"),
        (date(2026, 5, 3), date(2026, 5, 7), "憲法記念日"),  # 3–5 and the 振替休日 on the 6th
        (date(2026, 9, 22), date(2026, 9, 24), "国民の休日"),  # between 敬老の日 and 秋分の日
        (date(2027, 3, 22), date(2027, 3, 23), "振替休日"),  # 春分の日 on a Sunday
    ],
)
def test_due_dates_move_to_the_next_business_day(day, expected, why):
    assert calendar.next_business_day(day) == expected
    assert calendar.closed_because(day) == why


def test_regular_due_counts_the_period_like_the_civil_code_then_shifts():
    # 12 months from 2026-11-20 end on 2027-11-19 (a Friday).
    assert schedules.regular_due(date(2026, 11, 20), 12) == date(2027, 11, 19)
    # 6 months from 2026-06-30 end on 2026-12-29: the offices are closed until 4 January.
    assert schedules.regular_due(date(2026, 6, 30), 6) == date(2027, 1, 4)


def _outcome(db, assessment, staff, *, rating="medium", decision="approve"):
    from portal.evaluations.models import Outcome, Score

    score = Score(
        assessment_id=assessment.id,
        kind="final",
        questionnaire_version="2026.11",
        rules_version="2026.11",
        scored_on=date(2026, 11, 20),
        rating=rating,
        summary="{}",
        created_by_id=staff.id,
    )
    db.add(score)
    db.flush()
    db.add(
        Outcome(
            assessment_id=assessment.id,
            decision=decision,
            score_id=score.id,
            recommended_by_id=staff.id,
        )
    )
    db.commit()


def _decided_outsourcing(db, make, org, *, personal=False, rating="medium"):
    department = make.department(org, "情報政策課")
    staff = make.user(org, email="s@example.jp", roles={Role.STAFF}, departments=[department])
    company = make.company(org, "株式会社委託先")
    engagement = make.engagement(org, department, staff, personal_data=personal)
    assessment = make.assessment(engagement, company, staff, status="decided")
    _outcome(db, assessment, staff, rating=rating)
    return assessment, staff


def test_a_decided_contract_gets_a_schedule_by_risk_and_personal_data(db, make, org, time_machine):
    time_machine.move_to("2026-11-20 10:00 +09:00")
    org.review_interval_months, org.high_risk_review_interval_months = 24, 6
    assessment, staff = _decided_outsourcing(db, make, org, personal=True)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    # Personal data: at least yearly, even though the organisation's default is 24 months.
    assert schedule.interval_months == 12
    assert schedule.due_on == schedule.regular_due_on == date(2027, 11, 19)
    assert schedules.open_for_assessment(db, assessment, staff) is schedule  # only once
    assert schedules.state_of(schedule, date(2027, 9, 1)) == "due_soon"
    assert schedules.state_of(schedule, date(2027, 11, 22)) == "overdue"
    assert db.scalar(
        sa.select(AuditEvent.action).where(AuditEvent.object_type == "review_schedule")
    )


def test_high_risk_is_confirmed_sooner_and_rejected_contracts_not_at_all(db, make, org):
    high, staff = _decided_outsourcing(db, make, org, rating="high")
    schedule = schedules.open_for_assessment(db, high, staff)
    assert schedule.interval_months == org.high_risk_review_interval_months
    other = make.company(org, "不可とされた会社")
    rejected = make.assessment(high.engagement, other, staff, status="decided")
    _outcome(db, rejected, staff, rating="unacceptable", decision="reject")
    assert schedules.open_for_assessment(db, rejected, staff) is None
    engagement = make.engagement(org, high.engagement.department, staff, kind="external_service")
    cloud = make.assessment(engagement, other, staff, status="decided")
    # External-service engagements are confirmed through their 利用申請, never twice.
    assert schedules.open_for_assessment(db, cloud, staff) is None


def test_triggers_bring_the_date_forward_once_and_are_answered(db, make, org):
    assessment, staff = _decided_outsourcing(db, make, org)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    regular = schedule.regular_due_on
    trigger = schedules.add_trigger(
        db,
        schedule,
        "incident",
        key="report:1",
        occurred_on=date(2027, 4, 28),
        detail="不正アクセス",
    )
    # 7 days later is 5 May (こどもの日); the offices open again on 6 May.
    assert trigger.due_on == date(2027, 5, 6)
    assert schedule.due_on == date(2027, 5, 6) and schedule.regular_due_on == regular
    again = schedules.add_trigger(
        db, schedule, "incident", key="report:1", occurred_on=date(2027, 4, 28), detail="同じ"
    )
    assert again is None and len(schedule.triggers) == 1


def test_expiring_certificates_trigger_the_confirmation_on_the_expiry(db, make, org):
    from portal.assessments import store

    assessment, staff = _decided_outsourcing(db, make, org)
    store.save(
        db,
        assessment,
        "certifications.others",
        [{"kind": "iso27001", "number": "IS 123", "expires": "2027-03-31"}],
        staff,
    )
    schedule = schedules.open_for_assessment(db, assessment, staff)
    assert schedules.expiry_triggers(db, schedule, date(2026, 11, 20)) == []  # 131 days ahead
    added = schedules.expiry_triggers(db, schedule, date(2026, 12, 1))
    assert [t.kind for t in added] == ["certificate_expiry"]
    assert schedule.due_on == date(2027, 3, 31)
    assert schedules.expiry_triggers(db, schedule, date(2026, 12, 2)) == []  # idempotent


@pytest.mark.parametrize(
    ("months", "next_due", "message"),
    [
        (0, None, "1か月以上"),
        (-3, None, "1か月以上"),
        (61, None, "60か月以内"),
        (12, date(2026, 11, 1), "過去の日付"),
        (6, date(2028, 1, 1), "より後にはできません"),
    ],
)
def test_bad_intervals_and_dates_are_refused(db, make, org, months, next_due, message):
    assessment, staff = _decided_outsourcing(db, make, org)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    before = (schedule.interval_months, schedule.due_on)
    with pytest.raises(schedules.ScheduleError, match=message):
        schedules.set_interval(
            db,
            schedule,
            staff,
            months=months,
            next_due_on=next_due,
            today=date(2026, 11, 20),
            version=schedule.version,
        )
    assert (schedule.interval_months, schedule.due_on) == before


def test_staff_change_the_interval_and_the_date_moves(db, make, org):
    assessment, staff = _decided_outsourcing(db, make, org)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    schedules.set_interval(
        db,
        schedule,
        staff,
        months=6,
        next_due_on=None,
        today=date(2026, 11, 20),
        version=schedule.version,
    )
    db.commit()
    assert schedule.interval_custom and schedule.interval_months == 6
    assert schedule.due_on == schedules.regular_due(schedule.starts_on, 6)
    schedule.status = "ended"
    db.commit()
    with pytest.raises(schedules.ScheduleError, match="終了した"):
        schedules.set_interval(
            db,
            schedule,
            staff,
            months=3,
            next_due_on=None,
            today=date(2026, 11, 20),
            version=schedule.version,
        )


def test_only_one_subject_per_schedule_is_held_by_the_database(db, make, org):
    assessment, staff = _decided_outsourcing(db, make, org)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    with pytest.raises(sa.exc.IntegrityError):
        db.execute(
            sa.update(ReviewSchedule)
            .where(ReviewSchedule.id == schedule.id)
            .values(assessment_id=None)
        )
        db.flush()
    db.rollback()


def test_a_trigger_after_the_answer_stays_open_for_the_next_confirmation(db, make, org):
    from datetime import timedelta

    from portal.db import utcnow
    from portal.reviews.models import Confirmation

    assessment, staff = _decided_outsourcing(db, make, org)
    schedule = schedules.open_for_assessment(db, assessment, staff)
    early = schedules.add_trigger(
        db, schedule, "incident", key="report:1", occurred_on=date(2027, 1, 5), detail="前"
    )
    confirmation = Confirmation(
        organisation_id=org.id,
        schedule=schedule,
        number=1,
        reason="incident",
        questionnaire_key="periodic",
        questionnaire_version="2026.11",
        period_from=schedule.starts_on,
        period_to=date(2027, 1, 20),
        due_on=date(2027, 2, 26),
        status="open",
    )
    db.add(confirmation)
    db.flush()
    # While the vendor has not answered, a new trigger brings the answer's due date forward.
    schedules.add_trigger(
        db,
        schedule,
        "location_change",
        key="report:2",
        occurred_on=date(2027, 1, 8),
        detail="保存場所",
        due_on=date(2027, 2, 8),
    )
    assert confirmation.due_on == date(2027, 2, 8)
    confirmation.status = "submitted"
    confirmation.submitted_at = utcnow()
    db.flush()
    late = schedules.add_trigger(
        db, schedule, "incident", key="report:3", occurred_on=date(2027, 1, 21), detail="後"
    )
    late.created_at = confirmation.submitted_at + timedelta(seconds=1)
    schedules.confirmed(db, schedule, confirmation, date(2027, 1, 25))
    assert early.confirmation_id == confirmation.id
    assert late.confirmation_id is None  # raised after the answer: not covered by it
    assert schedule.due_on == late.due_on


def test_an_unchanged_expiring_certificate_triggers_again_in_the_next_period(db, make, org):
    from portal.assessments import store

    assessment, staff = _decided_outsourcing(db, make, org)
    store.save(
        db,
        assessment,
        "certifications.others",
        [{"kind": "iso27001", "number": "IS 9", "expires": "2027-03-31"}],
        staff,
    )
    schedule = schedules.open_for_assessment(db, assessment, staff)
    [first] = schedules.expiry_triggers(db, schedule, date(2026, 12, 1))
    # A confirmation of 10 December answered it, the certificate "unchanged" (still expiring).
    schedule.last_confirmed_on = date(2026, 12, 10)
    [again] = schedules.expiry_triggers(db, schedule, date(2026, 12, 11))
    assert again.key != first.key and "ISO/IEC 27001" in again.detail


# ---------------------------------------------------------------------------------------------
# Current answers and certificates of many schedules at once
# ---------------------------------------------------------------------------------------------


def _confirmation(schedule, number, status, sections):
    from portal.reviews.models import Confirmation, ConfirmationSection

    return Confirmation(
        organisation_id=schedule.organisation_id,
        schedule_id=schedule.id,
        number=number,
        reason="scheduled",
        questionnaire_key="confirmation",
        questionnaire_version="1",
        period_from=date(2026, 4, 1),
        period_to=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
        status=status,
        completed_on=date(2027, 3, 1) if status == "completed" else None,
        sections=[
            ConfirmationSection(
                section_key=key, changed=changed, values=json.dumps(values, ensure_ascii=False)
            )
            for key, changed, values in sections
        ],
    )


def _answers(db, assessment, values):
    from portal.assessments.models import Answer

    for key, value in values.items():
        db.add(
            Answer(
                assessment_id=assessment.id,
                question_key=key,
                value=json.dumps(value, ensure_ascii=False),
            )
        )


def _cert(number, expires):
    return [{"kind": "iso27001", "number": number, "expires": expires}]


@pytest.fixture
def subjects(db, make, org):
    """Three contractors — confirmed twice (the second changing what the first changed), never
    answered, with a confirmation still waiting — and a service applied for on an assessment."""
    from portal.approvals.models import ExternalService, UseApplication

    department = make.department(org, "情報政策課")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    company = make.company(org, "株式会社委託先")
    made = []
    for title in ("二度確認した委託", "回答のない委託", "確認待ちの委託"):
        engagement = make.engagement(org, department, staff, title=title)
        assessment = make.assessment(engagement, company, staff, status="decided")
        schedule = ReviewSchedule(
            organisation_id=org.id,
            department_id=department.id,
            vendor_company_id=company.id,
            assessment_id=assessment.id,
            title=title,
            interval_months=12,
            starts_on=date(2026, 4, 1),
            regular_due_on=date(2027, 3, 31),
            due_on=date(2027, 3, 31),
        )
        db.add(schedule)
        db.flush()
        made.append((schedule, assessment))
    (twice, twice_assessment), (bare, _), (waiting, waiting_assessment) = made
    _answers(
        db,
        twice_assessment,
        {
            "certifications.ismap": "none",
            "certifications.others": _cert("IS 1", "2027-01-31"),
            "general.name": "委託先A",
            "data.location": "domestic",
        },
    )
    db.add_all(
        [
            _confirmation(
                twice,
                1,
                "completed",
                [
                    (
                        "certifications",
                        True,
                        {"certifications.others": _cert("IS 1", "2028-01-31")},
                    ),
                    ("general", False, {"general.name": "変更なしのはず"}),
                    ("data", True, {"data.location": "overseas"}),
                ],
            ),
            _confirmation(
                twice,
                2,
                "completed",
                [("certifications", True, {"certifications.others": _cert("IS 1", "2029-01-31")})],
            ),
        ]
    )
    _answers(db, waiting_assessment, {"certifications.others": _cert("IS 3", "2027-05-31")})
    db.add(
        _confirmation(
            waiting,
            1,
            "submitted",  # not yet confirmed: its answers do not count
            [("certifications", True, {"certifications.others": _cert("IS 3", "2030-05-31")})],
        )
    )
    cloud_engagement = make.engagement(
        org, department, staff, title="クラウド", kind="external_service"
    )
    cloud_assessment = make.assessment(cloud_engagement, company, staff, status="decided")
    _answers(db, cloud_assessment, {"certifications.others": _cert("IS 9", "2027-02-28")})
    service = ExternalService(organisation_id=org.id, vendor_company_id=company.id, name="クラウド")
    service.set_rows(
        "certificates",
        [{"kind": "iso27001", "label": "ISO/IEC 27001", "number": "C 7", "expires": "2027-06-30"}],
    )
    service.refresh_derived()
    application = UseApplication(
        organisation_id=org.id,
        department_id=department.id,
        service=service,
        assessment_id=cloud_assessment.id,
        applicant_id=staff.id,
        category="9.2",
        purpose="業務で使うため。",
        business="庁内の事務。",
        network_segment="internet",
        max_confidentiality=2,
        status="approved",
        decision="approve",
    )
    cloud = ReviewSchedule(
        organisation_id=org.id,
        department_id=department.id,
        vendor_company_id=company.id,
        application=application,
        title="クラウド",
        interval_months=12,
        starts_on=date(2026, 4, 1),
        regular_due_on=date(2027, 3, 31),
        due_on=date(2027, 3, 31),
    )
    db.add(cloud)
    db.commit()
    return twice, bare, waiting, cloud


def test_current_values_of_many_schedules_overlay_the_completed_confirmations_in_order(
    app, db, subjects
):
    twice, bare, waiting, cloud = subjects
    expected = {
        twice.id: {
            "certifications.ismap": "none",
            "certifications.others": _cert("IS 1", "2029-01-31"),  # the second confirmation's
            "general.name": "委託先A",  # a section answered "unchanged" changes nothing
            "data.location": "overseas",
        },
        bare.id: {},
        waiting.id: {"certifications.others": _cert("IS 3", "2027-05-31")},
        cloud.id: {"certifications.others": _cert("IS 9", "2027-02-28")},  # its assessment
    }
    everything = db.scalars(sa.select(ReviewSchedule).order_by(ReviewSchedule.id)).all()
    assert everything == list(subjects)
    with QueryCounter(app) as counter:
        assert schedules.current_values_many(db, everything) == expected
    assert counter.count == 2
    for schedule in everything:
        assert schedules.current_values(db, schedule) == expected[schedule.id]
    certifications = schedules.current_values_many(
        db, everything, keys_prefix=schedules.CERTIFICATION_KEYS
    )
    assert certifications == {
        schedule_id: {k: v for k, v in values.items() if k.startswith("certifications.")}
        for schedule_id, values in expected.items()
    }
    assert schedules.current_values_many(db, []) == {}


def test_expiries_of_many_schedules_are_those_of_each(app, db, subjects):
    twice, bare, waiting, cloud = subjects
    db.expire_all()
    loaded = db.scalars(
        sa.select(ReviewSchedule)
        .options(*schedules.DAILY_JOB_LOADS)
        .where(ReviewSchedule.id.in_([s.id for s in subjects]))
    ).all()
    with QueryCounter(app) as counter:
        found = schedules.expiries_many(db, loaded)
    assert counter.count == 2  # the answers and the confirmed changes; the service as loaded
    until = {sid: [(e.kind, e.label, e.until) for e in items] for sid, items in found.items()}
    assert until == {
        twice.id: [("certificate_expiry", "ISO/IEC 27001（JIS Q 27001） IS 1", date(2029, 1, 31))],
        bare.id: [],
        waiting.id: [
            ("certificate_expiry", "ISO/IEC 27001（JIS Q 27001） IS 3", date(2027, 5, 31))
        ],
        # A service's certificates are its record's, not its assessment's answers.
        cloud.id: [("certificate_expiry", "ISO/IEC 27001 C 7", date(2027, 6, 30))],
    }
    assert found == {s.id: schedules.expiries(db, s) for s in loaded}


def test_the_daily_upkeep_keeps_the_contract_end_on_the_engagements_period_end(db, make, org):
    assessment, staff = _decided_outsourcing(db, make, org)
    engagement = assessment.engagement
    engagement.period_end = date(2027, 3, 31)
    db.commit()
    schedule = schedules.open_for_assessment(db, assessment, staff)
    db.commit()
    assert schedule.ending_on == date(2027, 3, 31)
    assert schedules.sync(db, date(2027, 2, 1)).ending_changed == 0
    engagement.period_end = date(2028, 3, 31)  # the contract was extended
    db.commit()
    assert schedules.sync(db, date(2027, 2, 1)).ending_changed == 1
    db.commit()
    db.refresh(schedule)
    assert schedule.ending_on == date(2028, 3, 31)
    # In exit, the recorded end is the exit's own and stays.
    schedule.status, schedule.ending_on = "ending", date(2027, 3, 31)
    db.commit()
    assert schedules.sync(db, date(2027, 2, 1)).ending_changed == 0
    db.refresh(schedule)
    assert schedule.ending_on == date(2027, 3, 31)
