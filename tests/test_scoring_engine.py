"""The scoring function driven through every rule of the shipped rule set.

Each scenario starts from a "good" answer set for an engagement (every visible question answered
so that no blocker, condition or finding fires), changes one or two answers and states the exact
rule ids that fire and the points of the questions concerned. A coverage test checks that the
scenarios reach every rule in ``questionnaires/rules/assessment.toml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from portal.assessments.answers import progress, validate
from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, visible_questions
from portal.scoring import engine, rules
from portal.scoring.engine import Expiry, ManualReview, ScoreCard
from portal.scoring.ismap import valid_until

TODAY = date(2026, 6, 1)
QUESTIONNAIRE = loader.latest("assessment")
RULES = rules.latest("assessment")
MISSING = object()  # in a change set: remove the answer

FACTS = {
    "9.1": EngagementFacts("9.1", "outsourcing", 2, 2, 2, segment="lgwan"),
    "9.1 personal": EngagementFacts("9.1", "outsourcing", 2, 2, 2, True, segment="lgwan"),
    "9.1 specific": EngagementFacts("9.1", "outsourcing", 2, 2, 2, True, True, segment="lgwan"),
    "9.1 mynumber": EngagementFacts("9.1", "outsourcing", 2, 2, 2, True, segment="mynumber"),
    "9.1 conf3": EngagementFacts("9.1", "outsourcing", 3, 2, 2, True, segment="lgwan"),
    "9.2": EngagementFacts("9.2", "external_service", 2, 2, 2, segment="lgwan"),
    "9.2 personal": EngagementFacts("9.2", "external_service", 2, 2, 2, True, segment="lgwan"),
    "9.2 specific": EngagementFacts(
        "9.2", "external_service", 2, 2, 2, True, True, segment="lgwan"
    ),
    "9.2 mynumber": EngagementFacts("9.2", "external_service", 2, 2, 2, segment="mynumber"),
    "9.2 conf3": EngagementFacts("9.2", "external_service", 3, 2, 2, segment="internet"),
    "9.3": EngagementFacts("9.3", "external_service", 1, 1, 1, segment="internet"),
    "9.3 personal": EngagementFacts("9.3", "external_service", 1, 1, 1, True, segment="internet"),
}

ISO_ROW = {
    "kind": "iso27001",
    "number": "IS 123456",
    "body": "審査登録機関",
    "scope": "クラウドサービスの開発及び運用",
    "issued": "2024-04-01",
    "expires": "2027-03-31",
}
EXPIRED_PMARK = {**ISO_ROW, "kind": "pmark", "number": "P-1", "expires": "2025-12-31"}
JP_LOCATIONS = [
    {"purpose": "primary", "country": "JP", "region": "東京"},
    {"purpose": "backup", "country": "JP", "region": "大阪"},
    {"purpose": "logs", "country": "JP", "region": "東京"},
    {"purpose": "support", "country": "JP", "region": "東京"},
]
SUBCONTRACTOR = {
    "name": "株式会社運用サービス",
    "identifier": "",
    "country": "JP",
    "role": "サーバの運用監視",
    "wholly_owned": "no",
}

# Good answers to every question that is not free text. Free text, URLs and other text get a
# plain answer by type (see good_value); evidence is answered by uploads, not here.
GOOD: dict[str, Any] = {
    "company.corporate_number": "7000012050002",
    "company.hq_country": "JP",
    "company.foreign_capital_ratio": 0,
    "company.security_policy": "yes",
    "company.bcp": "yes",
    "company.past_incidents": "no",
    "company.sanctions": "no",
    "company.antisocial_forces": "yes",
    "certifications.ismap": "ismap",
    "certifications.ismap_registered_on": "2023-03-01",
    # valid until 2027-01-31: more than 120 days after TODAY
    "certifications.ismap_audit_period_end": "2025-09-30",
    "certifications.ismap_renewal_pending": "no",
    "certifications.ismap_scope_covers": "yes",
    "certifications.others": [ISO_ROW],
    "certifications.scope_covers_service": "yes",
    "certifications.external_audit": "yes",
    "certifications.vulnerability_assessment": "yes",
    "contract.policy_compliance": "yes",
    "contract.pledge": "yes",
    "contract.report_changes": "yes",
    "contract.availability": 99.9,
    "contract.rto": 4,
    "contract.rpo": 1,
    "contract.access_methods": ["onsite", "vpn"],
    "contract.access_logs": "yes",
    "contract.access_log_retention": 24,
    "contract.training_frequency": "quarterly",
    "contract.training_records": "yes",
    "contract.no_secondary_use": "yes",
    "contract.no_ai_training": "yes",
    "contract.confidentiality": "yes",
    "contract.staff_nda": "yes",
    "contract.subcontract": "no",
    "contract.subcontractors": [SUBCONTRACTOR],
    "contract.subcontract_prior_approval": "yes",
    "contract.subcontract_same_obligations": "yes",
    "contract.deletion_certificate": "yes",
    "contract.deletion_deadline_days": 30,
    "contract.report_interval": "monthly",
    "contract.emergency_notice_hours": 2,
    "contract.emergency_channels": ["phone", "email", "hotline"],
    "contract.audit_acceptance": ["onsite", "remote", "third_party_report"],
    "contract.publication": "yes",
    "external.misuse_prevention": "yes",
    "external.data_locations": JP_LOCATIONS,
    "external.region_pinning": "yes",
    "external.incident_notice_hours": 1,
    "external.forensic_support": "yes",
    "external.compliance_check_methods": ["reports", "audit"],
    "external.audit_acceptance": "yes",
    "external.sla_availability": 99.95,
    "external.governing_law": "japan",
    "external.jurisdiction": "japan",
    "external.subprocessor_approval": "yes",
    "external.standards": ["iso27001", "iso27017", "ismap"],
    "lifecycle.encryption": "cryptrec",
    "lifecycle.key_management": "customer",
    "lifecycle.admin_mfa": "yes",
    "lifecycle.log_retention": 24,
    "lifecycle.log_export": "yes",
    "lifecycle.account_deletion": "yes",
    "terms.no_unauthorised_use": "yes",
    "terms.confidentiality": "yes",
    "terms.unilateral_change": "no",
    "terms.change_notice_days": 60,
    "terms.backups": "yes",
    "terms.confidentiality_1_only": "yes",
    "personal.handling_role": "handles",
    "personal.specific_safeguards": "yes",
    "personal.leak_notice_hours": 3,
    "personal.annual_inspection": "yes",
}
LEFT_EMPTY = {"personal.main_foreign_country"}  # optional: empty means "Japan only"
TEXT_TYPES = {"text": "回答例", "long_text": "回答例です。詳細は別紙のとおりです。"}


def good_value(question) -> Any:
    if question.key in GOOD:
        return GOOD[question.key]
    if question.type in TEXT_TYPES:
        return TEXT_TYPES[question.type]
    if question.type == "url":
        return "https://example.jp/terms"
    if question.type == "evidence":
        return None
    raise KeyError(f"no good answer for {question.key} ({question.type})")


def answers_for(facts: EngagementFacts, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The changes, and a good answer to every other question that becomes visible.

    A change may answer a hidden question (a stale answer the engine must ignore) or be MISSING
    (the question stays unanswered)."""
    changes = changes or {}
    answers = {k: v for k, v in changes.items() if v is not MISSING}
    while True:
        added = False
        for question in visible_questions(QUESTIONNAIRE, facts, answers):
            if question.key in answers or question.key in changes or question.key in LEFT_EMPTY:
                continue
            value = good_value(question)
            if value is not None:
                answers[question.key] = value
                added = True
        if not added:
            return answers


