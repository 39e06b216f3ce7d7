from __future__ import annotations

from wtforms.validators import DataRequired, Optional, ValidationError

from portal.forms import BaseForm, text_field
from portal.vendors import corporate_number


def valid_corporate_number(_form, field) -> None:
    if not corporate_number.is_valid(field.data or ""):
        raise ValidationError(
            "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。"
        )


class CompanyProfileForm(BaseForm):
    name = text_field("商号又は名称", 200, DataRequired())
    address = text_field("本店又は主たる事務所の所在地", 300, Optional())
    representative = text_field("代表者", 100, Optional())


class CompanyForm(CompanyProfileForm):
    corporate_number = text_field(
        "法人番号（13桁）",
        20,
        DataRequired(),
        valid_corporate_number,
        render_kw={"inputmode": "numeric"},
    )


class VendorUserForm(BaseForm):
    name = text_field("氏名", 100, DataRequired())
    email = text_field("メールアドレス", 254, DataRequired())
