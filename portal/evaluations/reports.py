"""Read models for the report and the comparison: plain data for the templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.assessments import store
from portal.assessments.models import Assessment
from portal.db import utcnow
from portal.engagements.models import Engagement
from portal.evidence.service import files_by_question
from portal.permissions import can_view_engagement
from portal.questionnaires import loader
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import Question
from portal.scoring import rules
from portal.users.models import User


def earlier_assessments(session: Session, assessment: Assessment, actor: User) -> list[Assessment]:
    """Other handed-in assessments of the same company in this organisation that the actor may
    read, newest first: what this one can be compared with."""
    candidates = session.scalars(
        sa.select(Assessment)
        .options(joinedload(Assessment.engagement).joinedload(Engagement.department))
        .where(
            Assessment.organisation_id == assessment.organisation_id,
            Assessment.vendor_company_id == assessment.vendor_company_id,
            Assessment.id != assessment.id,
            Assessment.status != "draft",
        )
        .order_by(Assessment.submitted_at.desc(), Assessment.id.desc())
    )
    return [a for a in candidates if can_view_engagement(actor, a.engagement)]


@dataclass(frozen=True)
class CompareRow:
    question: Question
    before: Any
    after: Any
    before_files: tuple[str, ...]
    after_files: tuple[str, ...]
    only_in: str | None  # "before" / "after" when the question exists in one version only

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.before_files != self.after_files


def _files(session: Session, assessment: Assessment) -> dict[str, tuple[str, ...]]:
    return {
        key: tuple(sorted(f"{f.original_name}（SHA-256 {f.sha256[:12]}…）" for f in files))
        for key, files in files_by_question(session, assessment).items()
    }


def compare_rows(session: Session, before: Assessment, after: Assessment) -> list[CompareRow]:
    """Answer by answer, in the newer questionnaire's order; questions of the older version that
    no longer exist come last."""
    old_q = loader.get(before.questionnaire_key, before.questionnaire_version)
    new_q = loader.get(after.questionnaire_key, after.questionnaire_version)
    old_values, new_values = store.values(session, before), store.values(session, after)
    old_files, new_files = _files(session, before), _files(session, after)
    rows = []
    new_keys = {q.key for q in new_q.questions}
    for question in [*new_q.questions, *(q for q in old_q.questions if q.key not in new_keys)]:
        in_old = old_q.question(question.key) is not None
        in_new = question.key in new_keys
        before_value, after_value = old_values.get(question.key), new_values.get(question.key)
        if (
            before_value is None
            and after_value is None
            and not (old_files.get(question.key) or new_files.get(question.key))
        ):
            continue  # asked of neither
        rows.append(
            CompareRow(
                question=question,
                before=before_value,
                after=after_value,
                before_files=old_files.get(question.key, ()),
                after_files=new_files.get(question.key, ()),
                only_in=None if in_old and in_new else ("after" if in_new else "before"),
            )
        )
    return rows


def report_context(review) -> dict[str, Any]:
    """Everything the report template needs, for the page and the PDF alike."""
    assessment = review.assessment
    rule_set = rules.latest(assessment.questionnaire_key)
    return {
        "review": review,
        "assessment": assessment,
        "engagement": assessment.engagement,
        "organisation": assessment.engagement.organisation,
        "company": assessment.vendor_company,
        "card": review.card,
        "sheet": review.sheet,
        "outcome": review.outcome,
        "rule_set": rule_set,
        "generated_at": utcnow(),
        "countries": COUNTRIES,
    }