def score(
    facts: str,
    changes: dict[str, Any] | None = None,
    *,
    reviews: dict[str, ManualReview] | None = None,
    today: date = TODAY,
    ruleset: rules.RuleSet = RULES,
) -> ScoreCard:
    return engine.score(
        QUESTIONNAIRE,
        answers_for(FACTS[facts], changes),
        FACTS[facts],
        ruleset,
        today,
        reviews=reviews,
    )


def fired(card: ScoreCard, kind: str) -> set[str]:
    return {r.rule.id for r in card.outcomes(kind)}


COMMON_REVIEWS = {
    "company.ownership.provided",
    "company.officers.provided",
    "company.staff_nationality.provided",
}


def base_reviews(facts: str) -> set[str]:
    """Reviews that fire on good answers: what only a person can judge."""
    track = FACTS[facts].track
    extra = {"9.2": {"law.foreign_disclosure.review"}, "9.3": {"terms.review"}}
    return COMMON_REVIEWS | extra.get(track, set())


# ---------------------------------------------------------------------------------------------
# The baselines
# ---------------------------------------------------------------------------------------------

BASELINES = [name for name in FACTS if name != "9.3 personal"]


@pytest.mark.parametrize("facts", BASELINES)
def test_the_good_answers_are_valid_and_complete(facts):
    answers = answers_for(FACTS[facts])
    shown = visible_questions(QUESTIONNAIRE, FACTS[facts], answers)
    for question in shown:
        if question.key in answers:
            assert validate(question, answers[question.key]) == answers[question.key], question.key
    assert progress(shown, answers, {}).missing == []


@pytest.mark.parametrize("facts", BASELINES)
def test_good_answers_fire_no_blocker_condition_or_finding(facts):
    card = score(facts)
    assert fired(card, "blocker") == set()
    assert fired(card, "condition") == set()
    assert fired(card, "finding") == set()
    assert fired(card, "review") == base_reviews(facts)
    assert card.ismap.status == "valid"
    # every points rule that applies awards its maximum
    pointed = [r for q in card.questions.values() for r in q.results if r.kind == "points"]
    assert pointed
    assert [r.rule.id for r in pointed if r.points != r.rule.max_points] == []
    assert card.earned == card.possible > 0
    assert card.percent == 100
    assert card.rating == "low"
    assert card.rating_label == "低"
    assert card.suggested_decision == "approve"


# ---------------------------------------------------------------------------------------------
# One answer changed: the exact rule ids that fire, and the points of the question
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    facts: str
    changes: dict[str, Any]
    blockers: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()
    findings: frozenset[str] = frozenset()
    reviews: frozenset[str] | None = None  # None: the baseline's
    points: dict[str, int | None] = field(default_factory=dict)  # question → earned
    hidden: frozenset[str] = frozenset()  # questions that must not be on the card


def _ids(value: str | set[str] | tuple = ()) -> frozenset[str]:
    return frozenset({value} if isinstance(value, str) else value)


def case(
    name: str,
    facts: str,
    changes: dict[str, Any],
    *,
    blockers: str | set[str] = (),
    conditions: str | set[str] = (),
    findings: str | set[str] = (),
    more_reviews: str | set[str] = (),
    less_reviews: str | set[str] = (),
    earns: int | None | object = MISSING,
    points: dict[str, int | None] | None = None,
    hidden: str | set[str] = (),
) -> Case:
    """``earns``: the points of the first changed question; ``more_reviews`` / ``less_reviews``:
    added to / taken from the baseline's reviews."""
    points = dict(points or {})
    if earns is not MISSING:
        points[next(iter(changes))] = earns
    reviews = None  # the baseline's
    if more_reviews or less_reviews:
        reviews = base_reviews(facts) - _ids(less_reviews) | _ids(more_reviews)
    return Case(
        name,
        facts,
        changes,
        _ids(blockers),
        _ids(conditions),
        _ids(findings),
        None if reviews is None else frozenset(reviews),
        points,
        _ids(hidden),
    )


def row(base: dict, **cells) -> list[dict]:
    return [{**base, **cells}]


def located(purpose: str, country: str) -> list[dict]:
    return [
        {"purpose": "primary", "country": "JP", "region": "東京"},
        {"purpose": purpose, "country": country, "region": "—"},
    ]


ABROAD = located("backup", "US")
LOGS_ABROAD = located("logs", "SG")
SUPPORT_ABROAD = located("support", "IN")
SUB = {"contract.subcontract": "yes"}

