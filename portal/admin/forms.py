from __future__ import annotations

from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
)
from wtforms.validators import DataRequired, InputRequired, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.forms import BaseForm, text_field
from portal.orgs.models import ORGANISATION_KINDS
from portal.permissions import ROLE_LABELS, Role, assignable_roles


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class VersionedForm(BaseForm):
    version = HiddenField(validators=[DataRequired()])

    def expected_version(self) -> int | None:
        try:
            return int(self.version.data)
        except (TypeError, ValueError):
            return None


def role_choices(vendor: bool) -> list[SelectChoice]:
    return [SelectChoice(r.value, ROLE_LABELS[r]) for r in assignable_roles(vendor)]


class UserForm(VersionedForm):
    name = text_field("氏名", 100, DataRequired())
    roles = MultiCheckboxField(
        "役割",
        choices=role_choices(False),
        validators=[DataRequired(message="役割を1つ以上選択してください。")],
    )
    departments = MultiCheckboxField("所属（課等）", coerce=int, choices=[])

    def selected_roles(self) -> set[Role]:
        return {Role(r) for r in self.roles.data or []}


class NewUserForm(UserForm):
    version = HiddenField()
    email = text_field("メールアドレス", 254, DataRequired())


class ResetForm(BaseForm):
    reset_mfa = BooleanField("二要素認証の設定も初期化する（認証アプリの紛失時など）")


class DepartmentForm(BaseForm):
    name = text_field("名称", 100, DataRequired())
    code = text_field("所属コード", 20, Optional())
    active = BooleanField("使用中", default=True)


class OrganisationForm(VersionedForm):
    name = text_field("正式名称", 200, DataRequired())
    kind = SelectField(
        "団体の種類",
        choices=[SelectChoice(key, label) for key, label in ORGANISATION_KINDS.items()],
        validators=[InputRequired()],
    )
    self_designation = text_field("文書での自称", 20, DataRequired())
    ciso_title = text_field("最高情報セキュリティ責任者（CISO）の職名", 100, DataRequired())
    network_admin_title = text_field("ネットワーク管理者の職名", 100, DataRequired())
    approver_title = text_field("利用申請の許可権限者の職名", 100, DataRequired())
    review_interval_months = IntegerField(
        "定期確認の標準間隔（月）", validators=[InputRequired(), NumberRange(min=1, max=60)]
    )
    high_risk_review_interval_months = IntegerField(
        "高リスクの場合の確認間隔（月）", validators=[InputRequired(), NumberRange(min=1, max=60)]
    )
    decision_requires_confirmation = BooleanField(
        "評価の判定は、判定した職員とは別の職員が確認して確定する（兼務の禁止）"
    )
