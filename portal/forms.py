"""The one form base class: Japanese messages, CSRF, and trimmed, length-limited text."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length


class BaseForm(FlaskForm):
    class Meta:
        locales = ("ja_JP", "ja")


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
