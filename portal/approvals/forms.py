from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    TextAreaField,
)
from wtforms.validators import URL, DataRequired, InputRequired, Length, NumberRange, Optional

from portal.admin.forms import VersionedForm
from portal.approvals.models import COURT_CHOICES, ISMAP_KINDS, LAW_CHOICES, SCOPE_CHOICES
from portal.engagements.forms import CONFIDENTIALITY, in_range, long_text
from portal.forms import BaseForm, strip, text_field
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import SEGMENTS


def _optional_choice(choices: dict[str, str], empty: str = "（未確認）") -> list[SelectChoice]:
    return [SelectChoice("", empty)] + [SelectChoice(k, v) for k, v in choices.items()]


class ServiceForm(BaseForm):
    """The facts of an external service (prefilled from an assessment of its provider)."""

    name = text_field("サービス名", 200, DataRequired())
    description = long_text("サービスの概要", 2000)
    provider_country = SelectField(
        "提供者の本社所在国",
        choices=[SelectChoice(code, name) for code, name in COUNTRIES.items()],
        default="JP",
    )
    contracting_party = text_field(
        "契約の相手方（販売代理店等。提供者と直接契約する場合は空欄）", 200
    )
    ismap_kind = RadioField(
        "ISMAPの登録",
        choices=[SelectChoice(k, v) for k, v in ISMAP_KINDS.items()],
        default="none",
        validators=[InputRequired()],
    )
    ismap_number = text_field("ISMAP登録番号", 50)
    ismap_registered_on = DateField("登録日", validators=[Optional(), in_range])
    ismap_audit_period_end = DateField(
        "監査対象期間の終了日（有効期限の算出に使います）", validators=[Optional(), in_range]
    )
    ismap_renewal_pending = BooleanField("更新を申請中")
    ismap_scope_covers = SelectField(
        "言明の範囲に利用する機能・プランが含まれるか", choices=_optional_choice(SCOPE_CHOICES)
    )
    ismap_checked_on = DateField("リストで登録を確認した日", validators=[Optional(), in_range])
    governing_law = SelectField("準拠法", choices=_optional_choice(LAW_CHOICES))
    jurisdiction = SelectField("合意管轄裁判所", choices=_optional_choice(COURT_CHOICES))
    sla_availability = DecimalField(
        "SLAの稼働率（%）", places=None, validators=[Optional(), NumberRange(min=0, max=100)]
    )
    rto_hours = IntegerField(
        "目標復旧時間（RTO・時間）", validators=[Optional(), NumberRange(min=0, max=100_000)]
    )
    rpo_hours = IntegerField(
        "目標復旧時点（RPO・時間）", validators=[Optional(), NumberRange(min=0, max=100_000)]
    )
    backup = long_text("バックアップの方法", 2000)
    exit_plan = long_text("終了時の計画（データの移行・返却・消去）", 2000)


class NewServiceForm(ServiceForm):
    company_id = SelectField("提供者（事業者）", coerce=int, validators=[InputRequired()])
    assessment_id = HiddenField()


class ServiceEditForm(ServiceForm, VersionedForm):
    pass


class PlanForm(BaseForm):
    name = text_field("プラン・エディションの名称", 100, DataRequired())
    notes = text_field("説明（任意）", 500)


class ApplicationForm(BaseForm):
    department_id = SelectField("申請する課", coerce=int, validators=[InputRequired()])
    service_id = SelectField("利用する外部サービス", coerce=int, validators=[InputRequired()])
    plan_id = SelectField("プラン・エディション", validators=[Optional()])
    assessment_id = SelectField("紐づける評価（提供者に対するもの）", validators=[Optional()])
    purpose = long_text("利用目的", 2000, DataRequired())
    business = long_text("利用する業務（利用を認める範囲）", 2000, DataRequired())
    network_segment = SelectField(
        "利用するネットワークの区分",
        choices=[SelectChoice(k, v) for k, v in SEGMENTS.items()],
        validators=[InputRequired()],
    )
    max_confidentiality = RadioField(
        "取り扱う情報の最高の機密性",
        coerce=int,
        choices=CONFIDENTIALITY,
        validators=[InputRequired()],
    )
    personal_data = BooleanField("個人情報を取り扱う")
    specific_personal_data = BooleanField("特定個人情報を取り扱う")
    sensitive_personal_data = BooleanField("要配慮個人情報を取り扱う")
    terms_url = text_field(
        "利用規約のURL（約款型のみ）", 500, Optional(), URL(message="URLを正しく入力してください。")
    )
    terms_file = FileField("同意した版の利用規約（ファイル）")
    terms_text = TextAreaField(
        "又は、同意した版の利用規約の本文（貼り付け）",
        validators=[Length(max=500_000)],
        render_kw={"rows": 6},
    )
    terms_risks_confirmed = BooleanField(
        "規約の一方的な変更、情報の目的外利用・第三者提供、サービスの停止・終了と代替手段、"
        "バックアップの要否について確認し、機密性2以上の情報を取り扱わないことを確認した"
        "（対策基準9.3(2)）"
    )


class RevisionForm(ApplicationForm, VersionedForm):
    pass


DECISION_CHOICES = [
    SelectChoice("approve", "承認"),
    SelectChoice("conditional", "条件付承認"),
    SelectChoice("return", "差戻し（申請者に修正を求める）"),
    SelectChoice("reject", "却下"),
]


class DecisionForm(VersionedForm):
    decision = RadioField("判断", choices=DECISION_CHOICES, validators=[InputRequired()])
    reason = long_text("判断の理由", 2000, DataRequired())
    conditions = long_text("利用の条件（条件付承認の場合）", 2000)
    override_reason = long_text("不可の要因があるにもかかわらず承認する理由（該当する場合）", 2000)
    manager_id = SelectField(
        "外部サービス管理者（承認・条件付承認の場合）", validators=[Optional()]
    )


class HandoverForm(VersionedForm):
    manager_id = SelectField("新しい外部サービス管理者", validators=[DataRequired()])
    appointed_on = DateField("引継ぎ日", validators=[InputRequired(), in_range])
    note = text_field("引継ぎの内容（任意）", 500)


STATUS_CHOICES = [
    SelectChoice("suspend", "停止する"),
    SelectChoice("resume", "再開する"),
    SelectChoice("retire", "廃止する（利用終了時の確認を始める）"),
]


class StatusForm(VersionedForm):
    action = RadioField("操作", choices=STATUS_CHOICES, validators=[InputRequired()])
    reason = long_text("理由", 2000, DataRequired())


class TermsForm(BaseForm):
    terms_url = text_field(
        "利用規約のURL", 500, DataRequired(), URL(message="URLを正しく入力してください。")
    )
    terms_file = FileField("新しい版の利用規約（ファイル）")
    terms_text = TextAreaField(
        "又は、新しい版の本文（貼り付け）",
        validators=[Length(max=500_000)],
        filters=[strip],
        render_kw={"rows": 6},
    )
