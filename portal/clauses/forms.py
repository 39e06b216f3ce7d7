from __future__ import annotations

from wtforms import DateField, HiddenField, IntegerField, SelectField, TextAreaField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from portal.clauses.assemble import SPECIAL_TERMS_MAX
from portal.engagements.forms import in_range
from portal.forms import BaseForm, strip, text_field


class OptionsForm(BaseForm):
    """Optional articles come as checkboxes named ``included`` (read in the view)."""

    special_terms = TextAreaField(
        "特約事項（任意・文章のみ。空行で項を分けます）",
        validators=[Length(max=SPECIAL_TERMS_MAX)],
        filters=[strip],
        render_kw={"maxlength": SPECIAL_TERMS_MAX, "rows": 6},
    )
    version = HiddenField(default="0")


class ContractForm(BaseForm):
    contract_number = text_field("契約番号", 50, DataRequired())
    contract_date = DateField("契約日", validators=[InputRequired(), in_range])
    period_start = DateField("契約期間（開始日）", validators=[InputRequired(), in_range])
    period_end = DateField("契約期間（終了日）", validators=[InputRequired(), in_range])
    amount = IntegerField(
        "契約金額（円・税込）",
        validators=[Optional(), NumberRange(min=0, max=10**13)],
        render_kw={"inputmode": "numeric"},
    )
    signatory = text_field("乙の記名者（役職・氏名）", 200, DataRequired())
    attached_version = SelectField("契約書に添付した版", coerce=str, validate_choice=True)
    version = HiddenField(default="0")

    def validate_period_end(self, field) -> None:
        if field.data and self.period_start.data and field.data < self.period_start.data:
            raise ValidationError("終了日は開始日以降の日付を入力してください。")
