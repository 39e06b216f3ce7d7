from __future__ import annotations

from wtforms import DateField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import InputRequired, Length

from portal.engagements.forms import in_range
from portal.forms import BaseForm, strip
from portal.lifecycle.models import RESULTS
from portal.lifecycle.service import MAX_TEXT


class CheckForm(BaseForm):
    """One item's check. Built with ``prefix`` = the item, so that every form on the page has
    its own field ids."""

    result = SelectField(
        "結果",
        choices=[SelectChoice("", "選んでください")]
        + [SelectChoice(key, label) for key, label in RESULTS.items()],
        validators=[InputRequired(message="結果を選んでください。")],
    )
    checked_on = DateField("確認した日", validators=[InputRequired(), in_range])
    evidence = TextAreaField(
        "証跡（確認の根拠と保管場所）",
        validators=[Length(max=MAX_TEXT)],
        filters=[strip],
        render_kw={"maxlength": MAX_TEXT, "rows": 3},
    )
    note = TextAreaField(
        "メモ・要対応事項・該当しない理由",
        validators=[Length(max=MAX_TEXT)],
        filters=[strip],
        render_kw={"maxlength": MAX_TEXT, "rows": 3},
    )
