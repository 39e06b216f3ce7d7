"""Answer templates of the large dataset: a few complete sets of answers per kind of engagement,
built once with the demo's ``sample_answer`` and checked by ``validate`` question by question,
then reused for every assessment of that kind.

Each template also carries what the services would derive from those answers: the score card by
the newest rules (rating, blockers, the suggested decision), the questions a reviewer checks,
the facts of an external-service record and the baseline of a 定期確認 — all computed once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from types import SimpleNamespace
from typing import Any

from portal.approvals.models import ExternalService
from portal.approvals.service import SCALAR_FIELDS, facts_from_answers
from portal.assessments.answers import EMPTY, validate
from portal.assessments.demo import sample_answer
from portal.engagements.models import track_for
from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, visible_questions
from portal.questionnaires.schema import PREFILL_SOURCES, Question, Questionnaire
from portal.reviews import questionnaire as confirmation_bank
from portal.scoring import engine, rules
from portal.vendors.corporate_number import with_check_digit


@dataclass(frozen=True)
class Profile:
    """A kind of engagement (案件): what it is called and what it handles."""

    stem: str  # the title without its number
    kind: str  # outsourcing | external_service
    confidentiality: int
    integrity: int
    availability: int
    personal: bool
    specific: bool
    sensitive: bool
    segment: str | None
    information: str
    weight: int  # how often it occurs, relative to the others

    @property
    def track(self) -> str:
        return track_for(self.kind, self.confidentiality)

    @property
    def facts(self) -> EngagementFacts:
        return EngagementFacts(
            track=self.track,
            kind=self.kind,
            confidentiality=self.confidentiality,
            integrity=self.integrity,
            availability=self.availability,
            personal_data=self.personal or self.specific or self.sensitive,
            specific_personal_data=self.specific,
            sensitive_personal_data=self.sensitive,
            segment=self.segment,
        )


def _p(stem, kind, c, i, a, personal, specific, sensitive, segment, information, weight):
    return Profile(stem, kind, c, i, a, personal, specific, sensitive, segment, information, weight)


OUT, EXT = "outsourcing", "external_service"
NAMES = "住民の氏名・住所・生年月日等"
PROFILES = (
    # 業務委託 (9.1)
    _p("住民情報システム運用保守業務委託", OUT, 3, 2, 2, True, True, False, "mynumber", NAMES, 3),
    _p("税務システム改修業務委託", OUT, 3, 2, 2, True, True, False, "mynumber", "課税情報", 2),
    _p("窓口受付業務委託", OUT, 2, 1, 1, True, False, False, None, NAMES, 2),
    _p("健診データ入力業務委託", OUT, 3, 1, 1, True, False, True, None, "健診結果", 2),
    _p(
        "庁舎ネットワーク運用保守業務委託",
        OUT,
        2,
        2,
        2,
        False,
        False,
        False,
        "lgwan",
        "機器設定",
        2,
    ),
    _p("通知書印刷・封入封緘業務委託", OUT, 2, 1, 1, True, False, False, None, NAMES, 2),
    _p(
        "ホームページ運用管理業務委託", OUT, 1, 1, 1, False, False, False, "internet", "公開情報", 1
    ),
    # 外部サービス (9.2)
    _p("電子申請サービスの利用", EXT, 2, 2, 1, True, False, False, "internet", NAMES, 8),
    _p("庁内グループウェアの利用", EXT, 2, 2, 2, False, False, False, "lgwan", "庁内文書", 8),
    _p(
        "オンライン会議サービスの利用", EXT, 2, 1, 1, False, False, False, "internet", "会議資料", 7
    ),
    _p("ファイル共有サービスの利用", EXT, 2, 2, 1, False, False, False, "lgwan", "庁内文書", 7),
    _p("施設予約システムの利用", EXT, 2, 1, 1, True, False, False, "internet", NAMES, 7),
    _p("福祉台帳クラウドの利用", EXT, 3, 2, 2, True, False, True, "lgwan", "福祉の記録", 7),
    _p("給与計算クラウドの利用", EXT, 3, 2, 2, True, True, False, "lgwan", "職員の給与", 7),
    _p("文書管理クラウドの利用", EXT, 2, 2, 2, False, False, False, "lgwan", "公文書", 7),
    # 約款による外部サービス (9.3)
    _p("チャットボットサービスの利用", EXT, 1, 1, 1, False, False, False, "internet", "FAQ", 2),
    _p("アンケート作成サービスの利用", EXT, 1, 1, 1, False, False, False, "internet", "集計", 2),
)

TEXTS = (
    "社内規程に基づき、責任者を定めて対応しています。",
    "手順書を整備し、年1回見直しています。詳細は別添資料のとおりです。",
    "ISMSの管理策に沿って運用し、内部監査で確認しています。",
)
VARIANTS = ("標準", "一部対応中", "認証の更新間近", "不可の要因あり")


@dataclass(frozen=True)
class Template:
    """One complete set of answers for one profile, and what follows from it."""

    profile: Profile
    variant: int
    rows: tuple[tuple[str, str], ...]  # (question key, JSON value) in answering order
    prefill: dict[str, str]  # question key → company attribute (name, address …)
    values: dict[str, Any]
    card: engine.ScoreCard
    review_keys: tuple[str, ...]  # what a reviewer checks before deciding
    service: dict[str, Any]  # the external-service record's columns
    baseline: dict[str, Any]  # the 定期確認's starting values

    # Computed once per template, read for thousands of assessments.
    @cached_property
    def summary(self) -> str:
        return encode(self.card.summary())

    @cached_property
    def blockers(self) -> list[str]:
        return [r.rule.id for r in self.card.blockers]

    @cached_property
    def decision(self) -> str:
        return self.card.suggested_decision

    @cached_property
    def baseline_json(self) -> str:
        return encode(self.baseline)

    @cached_property
    def answered_keys(self) -> frozenset[str]:
        return frozenset(self.keys)

    @cached_property
    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _value in self.rows)

    @cached_property
    def encoded(self) -> tuple[str, ...]:
        return tuple(value for _key, value in self.rows)

    @cached_property
    def prefill_at(self) -> tuple[tuple[int, str], ...]:
        """(position in ``rows``, company attribute) of the prefilled answers."""
        return tuple(
            (index, self.prefill[key]) for index, key in enumerate(self.keys) if key in self.prefill
        )


def encode(value: Any) -> str:
    """JSON as ``assessments.store`` writes answers."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


