"""The autosave call's checks, shared by its read phase and its write phase.

The autosave reads and validates in a read transaction and takes the write lock only for the
save (``portal.db.write_phase``); everything decided while reading is decided again under the
lock, from rows read there. Both phases load only what one answer needs: the question, the
answers its conditions (and theirs, transitively) look at, and its own answer row — never the
whole sheet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.assessments.models import Answer, Assessment
from portal.permissions import Role
from portal.questionnaires.conditions import EngagementFacts, holds
from portal.questionnaires.schema import Question, Questionnaire
from portal.users.models import User, UserRole
from portal.vendors.models import VendorAccess


def _section_of(questionnaire: Questionnaire, question: Question):
    return questionnaire.section(question.section_key)


def relevant_keys(questionnaire: Questionnaire, key: str) -> set[str]:
    """The question and every answer its visibility depends on (section and question
    conditions, followed back through the questions they refer to)."""
    seen: set[str] = set()
    todo = [key]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        question = questionnaire.question(current)
        if question is None:
            continue
        section = _section_of(questionnaire, question)
        for condition in (section.when if section else None, question.when):
            if condition is not None:
                todo.extend(ref for ref, _accepted in condition.answers)
    return seen


def is_visible(
    questionnaire: Questionnaire, facts: EngagementFacts, values: Mapping[str, Any], key: str
) -> bool:
    """Whether ``visible_sections`` would show the question, from the answers it depends on.

    As there, a condition sees only the answers of questions that are shown themselves; the
    loader guarantees that conditions refer to earlier questions only, so this recursion is the
    same walk restricted to the questions that matter.
    """
    memo: dict[str, bool] = {}

    def visible(current: str) -> bool:
        if current not in memo:
            question = questionnaire.question(current)
            if question is None:
                memo[current] = False
                return False
            section = _section_of(questionnaire, question)
            memo[current] = all(
                holds(condition, facts, shown(condition))
                for condition in (section.when if section else None, question.when)
            )
        return memo[current]

    def shown(condition) -> dict[str, Any]:
        if condition is None:
            return {}
        return {
            ref: values[ref]
            for ref, _accepted in condition.answers
            if ref in values and visible(ref)
        }

    return visible(key)


@dataclass
class Snapshot:
    """The rows one autosave looks at: its own answer and those its conditions depend on."""

    rows: dict[str, Answer]
    values: dict[str, Any]  # decoded, without cleared (null) answers, as ``Sheet.values``


def snapshot(session: Session, assessment: Assessment, keys: set[str]) -> Snapshot:
    """The rows as they are now (``populate_existing``: rows loaded by an earlier transaction of
    the session are overwritten, not kept)."""
    rows = {
        row.question_key: row
        for row in session.scalars(
            sa.select(Answer)
            .where(Answer.assessment_id == assessment.id, Answer.question_key.in_(sorted(keys)))
            .execution_options(populate_existing=True)
        )
    }
    values = {
        key: value for key, row in rows.items() if (value := json.loads(row.value)) is not None
    }
    return Snapshot(rows=rows, values=values)


def is_stale(snap: Snapshot | Any, key: str, value: Any, form: Mapping[str, str]) -> bool:
    """Optimistic locking per answer: the page said which revision it showed (``r:<key>``); if
    someone saved a different value since, this save would silently undo theirs. ``snap`` is a
    ``Snapshot`` or a whole ``views.Sheet`` (both have ``rows`` and ``values``)."""
    shown = form.get(f"r:{key}")
    if shown is None or not shown.isdigit():
        return False  # an old page or client without the field: accept as before
    row = snap.rows.get(key)
    current = row.revision if row is not None else 0
    return int(shown) != current and snap.values.get(key) != value


def locked_assessment(session: Session, assessment_id: int) -> Assessment | None:
    """The assessment and its engagement read again; on PostgreSQL the assessment row stays
    locked to the end of the transaction, so autosaves and a concurrent submit (which updates
    the row) wait for each other, as SQLite's writer lock already makes them. ``FOR NO KEY
    UPDATE``: inserting an answer (which takes ``FOR KEY SHARE`` on its assessment) is not
    blocked, so a section save that inserts while this save updates cannot deadlock with it."""
    return session.scalars(
        sa.select(Assessment)
        .options(joinedload(Assessment.engagement, innerjoin=True))
        .where(Assessment.id == assessment_id)
        .with_for_update(of=Assessment, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


@dataclass(frozen=True)
class Account:
    """What the permission rules look at of a user, as read now (see ``account_now``)."""

    is_authenticated: bool
    session_version: int
    vendor_company_id: int | None
    role_set: frozenset[Role]
    vendor_organisation_ids: frozenset[int]


def account_now(session: Session, user_id: int, organisation_id: int) -> Account | None:
    """The user's account read again in one statement (active, login version, roles, company,
    access granted by ``organisation_id``), for ``can`` and ``can_answer``."""
    access = (
        sa.select(VendorAccess.user_id)
        .where(VendorAccess.user_id == User.id, VendorAccess.organisation_id == organisation_id)
        .exists()
    )
    rows = session.execute(
        sa.select(User.active, User.session_version, User.vendor_company_id, access, UserRole.role)
        .outerjoin(UserRole, UserRole.user_id == User.id)
        .where(User.id == user_id)
    ).all()
    if not rows:
        return None
    active, version, company_id, granted, _role = rows[0]
    return Account(
        is_authenticated=bool(active),
        session_version=version,
        vendor_company_id=company_id,
        role_set=frozenset(Role(role) for *_rest, role in rows if role in Role._value2member_map_),
        vendor_organisation_ids=frozenset({organisation_id} if granted else ()),
    )


def returned_editable(session: Session, assessment: Assessment, questionnaire) -> set[str]:
    """For a returned assessment: the returned answers and the questions depending on them
    (``views.editable_keys``, reading only the returned keys)."""
    editable = set(
        session.scalars(
            sa.select(Answer.question_key).where(
                Answer.assessment_id == assessment.id, Answer.returned.is_(True)
            )
        )
    )
    for question in questionnaire.questions:  # conditions refer to earlier questions only
        if question.when and any(key in editable for key, _values in question.when.answers):
            editable.add(question.key)
    return editable