# fmt: off
CASES = [
    # --- track by classification ------------------------------------------------------------
    case("9.3 with personal data: a blocker without a question", "9.3 personal", {},
         blockers="track.terms_with_personal_data"),
    case("9.2 with personal data is no such blocker", "9.2 personal", {}),
    case("9.3 not limited to 機密性1", "9.3", {"terms.confidentiality_1_only": "no"},
         blockers="terms.confidentiality_1_only.refused", earns=0),
    # --- company ----------------------------------------------------------------------------
    case("security policy partly", "9.1", {"company.security_policy": "partly"}, earns=2),
    case("no BCP", "9.1", {"company.bcp": "no"}, earns=0),
    case("BCP partly", "9.1", {"company.bcp": "partly"}, earns=1),
    case("past incidents", "9.1", {"company.past_incidents": "yes"},
         more_reviews="company.past_incidents.review"),
    case("sanctions", "9.2", {"company.sanctions": "yes"}, more_reviews="company.sanctions.review"),
    case("antisocial forces pledge refused", "9.3", {"company.antisocial_forces": "no"},
         blockers="company.antisocial_forces.refused"),
    case("ownership missing", "9.1", {"company.ownership": MISSING},
         less_reviews="company.ownership.provided", more_reviews="company.ownership.missing"),
    case("ownership blank", "9.2", {"company.ownership": ""},
         less_reviews="company.ownership.provided", more_reviews="company.ownership.missing"),
    case("officers missing", "9.1", {"company.officers": MISSING},
         less_reviews="company.officers.provided", more_reviews="company.officers.missing"),
    case("staff nationality missing", "9.3", {"company.staff_nationality": MISSING},
         less_reviews="company.staff_nationality.provided",
         more_reviews="company.staff_nationality.missing"),
    case("foreign capital", "9.2", {"company.foreign_capital_ratio": 35},
         more_reviews="company.foreign_capital.review"),
    # --- ISMAP (valid until 1年4か月 after the day following the audit period) ----------------
    case("ISMAP expired (valid until 2026-04-30)", "9.2",
         {"certifications.ismap_audit_period_end": "2024-12-31"},
         findings="ismap.expired", conditions="ismap.other_assurance",
         points={"certifications.ismap": 0, "certifications.ismap_scope_covers": 10}),
    case("ISMAP expired but renewal pending counts as valid", "9.2",
         {"certifications.ismap_audit_period_end": "2024-12-31",
          "certifications.ismap_renewal_pending": "yes"},
         points={"certifications.ismap": 10}),
    case("ISMAP expiring within 120 days (2026-07-31)", "9.2",
         {"certifications.ismap_audit_period_end": "2025-03-31"},
         findings="ismap.expiring", points={"certifications.ismap": 10}),
    case("ISMAP expired on an outsourcing engagement: no ISMAP points outside 9.2", "9.1",
         {"certifications.ismap_audit_period_end": "2024-12-31"},
         findings="ismap.expired", points={"certifications.ismap": None}),
    case("ISMAP without the end of the audit period", "9.2",
         {"certifications.ismap_audit_period_end": MISSING},
         more_reviews="ismap.unknown", points={"certifications.ismap": 0}),
    case("no ISMAP registration", "9.2", {"certifications.ismap": "none"},
         conditions="ismap.other_assurance", earns=0,
         hidden={"certifications.ismap_scope_covers", "certifications.ismap_audit_period_end"}),
    case("ISMAP scope covers the service partly", "9.2",
         {"certifications.ismap_scope_covers": "partly"}, conditions="ismap.out_of_scope", earns=4),
    case("ISMAP scope does not cover the service", "9.2",
         {"certifications.ismap_scope_covers": "no"}, conditions="ismap.out_of_scope", earns=0),
    case("ISMAP-LIU counts as a registration", "9.2", {"certifications.ismap": "ismap_liu"},
         earns=10),
    # --- other certifications (TODAY is 2026-06-01) -----------------------------------------
    case("certificate expired yesterday", "9.2",
         {"certifications.others": row(ISO_ROW, expires="2026-05-31")},
         findings="certifications.expired", earns=0),
    case("one of two certificates expired", "9.1",
         {"certifications.others": [ISO_ROW, EXPIRED_PMARK]},
         findings="certifications.expired", earns=0),
    case("certificate expiring today is still valid", "9.2",
         {"certifications.others": row(ISO_ROW, expires="2026-06-01")},
         findings="certifications.expiring", earns=5),
    case("certificate expiring in 120 days", "9.1",
         {"certifications.others": row(ISO_ROW, expires="2026-09-29")},
         findings="certifications.expiring", earns=5),
    case("certificate expiring in 121 days", "9.1",
         {"certifications.others": row(ISO_ROW, expires="2026-09-30")}, earns=5),
    case("no other certificates", "9.3", {"certifications.others": MISSING}, earns=0),
    case("certificates out of scope", "9.2", {"certifications.scope_covers_service": "no"},
         findings="certifications.out_of_scope", earns=0),
    case("certificates partly in scope", "9.2", {"certifications.scope_covers_service": "partly"},
         earns=2),
    case("vulnerability assessment partly", "9.3",
         {"certifications.vulnerability_assessment": "partly"}, earns=1),
    # --- contract items 9.1(2) ----------------------------------------------------------------
    case("policy compliance refused", "9.1", {"contract.policy_compliance": "no"},
         blockers="contract.policy_compliance.refused", earns=0),
    case("policy compliance partly", "9.2", {"contract.policy_compliance": "partly"},
         conditions="contract.policy_compliance.partly", earns=4),
    case("no pledge", "9.1", {"contract.pledge": "no"}, conditions="contract.pledge.missing",
         earns=0),
    case("changes reported partly", "9.1", {"contract.report_changes": "partly"}, earns=2),
    case("availability below 99%", "9.1", {"contract.availability": 98.9},
         findings="contract.availability.low", earns=0),
    case("availability 99%: no finding, no points", "9.1", {"contract.availability": 99.0},
         earns=0),
    case("availability 99.5% scores", "9.1", {"contract.availability": 99.5}, earns=5),
    case("no access logs", "9.1", {"contract.access_logs": "no"},
         findings="contract.access_logs.none", earns=0, hidden="contract.access_log_retention"),
    case("training on hire only", "9.1", {"contract.training_frequency": "on_hire"},
         findings="contract.training.on_hire_only", earns=1),
    case("training yearly", "9.2", {"contract.training_frequency": "yearly"}, earns=4),
    case("secondary use not excluded", "9.1", {"contract.no_secondary_use": "no"},
         blockers="contract.no_secondary_use.refused", earns=0),
    case("AI training not excluded", "9.2", {"contract.no_ai_training": "no"},
         blockers="contract.no_ai_training.refused", earns=0),
    case("no confidentiality", "9.1", {"contract.confidentiality": "no"},
         blockers="contract.confidentiality.refused", earns=0),
    case("staff NDA partly", "9.1", {"contract.staff_nda": "partly"}, earns=1),
    # --- 再委託 -----------------------------------------------------------------------------
    case("approved subcontracting in Japan", "9.1", SUB,
         points={"contract.subcontract_prior_approval": 10}),
    case("subcontracting without naming the subcontractors", "9.1",
         {**SUB, "contract.subcontractors": MISSING},
         blockers="subcontract.undisclosed"),
    case("subcontracting without prior approval", "9.1",
         {**SUB, "contract.subcontract_prior_approval": "no"},
         blockers="subcontract.prior_approval.refused",
         points={"contract.subcontract_prior_approval": 0}),
    case("subcontracting with approval only partly", "9.2",
         {"contract.subcontract": "partly", "contract.subcontract_prior_approval": "partly"},
         blockers="subcontract.prior_approval.refused",
         points={"contract.subcontract_prior_approval": 0}),
    case("subcontractor without the same obligations", "9.1",
         {**SUB, "contract.subcontract_same_obligations": "partly"},
         conditions="subcontract.same_obligations"),
    case("subcontractor abroad", "9.1",
         {**SUB, "contract.subcontractors": row(SUBCONTRACTOR, country="CN")},
         more_reviews="subcontract.foreign"),
    case("stale answers to follow-ups hidden by 'no' fire nothing", "9.1",
         {"contract.subcontract": "no", "contract.subcontract_prior_approval": "no",
          "contract.subcontract_same_obligations": "no",
          "contract.subcontractors": row(SUBCONTRACTOR, country="CN")},
         hidden={"contract.subcontract_prior_approval", "contract.subcontract_same_obligations",
                 "contract.subcontractors"}),
    case("stale answers to follow-ups of an unanswered question fire nothing", "9.2",
         {"contract.subcontract": MISSING, "contract.subcontract_prior_approval": "no",
          "contract.subcontractors": row(SUBCONTRACTOR, country="CN")},
         hidden={"contract.subcontract_prior_approval", "contract.subcontractors"}),
    case("sub-processors not approved", "9.2", {"external.subprocessor_approval": "partly"},
         blockers="subcontract.subprocessor_approval.refused", earns=0),
    # --- exit -------------------------------------------------------------------------------
    case("no deletion certificate", "9.1", {"contract.deletion_certificate": "no"},
         conditions="exit.deletion_certificate.missing", earns=0),
    case("deletion certificate partly", "9.2", {"contract.deletion_certificate": "partly"},
         conditions="exit.deletion_certificate.missing", earns=0),
    case("deletion after 91 days", "9.1", {"contract.deletion_deadline_days": 91},
         conditions="exit.deadline.long", earns=0),
    case("deletion after 90 days", "9.1", {"contract.deletion_deadline_days": 90}, earns=0),
    case("deletion after 31 days", "9.1", {"contract.deletion_deadline_days": 31}, earns=0),
    case("no deletion deadline", "9.1", {"contract.deletion_deadline_days": MISSING},
         conditions="exit.deadline.missing", earns=0),
    case("no deletion method", "9.1", {"contract.return_deletion_method": MISSING},
         conditions="exit.method.missing"),
    case("no export format", "9.1", {"contract.export_format": MISSING},
         conditions="exit.export_format.missing"),
    case("no migration plan", "9.2", {"external.migration_plan": MISSING},
         conditions="exit.migration.missing"),
    case("no export format for the service", "9.2", {"external.export_format": MISSING},
         conditions="exit.external_export.missing"),
    case("accounts not deleted at the end", "9.2", {"lifecycle.account_deletion": "partly"},
         conditions="exit.account_deletion.missing", earns=0),
    case("no data deletion at the end", "9.2", {"lifecycle.data_deletion": MISSING},
         conditions="exit.data_deletion.missing"),
    # --- reports, incidents, 公表 ------------------------------------------------------------
    case("reports yearly", "9.1", {"contract.report_interval": "yearly"}, earns=2),
    case("first report within 24 hours", "9.1", {"contract.emergency_notice_hours": 24}, earns=10),
    case("first report after 25 hours", "9.1", {"contract.emergency_notice_hours": 25},
         blockers="incident.notice.late", earns=0),
    case("service incident notice within 24 hours", "9.2",
         {"external.incident_notice_hours": 24}, earns=10),
    case("service incident notice after 72 hours", "9.2",
         {"external.incident_notice_hours": 72}, blockers="incident.external_notice.late", earns=0),
    case("a late notice on a question of another track fires nothing", "9.1",
         {"external.incident_notice_hours": 72}, hidden="external.incident_notice_hours"),
    case("publication refused", "9.1", {"contract.publication": "no"},
         blockers="incident.publication.refused", earns=0),
    case("forensics partly", "9.2", {"external.forensic_support": "partly"}, earns=1),
    # --- audits -----------------------------------------------------------------------------
    case("no audits accepted", "9.1", {"contract.audit_acceptance": ["none"]},
         conditions="audit.acceptance.none", earns=0),
    case("third-party reports only", "9.1",
         {"contract.audit_acceptance": ["third_party_report"]}, earns=5),
    case("no audit right and no third-party report", "9.2",
         {"external.audit_acceptance": "no", "certifications.external_audit": "no"},
         conditions="audit.external.none",
         points={"external.audit_acceptance": 0, "certifications.external_audit": 0}),
    case("no audit right but a third-party report", "9.2", {"external.audit_acceptance": "no"},
         findings="audit.external.report_only", earns=0),
    case("no audit right but a partial third-party report", "9.2",
         {"external.audit_acceptance": "no", "certifications.external_audit": "partly"},
         findings="audit.external.report_only", points={"certifications.external_audit": 2}),
    case("audit accepted partly", "9.2", {"external.audit_acceptance": "partly"}, earns=5),
    # --- external service -------------------------------------------------------------------
    case("misuse not prevented", "9.2", {"external.misuse_prevention": "no"},
         blockers="external.misuse_prevention.none", earns=0),
    case("misuse prevented partly", "9.2", {"external.misuse_prevention": "partly"}, earns=4),
    case("SLA below 99.5%", "9.2", {"external.sla_availability": 99.4},
         findings="sla.availability.low", earns=0),
    case("SLA 99.5%", "9.2", {"external.sla_availability": 99.5}, earns=0),
    case("SLA 99.9%", "9.2", {"external.sla_availability": 99.9}, earns=5),
    case("foreign governing law", "9.2", {"external.governing_law": "foreign"},
         findings="law.governing.foreign", earns=0),
    case("selectable governing law", "9.2", {"external.governing_law": "selectable"},
         conditions="law.governing.selectable", earns=8),
    case("foreign court", "9.2", {"external.jurisdiction": "foreign"},
         findings="law.court.foreign", earns=0),
    case("selectable court", "9.2", {"external.jurisdiction": "selectable"},
         conditions="law.court.selectable", earns=8),
    case("foreign laws not described", "9.2", {"external.foreign_laws": MISSING},
         less_reviews="law.foreign_disclosure.review"),
    case("standards: other only", "9.2", {"external.standards": ["other"]}, earns=1),
    case("standards: the best of several", "9.2", {"external.standards": ["iso27018", "soc2"]},
         earns=4),
    case("region pinning partly", "9.2", {"external.region_pinning": "partly"}, earns=2),
    # --- data location against classification ------------------------------------------------
    case("backup abroad, no personal data: a finding", "9.2",
         {"external.data_locations": ABROAD}, findings="location.abroad", earns=0),
    case("backup abroad with personal data: 外的環境の把握", "9.2 personal",
         {"external.data_locations": ABROAD},
         conditions="location.abroad.personal", findings="location.abroad", earns=0),
    case("logs abroad with 特定個人情報", "9.2 specific", {"external.data_locations": LOGS_ABROAD},
         blockers="location.abroad.strict", conditions="location.abroad.personal",
         findings="location.abroad", earns=0),
    case("support access from abroad on the マイナンバー利用事務系", "9.2 mynumber",
         {"external.data_locations": SUPPORT_ABROAD},
         blockers="location.abroad.strict", findings="location.abroad", earns=0),
    case("backup abroad with 機密性3", "9.2 conf3", {"external.data_locations": ABROAD},
         blockers="location.abroad.strict", findings="location.abroad", earns=0),
    case("everything in Japan with 機密性3", "9.2 conf3",
         {"external.data_locations": JP_LOCATIONS}, earns=10),
    # --- build, operation -------------------------------------------------------------------
    case("encryption outside CRYPTREC", "9.2", {"lifecycle.encryption": "other"},
         findings="lifecycle.encryption.weak", earns=0),
    case("unencrypted parts", "9.2", {"lifecycle.encryption": "none"},
         findings="lifecycle.encryption.weak", earns=0),
    case("mostly CRYPTREC", "9.2", {"lifecycle.encryption": "cryptrec_partly"}, earns=3),
    case("no admin MFA", "9.2", {"lifecycle.admin_mfa": "no"},
         findings="lifecycle.admin_mfa.none", earns=0),
    case("logs kept 11 months", "9.2", {"lifecycle.log_retention": 11},
         findings="lifecycle.log_retention.short", earns=0),
    case("logs kept 12 months", "9.2", {"lifecycle.log_retention": 12}, earns=3),
    case("log export partly", "9.2", {"lifecycle.log_export": "partly"}, earns=1),
    # --- 約款型 -----------------------------------------------------------------------------
    case("terms allow use of the data", "9.3", {"terms.no_unauthorised_use": "partly"},
         blockers="terms.no_unauthorised_use.missing", earns=0),
    case("terms without confidentiality", "9.3", {"terms.confidentiality": "no"},
         findings="terms.confidentiality.missing", earns=0),
    case("terms change unilaterally with 30 days' notice", "9.3",
         {"terms.unilateral_change": "yes", "terms.change_notice_days": 30},
         more_reviews="terms.unilateral_change.review"),
    case("terms change unilaterally with 29 days' notice", "9.3",
         {"terms.unilateral_change": "partly", "terms.change_notice_days": 29},
         findings="terms.change_notice.short", more_reviews="terms.unilateral_change.review"),
    case("a short notice on a hidden question fires nothing", "9.3",
         {"terms.unilateral_change": "no", "terms.change_notice_days": 5},
         hidden="terms.change_notice_days"),
    case("terms URL missing", "9.3", {"terms.terms_url": MISSING},
         less_reviews="terms.review"),
    case("backups partly", "9.3", {"terms.backups": "partly"}, earns=2),
    # --- personal data ----------------------------------------------------------------------
    case("hosting only: no annual inspection asked", "9.1 personal",
         {"personal.handling_role": "hosts_only", "personal.annual_inspection": "no"},
         more_reviews="personal.hosting_only.review", hidden="personal.annual_inspection"),
    case("annual inspection refused", "9.2 personal", {"personal.annual_inspection": "partly"},
         conditions="personal.annual_inspection.refused", earns=0),
    case("personal data handled abroad", "9.1 personal", {"personal.main_foreign_country": "US"},
         conditions="personal.abroad"),
    case("Japan given as the foreign country", "9.1 specific",
         {"personal.main_foreign_country": "JP"}),
    case("特定個人情報 handled abroad", "9.1 specific", {"personal.main_foreign_country": "US"},
         blockers="personal.abroad.strict", conditions="personal.abroad"),
    case("personal data on the マイナンバー利用事務系 handled abroad", "9.1 mynumber",
         {"personal.main_foreign_country": "VN"},
         blockers="personal.abroad.strict", conditions="personal.abroad"),
    case("機密性3 personal data handled abroad", "9.1 conf3",
         {"personal.main_foreign_country": "KR"},
         blockers="personal.abroad.strict", conditions="personal.abroad"),
    case("no safeguards for 特定個人情報", "9.1 specific", {"personal.specific_safeguards": "no"},
         blockers="personal.specific_safeguards.missing", earns=0),
    case("safeguards for 特定個人情報 partly", "9.2 specific",
         {"personal.specific_safeguards": "partly"}, earns=3),
    case("leak reported within 24 hours", "9.1 personal", {"personal.leak_notice_hours": 24},
         earns=10),
    case("leak reported after 48 hours", "9.3 personal", {"personal.leak_notice_hours": 48},
         blockers={"track.terms_with_personal_data", "personal.leak_notice.late"}, earns=0),
]
# fmt: on


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_case(c: Case):
    card = score(c.facts, c.changes)
    assert fired(card, "blocker") == c.blockers
    assert fired(card, "condition") == c.conditions
    assert fired(card, "finding") == c.findings
    expected_reviews = base_reviews(c.facts) if c.reviews is None else c.reviews
    assert fired(card, "review") == expected_reviews
    for key, earned in c.points.items():
        assert card.questions[key].earned == earned, key
    for key in c.hidden:
        assert key not in card.questions
        assert all(r.rule.question != key for r in card.results)
    if c.blockers:
        assert card.rating == "unacceptable"
        assert card.rating_label == "不可"
        assert card.suggested_decision == "reject"
    elif c.conditions:
        assert card.suggested_decision == "conditional"


