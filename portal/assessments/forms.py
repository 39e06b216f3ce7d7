from __future__ import annotations

from wtforms import SelectField
from wtforms.validators import DataRequired, Optional, ValidationError

from portal.forms import BaseForm, text_field
from portal.vendors import corporate_number


class InviteForm(BaseForm):
    """Pick a registered company, or register one by 法人番号; name the contact to invite."""

    company_id = SelectField("事業者", validators=[Optional()], validate_choice=True)
    # No Optional(): the checks below decide, depending on whether a company was picked.
    corporate_number = text_field(
        "法人番号（新しい事業者の場合）", 20, render_kw={"inputmode": "numeric"}
    )
    company_name = text_field("商号又は名称（新しい事業者の場合）", 200)
    contact_name = text_field("担当者の氏名", 100, DataRequired())
    contact_email = text_field("担当者のメールアドレス", 254, DataRequired())

    def validate_corporate_number(self, field) -> None:
        if self.company_id.data:
            return
        if not field.data:
            raise ValidationError("登録済みの事業者を選ぶか、法人番号を入力してください。")
        if not corporate_number.is_valid(field.data):
            raise ValidationError(
                "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。"
            )

    def validate_company_name(self, field) -> None:
        if not self.company_id.data and not field.data:
            raise ValidationError("新しい事業者の商号又は名称を入力してください。")
