"""Forms of contractor audits (対策基準 10.1(4)): the plan, the records of performance and report,
and a file."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import DateField, RadioField, SelectChoice, SelectField
from wtforms.validators import DataRequired, InputRequired, Optional

from portal.admin.forms import VersionedForm
from portal.contractor_audits import service
from portal.contractor_audits.models import AUDIT_METHODS
from portal.engagements.forms import in_range, long_text
from portal.forms import BaseForm, text_field


class PlanForm(BaseForm):
    vendor_company_id = SelectField("監査する委託先", coerce=int, validators=[InputRequired()])
    schedule_id = SelectField("対象の契約・サービス（任意）", validators=[Optional()])
    department_id = SelectField("監査の対象となる課", validators=[Optional()])
    subcontractor = text_field(
        "再委託先を監査する場合、その名称（任意）", service.MAX_SUBCONTRACTOR
    )
    title = text_field("監査の件名", service.MAX_TITLE, DataRequired())
    scope = long_text("監査の範囲", service.MAX_TEXT, DataRequired())
    method = RadioField(
        "監査の方法",
        choices=[SelectChoice(k, v) for k, v in AUDIT_METHODS.items()],
        validators=[InputRequired()],
    )
    auditor_id = SelectField("監査担当者", coerce=int, validators=[InputRequired()])
    planned_on = DateField("実施予定日", validators=[InputRequired(), in_range])


class PerformedForm(VersionedForm):
    performed_on = DateField("実施日", validators=[InputRequired(), in_range])
    evidence = long_text(
        "確認した証跡（資料、記録と、その保管場所）", service.MAX_TEXT, DataRequired()
    )


class ReportForm(VersionedForm):
    reported_on = DateField("報告日", validators=[InputRequired(), in_range])
    report = long_text("監査の結果（報告の内容）", service.MAX_REPORT, DataRequired())


class FileForm(BaseForm):
    purpose = RadioField(
        "ファイルの種類",
        choices=[SelectChoice("audit_report", "監査報告書"), SelectChoice("evidence", "証跡")],
        default="audit_report",
        validators=[InputRequired()],
    )
    file = FileField("ファイル")
