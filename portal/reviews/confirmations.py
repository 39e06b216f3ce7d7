"""定期確認 (periodic confirmation) of a contractor or an approved external service
(対策基準 9.1(3), 9.2(6)).

- Staff open a confirmation for an active schedule (or the reminder job opens those coming
  due): it covers the period since the last confirmation, is due on the schedule's date but
  never in less than two weeks, and keeps as its baseline the values confirmed so far.
- The vendor (or staff keying in a paper reply) answers section by section: 変更なし copies
  nothing, 変更あり stores the section's values — parsed and validated exactly as assessment
  answers — with a note of what changed; evidence is attached to the confirmation. Submitting
  needs every section answered.
- Staff see the difference against the baseline, return it with a comment or complete it with
  the method (書面 / 実地 / リモート / 第三者報告) and a sign-off; the checker is never the one
  who answered (兼務の禁止, 対策基準 2(6); the database holds it too). Completing starts the next
  period; for an external service the changed certificates, ISMAP registration, data locations
  and subcontractors are copied into its record.
- Nothing is opened, answered or completed for a contract or service that is ending or ended.

Services flush, callers commit; refusals raise ConfirmationError and change nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from portal.approvals import service as approvals
from portal.assessments import answers as answer_rules
from portal.audit import service as audit
from portal.db import utcnow
from portal.permissions import Permission, can
from portal.questionnaires.conditions import EngagementFacts
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import Question
from portal.reviews import questionnaire as bank
from portal.reviews import schedules
from portal.reviews.calendar import next_business_day
from portal.reviews.models import (
    METHODS,
    Confirmation,
    ConfirmationSection,
    ReviewSchedule,
)
from portal.users.models import User
from portal.web import clean_text, format_date

MIN_ANSWER_DAYS = 14  # the vendor always has at least two weeks to answer
MAX_NOTE = 2000
MAX_COMMENT = 2000
MAX_RESULT = 4000

STALE = "他の利用者が先にこの定期確認を更新しました。最新の内容を確認してからやり直してください。"
NOT_ACTIVE = "終了した契約・サービスの定期確認は{}できません。"

# The facts of an external service's record a confirmation keeps up to date, by the answers
# they come from (9.2(2)⑤⑦⑨).
ISMAP_FIELDS = (
    "ismap_kind",
    "ismap_number",
    "ismap_registered_on",
    "ismap_audit_period_end",
    "ismap_renewal_pending",
    "ismap_scope_covers",
)
SERVICE_TABLES = {
    "certifications.others": "certificates",
    "external.data_locations": "data_locations",
    "contract.subcontractors": "subcontractors",
    "contract.subcontract": "subcontractors",
}


class ConfirmationError(ValueError):
    """A refused action, with a message in Japanese. Nothing has been changed."""


class SectionInvalid(ConfirmationError):
    """Some values of a changed section are invalid: ``errors`` maps question key → message."""

    def __init__(self, message: str, errors: dict[str, str]):
        super().__init__(message)
        self.errors = errors


# ---------------------------------------------------------------------------------------------
# The questionnaire of a schedule's subject
# ---------------------------------------------------------------------------------------------


def facts_of(schedule: ReviewSchedule) -> EngagementFacts:
    """What the questionnaire's conditions look at: the engagement of the base assessment, or
    for an application without an assessment (約款型) the application itself."""
    assessment = schedules.base_assessment(schedule)
    if assessment is not None:
        return assessment.engagement.facts
    application = schedule.application
    return EngagementFacts(
        track=application.category,
        kind="external_service",
        confidentiality=application.max_confidentiality,
        integrity=1,
        availability=1,
        personal_data=bool(
            application.personal_data
            or application.specific_personal_data
            or application.sensitive_personal_data
        ),
        specific_personal_data=application.specific_personal_data,
        sensitive_personal_data=application.sensitive_personal_data,
        segment=application.network_segment,
    )


def questionnaire_of(confirmation: Confirmation) -> bank.ConfirmationQuestionnaire:
    return bank.get(confirmation.questionnaire_key, confirmation.questionnaire_version)


@dataclass
class SectionView:
    """One section of a confirmation as a page shows it."""

    section: bank.Section
    row: ConfirmationSection
    questions: list[Question]  # the fields of the form (applicable by the facts)
    shown: list[Question]  # those that apply given the current values
    values: dict[str, Any]  # as confirmed before, or as changed in this confirmation

    @property
    def key(self) -> str:
        return self.section.key

    @property
    def answered(self) -> bool:
        return self.row.changed is not None


def section_views(confirmation: Confirmation) -> list[SectionView]:
    questionnaire = questionnaire_of(confirmation)
    facts = facts_of(confirmation.schedule)
    baseline = confirmation.baseline_values()
    views = []
    for row in confirmation.sections:
        section = questionnaire.section(row.section_key)
        if section is None:
            continue
        values = {**baseline, **row.value_map()} if row.changed else dict(baseline)
        views.append(
            SectionView(
                section=section,
                row=row,
                questions=bank.applicable(questionnaire, section, facts),
                shown=bank.visible(questionnaire, section, facts, values),
                values=values,
            )
        )
    return views


# ---------------------------------------------------------------------------------------------
# Who does what
# ---------------------------------------------------------------------------------------------


def is_vendor_of(actor: User, confirmation: Confirmation) -> bool:
    return can(actor, Permission.REVIEWS_ANSWER) and schedules.is_vendor_of(
        actor, confirmation.schedule
    )


def can_answer(actor: User, confirmation: Confirmation) -> bool:
    """The vendor of the schedule's company, or staff who manage it keying in a paper reply."""
    return is_vendor_of(actor, confirmation) or schedules.can_manage_schedule(
        actor, confirmation.schedule
    )


