from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import DateField, SelectChoice, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from portal.admin.forms import VersionedForm
from portal.engagements.forms import in_range, long_text
from portal.forms import BaseForm, strip
from portal.lifecycle.models import RESULTS
from portal.lifecycle.service import MAX_TEXT


class CheckForm(BaseForm):
    """One item's check. Built with ``prefix`` = the item, so that every form on the page has
    its own field ids."""

    result = SelectField(
        "結果",
        choices=[SelectChoice("", "選んでください")]
        + [SelectChoice(key, label) for key, label in RESULTS.items()],
        validators=[InputRequired(message="結果を選んでください。")],
    )
    checked_on = DateField("確認した日", validators=[InputRequired(), in_range])
    evidence = TextAreaField(
        "証跡（確認の根拠と保管場所）",
        validators=[Length(max=MAX_TEXT)],
        filters=[strip],
        render_kw={"maxlength": MAX_TEXT, "rows": 3},
    )
    note = TextAreaField(
        "メモ・要対応事項・該当しない理由",
        validators=[Length(max=MAX_TEXT)],
        filters=[strip],
        render_kw={"maxlength": MAX_TEXT, "rows": 3},
    )
    # Shown only for the items that need a file (the 消去証明書, 9.2(7)①(イ)).
    certificate = FileField("消去証明書（ファイル）")


class RetireCompleteForm(VersionedForm):
    """廃止を完了する: every exit item is settled (9.2(7))."""


class RetireOverrideForm(VersionedForm):
    """The approver retires the entry before the exit checklist is complete."""

    reason = long_text("利用終了時の確認を終えずに廃止する理由", MAX_TEXT, DataRequired())