def test_the_rule_without_a_question_fires_from_the_engagement_alone():
    card = score("9.3 personal")
    (blocker,) = card.blockers
    assert blocker.rule.id == "track.terms_with_personal_data"
    assert blocker.rule.question is None
    assert blocker.rule.outcome_label == "不可の要因"
    assert "track.terms_with_personal_data" in card.summary()["blockers"]


@pytest.mark.parametrize(
    ("facts", "fires"),
    [
        ("9.2", False),  # 機密性2, no personal data, LGWAN
        ("9.2 personal", False),  # personal data alone is not one of the three
        ("9.2 specific", True),  # specific_personal_data = true
        ("9.2 mynumber", True),  # segments = ["mynumber"]
        ("9.2 conf3", True),  # confidentiality_min = 3
    ],
)
def test_the_strict_location_rule_fires_on_any_of_its_three_conditions(facts, fires):
    card = score(facts, {"external.data_locations": ABROAD})
    assert ("location.abroad.strict" in fired(card, "blocker")) is fires


def test_ismap_registration_says_nothing_about_data_location():
    card = score("9.2 conf3", {"external.data_locations": LOGS_ABROAD})
    assert card.ismap.status == "valid"
    assert fired(card, "blocker") == {"location.abroad.strict"}


# ---------------------------------------------------------------------------------------------
# ISMAP status and expiries on the card
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audit_end", "pending", "status"),
    [
        ("2025-09-30", "no", "valid"),
        ("2025-03-31", "no", "expiring"),
        ("2024-12-31", "no", "expired"),
        ("2024-12-31", "yes", "renewal_pending"),
    ],
)
def test_the_card_carries_the_ismap_status_and_its_expiry(audit_end, pending, status):
    card = score(
        "9.2",
        {
            "certifications.ismap_audit_period_end": audit_end,
            "certifications.ismap_renewal_pending": pending,
        },
    )
    until = valid_until(date.fromisoformat(audit_end))
    assert card.ismap.status == status
    assert card.ismap.valid_until == until
    assert Expiry("ISMAP登録", until, "certifications.ismap") in card.expiries
    assert card.summary()["ismap"] == {"status": status, "valid_until": until.isoformat()}


