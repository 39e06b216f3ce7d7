"""/audit: auditors, the CISO and the ネットワーク管理者 read their organisation's events."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from flask import Blueprint, Response, render_template, request
from flask_login import current_user
from wtforms import DateField, IntegerField
from wtforms.validators import NumberRange, Optional, ValidationError

from portal.audit import service as audit
from portal.audit.models import AuditEvent
from portal.db import get_session
from portal.forms import BaseForm, text_field
from portal.permissions import Permission, require
from portal.web import JST, format_jst

bp = Blueprint("audit", __name__, url_prefix="/audit", template_folder="templates")

PAGE_SIZE = 100
ACTION_LABELS = {
    "schedule.opened": "定期確認の予定の作成",
    "schedule.changed": "定期確認の間隔・期限の変更",
    "schedule.triggered": "定期確認の前倒し",
    "reminders.sent": "リマインダー・エスカレーションの送信（定期処理）",
    "confirmation.opened": "定期確認の開始",
    "confirmation.answered": "定期確認の回答（項目）",
    "confirmation.submitted": "定期確認の回答の提出",
    "confirmation.returned": "定期確認の差戻し",
    "confirmation.completed": "定期確認の完了",
    "exit.start": "契約・利用の終了手続の開始（終了時の確認）",
    "exit.record": "契約終了時の確認の記録",
    "exit.close": "契約・利用の終了（終了時の確認の完了）",
    "exit.override": "終了時の確認を終えずに終了（理由を記録）",
    "review_file.uploaded": "定期確認等のファイルの添付",
    "review_file.downloaded": "定期確認等のファイルのダウンロード",
    "report.submitted": "委託先からの事故・変更の報告",
    "report.acknowledged": "委託先からの報告の確認",
    "finding.raised": "指摘事項の登録",
    "finding.closed": "指摘事項の完了",
    "contractor_audit.planned": "委託先監査の計画",
    "contractor_audit.performed": "委託先監査の実施の記録",
    "contractor_audit.reported": "委託先監査の結果の報告",
    "auth.login": "ログイン",
    "auth.login_failed": "ログイン失敗",
    "auth.locked": "アカウントロック",
    "auth.logout": "ログアウト",
    "auth.mfa_enrolled": "二要素認証の設定",
    "auth.recovery_code_used": "リカバリーコードの使用",
    "auth.recovery_codes_replaced": "リカバリーコードの再発行",
    "auth.password_changed": "パスワード変更",
    "auth.password_reset": "パスワード再設定",
    "auth.invitation_accepted": "利用登録",
    "user.created": "利用者の登録",
    "user.updated": "利用者情報の変更",
    "user.roles_changed": "役割の変更",
    "user.disabled": "アカウントの無効化",
    "user.enabled": "アカウントの有効化",
    "user.unlocked": "ロック解除",
    "user.reset": "パスワード再設定の依頼",
    "user.invited": "利用登録の案内",
    "organisation.created": "団体の登録",
    "organisation.updated": "団体情報の変更",
    "department.created": "所属の追加",
    "department.updated": "所属の変更",
    "vendor.created": "事業者の登録",
    "vendor.linked": "登録済み事業者の取引先への追加",
    "vendor.profile_updated": "会社情報の変更",
    "engagement.created": "案件の登録",
    "engagement.updated": "案件の変更",
    "assessment.created": "評価票の回答依頼",
    "assessment.saved": "回答の保存",
    "assessment.submit": "回答の提出",
    "assessment.return": "回答の差戻し",
    "assessment.copied": "以前の回答の転記",
    "assessment.imported": "Excelからの回答の取込み",
    "vendor.access_granted": "事業者担当者への閲覧許可",
    "evidence.uploaded": "証跡ファイルのアップロード",
    "evidence.downloaded": "証跡ファイルのダウンロード",
    "evidence.deleted": "証跡ファイルの削除",
    "evidence.infected": "証跡ファイルの隔離（ウイルス検出）",
    "evidence.integrity_failed": "証跡ファイルの改ざん検知",
    "assessment.scored": "採点",
    "assessment.reviewed": "回答の審査",
    "assessment.override": "ルールによる点数・判定の変更",
    "assessment.decide": "評価の判定",
    "assessment.recommend": "評価の判定（確認待ち）",
    "assessment.confirm": "評価の判定の確認",
    "assessment.reopen": "評価の判定の差戻し",
    "assessment.report_pdf": "評価報告書（PDF）の出力",
    "clauses.options": "特記事項の設定",
    "clauses.generate": "特記事項（PDF）の作成",
    "clauses.download": "特記事項（PDF）のダウンロード",
    "contract.record": "契約の記録",
    "service.create": "外部サービスの登録",
    "service.update": "外部サービスの情報の変更",
    "service.plan_add": "外部サービスのプランの追加",
    "application.file": "利用申請",
    "application.resubmit": "利用申請の修正・再申請",
    "application.approve": "利用申請の承認",
    "application.conditional": "利用申請の条件付承認",
    "application.reject": "利用申請の却下",
    "application.return": "利用申請の差戻し",
    "application.suspend": "外部サービスの利用停止",
    "application.resume": "外部サービスの利用再開",
    "application.retire": "外部サービスの廃止の開始（廃止手続中・利用終了時の確認）",
    "application.retire_complete": "外部サービスの廃止（利用終了時の確認の完了）",
    "application.retire_override": "外部サービスの廃止（確認を終えずに、理由を記録）",
    "application.manager_designate": "外部サービス管理者の指定",
    "application.terms_changed": "利用規約の新しい版の記録",
    "application.terms_confirmed": "利用規約の新しい版の確認",
    "lifecycle.record": "構築・運用・利用終了時の点検の記録",
    "register.export": "外部サービス台帳の出力",
    "reviews.export": "定期確認の一覧の出力",
    "reviews.export_expiring": "有効期限が近い認証・ISMAP登録の一覧の出力",
    "reviews.export_incidents": "事故報告の一覧の出力",
    "findings.export": "指摘事項の一覧の出力",
    "audit.exported": "監査ログの出力",
    "audit.purged": "保存期間を過ぎた監査ログの削除",
    "backup.restored": "バックアップからの復元",
}

OBJECT_LABELS = {
    "user_account": "利用者",
    "finding": "指摘事項",
    "contractor_audit": "委託先監査",
    "organisation": "団体",
    "department": "所属",
    "vendor_company": "事業者",
    "engagement": "案件",
    "assessment": "評価票",
    "evidence_file": "証跡ファイル",
    "external_service": "外部サービス",
    "use_application": "利用申請・台帳",
    "review_schedule": "定期確認の予定",
    "confirmation": "定期確認",
    "review_file": "定期確認等の添付ファイル",
    "vendor_report": "委託先からの事故・変更の報告",
}


# Dates outside this range are refused (beyond it, date arithmetic and UTC conversion overflow).
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)
DATE_RANGE_ATTRS = {"min": EARLIEST.isoformat(), "max": LATEST.isoformat()}
# The query keys carried over to the pager links and the CSV export (never anything else).
FILTER_FIELDS = ("action", "actor", "date_from", "date_to")


def _date_in_range(_form, field) -> None:
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError("2000年1月1日から2100年12月31日までの日付を入力してください。")


class FilterForm(BaseForm):
    class Meta:
        csrf = False
        locales = ("ja_JP", "ja")

    action = text_field("操作", 60, Optional())
    actor = text_field("操作者（メールアドレス）", 254, Optional())
    date_from = DateField(
        "期間（開始日）", validators=[Optional(), _date_in_range], render_kw=DATE_RANGE_ATTRS
    )
    date_to = DateField(
        "期間（終了日）", validators=[Optional(), _date_in_range], render_kw=DATE_RANGE_ATTRS
    )
    page = IntegerField("ページ", validators=[Optional(), NumberRange(min=1, max=100000)])


def _filter_form(formdata) -> FilterForm:
    """The filter as submitted; an action the list does not offer is ignored (no filter)."""
    form = FilterForm(formdata)
    if form.action.data not in ACTION_LABELS:
        form.action.data = ""
    return form


def _filtered(form: FilterForm) -> sa.Select:
    query = sa.select(AuditEvent).where(audit.visible_to(current_user.organisation_id))
    if form.action.data:
        query = query.where(AuditEvent.action == form.action.data)
    if form.actor.data:
        query = query.where(AuditEvent.actor_label == form.actor.data.lower())
    if form.date_from.data:
        query = query.where(AuditEvent.occurred_at >= _jst_midnight(form.date_from.data))
    if form.date_to.data:
        query = query.where(
            AuditEvent.occurred_at < _jst_midnight(form.date_to.data + timedelta(days=1))
        )
    return query.order_by(AuditEvent.seq.desc())


def _jst_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=JST)


@bp.route("/")
@require(Permission.AUDIT_READ)
def events():
    form = _filter_form(request.args)
    rows: list[AuditEvent] = []
    page = 1
    if form.validate():
        page = form.page.data or 1
        rows = list(
            get_session().scalars(
                _filtered(form).limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)
            )
        )
    has_next = len(rows) > PAGE_SIZE
    args = {key: request.args.get(key, "") for key in FILTER_FIELDS} | {"action": form.action.data}
    args = {key: value for key, value in args.items() if value}
    return render_template(
        "audit/events.html",
        form=form,
        rows=rows[:PAGE_SIZE],
        page=page,
        has_next=has_next,
        args=args,
        labels=ACTION_LABELS,
        object_labels=OBJECT_LABELS,
        actions=sorted(ACTION_LABELS.items()),
    )


@bp.route("/export.csv", methods=["POST"])
@require(Permission.AUDIT_READ)
def export():
    """CSV (UTF-8 with BOM, so Excel opens it) of the filtered events; the export is audited."""
    form = _filter_form(request.form)
    if not form.validate():
        form = FilterForm(formdata=None)
    db = get_session()
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "連番",
            "日時（日本時間）",
            "日時（UTC）",
            "操作",
            "操作コード",
            "操作者",
            "操作者ID",
            "対象種別",
            "対象ID",
            "IPアドレス",
            "リクエストID",
            "詳細",
            "ハッシュ",
            "直前のハッシュ",
        ]
    )
    count = 0
    for event in db.scalars(_filtered(form).execution_options(yield_per=1000)):
        writer.writerow(
            _csv_safe(str(cell))
            for cell in [
                event.seq,
                format_jst(event.occurred_at),
                event.occurred_at.isoformat(),
                ACTION_LABELS.get(event.action, event.action),
                event.action,
                event.actor_label,
                event.actor_user_id or "",
                OBJECT_LABELS.get(event.object_type, event.object_type),
                event.object_id,
                event.ip,
                event.request_id,
                event.details,
                event.row_hash,
                event.prev_hash,
            ]
        )
        count += 1
    audit.record(db, "audit.exported", actor=current_user, details={"rows": count})
    db.commit()
    return Response(
        buffer.getvalue().encode("utf-8"),
        mimetype="text/csv",
        headers={
            "Content-Disposition": "attachment; filename=\"audit-log.csv\"; filename*=UTF-8''%E7%9B%A3%E6%9F%BB%E3%83%AD%E3%82%B0.csv"
        },
    )


def _csv_safe(value: str) -> str:
    """No formula injection when the file is opened in a spreadsheet (applied to every cell:
    e-mail addresses, request IDs and object IDs may start with = + - @ too)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
