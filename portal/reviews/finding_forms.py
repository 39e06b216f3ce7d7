"""Forms of findings: raising one (the form is drawn by the ``findings_section`` macro of
``reviews/_findings.html``) and closing it."""

from __future__ import annotations

from wtforms import DateField, SelectChoice, SelectField
from wtforms.validators import DataRequired, InputRequired

from portal.admin.forms import VersionedForm
from portal.engagements.forms import in_range, long_text
from portal.forms import BaseForm, text_field
from portal.reviews import findings
from portal.reviews.models import SEVERITIES


class FindingForm(BaseForm):
    severity = SelectField(
        "重要度",
        choices=[SelectChoice(k, v) for k, v in SEVERITIES.items()],
        validators=[InputRequired()],
    )
    title = text_field("指摘事項", findings.MAX_TITLE, DataRequired())
    description = long_text("指摘の内容", findings.MAX_TEXT)
    corrective_action = long_text("是正措置", findings.MAX_TEXT, DataRequired())
    owner_id = SelectField("是正措置の担当者", coerce=int, validators=[InputRequired()])
    due_on = DateField("是正の期限", validators=[InputRequired(), in_range])


class CloseForm(VersionedForm):
    note = long_text("対応の内容（完了の根拠）", findings.MAX_NOTE, DataRequired())