def test_the_ismap_day_itself_is_valid_and_the_next_is_not():
    until = date(2027, 1, 31)  # valid_until(2025-09-30)
    later_iso = {"certifications.others": [{**ISO_ROW, "expires": "2028-03-31"}]}
    assert score("9.2", later_iso, today=until).questions["certifications.ismap"].earned == 10
    late = score("9.2", later_iso, today=until + timedelta(days=1))
    assert late.ismap.status == "expired"
    assert late.questions["certifications.ismap"].earned == 0
    assert fired(late, "finding") == {"ismap.expired"}


def test_no_ismap_no_expiry():
    card = score("9.2", {"certifications.ismap": "none"})
    assert card.ismap.status == "none"
    assert card.ismap.valid_until is None
    assert [e for e in card.expiries if e.question_key == "certifications.ismap"] == []


def test_an_expired_certificate_scores_zero_and_is_listed_as_an_expiry():
    card = score("9.1", {"certifications.others": [ISO_ROW, EXPIRED_PMARK]})
    assert card.questions["certifications.others"].earned == 0
    assert fired(card, "finding") == {"certifications.expired"}
    # soonest first: the expired mark, then ISMAP (2027-01-31), then the ISO certificate
    assert list(card.expiries) == [
        Expiry("プライバシーマーク P-1", date(2025, 12, 31), "certifications.others"),
        Expiry("ISMAP登録", date(2027, 1, 31), "certifications.ismap"),
        Expiry(
            "ISO/IEC 27001（JIS Q 27001） IS 123456", date(2027, 3, 31), "certifications.others"
        ),
    ]


