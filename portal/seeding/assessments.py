"""The 案件 of the large dataset and everything on their assessments: the engagement and the
assessment in its state, the vendor's answers (from the templates, the company's own facts where
the questionnaire prefills them) with their first revision, the automatic score on submission,
the reviewer's checks, the final score and the outcome, confirmed by the approver when decided."""

from __future__ import annotations

from datetime import timedelta
from itertools import chain, repeat

import sqlalchemy as sa

from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.engagements.models import Engagement
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.questionnaires import loader
from portal.scoring import rules
from portal.seeding import answers as templates
from portal.seeding import registers
from portal.seeding.people import DEPARTMENTS
from portal.seeding.plan import Load
from portal.web import JST

RETURN_COMMENT = "根拠となる資料の名称と版数を追記してください。"


def engagements(load: Load) -> None:
    """Every 案件 and its assessment, as staff created them and the vendor handed in."""
    writer, rng = load.writer, load.rng
    questionnaire = loader.latest("assessment")
    engagement_rows, assessment_rows = [], []
    for plan in load.plans:
        profile = plan.template.profile
        department_name = DEPARTMENTS[plan.department]
        staff = load.staff[plan.department]
        amount = rng.randrange(50, 5000) * 10_000 if profile.kind == "outsourcing" else None
        engagement_rows.append(
            {
                "id": plan.engagement_id,
                "organisation_id": load.org_id,
                "department_id": load.departments[plan.department],
                "created_by_id": staff[0],
                "kind": profile.kind,
                "title": plan.title,
                "purpose": f"{department_name}の{profile.stem.removesuffix('業務委託')}に係る業務。",
                "period_start": plan.period_start,
                "period_end": plan.period_end,
                "contract_amount": amount,
                "information": profile.information,
                "confidentiality": profile.confidentiality,
                "integrity": profile.integrity,
                "availability": profile.availability,
                "personal_data": profile.personal,
                "specific_personal_data": profile.specific,
                "sensitive_personal_data": profile.sensitive,
                "network_segment": profile.segment,
                "version": 1,
                "created_at": plan.created,
            }
        )
        assessment_rows.append(
            {
                "id": plan.id,
                "organisation_id": load.org_id,
                "engagement_id": plan.engagement_id,
                "vendor_company_id": load.company_ids[plan.company],
                "questionnaire_key": questionnaire.key,
                "questionnaire_version": questionnaire.version,
                "status": plan.state,
                "created_by_id": staff[0],
                "submitted_at": plan.submitted,
                "version": 1,
                "created_at": plan.created,
            }
        )
        load.event(
            plan.created,
            "engagement.created",
            staff,
            "engagement",
            plan.engagement_id,
            title=plan.title,
            track=profile.track,
        )
        load.event(
            plan.created + timedelta(minutes=5),
            "assessment.created",
            staff,
            "assessment",
            plan.id,
            engagement_id=plan.engagement_id,
            vendor_company_id=load.company_ids[plan.company],
            questionnaire=f"{questionnaire.key} {questionnaire.version}",
            contact=load.companies[plan.company].email,
        )
        if plan.submitted:
            load.event(
                plan.submitted,
                "assessment.submit",
                load.vendor(plan),
                "assessment",
                plan.id,
                **{"from": "draft", "to": "submitted"},
            )
    writer.insert_dicts(Engagement.__table__, engagement_rows)
    writer.insert_dicts(Assessment.__table__, assessment_rows)


ANSWER_COLUMNS = (
    "assessment_id",
    "question_key",
    "value",
    "revision",
    "updated_at",
    "updated_by_id",
    "returned",
    "return_comment",
)


def answers(load: Load) -> None:
    """Two million rows: values are the templates' JSON, converted once per assessment."""
    writer = load.writer
    timestamp = writer.converter(Answer.__table__, "updated_at")
    prefilled = [
        {attr: templates.encode(getattr(company, attr)) for attr in templates.PREFILL_ATTRIBUTES}
        for company in load.companies
    ]

    def per_assessment():
        """One iterator of rows per assessment: tuples are built by ``zip`` in C."""
        for plan in load.plans:
            count = plan.answered
            if not count:
                continue
            template = plan.template
            keys, values = template.keys[:count], list(template.encoded[:count])
            own = prefilled[plan.company]
            for index, attribute in template.prefill_at:
                if index < count:
                    values[index] = own[attribute]
            at, contact = timestamp(plan.answered_at), load.contacts[plan.company]
            if plan.state == "returned":  # the first answer was returned for revision
                yield [(plan.id, keys[0], values[0], 1, at, contact, True, RETURN_COMMENT)]
                keys, values = keys[1:], values[1:]
            yield zip(
                repeat(plan.id),
                keys,
                values,
                repeat(1),
                repeat(at),
                repeat(contact),
                repeat(False),
                repeat(None),
            )

    rows = chain.from_iterable(per_assessment())
    writer.insert(Answer.__table__, ANSWER_COLUMNS, rows, converted=True)
    first, last = load.plans[0].id, load.plans[-1].id
    # Every answer's first revision, as ``store.save`` writes it, in one statement.
    writer.insert_from(
        AnswerRevision.__table__,
        ["answer_id", "revision", "value", "saved_at", "saved_by_id"],
        sa.select(
            Answer.id, Answer.revision, Answer.value, Answer.updated_at, Answer.updated_by_id
        ).where(Answer.assessment_id.between(first, last)),
    )
    for plan in load.plans:
        if plan.state == "returned":
            vendor_key = plan.template.rows[0][0]
            load.event(
                plan.returned,
                "assessment.return",
                load.staff[plan.department],
                "assessment",
                plan.id,
                comments={vendor_key: RETURN_COMMENT},
                **{"from": "submitted", "to": "returned"},
            )


