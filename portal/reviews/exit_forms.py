"""Forms of the exit checklist of a 業務委託 contract (対策基準 9.1(2)⑨)."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import DateField, RadioField, SelectChoice
from wtforms.validators import DataRequired, InputRequired

from portal.admin.forms import VersionedForm
from portal.engagements.forms import in_range, long_text
from portal.forms import BaseForm
from portal.reviews.exits import MAX_TEXT
from portal.reviews.models import EXIT_RESULTS


class EndContractForm(VersionedForm):
    ending_on = DateField("契約の終了日", validators=[InputRequired(), in_range])
    reason = long_text("終了の理由", MAX_TEXT, DataRequired())


class ExitItemForm(BaseForm):
    """One item's record. Built with ``prefix`` = the item key, so that every form on the page
    has its own field ids."""

    result = RadioField(
        "結果",
        choices=[SelectChoice(key, label) for key, label in EXIT_RESULTS.items()],
        validators=[InputRequired(message="結果を選んでください。")],
    )
    checked_on = DateField("確認した日", validators=[InputRequired(), in_range])
    note = long_text("メモ・該当しない理由", MAX_TEXT)
    # Shown only for the items that need a file (the 消去証明書).
    certificate = FileField("消去証明書（ファイル）")


class CloseForm(VersionedForm):
    """Every item is recorded: the contract has ended."""


class OverrideForm(VersionedForm):
    reason = long_text("確認を終えずに終了する理由", MAX_TEXT, DataRequired())
