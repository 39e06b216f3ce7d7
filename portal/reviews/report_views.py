"""Incident and change reports: the vendor reports from its dashboard (/vendor/reports …), staff
are alerted at once by e-mail and read and acknowledge the report (/reports/<id>)
(対策基準 9.1(2)⑩⑫, 9.2(2)②(オ), 9.1(3))."""

from __future__ import annotations

import logging
from datetime import datetime, time

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)

from portal.db import get_session, utcnow
from portal.evidence import setup
from portal.permissions import Permission, require
from portal.reviews import files, reminder_plan, reminders, reports
from portal.reviews.models import REPORT_KINDS, ReviewSchedule, VendorReport
from portal.reviews.report_forms import ReportForm
from portal.reviews.reports import ReportError, ReportInput
from portal.web import JST, current_actor, parse_id

bp = Blueprint("vendor_reports", __name__, template_folder="templates")
log = logging.getLogger(__name__)

ALERT_QUEUED = (
    "団体の担当者への通知メールの一部を、まだ送信できていません。通知は保存してあり、"
    "自動的に再送されます。お急ぎの場合は、契約で定めた緊急連絡先にもご連絡ください。"
)


def _vendor_schedule_or_404(schedule_id: int | None) -> ReviewSchedule:
    schedule = get_session().get(ReviewSchedule, schedule_id) if schedule_id else None
    if schedule is None or not reports.can_report(current_actor(), schedule):
        abort(404)
    return schedule


def _vendor_report_or_404(report_id: int) -> VendorReport:
    report = get_session().get(VendorReport, report_id)
    if report is None or not reports.vendor_can_view(current_actor(), report):
        abort(404)
    return report


def _staff_report_or_404(report_id: int) -> VendorReport:
    report = get_session().get(VendorReport, report_id)
    if report is None or not reports.can_view_report(current_actor(), report):
        abort(404)
    return report


# ---------------------------------------------------------------------------------------------
# Vendor
# ---------------------------------------------------------------------------------------------


@bp.route("/vendor/reports")
@require(Permission.REVIEWS_ANSWER)
def vendor_index():
    db = get_session()
    actor = current_actor()
    return render_template(
        "reviews/vendor_reports.html",
        reports=reports.reports_for_vendor(db, actor),
        schedules=reports.reportable_schedules(db, actor),
        reportable=reports.reportable,
        kinds=REPORT_KINDS,
    )


def _render_form(schedule: ReviewSchedule, form: ReportForm, status: int = 200):
    return render_template(
        "reviews/report_form.html",
        schedule=schedule,
        form=form,
        incident_only=schedule.status != "active",
    ), status


@bp.route("/vendor/reports/new")
@require(Permission.REVIEWS_ANSWER)
def new():
    schedule_id = parse_id(request.args.get("schedule"))
    if schedule_id is None:
        flash("報告する契約・サービスを選んでください。", "info")
        return redirect(url_for("vendor_reports.vendor_index"))
    schedule = _vendor_schedule_or_404(schedule_id)
    kind = request.args.get("kind", "incident")
    if kind not in REPORT_KINDS:
        kind = "incident"
    if not reports.reportable(schedule, kind):
        flash(
            "この契約・サービスは終了しているため、報告できません。"
            if schedule.status == "ended"
            else "この契約・サービスは終了手続中のため、事故（インシデント）の報告のみ受け付けます。",
            "error",
        )
        return redirect(url_for("vendor_reports.vendor_index"))
    form = ReportForm(schedule=str(schedule.id), kind=kind)
    return _render_form(schedule, form)


def _occurred_at(form: ReportForm) -> datetime | None:
    if form.occurred_on.data is None:
        return None
    return datetime.combine(form.occurred_on.data, form.occurred_time.data or time(0), tzinfo=JST)


@bp.route("/vendor/reports", methods=["POST"])
@require(Permission.REVIEWS_ANSWER)
def create():
    form = ReportForm()
    schedule = _vendor_schedule_or_404(parse_id(form.schedule.data))
    if not form.validate():
        return _render_form(schedule, form, 422)
    db = get_session()
    actor = current_actor()
    evidence_dir = setup.evidence_dir_for(current_app)
    upload = form.attachment.data
    stored: list[str] = []
    try:
        report = reports.submit_report(
            db,
            actor,
            schedule,
            ReportInput(
                kind=form.kind.data,
                occurred_at=_occurred_at(form),
                summary=form.summary.data or "",
                information_affected=form.information_affected.data or "",
                personal_data_affected=bool(form.personal_data_affected.data),
                measures=form.measures.data or "",
            ),
            utcnow(),
        )
        if upload is not None and getattr(upload, "filename", ""):
            row = files.store_file(
                db,
                owner=report,
                purpose="report",
                upload=upload,
                actor=actor,
                evidence_dir=evidence_dir,
                scanner=setup.scanner_for(current_app),
                max_bytes=setup.max_bytes_for(current_app),
            )
            stored.append(row.stored_name)
        # Staff are alerted at once (9.1(3)): the alerts are recorded with the report and sent
        # after the commit; what the mail server refuses, ``send-reminders`` sends.
        alerts = reminder_plan.report_alerts(db, report)
        reminders.queue(db, alerts)
        db.commit()
    except BaseException as exc:
        db.rollback()
        files.discard(evidence_dir, stored)
        if not isinstance(exc, (ReportError, files.FileError)):
            raise
        flash(str(exc), "error")
        return _render_form(schedule, form, 422)
    sending = reminders.send_queued(db, alerts)
    flash(
        f"{report.kind_label}の報告を受け付けました（受付番号 第{report.id}号）。"
        + ("" if sending.failed else "団体の担当者に通知しました。"),
        "success",
    )
    if sending.failed:
        log.error(
            "report %s: %s alert(s) not sent yet; send-reminders retries them",
            report.id,
            len(sending.failed),
        )
        flash(ALERT_QUEUED, "warning")
    return redirect(url_for("vendor_reports.vendor_detail", report_id=report.id), code=303)


@bp.route("/vendor/reports/<int:report_id>")
@require(Permission.REVIEWS_ANSWER)
def vendor_detail(report_id: int):
    report = _vendor_report_or_404(report_id)
    return render_template(
        "reviews/report_vendor_detail.html",
        report=report,
        files=files.files_of(get_session(), report),
    )


# ---------------------------------------------------------------------------------------------
# Staff
# ---------------------------------------------------------------------------------------------


@bp.route("/reports/<int:report_id>")
@require(Permission.REVIEWS_VIEW)
def detail(report_id: int):
    report = _staff_report_or_404(report_id)
    db = get_session()
    return render_template(
        "reviews/report_detail.html",
        report=report,
        schedule=report.schedule,
        trigger=reports.trigger_of(db, report),
        files=files.files_of(db, report),
        may_acknowledge=reports.can_acknowledge(current_actor(), report),
    )


@bp.route("/reports/<int:report_id>/acknowledge", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def acknowledge(report_id: int):
    report = _staff_report_or_404(report_id)
    db = get_session()
    try:
        done = reports.acknowledge(db, report, current_actor(), utcnow())
    except ReportError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("vendor_reports.detail", report_id=report.id), code=303)
    db.commit()
    flash(
        "報告を確認済みにしました。" if done else "この報告は既に確認済みです。",
        "success" if done else "info",
    )
    return redirect(url_for("vendor_reports.detail", report_id=report.id), code=303)