def scores(load: Load) -> None:
    """The automatic score on submission, the reviewer's checks, the final score and the
    outcome (confirmed by the approver when decided)."""
    writer = load.writer
    ruleset = rules.latest("assessment")
    scored = [p for p in load.plans if p.submitted]
    finished = [p for p in scored if p.recommended]
    automatic = writer.ids(Score.__table__, len(scored))
    final = writer.ids(Score.__table__, len(finished))
    outcome_ids = writer.ids(Outcome.__table__, len(finished))
    score_rows, outcomes, reviews = [], [], []
    for score_id, plan in zip(automatic, scored, strict=True):
        vendor = load.vendor(plan)
        score_rows.append(
            _score(load, score_id, plan, "automatic", vendor, plan.submitted, ruleset)
        )
    for score_id, outcome_id, plan in zip(final, outcome_ids, finished, strict=True):
        staff = load.staff[plan.department]
        card = plan.template.card
        score_rows.append(_score(load, score_id, plan, "final", staff, plan.recommended, ruleset))
        decision = plan.template.decision
        outcomes.append(
            {
                "id": outcome_id,
                "assessment_id": plan.id,
                "decision": decision,
                "conditions": registers.CONDITIONS if decision == "conditional" else "",
                "reasoning": registers.REASONS[decision],
                "score_id": score_id,
                "recommended_by_id": staff[0],
                "recommended_at": plan.recommended,
                "confirmed_by_id": load.approver[0] if plan.confirmed else None,
                "confirmed_at": plan.confirmed,
                "version": 1,
            }
        )
        plan.decision = decision
        # Questions the reviewer checked that have no answer (evidence questions).
        answered = plan.template.answered_keys
        reviews += [
            {
                "assessment_id": plan.id,
                "question_key": key,
                "checked": True,
                "dismissed_rules": "[]",
                "updated_by_id": staff[0],
                "updated_at": plan.recommended,
                "version": 1,
            }
            for key in plan.template.review_keys
            if key not in answered
        ]
        load.event(
            plan.recommended,
            "assessment.recommend",
            staff,
            "assessment",
            plan.id,
            decision=decision,
            rating=card.rating,
            score_id=score_id,
            **{"from": "submitted", "to": "reviewed"},
        )
        if plan.confirmed:
            load.event(
                plan.confirmed,
                "assessment.confirm",
                load.approver,
                "assessment",
                plan.id,
                comment="確認しました。",
                decision=decision,
                **{"from": "reviewed", "to": "decided"},
            )
    writer.insert_dicts(Score.__table__, score_rows)
    writer.insert_dicts(Outcome.__table__, outcomes)
    # Every answer of a finished review was checked by whoever recommended the decision.
    writer.insert_from(
        AnswerReview.__table__,
        ["assessment_id", "question_key", "checked", "dismissed_rules"]
        + ["updated_by_id", "updated_at", "version"],
        sa.select(
            Answer.assessment_id,
            Answer.question_key,
            sa.true(),
            sa.literal("[]"),
            Outcome.recommended_by_id,
            Outcome.recommended_at,
            sa.literal(1),
        )
        .join(Outcome, Outcome.assessment_id == Answer.assessment_id)
        .where(Outcome.id.between(outcome_ids.start, outcome_ids.stop - 1)),
    )
    writer.insert_dicts(AnswerReview.__table__, reviews)


def _score(load, score_id, plan, kind, actor, at, ruleset) -> dict:
    card = plan.template.card
    load.event(
        at,
        "assessment.scored",
        actor,
        "assessment",
        plan.id,
        blockers=plan.template.blockers,
        kind=kind,
        percent=card.percent,
        rating=card.rating,
        rules_version=ruleset.version,
        score_id=score_id,
    )
    return {
        "id": score_id,
        "assessment_id": plan.id,
        "kind": kind,
        "questionnaire_version": card.questionnaire_version,
        "rules_version": card.rules_version,
        "scored_on": at.astimezone(JST).date(),
        "rating": card.rating,
        "percent": card.percent,
        "summary": plan.template.summary,
        "created_by_id": actor[0],
        "created_at": at,
    }
