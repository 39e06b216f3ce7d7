"""/reviews/<id>/exit: the exit checklist of a 業務委託 contract (対策基準 9.1(2)⑧⑨) — read by
everyone who may see the schedule, recorded by the responsible department: the end of the
contract, each item (the 消去証明書 uploaded with its item) and the close. The close with a
reason, before the checklist is complete, is the 許可権限者's or the CISO's (a second person,
兼務の禁止 2(6)): that route needs REVIEWS_VIEW only, the rest is ``exits.require_override``.
An external service's schedule has its exit in the register entry (9.2(7)): its page sends
there."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.db import get_session
from portal.evidence import setup
from portal.permissions import Permission, require
from portal.reviews import exits, files, schedules
from portal.reviews.exit_forms import CloseForm, EndContractForm, ExitItemForm, OverrideForm
from portal.reviews.exits import ExitError
from portal.reviews.models import ReviewSchedule
from portal.web import current_actor, flash_form_errors, today_jst

bp = Blueprint("exits", __name__, template_folder="templates")

MAX_KEY = 100


def _schedule_or_404(schedule_id: int) -> ReviewSchedule:
    schedule = get_session().get(ReviewSchedule, schedule_id)
    if schedule is None or not schedules.can_view_schedule(current_user, schedule):
        abort(404)
    return schedule


def _contract_or_404(schedule_id: int) -> ReviewSchedule:
    """A contract's schedule the signed-in user manages (an external service's: 404)."""
    schedule = _schedule_or_404(schedule_id)
    if schedule.assessment_id is None:
        abort(404)
    if not schedules.can_manage_schedule(current_actor(), schedule):
        abort(403)
    return schedule


def _page(schedule: ReviewSchedule):
    return redirect(url_for("exits.checklist", schedule_id=schedule.id), code=303)


def _render(
    schedule: ReviewSchedule,
    *,
    failed: str | None = None,
    failed_form: ExitItemForm | None = None,
    error: str = "",
    end_form: EndContractForm | None = None,
    override_form: OverrideForm | None = None,
):
    db = get_session()
    today = today_jst()
    manage = schedules.can_manage_schedule(current_actor(), schedule)
    may_override = (
        schedule.status == "ending"
        and schedule.assessment_id is not None
        and exits.may_override(db, schedule, current_actor())
    )
    recording = manage and schedule.status in ("ending", "ended")
    items = []
    for item in exits.phase().items:
        form = None
        if recording:
            form = (
                failed_form
                if failed == item.key and failed_form is not None
                else ExitItemForm(prefix=item.key, formdata=None, checked_on=today)
            )
        items.append({"item": item, "form": form, "error": error if failed == item.key else ""})
    version = str(schedule.version)
    return render_template(
        "reviews/exit.html",
        schedule=schedule,
        checklist=exits.checklist(),
        items=items,
        history=exits.history(db, schedule),
        state=exits.state(schedule, db),
        manage=manage,
        may_override=may_override,
        override_by=exits.OVERRIDE_BY,
        end_form=end_form or EndContractForm(formdata=None, version=version),
        close_form=CloseForm(formdata=None, version=version),
        override_form=override_form or OverrideForm(formdata=None, version=version),
        today=today,
    )


@bp.route("/reviews/<int:schedule_id>/exit")
@require(Permission.REVIEWS_VIEW)
def checklist(schedule_id: int):
    schedule = _schedule_or_404(schedule_id)
    if schedule.application_id is not None:
        # An external service ends through its register entry (9.2(7)).
        return redirect(url_for("lifecycle.checks", application_id=schedule.application_id))
    return _render(schedule)


@bp.route("/reviews/<int:schedule_id>/end", methods=["POST"])
@require(Permission.REVIEWS_MANAGE)
def end(schedule_id: int):
    schedule = _contract_or_404(schedule_id)
    form = EndContractForm()
    if not form.validate():
        flash_form_errors(form)
        return _render(schedule, end_form=form), 422
    db = get_session()
    try:
        exits.end_contract(
            db,
            schedule,
            current_actor(),
            ending_on=form.ending_on.data,
            reason=form.reason.data or "",
            version=form.expected_version(),
        )
    except ExitError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render(schedule, end_form=form), 422
    db.commit()
    flash(
        "契約の終了を記録しました。契約終了時の確認をすべて記録してから、契約を終了してください。",
        "success",
    )
    return _page(schedule)


@bp.route("/reviews/<int:schedule_id>/exit/<item_key>", methods=["POST"])
@require(Permission.REVIEWS_MANAGE)
def record(schedule_id: int, item_key: str):
    schedule = _contract_or_404(schedule_id)
    item = exits.phase().item(item_key) if len(item_key) <= MAX_KEY else None
    if item is None:
        abort(404)
    form = ExitItemForm(prefix=item.key)
    if not form.validate():
        flash(
            f"「{item.title}」の記録を保存できませんでした。入力内容を確認してください。", "error"
        )
        return _render(schedule, failed=item.key, failed_form=form), 422
    db = get_session()
    evidence_dir = setup.evidence_dir_for(current_app)
    try:
        check = exits.record(
            db,
            schedule,
            current_actor(),
            item.key,
            result=form.result.data,
            checked_on=form.checked_on.data,
            note=form.note.data or "",
            upload=form.certificate.data if item.requires_file else None,
            today=today_jst(),
            evidence_dir=evidence_dir,
            scanner=setup.scanner_for(current_app),
            max_bytes=setup.max_bytes_for(current_app),
        )
    except ExitError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render(schedule, failed=item.key, failed_form=form, error=str(exc)), 422
    stored = [check.file.stored_name] if check.file is not None else []
    try:
        db.commit()
    except BaseException:
        db.rollback()
        files.discard(evidence_dir, stored)
        raise
    flash(f"「{item.title}」を記録しました。", "success")
    return redirect(
        url_for("exits.checklist", schedule_id=schedule.id) + f"#item-{item.key}", code=303
    )


@bp.route("/reviews/<int:schedule_id>/exit/close", methods=["POST"])
@require(Permission.REVIEWS_MANAGE)
def close(schedule_id: int):
    schedule = _contract_or_404(schedule_id)
    form = CloseForm()
    db = get_session()
    if not form.validate():
        flash_form_errors(form)
        return _page(schedule)
    try:
        exits.close(
            db, schedule, current_actor(), version=form.expected_version(), today=today_jst()
        )
    except ExitError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _page(schedule)
    db.commit()
    flash("契約終了時の確認がすべて記録されたため、契約を終了しました。", "success")
    return _page(schedule)


@bp.route("/reviews/<int:schedule_id>/exit/override", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def override(schedule_id: int):
    """The approver or the CISO (not the department: REVIEWS_VIEW, then the object rule)."""
    schedule = _schedule_or_404(schedule_id)
    if schedule.assessment_id is None:
        abort(404)
    db = get_session()
    try:
        exits.require_override(db, schedule, current_actor())
    except ExitError as exc:
        flash(str(exc), "error")
        return _render(schedule), 403
    form = OverrideForm()
    if not form.validate():
        flash_form_errors(form)
        return _render(schedule, override_form=form), 422
    try:
        exits.close_with_override(
            db,
            schedule,
            current_actor(),
            reason=form.reason.data or "",
            version=form.expected_version(),
            today=today_jst(),
        )
    except ExitError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render(schedule, override_form=form), 422
    db.commit()
    flash("契約終了時の確認を終えずに、理由を記録して契約を終了しました。", "warning")
    return _page(schedule)