PREFILL_ATTRIBUTES = tuple(sorted(set(PREFILL_SOURCES.values())))


def _value(question: Question, variant: int, index: int, today: date, keep: set[str]) -> Any:
    """The demo's sample answer, varied by variant so the dataset is not one answer copied:
    0 as the demo answers, 1 partly in place (a lower score), 2 certificates about to expire and
    a condition or two, 3 with a blocker (an incident notice far too late, or a refusal)."""
    value = sample_answer(question)
    kind, key = question.type, question.key
    if kind == "date":
        # ISMAP audit periods ended in the past; other dates lie behind too.
        if key.endswith("audit_period_end"):
            return (today - timedelta(days=200 + 150 * variant)).isoformat()
        return (today - timedelta(days=400 + 30 * index)).isoformat()
    if kind == "table" and question.table == "certifications":
        expires = today + timedelta(days=(60 if variant == 2 else 500 + 40 * index))
        return [{**row, "expires": expires.isoformat()} for row in value]
    if variant == 0 or key in keep:  # ``keep``: varied, this answer would block a decision
        return value
    if kind in ("text", "long_text") and key not in _KEEP_TEXT:
        return TEXTS[(index + variant) % len(TEXTS)][: question.max_length or 200]
    choices = [c.value for c in question.choices]
    if variant == 1 and kind == "yes_no" and "partly" in choices:
        return "partly"
    if variant == 1 and kind == "single" and index % 2 == 1:
        return next((c for c in choices[1:] if c != "none"), value)
    if variant == 2 and key in _CONDITIONAL:
        return "partly"
    if variant == 3 and key.endswith("notice_hours"):
        return 240
    if variant == 3 and key in _REFUSED:
        return "no"
    return value


