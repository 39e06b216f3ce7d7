"""/findings: the findings (指摘事項) of confirmations and contractor audits with their corrective
actions — the list (status and severity filters, department-scoped), one finding with its
source, closing it; the list exported as CSV / XLSX (POST, audited); and raising one on a
confirmation (9.1(3), 9.2(6), 10.1(4)). Raising on a contractor audit is in
``portal.contractor_audits.views`` and shares ``raise_from_form``."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload
from wtforms import SelectChoice

from portal.db import get_session
from portal.orgs.models import Department
from portal.permissions import Permission, require
from portal.reports import service as reports
from portal.reports.views import export_response
from portal.reviews import findings, schedules
from portal.reviews.finding_forms import CloseForm, FindingForm
from portal.reviews.findings import FindingError, FindingInput
from portal.reviews.models import SEVERITIES, Confirmation, Finding
from portal.users.models import User
from portal.web import current_actor, flash_form_errors, page_of, today_jst

bp = Blueprint("findings", __name__, template_folder="templates")

PAGE_SIZE = 50
DEFAULT_STATUS = "open"


def _finding_or_404(finding_id: int) -> Finding:
    finding = get_session().get(Finding, finding_id)
    if finding is None or not findings.can_view(current_user, finding):
        abort(404)
    return finding


def owner_label(user: User) -> str:
    return f"{user.name}（{'、'.join(d.name for d in user.departments) or '所属なし'}）"


def raise_from_form(source: findings.Source, back: str):
    """Validate the raise form posted from ``findings_section`` and raise the finding on
    ``source``; back to ``back`` (the source's page) either way, with the outcome flashed."""
    db = get_session()
    form = FindingForm()
    form.owner_id.choices = [
        SelectChoice(u.id, owner_label(u))
        for u in findings.eligible_owners(db, source.organisation_id)
    ]
    if not form.validate():
        flash_form_errors(form)
        flash("指摘事項を登録できませんでした。入力内容を確認してください。", "error")
        return redirect(f"{back}#findings", code=303)
    data = FindingInput(
        severity=form.severity.data,
        title=form.title.data or "",
        description=form.description.data or "",
        corrective_action=form.corrective_action.data or "",
        owner_id=form.owner_id.data,
        due_on=form.due_on.data,
    )
    try:
        finding = findings.raise_finding(
            db, current_actor(), source=source, data=data, today=today_jst()
        )
    except FindingError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(f"{back}#findings", code=303)
    db.commit()
    flash(f"指摘事項「{finding.title}」を登録しました。", "success")
    return redirect(f"{back}#findings", code=303)


@bp.route("/findings")
@require(Permission.REVIEWS_VIEW)
def index():
    db = get_session()
    today = today_jst()
    status = request.args.get("status", DEFAULT_STATUS)
    status = status if status in findings.STATUS_FILTERS else DEFAULT_STATUS
    severity = request.args.get("severity", "")
    severity = severity if severity in SEVERITIES else ""
    query = findings.filtered(
        findings.visible_query(current_user), status=status, severity=severity, today=today
    )
    total = db.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    page, pages = page_of(request.args.get("page"), total, PAGE_SIZE)
    rows = list(
        db.scalars(
            query.options(selectinload(Finding.owner))
            .order_by(Finding.status.desc(), Finding.due_on, Finding.id)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
    )
    args = {k: v for k, v in (("status", status), ("severity", severity)) if v}
    return render_template(
        "reviews/findings.html",
        findings=rows,
        sources=findings.sources_of(db, rows),
        total=total,
        page=page,
        pages=pages,
        page_size=PAGE_SIZE,
        status=status,
        severity=severity,
        statuses=findings.STATUS_FILTERS,
        severities=SEVERITIES,
        args=args,
        today=today,
        is_overdue=findings.is_overdue,
    )


@bp.route("/findings/<int:finding_id>")
@require(Permission.REVIEWS_VIEW)
def detail(finding_id: int):
    finding = _finding_or_404(finding_id)
    db = get_session()
    today = today_jst()
    may_close = finding.status == "open" and findings.can_close(db, current_user, finding)
    return render_template(
        "reviews/finding.html",
        finding=finding,
        source=findings.sources_of(db, [finding]).get(finding.id),
        department=db.get(Department, finding.department_id),
        form=CloseForm(version=str(finding.version)) if may_close else None,
        overdue=findings.is_overdue(finding, today),
        created_by=db.get(User, finding.created_by_id),
        who_closes=findings.who_closes(finding),
    )


@bp.route("/findings/<int:finding_id>/close", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def close(finding_id: int):
    finding = _finding_or_404(finding_id)
    form = CloseForm()
    back = redirect(url_for("findings.detail", finding_id=finding.id), code=303)
    if not form.validate():
        flash_form_errors(form)
        return back
    db = get_session()
    try:
        findings.close(
            db,
            finding,
            current_actor(),
            note=form.note.data or "",
            today=today_jst(),
            version=form.expected_version() or 0,
        )
    except FindingError as exc:
        db.rollback()
        flash(str(exc), "error")
        return back
    db.commit()
    flash("指摘事項を完了にしました。", "success")
    return back


@bp.route("/confirmations/<int:confirmation_id>/findings", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def raise_for_confirmation(confirmation_id: int):
    """Raised by the staff who manage the schedule — the department's staff and the service's
    外部サービス管理者, who holds no REVIEWS_MANAGE (9.1(3), 9.2(6)): the object rule decides
    (404 when the confirmation is not visible, 403 when it is but may not be changed)."""
    confirmation = get_session().get(Confirmation, confirmation_id)
    if confirmation is None or not schedules.can_view_schedule(current_user, confirmation.schedule):
        abort(404)
    if not findings.can_raise(current_actor(), confirmation):
        abort(403)
    back = url_for("confirmations.detail", confirmation_id=confirmation.id)
    return raise_from_form(confirmation, back)


# ---------------------------------------------------------------------------------------------
# Exports of the list (POST: audited)
# ---------------------------------------------------------------------------------------------


def _export(fmt: str):
    """The findings the list shows with the form's status and severity — every page of them,
    with the corrective action and how each was closed (9.1(3), 9.2(6), 10.1(4))."""
    db = get_session()
    filters = reports.FindingFilter.parse(request.form)
    data, _count = reports.export_findings(db, current_actor(), filters, today_jst(), fmt)
    db.commit()
    return export_response(data, fmt, "指摘事項", "findings")


@bp.route("/findings/export.csv", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_csv():
    return _export("csv")


@bp.route("/findings/export.xlsx", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_xlsx():
    return _export("xlsx")
