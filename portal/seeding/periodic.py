"""The 定期確認 of the large dataset: a schedule for every decided 業務委託 contract and every
approved service, due by the real calendar (``reviews.schedules``: the interval by risk and
personal data, business days) — some overdue —, the first confirmation of those whose period
has passed, and findings with corrective actions on some of them."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

from portal.reviews import questionnaire as confirmation_bank
from portal.reviews.models import Confirmation, Finding, ReviewSchedule
from portal.reviews.schedules import default_interval, regular_due
from portal.seeding.plan import Load, Planned, day_of, moment

FINDINGS = (
    ("high", "アクセスログの保存期間の不足", "ログの保存期間を1年以上に延長し、設定を報告する。"),
    ("medium", "従事者名簿の更新漏れ", "従事者名簿を更新し、変更の都度提出する。"),
    ("low", "研修記録の一部欠落", "研修の受講記録を整備し、次回の確認時に提示する。"),
)
METHODS = ("document", "document", "remote", "onsite", "third_party")
# The organisation's intervals (``people.organisation``): 12 months, 6 for high risk.
INTERVALS = SimpleNamespace(review_interval_months=12, high_risk_review_interval_months=6)
CONFIRMED_IN_TIME = 0.75  # the others are overdue
WITH_FINDING = 0.3


def build(load: Load, subjects: list[tuple[Planned, dict | None]]):
    """A schedule per subject: due at the end of its interval from the decision, or from its
    first confirmation where that period has passed (three in four were confirmed in time, the
    others are overdue); findings on three in ten confirmations."""
    writer, rng, today = load.writer, load.rng, load.today
    periodic = confirmation_bank.latest()
    section_keys: dict = {}
    ids = writer.ids(ReviewSchedule.__table__, len(subjects))
    schedules, confirmations, sections, findings = [], [], [], []
    for schedule_id, (plan, app) in zip(ids, subjects, strict=True):
        profile, template = plan.template.profile, plan.template
        vendor = load.vendor(plan)
        rating = template.card.rating
        personal = profile.personal or profile.specific or profile.sensitive
        months = default_interval(INTERVALS, rating, personal)
        opened_at = app["decided_at"] if app else plan.confirmed
        starts = day_of(opened_at)
        due = first_due = regular_due(starts, months)
        confirmed_on = None
        if first_due < today and rng.random() < CONFIRMED_IN_TIME:
            confirmed_on = max(
                starts + timedelta(days=1), first_due - timedelta(rng.randint(0, 20))
            )
            due = regular_due(confirmed_on, months)
            if profile not in section_keys:
                section_keys[profile] = [
                    s.key for s, _q in confirmation_bank.sections_for(periodic, profile.facts)
                ]
            confirmation_id = writer.ids(Confirmation.__table__, 1)[0]
            confirmation = _confirmation(
                load, plan, schedule_id, confirmation_id, starts, confirmed_on, first_due, due
            )
            confirmations.append(confirmation)
            sections += [
                {
                    "confirmation_id": confirmation_id,
                    "section_key": key,
                    "changed": False,
                    "values": "{}",
                    "note": "",
                    "updated_by_id": vendor[0],
                    "updated_at": confirmation["submitted_at"],
                }
                for key in section_keys[profile]
            ]
            if rng.random() < WITH_FINDING:
                findings.append(_finding(load, plan, confirmation_id, confirmed_on))
        if app:
            app["next_review_on"] = due
        schedules.append(
            {
                "id": schedule_id,
                "organisation_id": load.org_id,
                "department_id": load.departments[plan.department],
                "vendor_company_id": load.company_ids[plan.company],
                "assessment_id": None if app else plan.id,
                "application_id": app["id"] if app else None,
                "title": plan.service_name if app else plan.title,
                "risk_rating": rating,
                "personal_data": personal,
                "interval_months": months,
                "interval_custom": False,
                "starts_on": starts,
                "last_confirmed_on": confirmed_on,
                "regular_due_on": due,
                "due_on": due,
                "status": "active",
                "ending_on": None if app else plan.period_end,
                "ended_on": None,
                "end_reason": "",
                "exit_override_reason": "",
                "version": 1,
                "created_at": opened_at,
            }
        )
        load.event(
            opened_at,
            "schedule.opened",
            load.approver,
            "review_schedule",
            schedule_id,
            due_on=first_due,
            months=months,
        )
    return schedules, confirmations, sections, findings


def _confirmation(load, plan, schedule_id, confirmation_id, starts, done, was_due, next_due):
    rng, periodic = load.rng, confirmation_bank.latest()
    staff, vendor = load.staff[plan.department], load.vendor(plan)
    opened_on = max(starts, done - timedelta(days=rng.randint(20, 40)))
    opened, completed = moment(rng, opened_on), moment(rng, done)
    submitted = moment(rng, max(opened_on, done - timedelta(days=rng.randint(1, 10))))
    if submitted >= completed:
        submitted = opened + (completed - opened) / 2
    method = rng.choice(METHODS)
    load.event(
        opened,
        "confirmation.opened",
        staff,
        "confirmation",
        confirmation_id,
        due_on=was_due,
        number=1,
        reason="scheduled",
        schedule_id=schedule_id,
    )
    load.event(
        submitted,
        "confirmation.submitted",
        vendor,
        "confirmation",
        confirmation_id,
        number=1,
        schedule_id=schedule_id,
    )
    load.event(
        completed,
        "confirmation.completed",
        staff,
        "confirmation",
        confirmation_id,
        changed=[],
        method=method,
        next_due_on=next_due,
        number=1,
        schedule_id=schedule_id,
    )
    return {
        "id": confirmation_id,
        "organisation_id": load.org_id,
        "schedule_id": schedule_id,
        "number": 1,
        "reason": "scheduled",
        "questionnaire_key": periodic.key,
        "questionnaire_version": periodic.version,
        "period_from": starts,
        "period_to": opened_on,
        "due_on": was_due,
        "status": "completed",
        "method": method,
        "baseline": plan.template.baseline_json,
        "opened_by_id": staff[0],
        "answered_by_id": vendor[0],
        "submitted_at": submitted,
        "return_comment": "",
        "checked_by_id": staff[0],
        "completed_on": done,
        "result": "各項目に変更がないことを、提出された資料により確認した。",
        "next_due_on": next_due,
        "version": 1,
        "created_at": opened,
    }


def _finding(load: Load, plan: Planned, confirmation_id: int, raised_on: date) -> dict:
    rng, today = load.rng, load.today
    staff = load.staff[plan.department]
    severity, title, action = rng.choice(FINDINGS)
    finding_id = load.writer.ids(Finding.__table__, 1)[0]
    raised = moment(rng, raised_on)
    closed_on = raised_on + timedelta(days=rng.randint(10, 90))
    closed = rng.random() < 0.4 and closed_on < today
    load.event(
        raised,
        "finding.raised",
        staff,
        "finding",
        finding_id,
        severity=severity,
        title=title,
        corrective_action=action,
        source=f"confirmation:{confirmation_id}",
        owner_id=staff[0],
    )
    if closed:
        load.event(
            moment(rng, closed_on),
            "finding.closed",
            staff,
            "finding",
            finding_id,
            note="是正を確認した。",
        )
    return {
        "id": finding_id,
        "organisation_id": load.org_id,
        "department_id": load.departments[plan.department],
        "confirmation_id": confirmation_id,
        "audit_id": None,
        "severity": severity,
        "title": title,
        "description": "定期確認で判明した。",
        "corrective_action": action,
        "owner_id": staff[0],
        "due_on": raised_on + timedelta(days=rng.randint(30, 180)),
        "status": "closed" if closed else "open",
        "closed_on": closed_on if closed else None,
        "closed_by_id": staff[0] if closed else None,
        "closing_note": "是正を確認した。" if closed else "",
        "created_by_id": staff[0],
        "version": 1,
        "created_at": raised,
    }
