"""/applications/<id>/checks: the build, operation and exit checks of a register entry
(対策基準 9.2(5)–(7)) — read by everyone who may see the entry, recorded by its current
外部サービス管理者 (the 消去証明書 uploaded with its item); /applications/<id>/retirement/…:
from 廃止手続中 to 廃止, once the exit checklist is complete or by the approver with a reason."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.approvals.models import UseApplication
from portal.approvals.service import ApprovalError
from portal.db import get_session
from portal.evidence import setup
from portal.lifecycle import checklists, retirement, service
from portal.lifecycle.forms import CheckForm, RetireCompleteForm, RetireOverrideForm
from portal.lifecycle.service import LifecycleError
from portal.permissions import Permission, can_view_application, require
from portal.reviews import files
from portal.web import current_actor, today_jst

bp = Blueprint("lifecycle", __name__, url_prefix="/applications", template_folder="templates")

MAX_KEY = 100


def _application_or_404(application_id: int) -> UseApplication:
    application = get_session().get(UseApplication, application_id)
    if application is None or not can_view_application(current_user, application):
        abort(404)
    return application


def _prefix(phase: str, item_key: str) -> str:
    return f"{phase}-{item_key}"


def _render(
    application: UseApplication,
    failed: tuple[str, str] | None = None,
    failed_form: CheckForm | None = None,
    error: str = "",
):
    db = get_session()
    today = today_jst()
    checklist = checklists.latest()
    recordable = service.recordable_phases(application, current_actor())
    phases = []
    for phase in checklist.phases:
        items = []
        for item in phase.items_for(application.category):
            key = (phase.key, item.key)
            form = None
            if phase.key in recordable:
                form = (
                    failed_form
                    if failed == key and failed_form is not None
                    else CheckForm(prefix=_prefix(*key), formdata=None, checked_on=today)
                )
            items.append({"item": item, "form": form, "error": error if failed == key else ""})
        phases.append({"phase": phase, "items": items})
    ending = application.status == "ending"
    return render_template(
        "lifecycle/checks.html",
        application=application,
        checklist=checklist,
        phases=phases,
        history=service.history_of(db, application),
        state=service.state_of(db, application, today),
        may_record=service.may_record(application, current_actor()),
        recordable=recordable,
        operation_due=service.operation_due,
        exit_missing=service.exit_missing(db, application) if ending else (),
        may_complete=ending and retirement.may_complete(current_actor(), application),
        complete_form=RetireCompleteForm(version=str(application.version)),
        today=today,
    )


@bp.route("/<int:application_id>/checks")
@require(Permission.REGISTER_VIEW)
def checks(application_id: int):
    return _render(_application_or_404(application_id))


@bp.route("/<int:application_id>/checks/<phase>/<item_key>", methods=["POST"])
@require(Permission.LIFECYCLE_RECORD)
def record(application_id: int, phase: str, item_key: str):
    application = _application_or_404(application_id)
    if phase not in checklists.PHASES or len(item_key) > MAX_KEY:
        abort(404)
    stage = checklists.latest().phase(phase)
    item = stage.item(item_key) if stage else None
    if item is None or not item.applies_to(application.category):
        abort(404)
    if not service.may_record(application, current_actor()):
        abort(403)
    form = CheckForm(prefix=_prefix(phase, item_key))
    key = (phase, item_key)
    if not form.validate():
        flash(
            f"「{item.label}」の記録を保存できませんでした。入力内容を確認してください。", "error"
        )
        return _render(application, key, form), 422
    db = get_session()
    evidence_dir = setup.evidence_dir_for(current_app)
    try:
        check = service.record(
            db,
            application,
            current_actor(),
            phase=phase,
            item_key=item_key,
            result=form.result.data,
            checked_on=form.checked_on.data,
            evidence=form.evidence.data,
            note=form.note.data,
            today=today_jst(),
            upload=form.certificate.data if item.requires_file else None,
            evidence_dir=evidence_dir,
            scanner=setup.scanner_for(current_app),
            max_bytes=setup.max_bytes_for(current_app),
        )
    except LifecycleError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render(application, key, form, str(exc)), 422
    stored = [check.file.stored_name] if check.file is not None else []
    try:
        db.commit()
    except BaseException:
        db.rollback()
        files.discard(evidence_dir, stored)
        raise
    flash(f"{stage.title}の確認「{item.label}」を記録しました。", "success")
    return redirect(
        url_for("lifecycle.checks", application_id=application.id) + f"#item-{phase}-{item_key}",
        code=303,
    )


# ---------------------------------------------------------------------------------------------
# 廃止手続中 → 廃止 (9.2(7))
# ---------------------------------------------------------------------------------------------


def _back(application: UseApplication, form_name: str = ""):
    anchor = "#retirement" if form_name else ""
    return redirect(url_for("approvals.detail", application_id=application.id) + anchor, code=303)


@bp.route("/<int:application_id>/retirement/complete", methods=["POST"])
@require(Permission.REGISTER_VIEW)
def retire_complete(application_id: int):
    """The approver or the 外部サービス管理者: every exit item is settled."""
    application = _application_or_404(application_id)
    if not retirement.may_complete(current_actor(), application):
        abort(403)
    form = RetireCompleteForm()
    db = get_session()
    if not form.validate():
        flash("画面を読み込み直してから、もう一度操作してください。", "error")
        return _back(application, "complete")
    try:
        retirement.complete_retirement(
            db, application, current_actor(), version=form.expected_version(), today=today_jst()
        )
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _back(application, "complete")
    db.commit()
    flash("利用終了時の確認がすべて記録されたため、台帳の状態を「廃止」にしました。", "success")
    return _back(application)


@bp.route("/<int:application_id>/retirement/override", methods=["POST"])
@require(Permission.APPLICATIONS_DECIDE)
def retire_override(application_id: int):
    """The approver: 廃止 before the exit checklist is complete, with the reason."""
    application = _application_or_404(application_id)
    form = RetireOverrideForm()
    db = get_session()
    if not form.validate():
        for error in form.reason.errors:
            flash(f"{form.reason.label.text}: {error}", "error")
        if not form.reason.errors:
            flash("画面を読み込み直してから、もう一度操作してください。", "error")
        return _back(application, "override")
    try:
        retirement.retire_with_override(
            db,
            application,
            current_actor(),
            reason=form.reason.data or "",
            version=form.expected_version(),
            today=today_jst(),
        )
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _back(application, "override")
    db.commit()
    flash("利用終了時の確認を終えずに、理由を記録して台帳の状態を「廃止」にしました。", "warning")
    return _back(application)
