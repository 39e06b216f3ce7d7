"""What the large load knows while it runs: the ids taken, the people, and one ``Planned`` per
assessment (its template, state and the moments of each step) drawn before anything is written."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from portal.assessments.models import Assessment
from portal.engagements.models import Engagement
from portal.scoring.ismap import add_months_period_end
from portal.seeding.answers import PROFILES, Template
from portal.seeding.bulk import AuditTrail, BulkWriter
from portal.seeding.names import Company
from portal.web import JST

FOUNDED_DAYS_AGO = 800  # the oldest 案件 is at most 720 days old (``AGES``)
Actor = tuple[int, str]  # (user id, e-mail): what an audit event names


def moment(rng: random.Random, day: date) -> datetime:
    """A moment of office hours (JST, 9:00–18:00) on ``day``, in UTC."""
    start = datetime(day.year, day.month, day.day, 9, tzinfo=JST)
    return (start + timedelta(microseconds=int(rng.random() * OFFICE_HOURS_US))).astimezone(UTC)


OFFICE_HOURS_US = 9 * 3600 * 1_000_000


def day_of(moment_: datetime) -> date:
    """The date in Japan of a moment."""
    return moment_.astimezone(JST).date()


@dataclass(slots=True)
class Planned:
    """One 案件 with its assessment."""

    id: int  # the assessment's
    engagement_id: int
    number: int
    template: Template
    state: str
    department: int  # index into the departments
    company: int  # index into the companies
    created: datetime
    answered: int  # how many of the template's answers are given
    answered_at: datetime | None = None
    submitted: datetime | None = None
    returned: datetime | None = None
    recommended: datetime | None = None
    confirmed: datetime | None = None
    decision: str | None = None

    @property
    def title(self) -> str:
        return f"{self.template.profile.stem} No.{self.number:05d}"

    @property
    def service_name(self) -> str:
        return f"{self.template.profile.stem.removesuffix('の利用')} No.{self.number:05d}"

    @property
    def period_start(self) -> date:
        return self.created.astimezone(JST).date() + timedelta(days=30)

    @property
    def period_end(self) -> date:
        return add_months_period_end(self.period_start, 36)


@dataclass
class Load:
    writer: BulkWriter
    trail: AuditTrail
    rng: random.Random
    today: date
    now: datetime
    password_hash: str
    org_id: int = 0
    departments: list[int] = field(default_factory=list)
    staff: list[Actor] = field(default_factory=list)  # one per department, in order
    managers: list[Actor] = field(default_factory=list)
    approver: Actor = (0, "")
    companies: list[Company] = field(default_factory=list)
    company_ids: list[int] = field(default_factory=list)
    contacts: list[int] = field(default_factory=list)  # each company's vendor user
    templates: list[Template] = field(default_factory=list)
    plans: list[Planned] = field(default_factory=list)

    @property
    def founded(self) -> datetime:
        """When the organisation, its people and its vendors were registered: before the
        oldest 案件 of the story."""
        start = datetime.combine(self.today - timedelta(days=FOUNDED_DAYS_AGO), time(9), JST)
        return start.astimezone(UTC)

    def vendor(self, plan: Planned) -> Actor:
        return self.contacts[plan.company], self.companies[plan.company].email

    def event(
        self,
        at: datetime,
        action: str,
        actor: Actor | None,
        object_type: str,
        object_id: int,
        **details: Any,
    ) -> None:
        """An audit event of this organisation; without an actor it is the seed's own."""
        self.trail.add(
            at,
            action,
            actor=actor,
            actor_label=None if actor else "seed-demo",
            organisation_id=self.org_id,
            object_type=object_type,
            object_id=object_id,
            details=details,
        )


STATES = (("draft", 10), ("submitted", 30), ("returned", 12), ("reviewed", 8), ("decided", 40))
VARIANT_WEIGHTS = (45, 25, 20, 10)
# Days before today each kind of assessment was created (the later steps follow within weeks).
AGES = {
    "draft": (1, 60),
    "submitted": (16, 120),
    "returned": (21, 120),
    "reviewed": (45, 240),
    "decided": (90, 720),
}


def draw(load: Load, count: int) -> None:
    """Who, what and when for every assessment, drawn before anything is written."""
    rng, today = load.rng, load.today
    profiles, departments = PROFILES, len(load.departments)
    by_profile = {}
    for template in load.templates:
        by_profile.setdefault(template.profile, []).append(template)
    profile_weights = [p.weight for p in profiles]
    states, state_weights = zip(*STATES, strict=True)
    companies = len(load.companies)
    ids = load.writer.ids(Assessment.__table__, count)
    engagement_ids = load.writer.ids(Engagement.__table__, count)
    for index, (assessment_id, engagement_id) in enumerate(zip(ids, engagement_ids, strict=True)):
        profile = rng.choices(profiles, profile_weights)[0]
        template = rng.choices(by_profile[profile], VARIANT_WEIGHTS)[0]
        state = rng.choices(states, state_weights)[0]
        # Every company is asked at least once; larger companies more often.
        company = index if index < companies else int(companies * rng.random() ** 1.5)
        low, high = AGES[state]
        created = today - timedelta(days=rng.randint(low, high))
        plan = Planned(
            id=assessment_id,
            engagement_id=engagement_id,
            number=index + 1,
            template=template,
            state=state,
            department=rng.randrange(departments),
            company=company,
            created=moment(rng, created),
            answered=len(template.rows),
        )
        if state == "draft":
            share = 0.0 if rng.random() < 0.05 else rng.uniform(0.5, 1.0)
            plan.answered = int(share * len(template.rows))
            saved = plan.created + timedelta(hours=rng.uniform(1, 48))
            plan.answered_at = min(saved, load.now - timedelta(minutes=1))
        else:
            day = created + timedelta(days=rng.randint(7, 14))
            plan.submitted = plan.answered_at = moment(rng, day)
        if state == "returned":
            plan.returned = moment(rng, day + timedelta(days=rng.randint(1, 5)))
        if state in ("reviewed", "decided"):
            day += timedelta(days=rng.randint(5, 20))
            plan.recommended = moment(rng, day)
        if state == "decided":
            plan.confirmed = moment(rng, day + timedelta(days=rng.randint(1, 7)))
        load.plans.append(plan)