def test_an_ismap_registration_out_of_scope_earns_nothing():
    card = score("9.2", {"certifications.ismap_scope_covers": "no"})
    assert card.questions["certifications.ismap_scope_covers"].earned == 0
    assert card.questions["certifications.ismap"].earned == 0


def test_certificates_out_of_scope_earn_nothing():
    card = score("9.2", {"certifications.scope_covers_service": "no"})
    assert fired(card, "finding") == {"certifications.out_of_scope"}
    assert card.questions["certifications.scope_covers_service"].earned == 0
    assert card.questions["certifications.others"].earned == 0


def test_undisclosed_subcontracting_is_a_blocker():
    card = score("9.1", {"contract.subcontract": "yes", "contract.subcontractors": MISSING})
    assert card.blockers


# ---------------------------------------------------------------------------------------------
# Ownership, officers, nationality: a person decides, never the rules
# ---------------------------------------------------------------------------------------------

PERSONAL_JUDGEMENT = {
    "company.ownership",
    "company.officers",
    "company.staff_nationality",
    "company.foreign_capital_ratio",
    "company.hq_country",
}


def test_no_rule_on_ownership_officers_or_nationality_is_a_blocker():
    outcomes = {r.id: r.outcome for r in RULES.rules if r.question in PERSONAL_JUDGEMENT}
    assert outcomes  # the questions are covered …
    assert set(outcomes.values()) == {"review"}  # … and only ever for a person to review