def answerers(confirmation: Confirmation) -> set[int]:
    """Everyone who entered an answer of this confirmation (none of them may check it)."""
    people = {row.updated_by_id for row in confirmation.sections if row.updated_by_id}
    if confirmation.answered_by_id:
        people.add(confirmation.answered_by_id)
    return people


def _check_version(confirmation: Confirmation, version: int | None) -> None:
    if version is None or confirmation.version != version:
        raise ConfirmationError(STALE)


def _check_active(schedule: ReviewSchedule, doing: str) -> None:
    if schedule.status != "active":
        raise ConfirmationError(NOT_ACTIVE.format(doing))


def _touch(confirmation: Confirmation) -> None:
    """Bump the version when only the sections changed (forms carry the confirmation's)."""
    flag_modified(confirmation, "status")


def _record(session: Session, action: str, actor: User | None, confirmation, details) -> None:
    audit.record(
        session,
        action,
        actor=actor,
        actor_label=None if actor is not None else "定期処理",
        obj=confirmation,
        organisation_id=confirmation.organisation_id,
        details={
            "schedule_id": confirmation.schedule_id,
            "number": confirmation.number,
            **{k: (v.isoformat() if isinstance(v, date) else v) for k, v in details.items()},
        },
    )


# ---------------------------------------------------------------------------------------------
# Opening
# ---------------------------------------------------------------------------------------------


def answer_due(schedule: ReviewSchedule, today: date) -> date:
    """The schedule's due date, but never less than two weeks away (on a business day)."""
    floor = next_business_day(today + timedelta(days=MIN_ANSWER_DAYS))
    return max(schedule.due_on, floor)


def open_confirmation(
    session: Session, schedule: ReviewSchedule, actor: User | None, today: date
) -> Confirmation:
    """Open the next confirmation of ``schedule`` (``actor`` None: the reminder job)."""
    if actor is not None and not schedules.can_manage_schedule(actor, schedule):
        raise ConfirmationError("この契約・サービスの定期確認を開始する権限がありません。")
    if schedule.status != "active":
        raise ConfirmationError("終了した契約・サービスの定期確認は開始できません。")
    if schedule.current_confirmation is not None:
        raise ConfirmationError(
            "この契約・サービスには、まだ完了していない定期確認があります。"
            "その確認を完了してから次の確認を開始してください。"
        )
    questionnaire = bank.latest()
    facts = facts_of(schedule)
    sections = bank.sections_for(questionnaire, facts)
    keys = [q.key for _section, questions in sections for q in questions]
    current = schedules.current_values(session, schedule)
    baseline = {key: current[key] for key in keys if current.get(key) is not None}
    triggers = sorted(schedule.open_triggers, key=lambda t: (t.due_on, t.id))
    since = schedule.last_confirmed_on or schedule.starts_on
    confirmation = Confirmation(
        organisation_id=schedule.organisation_id,
        schedule_id=schedule.id,
        number=max((c.number for c in schedule.confirmations), default=0) + 1,
        reason=triggers[0].kind if triggers else "scheduled",
        questionnaire_key=questionnaire.key,
        questionnaire_version=questionnaire.version,
        period_from=since,
        period_to=max(today, since),
        due_on=answer_due(schedule, today),
        status="open",
        baseline=json.dumps(baseline, ensure_ascii=False, sort_keys=True),
        opened_by_id=actor.id if actor is not None else None,
    )
    confirmation.sections = [
        ConfirmationSection(section_key=section.key, changed=None) for section, _q in sections
    ]
    schedule.confirmations.append(confirmation)
    session.flush()
    _record(
        session,
        "confirmation.opened",
        actor,
        confirmation,
        {
            "reason": confirmation.reason,
            "due_on": confirmation.due_on,
            "period": [confirmation.period_from, confirmation.period_to],
            "sections": [s.key for s, _q in sections],
        },
    )
    return confirmation


