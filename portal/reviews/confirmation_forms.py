"""Forms of the schedule page and the 定期確認 (the answer fields of a section are read from
the request by ``portal.assessments.answers``, as in the assessment)."""

from __future__ import annotations

from wtforms import DateField, IntegerField, RadioField, SelectChoice
from wtforms.validators import InputRequired, NumberRange, Optional

from portal.admin.forms import VersionedForm
from portal.engagements.forms import in_range, long_text
from portal.reviews.confirmations import MAX_COMMENT, MAX_NOTE, MAX_RESULT
from portal.reviews.models import METHODS
from portal.reviews.schedules import MAX_INTERVAL_MONTHS

CHANGE_CHOICES = {"unchanged": "変更なし", "changed": "変更あり"}


class IntervalForm(VersionedForm):
    """The interval of one contract or service, and optionally its next date (9.1(3))."""

    months = IntegerField(
        "確認の間隔（か月）",
        validators=[InputRequired(), NumberRange(min=1, max=MAX_INTERVAL_MONTHS)],
    )
    next_due_on = DateField(
        "次回の確認期限（空欄なら間隔から計算します）", validators=[Optional(), in_range]
    )


class OpenForm(VersionedForm):
    """Open the next confirmation (the schedule's version)."""


class SectionForm(VersionedForm):
    """The answer to one section; the changed values come with the request's ``a:…`` fields."""

    change = RadioField(
        "前回の確認から変更はありますか",
        choices=[SelectChoice(k, v) for k, v in CHANGE_CHOICES.items()],
        validators=[InputRequired(message="「変更なし」か「変更あり」を選んでください。")],
    )
    note = long_text("変更の概要（変更ありの場合は必須）", MAX_NOTE)


class SubmitForm(VersionedForm):
    """Hand the answers in (the confirmation's version)."""


class ReturnForm(VersionedForm):
    comment = long_text("差戻しの理由（事業者への連絡事項）", MAX_COMMENT, InputRequired())


class CompleteForm(VersionedForm):
    method = RadioField(
        "確認の方法",
        choices=[SelectChoice(k, v) for k, v in METHODS.items()],
        validators=[InputRequired(message="確認の方法を選んでください。")],
    )
    result = long_text("確認の結果（所見の要約）", MAX_RESULT, InputRequired())
