"""The vendor's incident / change report form (9.1(2)⑩, 9.2(2)②(オ))."""

from __future__ import annotations

from datetime import date

from flask_wtf.file import FileField
from wtforms import BooleanField, DateField, HiddenField, RadioField, SelectChoice, TimeField
from wtforms.validators import DataRequired, InputRequired, Optional, ValidationError

from portal.engagements.forms import long_text
from portal.forms import BaseForm
from portal.reviews.models import REPORT_KINDS
from portal.reviews.reports import INFORMATION_MAX, MEASURES_MAX, SUMMARY_MAX

EARLIEST, LATEST = date(1990, 1, 1), date(2100, 12, 31)


class _TimeField(TimeField):
    def process_formdata(self, valuelist):
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError("時刻を正しく入力してください（例: 09:30）。") from exc


def _in_range(_form, field) -> None:
    if field.data and not EARLIEST <= field.data <= LATEST:
        raise ValidationError("1990年1月1日以降の日付を入力してください。")


class ReportForm(BaseForm):
    schedule = HiddenField(validators=[DataRequired()])
    kind = RadioField(
        "報告の種類",
        choices=[SelectChoice(k, v) for k, v in REPORT_KINDS.items()],
        validators=[InputRequired(message="報告の種類を選んでください。")],
    )
    occurred_on = DateField(
        "発生した日（変更の場合は変更した日）",
        validators=[InputRequired(message="日付を入力してください。"), _in_range],
    )
    occurred_time = _TimeField("時刻（分かる場合）", validators=[Optional()])
    summary = long_text("報告の内容（何が起きたか・何を変更したか）", SUMMARY_MAX, DataRequired())
    information_affected = long_text("影響を受けた（又はそのおそれがある）情報", INFORMATION_MAX)
    personal_data_affected = BooleanField("個人情報が含まれる（又はそのおそれがある）")
    measures = long_text("実施した措置・今後の対応", MEASURES_MAX)
    attachment = FileField("添付資料（任意）")
