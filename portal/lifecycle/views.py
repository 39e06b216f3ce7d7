"""/applications/<id>/checks: the build, operation and exit checks of a register entry
(対策基準 9.2(5)–(7)) — read by everyone who may see the entry, recorded by its current
外部サービス管理者."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.approvals.models import UseApplication
from portal.db import get_session
from portal.lifecycle import checklists, service
from portal.lifecycle.forms import CheckForm
from portal.lifecycle.service import LifecycleError
from portal.permissions import Permission, can_view_application, require
from portal.users.models import User
from portal.web import today_jst

bp = Blueprint("lifecycle", __name__, url_prefix="/applications", template_folder="templates")

MAX_KEY = 100


def _actor() -> User:
    return current_user._get_current_object()


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
    recordable = service.recordable_phases(application, _actor())
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
    return render_template(
        "lifecycle/checks.html",
        application=application,
        checklist=checklist,
        phases=phases,
        history=service.history_of(db, application),
        state=service.state_of(db, application, today),
        may_record=service.may_record(application, _actor()),
        recordable=recordable,
        operation_due=service.operation_due,
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
    if not service.may_record(application, _actor()):
        abort(403)
    form = CheckForm(prefix=_prefix(phase, item_key))
    key = (phase, item_key)
    if not form.validate():
        flash(
            f"「{item.label}」の記録を保存できませんでした。入力内容を確認してください。", "error"
        )
        return _render(application, key, form), 422
    db = get_session()
    try:
        service.record(
            db,
            application,
            _actor(),
            phase=phase,
            item_key=item_key,
            result=form.result.data,
            checked_on=form.checked_on.data,
            evidence=form.evidence.data,
            note=form.note.data,
            today=today_jst(),
        )
    except LifecycleError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render(application, key, form, str(exc)), 422
    db.commit()
    flash(f"{stage.title}の確認「{item.label}」を記録しました。", "success")
    return redirect(
        url_for("lifecycle.checks", application_id=application.id) + f"#item-{phase}-{item_key}",
        code=303,
    )
