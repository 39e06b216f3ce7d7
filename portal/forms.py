"""The one form base class: Japanese messages, CSRF, and trimmed, length-limited text."""

from __future__ import annotations

import gettext

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.i18n import messages_path
from wtforms.validators import Length

# WTForms' built-in messages in Japanese. Without Flask-Babel, Flask-WTF shows them in English,
# and WTForms' own Japanese catalogue lacks several (length limits, invalid choices).
MESSAGES_JA = {
    "This field is required.": "入力してください。",
    "Field cannot be longer than %(max)d character.": "%(max)d文字以内で入力してください。",
    "Field cannot be longer than %(max)d characters.": "%(max)d文字以内で入力してください。",
    "Field must be at least %(min)d character long.": "%(min)d文字以上で入力してください。",
    "Field must be at least %(min)d characters long.": "%(min)d文字以上で入力してください。",
    "Field must be between %(min)d and %(max)d characters long.": (
        "%(min)d文字以上%(max)d文字以内で入力してください。"
    ),
    "Not a valid choice.": "選択肢の中から選んでください。",
    "Invalid Choice: could not coerce.": "選択肢の中から選んでください。",
    "'%(value)s' is not a valid choice for this field.": "選択できない値が含まれています。",
    "'%(value)s' are not valid choices for this field.": "選択できない値が含まれています。",
    "Invalid choice(s): one or more data inputs could not be coerced.": (
        "選択できない値が含まれています。"
    ),
    "Not a valid integer value.": "整数を半角数字で入力してください。",
    "Number must be at least %(min)s.": "%(min)s以上の数を入力してください。",
    "Number must be at most %(max)s.": "%(max)s以下の数を入力してください。",
    "Number must be between %(min)s and %(max)s.": "%(min)sから%(max)sまでの数を入力してください。",
    "Not a valid date value.": "日付を正しく入力してください（例: 2026-04-01）。",
}


class JapaneseTranslations:
    """``MESSAGES_JA`` first, then WTForms' Japanese catalogue."""

    def __init__(self) -> None:
        try:
            self._catalogue: gettext.NullTranslations = gettext.translation(
                "wtforms", messages_path(), ["ja"]
            )
        except OSError:
            self._catalogue = gettext.NullTranslations()

    def gettext(self, string: str) -> str:
        return MESSAGES_JA.get(string) or self._catalogue.gettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        chosen = singular if n == 1 else plural
        return MESSAGES_JA.get(chosen) or self._catalogue.ngettext(singular, plural, n)


_TRANSLATIONS = JapaneseTranslations()


class BaseForm(FlaskForm):
    class Meta:
        locales = ("ja_JP", "ja")

        def get_translations(self, form):
            return _TRANSLATIONS


def strip(value):
    return value.strip() if isinstance(value, str) else value


def text_field(label: str, max_length: int, *validators, **kwargs) -> StringField:
    """A trimmed text field that never accepts more than ``max_length`` characters."""
    return StringField(
        label,
        validators=[*validators, Length(max=max_length)],
        filters=[strip],
        render_kw={"maxlength": max_length, **kwargs.pop("render_kw", {})},
        **kwargs,
    )