@pytest.mark.parametrize("facts", ["9.1", "9.2", "9.3"])
def test_missing_or_unusual_ownership_information_is_a_review_not_a_rejection(facts):
    card = score(
        facts,
        {
            "company.ownership": MISSING,
            "company.officers": MISSING,
            "company.staff_nationality": MISSING,
            "company.foreign_capital_ratio": 100,
            "company.hq_country": "CN",
        },
    )
    assert card.blockers == []
    assert card.conditions == []
    assert {
        "company.ownership.missing",
        "company.officers.missing",
        "company.staff_nationality.missing",
        "company.foreign_capital.review",
    } <= fired(card, "review")
    assert card.rating == "low"
    assert card.suggested_decision == "approve"


# ---------------------------------------------------------------------------------------------
# Manual scores and dismissed outcomes
# ---------------------------------------------------------------------------------------------


def test_a_manual_score_overrides_the_rule_points_up_to_the_question_maximum():
    base = score("9.1")
    lower = score("9.1", reviews={"contract.policy_compliance": ManualReview(points=4)})
    entry = lower.questions["contract.policy_compliance"]
    assert (entry.rule_points, entry.manual, entry.earned, entry.possible) == (10, 4, 4, 10)
    assert entry.overridden
    assert lower.earned == base.earned - 6
    assert lower.possible == base.possible
    assert lower.summary()["overridden"] == ["contract.policy_compliance"]

    higher = score("9.1", reviews={"contract.policy_compliance": ManualReview(points=50)})
    assert higher.questions["contract.policy_compliance"].earned == 10  # clamped
    assert not higher.questions["contract.policy_compliance"].overridden
    negative = score("9.1", reviews={"contract.policy_compliance": ManualReview(points=-3)})
    assert negative.questions["contract.policy_compliance"].earned == 0


def test_a_manual_score_can_raise_what_the_rules_gave():
    card = score(
        "9.1",
        {"contract.policy_compliance": "partly"},
        reviews={"contract.policy_compliance": ManualReview(points=8)},
    )
    entry = card.questions["contract.policy_compliance"]
    assert (entry.rule_points, entry.earned) == (4, 8)
    # the rules' outcomes stay: the condition still fires
    assert fired(card, "condition") == {"contract.policy_compliance.partly"}


def test_a_question_no_rule_scores_is_scored_out_of_manual_max():
    base = score("9.1")
    assert base.questions["company.legal_name"].scored is False
    assert base.questions["company.legal_name"].possible == RULES.manual_max == 5

    card = score("9.1", reviews={"company.legal_name": ManualReview(points=3)})
    entry = card.questions["company.legal_name"]
    assert (entry.rule_points, entry.earned, entry.possible) == (None, 3, 5)
    assert not entry.overridden  # nothing to override
    assert (card.earned, card.possible) == (base.earned + 3, base.possible + 5)
    company = {s.key: s for s in card.sections}["company"]
    base_company = {s.key: s for s in base.sections}["company"]
    assert (company.earned, company.possible) == (
        base_company.earned + 3,
        base_company.possible + 5,
    )

    clamped = score("9.1", reviews={"company.legal_name": ManualReview(points=9)})
    assert clamped.questions["company.legal_name"].earned == 5


def test_a_dismissed_blocker_no_longer_makes_the_rating_unacceptable():
    changes = {"contract.publication": "no"}
    card = score("9.1", changes)
    assert card.rating == "unacceptable"

    dismissed = score(
        "9.1",
        changes,
        reviews={
            "contract.publication": ManualReview(
                dismissed=frozenset({"incident.publication.refused"})
            )
        },
    )
    assert dismissed.blockers == []
    assert [r.rule.id for r in dismissed.dismissed] == ["incident.publication.refused"]
    assert dismissed.rating != "unacceptable"
    assert dismissed.suggested_decision == "approve"
    assert dismissed.summary()["dismissed"] == ["incident.publication.refused"]
    assert dismissed.summary()["blockers"] == []
    # the points stay what the rules gave
    assert dismissed.questions["contract.publication"].earned == 0


def test_a_dismissal_recorded_on_another_question_changes_nothing():
    card = score(
        "9.1",
        {"contract.publication": "no"},
        reviews={
            "contract.confidentiality": ManualReview(
                dismissed=frozenset({"incident.publication.refused"})
            )
        },
    )
    assert fired(card, "blocker") == {"incident.publication.refused"}
    assert card.rating == "unacceptable"


def test_dismissing_one_of_two_blockers_keeps_the_rating_unacceptable():
    card = score(
        "9.1",
        {"contract.publication": "no", "contract.emergency_notice_hours": 48},
        reviews={
            "contract.publication": ManualReview(
                dismissed=frozenset({"incident.publication.refused"})
            )
        },
    )
    assert fired(card, "blocker") == {"incident.notice.late"}
    assert card.rating == "unacceptable"


def test_a_dismissed_condition_no_longer_asks_for_conditional_approval():
    changes = {"external.governing_law": "selectable"}
    card = score(
        "9.2",
        changes,
        reviews={
            "external.governing_law": ManualReview(
                dismissed=frozenset({"law.governing.selectable"})
            )
        },
    )
    assert card.conditions == []
    assert card.suggested_decision == "approve"
    assert card.questions["external.governing_law"].earned == 8


