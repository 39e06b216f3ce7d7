from __future__ import annotations

from datetime import date

from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from portal.admin.forms import VersionedForm
from portal.forms import BaseForm, strip, text_field
from portal.questionnaires.schema import KINDS, SEGMENTS

CONFIDENTIALITY = [
    SelectChoice(3, "機密性3（個人情報・特定個人情報など、秘密文書に相当する情報）"),
    SelectChoice(2, "機密性2（公開することを予定していない情報）"),
    SelectChoice(1, "機密性1（公開しても差し支えない情報）"),
]
INTEGRITY = [
    SelectChoice(
        2, "完全性2（改ざん・誤びゅう・破損により住民の権利が侵害される等のおそれがある情報）"
    ),
    SelectChoice(1, "完全性1（それ以外の情報）"),
]
AVAILABILITY = [
    SelectChoice(
        2,
        "可用性2（滅失・紛失や利用できないことにより業務の安定的な遂行に支障を及ぼすおそれがある情報）",
    ),
    SelectChoice(1, "可用性1（それ以外の情報）"),
]


EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)


def in_range(_form, field) -> None:
    if field.data and not EARLIEST <= field.data <= LATEST:
        raise ValidationError("2000年1月1日から2100年12月31日までの日付を入力してください。")


def long_text(label: str, max_length: int, *validators):
    return TextAreaField(
        label,
        validators=[*validators, Length(max=max_length)],
        filters=[strip],
        render_kw={"maxlength": max_length, "rows": 4},
    )


class EngagementForm(BaseForm):
    kind = RadioField(
        "種別", choices=[SelectChoice(k, v) for k, v in KINDS.items()], validators=[InputRequired()]
    )
    title = text_field("件名", 200, DataRequired())
    department_id = SelectField("担当課", coerce=int, validators=[InputRequired()])
    purpose = long_text("目的・業務の内容", 4000, DataRequired())
    period_start = DateField("期間（開始日）", validators=[Optional(), in_range])
    period_end = DateField("期間（終了日）", validators=[Optional(), in_range])
    contract_amount = IntegerField(
        "契約金額（円・税込、任意）", validators=[Optional(), NumberRange(min=0, max=10**13)]
    )
    information = long_text("取り扱う情報", 4000, DataRequired())
    confidentiality = RadioField(
        "機密性", coerce=int, choices=CONFIDENTIALITY, validators=[InputRequired()]
    )
    integrity = RadioField("完全性", coerce=int, choices=INTEGRITY, validators=[InputRequired()])
    availability = RadioField(
        "可用性", coerce=int, choices=AVAILABILITY, validators=[InputRequired()]
    )
    personal_data = BooleanField("個人情報を取り扱う")
    specific_personal_data = BooleanField("特定個人情報（マイナンバーを含む個人情報）を取り扱う")
    sensitive_personal_data = BooleanField("要配慮個人情報を取り扱う")
    network_segment = SelectField(
        "ネットワークの分離区分",
        choices=[SelectChoice("", "指定なし（庁内ネットワークに接続しない）")]
        + [SelectChoice(k, v) for k, v in SEGMENTS.items()],
        validators=[Optional()],
    )

    def validate_period_end(self, field) -> None:
        if field.data and self.period_start.data and field.data < self.period_start.data:
            raise ValidationError("終了日は開始日以降にしてください。")


class EngagementEditForm(EngagementForm, VersionedForm):
    pass