def open_due(session: Session, today: date, lead_days: int = 60) -> list[Confirmation]:
    """Open a confirmation for every active schedule due within ``lead_days`` that has none
    open (the reminder job; idempotent)."""
    due = session.scalars(
        sa.select(ReviewSchedule)
        .where(
            ReviewSchedule.status == "active",
            ReviewSchedule.due_on <= today + timedelta(days=lead_days),
        )
        .order_by(ReviewSchedule.due_on, ReviewSchedule.id)
    ).all()
    opened = []
    for schedule in due:
        if schedule.current_confirmation is None:
            opened.append(open_confirmation(session, schedule, None, today))
    return opened


# ---------------------------------------------------------------------------------------------
# Answering
# ---------------------------------------------------------------------------------------------


def _editable(confirmation: Confirmation, actor: User) -> None:
    if not can_answer(actor, confirmation):
        raise ConfirmationError("この定期確認に回答する権限がありません。")
    _check_active(confirmation.schedule, "回答")
    if not confirmation.editable_by_vendor:
        raise ConfirmationError("提出済み又は完了した定期確認は変更できません。")


def _text(value: str | None, label: str, limit: int, *, required: bool) -> str:
    return clean_text(value, label, limit=limit, required=required, error=ConfirmationError)


def parse_section(
    questions: list[Question], raw: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The section's values from form data (a MultiDict), and the errors by question key."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for question in questions:
        try:
            values[question.key] = answer_rules.validate(
                question, answer_rules.from_form(question, raw)
            )
        except answer_rules.AnswerInvalid as exc:
            errors[question.key] = str(exc)
    return values, errors


def answer_section(
    session: Session,
    confirmation: Confirmation,
    actor: User,
    section_key: str,
    *,
    changed: bool | None,
    raw: Mapping[str, Any],
    note: str,
    version: int | None,
) -> ConfirmationSection:
    """Answer one section: 変更なし (nothing is copied; a note is optional) or 変更あり (the
    section's values, validated as the assessment's answers, and a note of what changed)."""
    _editable(confirmation, actor)
    _check_version(confirmation, version)
    row = next((s for s in confirmation.sections if s.section_key == section_key), None)
    view = next((v for v in section_views(confirmation) if v.key == section_key), None)
    if row is None or view is None:
        raise ConfirmationError("この定期確認にない項目です。")
    if changed is None:
        raise ConfirmationError(
            f"「{view.section.title}」の「変更なし」か「変更あり」を選んでください。"
        )
    if not changed:
        row.changed = False
        row.values = "{}"
        row.note = _text(note, "補足", MAX_NOTE, required=False)
    else:
        note = _text(note, "変更の概要", MAX_NOTE, required=True)
        values, errors = parse_section(view.questions, raw)
        if not errors:
            baseline = confirmation.baseline_values()
            merged = {**baseline, **values}
            shown = bank.visible(
                questionnaire_of(confirmation),
                view.section,
                facts_of(confirmation.schedule),
                merged,
            )
            shown_keys = {q.key for q in shown}
            for question in view.questions:
                if question.key not in shown_keys:
                    values[question.key] = None  # no longer applies
                elif question.required and not answer_rules.is_answered(
                    question, values.get(question.key)
                ):
                    errors[question.key] = "入力してください。"
            if not errors and all(values.get(q.key) == baseline.get(q.key) for q in view.questions):
                raise ConfirmationError(
                    f"「{view.section.title}」は前回確認した内容から変わっていません。"
                    "変更がない場合は「変更なし」を選んでください。"
                )
        if errors:
            raise SectionInvalid(
                f"「{view.section.title}」の入力内容に誤りがあります。各項目のメッセージを"
                "確認してください。",
                errors,
            )
        row.changed = True
        row.values = json.dumps(values, ensure_ascii=False, sort_keys=True)
        row.note = note
    row.updated_by_id = actor.id
    row.updated_at = utcnow()
    _touch(confirmation)
    session.flush()
    _record(
        session,
        "confirmation.answered",
        actor,
        confirmation,
        {"section": section_key, "changed": row.changed},
    )
    return row


def submit(session: Session, confirmation: Confirmation, actor: User, version: int | None) -> None:
    """Hand the answers in: every section must have been answered."""
    _editable(confirmation, actor)
    _check_version(confirmation, version)
    missing = [v.section.title for v in section_views(confirmation) if not v.answered]
    if missing:
        raise ConfirmationError(
            "すべての項目に「変更なし」か「変更あり」で回答してから提出してください"
            f"（未回答: {'、'.join(missing)}）。"
        )
    before = confirmation.status
    confirmation.status = "submitted"
    confirmation.submitted_at = utcnow()
    confirmation.answered_by_id = actor.id
    session.flush()
    _record(
        session,
        "confirmation.submitted",
        actor,
        confirmation,
        {
            "from": before,
            "changed": [r.section_key for r in confirmation.sections if r.changed],
        },
    )


# ---------------------------------------------------------------------------------------------
# Staff review
# ---------------------------------------------------------------------------------------------


def format_value(question: Question, value: Any) -> str:
    """A value as people read it: choices by label, countries by name, units, tables as rows
    (one line per row)."""
    if value is None or value == "" or value == []:
        return ""
    kind = question.type
    if kind in ("yes_no", "single"):
        return question.choice_label(value)
    if kind == "multiple":
        return "、".join(question.choice_label(v) for v in value)
    if kind == "country":
        return COUNTRIES.get(value, value)
    if kind == "date":
        return _date_text(value)
    if kind == "number":
        text = str(int(value)) if isinstance(value, float) and value == int(value) else str(value)
        return f"{text} {question.unit}" if question.unit else text
    if kind == "table":
        lines = []
        for row in value:
            cells = []
            for column in question.columns:
                cell = row.get(column.key)
                if column.type == "evidence" or cell in (None, ""):
                    continue
                if column.type == "country":
                    cell = COUNTRIES.get(cell, cell)
                elif column.type == "date":
                    cell = _date_text(cell)
                elif column.choices:
                    cell = dict(column.choices).get(cell, cell)
                cells.append(f"{column.label}: {cell}")
            lines.append("／".join(cells))
        return "\n".join(lines)
    return str(value)


def _date_text(value: Any) -> str:
    try:
        return format_date(date.fromisoformat(value))
    except (TypeError, ValueError):
        return str(value)


@dataclass
class DiffRow:
    key: str
    label: str
    before: str
    after: str
    changed: bool


@dataclass
class SectionDiff:
    key: str
    title: str
    cites: tuple[str, ...]
    changed: bool | None  # None: not answered
    note: str
    rows: list[DiffRow] = field(default_factory=list)

    @property
    def changed_rows(self) -> list[DiffRow]:
        return [r for r in self.rows if r.changed]


def diff(confirmation: Confirmation) -> list[SectionDiff]:
    """Per section, each question's value before (the baseline) and after this confirmation."""
    baseline = confirmation.baseline_values()
    result = []
    for view in section_views(confirmation):
        after_values = view.values
        shown = {q.key for q in view.shown}
        rows = []
        for question in view.questions:
            before = format_value(question, baseline.get(question.key))
            after = format_value(question, after_values.get(question.key))
            if question.key not in shown and not before and not after:
                continue
            rows.append(
                DiffRow(
                    key=question.key,
                    label=question.label,
                    before=before,
                    after=after,
                    changed=bool(view.row.changed) and before != after,
                )
            )
        result.append(
            SectionDiff(
                key=view.key,
                title=view.section.title,
                cites=view.section.cites,
                changed=view.row.changed,
                note=view.row.note,
                rows=rows,
            )
        )
    return result


def _reviewable(confirmation: Confirmation, actor: User, doing: str) -> None:
    if not schedules.can_manage_schedule(actor, confirmation.schedule):
        raise ConfirmationError("この定期確認を確認する権限がありません。")
    _check_active(confirmation.schedule, doing)
    if confirmation.status != "submitted":
        raise ConfirmationError("提出された定期確認だけを差し戻し・完了できます。")


def return_to_vendor(
    session: Session, confirmation: Confirmation, actor: User, comment: str, version: int | None
) -> None:
    """Send the answers back to the vendor with a comment the vendor reads."""
    _reviewable(confirmation, actor, "差し戻し")
    _check_version(confirmation, version)
    comment = _text(comment, "差戻しの理由（事業者への連絡事項）", MAX_COMMENT, required=True)
    confirmation.status = "returned"
    confirmation.return_comment = comment
    session.flush()
    _record(session, "confirmation.returned", actor, confirmation, {"comment": comment})


def complete(
    session: Session,
    confirmation: Confirmation,
    actor: User,
    *,
    method: str | None,
    result: str,
    today: date,
    version: int | None,
) -> date:
    """Sign the confirmation off: method, result, the checker (never one who answered); the
    next period starts. Returns the next due date."""
    _reviewable(confirmation, actor, "完了")
    _check_version(confirmation, version)
    if method not in METHODS:
        raise ConfirmationError("確認の方法（書面・実地・リモート・第三者報告）を選んでください。")
    result = _text(result, "確認の結果", MAX_RESULT, required=True)
    if actor.id in answerers(confirmation):
        raise ConfirmationError(
            "回答を入力した本人は、その定期確認を確認できません（兼務の禁止）。"
            "別の職員が確認してください。"
        )
    schedule = confirmation.schedule
    changed_keys = _changed_keys(confirmation)
    confirmation.status = "completed"
    confirmation.method = method
    confirmation.result = result
    confirmation.checked_by_id = actor.id
    confirmation.completed_on = today
    schedules.confirmed(session, schedule, confirmation, today)
    confirmation.next_due_on = schedule.due_on
    session.flush()
    _record(
        session,
        "confirmation.completed",
        actor,
        confirmation,
        {
            "method": method,
            "next_due_on": confirmation.next_due_on,
            "changed": sorted(changed_keys),
        },
    )
    if schedule.application is not None and changed_keys:
        update_service(session, confirmation, actor, changed_keys)
    return confirmation.next_due_on


def _changed_keys(confirmation: Confirmation) -> set[str]:
    baseline = confirmation.baseline_values()
    keys = set()
    for row in confirmation.sections:
        if row.changed:
            keys |= {k for k, v in row.value_map().items() if v != baseline.get(k)}
    return keys


def update_service(
    session: Session, confirmation: Confirmation, actor: User, changed_keys: set[str]
) -> None:
    """Copy what a completed confirmation changed (ISMAP, certificates, data locations,
    subcontractors) into the external service's record, mapped as when it was prefilled
    (9.2(2)⑤⑦⑨); the register and the expiry triggers follow the record."""
    schedule = confirmation.schedule
    service = schedule.application.service
    facts = approvals.facts_from_answers(schedules.current_values(session, schedule), service.name)
    copied: list[str] = []
    if any(k.startswith("certifications.ismap") for k in changed_keys):
        for name in ISMAP_FIELDS:
            setattr(service, name, getattr(facts, name))
        copied.append("ismap")
    for key, table in SERVICE_TABLES.items():
        if key in changed_keys and table not in copied:
            rows = facts.tables.get(table, [])
            if table == "subcontractors":  # keep the approval dates recorded by staff
                approved = {r.get("name"): r.get("approved_on", "") for r in service.rows(table)}
                for row in rows:
                    row["approved_on"] = approved.get(row["name"], "")
            service.set_rows(table, rows)
            copied.append(table)
    if not copied:
        return
    service.refresh_derived()
    session.flush()
    audit.record(
        session,
        "service.update",
        actor=actor,
        obj=service,
        organisation_id=service.organisation_id,
        details={"confirmation_id": confirmation.id, "copied": copied},
    )