# ---------------------------------------------------------------------------------------------
# Rating thresholds, on a rule set small enough to reach them exactly
# ---------------------------------------------------------------------------------------------

ISMAP_KEYS = {
    "registered": "certifications.ismap",
    "audit_period_end": "certifications.ismap_audit_period_end",
    "renewal_pending": "certifications.ismap_renewal_pending",
}


def small_rules(*extra: dict, manual: int = 5) -> rules.RuleSet:
    data = {
        "questionnaire": "assessment",
        "version": "test-1",
        "rating": {"low": 80, "medium": 60},
        "manual": {"max_points": manual},
        "ismap": ISMAP_KEYS,
        "rule": [
            {
                "id": "t.policy",
                "title": "方針",
                "question": "company.security_policy",
                "cites": ["9.1(2)①"],
                "points": {"yes": 80, "partly": 79},
            },
            {
                "id": "t.bcp",
                "title": "BCP",
                "question": "company.bcp",
                "cites": ["9.1(2)③"],
                "points": {"yes": 20},
            },
            *extra,
        ],
    }
    return rules.parse(data, "rules/small.toml", QUESTIONNAIRE)


@pytest.mark.parametrize(
    ("changes", "manual", "percent", "rating"),
    [
        ({}, None, 100, "low"),
        ({"company.bcp": "no"}, None, 80, "low"),  # exactly rating.low
        ({"company.bcp": "no", "company.security_policy": "partly"}, None, 79, "medium"),
        ({"company.bcp": "no"}, 60, 60, "medium"),  # exactly rating.medium
        ({"company.bcp": "no"}, 59, 59, "high"),
        ({"company.bcp": "no", "company.security_policy": "no"}, None, 0, "high"),
    ],
)
def test_rating_thresholds(changes, manual, percent, rating):
    reviews = (
        {"company.security_policy": ManualReview(points=manual)} if manual is not None else None
    )
    card = score("9.1", changes, reviews=reviews, ruleset=small_rules())
    assert (card.possible, card.percent, card.rating) == (100, percent, rating)
    assert card.rating_label == engine.RATINGS[rating]


def test_a_blocker_rates_unacceptable_at_any_score():
    blocker = {
        "id": "t.antisocial",
        "title": "反社",
        "question": "company.antisocial_forces",
        "cites": ["9.1(1)"],
        "if": {"is": ["no"]},
        "then": "blocker",
        "message": "誓約がありません。",
    }
    ruleset = small_rules(blocker)
    card = score("9.1", {"company.antisocial_forces": "no"}, ruleset=ruleset)
    assert (card.percent, card.rating) == (100, "unacceptable")
    dismissed = score(
        "9.1",
        {"company.antisocial_forces": "no"},
        ruleset=ruleset,
        reviews={"company.antisocial_forces": ManualReview(dismissed=frozenset({"t.antisocial"}))},
    )
    assert dismissed.rating == "low"


def test_manual_max_comes_from_the_rule_set():
    card = score(
        "9.1",
        ruleset=small_rules(manual=7),
        reviews={"company.legal_name": ManualReview(points=10)},
    )
    assert card.questions["company.legal_name"].earned == 7
    assert card.questions["company.legal_name"].possible == 7


def test_nothing_to_score_rates_low_without_a_percent():
    only_terms = {
        "questionnaire": "assessment",
        "version": "test-2",
        "ismap": ISMAP_KEYS,
        "rule": [
            {
                "id": "t.backups",
                "title": "バックアップ",
                "question": "terms.backups",
                "cites": ["9.3(2)"],
                "points": {"yes": 5},
            }
        ],
    }
    card = score("9.1", ruleset=rules.parse(only_terms, "rules/t.toml", QUESTIONNAIRE))
    assert (card.earned, card.possible, card.percent, card.rating) == (0, 0, None, "low")


# ---------------------------------------------------------------------------------------------
# Versions and determinism
# ---------------------------------------------------------------------------------------------


def test_the_card_records_the_rule_set_and_questionnaire_versions():
    card = score("9.2")
    assert card.rules_version == RULES.version
    assert (card.questionnaire_key, card.questionnaire_version) == (
        QUESTIONNAIRE.key,
        QUESTIONNAIRE.version,
    )
    assert card.scored_on == TODAY
    assert score("9.1", ruleset=small_rules()).rules_version == "test-1"


@pytest.mark.parametrize("facts", ["9.1 specific", "9.2 conf3", "9.3 personal"])
def test_the_same_inputs_give_the_same_summary(facts):
    changes = {
        "external.data_locations": ABROAD,
        "contract.publication": "no",
        "company.ownership": MISSING,
        "external.governing_law": "selectable",
    }
    reviews = {"company.legal_name": ManualReview(points=2)}
    first = score(facts, changes, reviews=reviews)
    second = score(facts, changes, reviews=reviews)
    assert first.summary() == second.summary()
    assert first == second
    # the order the answers come in does not matter
    answers = answers_for(FACTS[facts], changes)
    reordered = dict(reversed(list(answers.items())))
    third = engine.score(QUESTIONNAIRE, reordered, FACTS[facts], RULES, TODAY, reviews=reviews)
    assert json.dumps(third.summary(), sort_keys=False) == json.dumps(first.summary())


# ---------------------------------------------------------------------------------------------
# Coverage: every rule of the shipped file is reached by a scenario above
# ---------------------------------------------------------------------------------------------


def test_every_rule_is_exercised():
    scorers = {r.question: r for r in RULES.rules if r.outcome == "points"}
    reached = set()
    for c in CASES:
        reached |= c.blockers | c.conditions | c.findings | (c.reviews or set())
        reached |= {
            scorers[key].id
            for key, earned in c.points.items()
            if key in scorers and earned == scorers[key].max_points
        }
    for facts in BASELINES:
        reached |= base_reviews(facts)
        card = score(facts)
        for entry in card.questions.values():
            reached |= {
                r.rule.id
                for r in entry.results
                if r.kind == "points" and r.points == r.rule.max_points
            }
    assert sorted({r.id for r in RULES.rules} - reached) == []
