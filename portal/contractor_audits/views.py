"""/contractor-audits: audits of contractors and their subcontractors (対策基準 10.1(4)) — the
list, planning one, and the assigned auditor's records: carried out, reported, files, findings.
Everyone holding REVIEWS_VIEW reads what ``service.can_view`` allows; the rest needs
CONTRACTOR_AUDITS_MANAGE and the service's own checks (the assigned auditor, never of the
audited department)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from portal.contractor_audits import service
from portal.contractor_audits.forms import FileForm, PerformedForm, PlanForm, ReportForm
from portal.contractor_audits.models import AUDIT_STATUSES, ContractorAudit
from portal.contractor_audits.service import AuditError, AuditPlan
from portal.db import get_session
from portal.evidence import setup
from portal.evidence.filetypes import EvidenceError
from portal.evidence.names import normalise_name
from portal.permissions import Permission, require
from portal.reviews import files, findings, schedules
from portal.reviews.findings_views import owner_label, raise_from_form
from portal.reviews.models import Finding, ReviewSchedule
from portal.users.models import User
from portal.vendors import service as vendors
from portal.web import current_actor, flash_form_errors, parse_id, today_jst

bp = Blueprint(
    "contractor_audits", __name__, url_prefix="/contractor-audits", template_folder="templates"
)


def _audit_or_404(audit_id: int) -> ContractorAudit:
    audit_row = get_session().get(ContractorAudit, audit_id)
    if audit_row is None or not service.can_view(current_user, audit_row):
        abort(404)
    return audit_row


def _detail(audit_row: ContractorAudit, anchor: str = ""):
    url = url_for("contractor_audits.detail", audit_id=audit_row.id)
    return redirect(f"{url}#{anchor}" if anchor else url, code=303)


@bp.route("")
@require(Permission.REVIEWS_VIEW)
def index():
    db = get_session()
    rows = list(
        db.scalars(
            service.visible_query(current_user)
            .options(
                selectinload(ContractorAudit.vendor_company),
                selectinload(ContractorAudit.department),
                selectinload(ContractorAudit.auditor),
            )
            .order_by(ContractorAudit.planned_on.desc(), ContractorAudit.id.desc())
        )
    )
    open_counts = dict(
        db.execute(
            sa.select(Finding.audit_id, sa.func.count())
            .where(Finding.audit_id.in_([a.id for a in rows]), Finding.status == "open")
            .group_by(Finding.audit_id)
        ).all()
    )
    return render_template(
        "contractor_audits/index.html",
        audits=rows,
        open_counts=open_counts,
        statuses=AUDIT_STATUSES,
        may_plan=service.may_manage(current_user),
    )


def _plan_choices(form: PlanForm) -> None:
    db = get_session()
    org_id = current_user.organisation_id
    form.vendor_company_id.choices = [
        SelectChoice(c.id, f"{c.name}（{c.corporate_number}）")
        for c in vendors.companies_of(db, org_id)
    ]
    contracts = db.scalars(
        sa.select(ReviewSchedule)
        .options(
            selectinload(ReviewSchedule.vendor_company), selectinload(ReviewSchedule.department)
        )
        .where(ReviewSchedule.organisation_id == org_id, ReviewSchedule.status != "ended")
        .order_by(ReviewSchedule.title, ReviewSchedule.id)
    )
    form.schedule_id.choices = [SelectChoice("", "（指定しない）")] + [
        SelectChoice(
            str(s.id),
            f"{s.title}（{s.kind_label}・{s.vendor_company.name}・{s.department.name}）",
        )
        for s in contracts
    ]
    form.department_id.choices = [SelectChoice("", "（契約・サービスの担当課）")] + [
        SelectChoice(str(d.id), d.name) for d in current_user.organisation.departments if d.active
    ]
    form.auditor_id.choices = [
        SelectChoice(u.id, owner_label(u)) for u in service.auditor_candidates(db, org_id)
    ]


def _render_new(form: PlanForm, status: int = 200):
    return render_template("contractor_audits/new.html", form=form, today=today_jst()), status


@bp.route("/new")
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def new():
    form = PlanForm(formdata=None)
    _plan_choices(form)
    schedule_id = parse_id(request.args.get("schedule"))
    schedule = get_session().get(ReviewSchedule, schedule_id) if schedule_id else None
    if schedule is not None and schedules.can_view_schedule(current_user, schedule):
        form.schedule_id.data = str(schedule.id)
        form.vendor_company_id.data = schedule.vendor_company_id
        form.title.data = f"{schedule.title}の委託先監査"
    return _render_new(form)


@bp.route("", methods=["POST"])
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def create():
    form = PlanForm()
    _plan_choices(form)
    if not form.validate():
        flash_form_errors(form)
        return _render_new(form, 422)
    db = get_session()
    data = AuditPlan(
        vendor_company_id=form.vendor_company_id.data,
        schedule_id=parse_id(form.schedule_id.data),
        department_id=parse_id(form.department_id.data),
        subcontractor=form.subcontractor.data or "",
        title=form.title.data or "",
        scope=form.scope.data or "",
        method=form.method.data,
        auditor_id=form.auditor_id.data,
        planned_on=form.planned_on.data,
    )
    try:
        audit_row = service.plan(db, current_actor(), data, today_jst())
    except AuditError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render_new(form, 422)
    db.commit()
    flash("委託先監査を計画しました。", "success")
    return _detail(audit_row)


@bp.route("/<int:audit_id>")
@require(Permission.REVIEWS_VIEW)
def detail(audit_id: int):
    audit_row = _audit_or_404(audit_id)
    db = get_session()
    today = today_jst()
    may_record = service.may_record(current_user, audit_row)
    version = str(audit_row.version)
    may_raise = audit_row.status != "planned" and findings.can_raise(current_user, audit_row)
    return render_template(
        "contractor_audits/detail.html",
        audit=audit_row,
        created_by=db.get(User, audit_row.created_by_id),
        files=files.files_of(db, audit_row),
        findings=findings.findings_of(db, audit_row),
        may_record=may_record,
        performed_form=PerformedForm(formdata=None, version=version, performed_on=today)
        if may_record and audit_row.status == "planned"
        else None,
        report_form=ReportForm(formdata=None, version=version, reported_on=today)
        if may_record and audit_row.status == "performed"
        else None,
        file_form=FileForm(formdata=None) if may_record else None,
        raise_url=url_for("contractor_audits.raise_finding", audit_id=audit_row.id)
        if may_raise
        else None,
        owners=findings.eligible_owners(db, audit_row.organisation_id) if may_raise else None,
        today=today,
        schedule_visible=audit_row.schedule is not None
        and schedules.can_view_schedule(current_user, audit_row.schedule),
    )


@bp.route("/<int:audit_id>/performed", methods=["POST"])
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def performed(audit_id: int):
    audit_row = _audit_or_404(audit_id)
    form = PerformedForm()
    if not form.validate():
        flash_form_errors(form)
        return _detail(audit_row, "performed")
    db = get_session()
    try:
        service.record_performed(
            db,
            audit_row,
            current_actor(),
            performed_on=form.performed_on.data,
            evidence=form.evidence.data or "",
            today=today_jst(),
            version=form.expected_version() or 0,
        )
    except AuditError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(audit_row, "performed")
    db.commit()
    flash("監査の実施を記録しました。", "success")
    return _detail(audit_row)


@bp.route("/<int:audit_id>/report", methods=["POST"])
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def report(audit_id: int):
    audit_row = _audit_or_404(audit_id)
    form = ReportForm()
    if not form.validate():
        flash_form_errors(form)
        return _detail(audit_row, "report")
    db = get_session()
    try:
        service.record_report(
            db,
            audit_row,
            current_actor(),
            report=form.report.data or "",
            reported_on=form.reported_on.data,
            today=today_jst(),
            version=form.expected_version() or 0,
        )
    except AuditError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(audit_row, "report")
    db.commit()
    flash("監査の結果を報告済みとして記録しました。", "success")
    return _detail(audit_row)


@bp.route("/<int:audit_id>/files", methods=["POST"])
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def upload(audit_id: int):
    audit_row = _audit_or_404(audit_id)
    form = FileForm()
    if not form.validate():
        flash_form_errors(form)
        return _detail(audit_row, "files")
    upload_ = request.files.get("file")
    if upload_ is None or not upload_.filename:
        flash("添付するファイルを選んでください。", "error")
        return _detail(audit_row, "files")
    db = get_session()
    evidence_dir = setup.evidence_dir_for(current_app)
    stored = None
    try:
        stored = service.attach_file(
            db,
            audit_row,
            current_actor(),
            purpose=form.purpose.data,
            upload=upload_,
            evidence_dir=evidence_dir,
            scanner=setup.scanner_for(current_app),
            max_bytes=setup.max_bytes_for(current_app),
        )
        db.commit()
    except BaseException as exc:
        db.rollback()
        if stored is not None:
            files.discard(evidence_dir, [stored.stored_name])
        if not isinstance(exc, (AuditError, EvidenceError)):
            raise
        flash(str(exc), "error")
        return _detail(audit_row, "files")
    message = f"「{normalise_name(upload_.filename)}」を添付しました。"
    if stored.scan_status == "infected":
        message += "ウイルスが検出されたため、このファイルは隔離しました。"
    elif not stored.downloadable:
        message += "ウイルス検査が終わるまで、ダウンロードはできません。"
    flash(message, "success")
    return _detail(audit_row, "files")


@bp.route("/<int:audit_id>/findings", methods=["POST"])
@require(Permission.CONTRACTOR_AUDITS_MANAGE)
def raise_finding(audit_id: int):
    audit_row = _audit_or_404(audit_id)
    return raise_from_form(audit_row, url_for("contractor_audits.detail", audit_id=audit_row.id))