_CONDITIONAL = {"certifications.ismap_scope_covers", "lifecycle.account_deletion"}
_REFUSED = {"terms.no_unauthorised_use"}


SAMPLE_COMPANY = SimpleNamespace(
    name="株式会社サンプル",
    corporate_number=with_check_digit("100000000000"),
    address="東京都千代田区霞が関一丁目1番1号",
    representative="代表取締役 見本太郎",
)
_KEEP_TEXT = {"contract.manager_name", "external.incident_contact", "contract.export_format"}


def _answer(
    questionnaire: Questionnaire, facts: EngagementFacts, variant: int, today: date, keep: set[str]
):
    """Answer in order, as the demo does, so that follow-up questions appear as they apply."""
    triggers = {
        key
        for item in (*questionnaire.sections, *questionnaire.questions)
        if item.when is not None
        for key, _accepted in item.when.answers
    }
    values: dict[str, Any] = {}
    questions = visible_questions(questionnaire, facts, values)
    index = 0
    while index < len(questions):
        question = questions[index]
        if question.prefill:
            raw = sample_answer(question, SAMPLE_COMPANY)  # each company's own, when loaded
        else:
            raw = _value(question, variant, index, today, keep)
        value = validate(question, raw) if raw is not None else EMPTY
        if value is not EMPTY:
            values[question.key] = value
            if question.key in triggers:  # follow-up questions may appear
                questions = visible_questions(questionnaire, facts, values)
        index += 1
    return values, questions


def _service_columns(values: dict[str, Any]) -> dict[str, Any]:
    """The external-service record the approval service would prefill from these answers."""
    data = facts_from_answers(values, "（案件名）")
    record = ExternalService()  # transient: only to derive the stored columns
    for name in SCALAR_FIELDS:
        setattr(record, name, getattr(data, name))
    for name, rows in data.tables.items():
        record.set_rows(name, rows)
    record.refresh_derived()
    names = [*SCALAR_FIELDS, *data.tables, "ismap_valid_until", "earliest_expiry"]
    return {name: getattr(record, name) for name in names if name != "name"}


def build(today: date) -> list[Template]:
    """Every profile × variant, validated and scored (a fraction of a second per template)."""
    questionnaire = loader.latest("assessment")
    ruleset = rules.latest(questionnaire.key)
    periodic = confirmation_bank.latest()
    templates = []
    for profile in PROFILES:
        facts = profile.facts
        sections = confirmation_bank.sections_for(periodic, facts)
        baseline_keys = [q.key for _s, questions in sections for q in questions]
        for variant in range(len(VARIANTS)):
            keep: set[str] = set()  # answered as in variant 0: varied, they would block
            while True:
                values, questions = _answer(questionnaire, facts, variant, today, keep)
                card = engine.score(questionnaire, values, facts, ruleset, today)
                blocked = {r.rule.question for r in card.blockers} - keep - {None}
                if variant == 3 or not blocked:
                    break
                keep |= blocked
            values = {q.key: values[q.key] for q in questions if q.key in values}
            templates.append(
                Template(
                    profile=profile,
                    variant=variant,
                    rows=tuple((key, encode(value)) for key, value in values.items()),
                    prefill={q.key: PREFILL_SOURCES[q.prefill] for q in questions if q.prefill},
                    values=values,
                    card=card,
                    review_keys=tuple(card.questions),
                    service=_service_columns(values),
                    baseline={k: values[k] for k in baseline_keys if k in values},
                )
            )
    return templates
