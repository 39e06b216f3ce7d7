from __future__ import annotations

from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from portal.auth.passwords import MAX_LENGTH
from portal.forms import BaseForm, strip


class LoginForm(BaseForm):
    email = StringField(
        "メールアドレス", validators=[DataRequired(), Length(max=254)], filters=[strip]
    )
    password = PasswordField("パスワード", validators=[DataRequired(), Length(max=MAX_LENGTH)])


class CodeForm(BaseForm):
    code = StringField(
        "確認コード",
        validators=[DataRequired(), Length(max=20)],
        filters=[strip],
        render_kw={"inputmode": "numeric", "autocomplete": "one-time-code", "maxlength": 20},
    )


class NewPasswordForm(BaseForm):
    password = PasswordField(
        "新しいパスワード",
        validators=[DataRequired(), Length(max=MAX_LENGTH)],
        render_kw={"maxlength": MAX_LENGTH},
    )
    confirm = PasswordField(
        "新しいパスワード（確認）",
        validators=[
            DataRequired(),
            EqualTo("password", message="確認用のパスワードが一致しません。"),
        ],
        render_kw={"maxlength": MAX_LENGTH},
    )


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField("現在のパスワード", validators=[DataRequired(), Length(max=MAX_LENGTH)])
