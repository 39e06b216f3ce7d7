"""定期確認 through the web (対策基準 9.1(3), 9.2(6)).

Staff: /reviews/<id> (a contract's or service's schedule: due dates, interval, triggers,
confirmations), opening a confirmation, /confirmations/<id> (the difference against what was
confirmed before, files, return, completion) and /confirmations/<id>/answer (keying in a paper
reply). Vendors: /vendor/confirmations (what to answer) and /vendor/confirmations/<id> (answer
section by section, attach files, submit)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from portal.assessments import answers as answer_rules
from portal.db import get_session
from portal.evidence import setup
from portal.evidence.names import normalise_name
from portal.permissions import Permission, can, require
from portal.questionnaires.countries import COUNTRIES
from portal.reviews import (
    confirmations,
    exits,
    files,
    findings,
    reminder_plan,
    reminders,
    schedules,
)
from portal.reviews import reports as vendor_reports
from portal.reviews.calendar import closed_because, next_business_day
from portal.reviews.confirmation_forms import (
    CompleteForm,
    IntervalForm,
    OpenForm,
    ReturnForm,
    SectionForm,
    SubmitForm,
)
from portal.reviews.confirmations import ConfirmationError, SectionInvalid
from portal.reviews.models import Confirmation, ReviewSchedule
from portal.reviews.reminder_plan import People
from portal.reviews.schedules import STATE_LABELS, ScheduleError
from portal.scoring.engine import RATINGS
from portal.scoring.ismap import add_months_period_end
from portal.web import current_actor, flash_form_errors, format_date, parse_id, today_jst

bp = Blueprint("confirmations", __name__, template_folder="templates")


def _version(form) -> int | None:
    return parse_id(form.version.data, minimum=0)


def _schedule_or_404(schedule_id: int) -> ReviewSchedule:
    # The page lists the confirmations with who answered and checked each (one query).
    schedule = get_session().get(
        ReviewSchedule,
        schedule_id,
        options=[
            selectinload(ReviewSchedule.confirmations).selectinload(Confirmation.checked_by),
            selectinload(ReviewSchedule.confirmations).selectinload(Confirmation.answered_by),
            selectinload(ReviewSchedule.triggers),
        ],
    )
    if schedule is None or not schedules.can_view_schedule(current_user, schedule):
        abort(404)
    return schedule


def _managed_schedule(schedule_id: int) -> ReviewSchedule:
    schedule = _schedule_or_404(schedule_id)
    if not schedules.can_manage_schedule(current_actor(), schedule):
        abort(403)
    return schedule


def _for_staff(confirmation_id: int) -> Confirmation:
    confirmation = get_session().get(Confirmation, confirmation_id)
    if confirmation is None or not schedules.can_view_schedule(current_user, confirmation.schedule):
        abort(404)
    return confirmation


def _managed(confirmation_id: int) -> Confirmation:
    confirmation = _for_staff(confirmation_id)
    if not schedules.can_manage_schedule(current_actor(), confirmation.schedule):
        abort(403)
    return confirmation


def _for_vendor(confirmation_id: int) -> Confirmation:
    """Another company's (or another body's) confirmation does not exist for a vendor (404)."""
    confirmation = get_session().get(Confirmation, confirmation_id)
    if confirmation is None or not confirmations.is_vendor_of(current_actor(), confirmation):
        abort(404)
    return confirmation


# ---------------------------------------------------------------------------------------------
# The schedule of one contract or service
# ---------------------------------------------------------------------------------------------


def due_explanation(schedule: ReviewSchedule) -> str:
    """Why the regular due date is not the end of the interval: it fell on a closed day."""
    since = schedule.last_confirmed_on or schedule.starts_on
    end = add_months_period_end(since, schedule.interval_months)
    if end == schedule.regular_due_on or next_business_day(end) != schedule.regular_due_on:
        return ""
    return (
        f"間隔による期限の {format_date(end)} は{closed_because(end)}のため、"
        f"翌開庁日の {format_date(schedule.regular_due_on)} を期限としています。"
    )


def _schedule_page(
    schedule: ReviewSchedule, interval_form: IntervalForm | None = None, status: int = 200
):
    actor = current_actor()
    today = today_jst()
    manage = schedules.can_manage_schedule(actor, schedule) and schedule.status == "active"
    if manage and interval_form is None:
        interval_form = IntervalForm(
            formdata=None, months=schedule.interval_months, version=schedule.version
        )
    state = schedules.state_of(schedule, today)
    triggers = sorted(schedule.open_triggers, key=lambda t: (t.due_on, t.id))
    return render_template(
        "reviews/schedule.html",
        schedule=schedule,
        today=today,
        state=state,
        state_label=STATE_LABELS.get(state, state),
        rating_label=RATINGS.get(schedule.risk_rating or "", "") if schedule.risk_rating else "",
        due_explanation=due_explanation(schedule),
        triggers=triggers,
        earliest_trigger=triggers[0]
        if triggers and triggers[0].due_on == schedule.due_on
        else None,
        manage=manage,
        interval_form=interval_form if manage else None,
        open_form=OpenForm(formdata=None, version=schedule.version)
        if manage and schedule.current_confirmation is None
        else None,
        subject_url=_subject_url(schedule),
        findings=findings.findings_of_schedule(get_session(), schedule),
        reports=vendor_reports.reports_of(get_session(), schedule),
        may_plan_audit=can(actor, Permission.CONTRACTOR_AUDITS_MANAGE),
        exit_state=exits.state(schedule) if schedule.assessment_id else None,
    ), status


def _subject_url(schedule: ReviewSchedule) -> str:
    if schedule.application_id:
        return url_for("approvals.detail", application_id=schedule.application_id)
    return url_for("engagements.detail", engagement_id=schedule.assessment.engagement_id)


@bp.route("/reviews/<int:schedule_id>")
@require(Permission.REVIEWS_VIEW)
def schedule(schedule_id: int):
    return _schedule_page(_schedule_or_404(schedule_id))


@bp.route("/reviews/<int:schedule_id>/interval", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def interval(schedule_id: int):
    schedule = _managed_schedule(schedule_id)
    form = IntervalForm()
    if not form.validate():
        flash_form_errors(form)
        return _schedule_page(schedule, form, 422)
    db = get_session()
    try:
        schedules.set_interval(
            db,
            schedule,
            current_actor(),
            months=form.months.data,
            next_due_on=form.next_due_on.data,
            today=today_jst(),
            version=_version(form) or 0,
        )
    except ScheduleError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _schedule_page(_schedule_or_404(schedule_id), form, 422)
    db.commit()
    flash(
        f"確認の間隔を{schedule.interval_months}か月とし、次回の期限を"
        f"{format_date(schedule.due_on)}にしました。",
        "success",
    )
    return redirect(url_for("confirmations.schedule", schedule_id=schedule.id), code=303)


REQUEST_QUEUED = (
    "委託先への依頼メールの一部を送信できませんでした。送信できなかったメールは保存してあり、"
    "毎日の自動送信で改めて送信されます。依頼をやり直す必要はありません。"
)


@bp.route("/reviews/<int:schedule_id>/confirmations", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def open_confirmation(schedule_id: int):
    schedule = _managed_schedule(schedule_id)
    form = OpenForm()
    back = redirect(url_for("confirmations.schedule", schedule_id=schedule.id), code=303)
    if not form.validate():
        flash_form_errors(form)
        return back
    db = get_session()
    try:
        if schedule.version != _version(form):
            raise ConfirmationError(
                "他の利用者が先にこの確認予定を変更しました。最新の内容を確認してからやり直してください。"
            )
        confirmation = confirmations.open_confirmation(db, schedule, current_actor(), today_jst())
        # The request to answer is recorded with the confirmation, under the key the reminder
        # job uses: sent below, or by the job when the mail server is down — never twice.
        requests = reminder_plan.request_reminders(confirmation, People(db))
        reminders.queue(db, requests)
    except ConfirmationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return back
    db.commit()
    sending = reminders.send_queued(db, requests)
    if requests:
        flash(
            f"{confirmation.label}を開始し、{schedule.vendor_company.name}の担当者"
            f"（{len(requests)}名）に回答を依頼しました。",
            "success",
        )
    else:
        flash(
            f"{confirmation.label}を開始しました。{schedule.vendor_company.name}には"
            "ポータルの担当者が登録されていないため、書面で依頼し、回答を代理入力してください。",
            "warning",
        )
    if sending.failed:
        flash(REQUEST_QUEUED, "warning")
    return redirect(url_for("confirmations.detail", confirmation_id=confirmation.id), code=303)


# ---------------------------------------------------------------------------------------------
# Staff review
# ---------------------------------------------------------------------------------------------


def _detail_page(
    confirmation: Confirmation,
    return_form: ReturnForm | None = None,
    complete_form: CompleteForm | None = None,
    status: int = 200,
):
    actor = current_actor()
    schedule = confirmation.schedule
    manage = schedules.can_manage_schedule(actor, schedule) and schedule.status == "active"
    reviewable = manage and confirmation.status == "submitted"
    version = confirmation.version
    return render_template(
        "reviews/confirmation.html",
        confirmation=confirmation,
        schedule=schedule,
        diff=confirmations.diff(confirmation),
        files=files.files_of(get_session(), confirmation),
        today=today_jst(),
        manage=manage,
        may_key_in=manage and confirmation.editable_by_vendor,
        answered_by_me=actor.id in confirmations.answerers(confirmation),
        findings=findings.findings_of(get_session(), confirmation),
        raise_url=url_for("findings.raise_for_confirmation", confirmation_id=confirmation.id)
        if findings.can_raise(actor, confirmation)
        else None,
        owners=findings.eligible_owners(get_session(), confirmation.organisation_id)
        if findings.can_raise(actor, confirmation)
        else None,
        return_form=(return_form or ReturnForm(formdata=None, version=version))
        if reviewable
        else None,
        complete_form=(complete_form or CompleteForm(formdata=None, version=version))
        if reviewable
        else None,
    ), status


@bp.route("/confirmations/<int:confirmation_id>")
@require(Permission.REVIEWS_VIEW)
def detail(confirmation_id: int):
    return _detail_page(_for_staff(confirmation_id))


@bp.route("/confirmations/<int:confirmation_id>/return", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def return_(confirmation_id: int):
    confirmation = _managed(confirmation_id)
    form = ReturnForm()
    if not form.validate():
        flash_form_errors(form)
        return _detail_page(confirmation, return_form=form, status=422)
    db = get_session()
    try:
        confirmations.return_to_vendor(
            db, confirmation, current_actor(), form.comment.data, _version(form)
        )
    except ConfirmationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail_page(_for_staff(confirmation_id), return_form=form, status=422)
    db.commit()
    flash(f"{confirmation.label}を事業者に差し戻しました。", "success")
    return redirect(url_for("confirmations.detail", confirmation_id=confirmation.id), code=303)


@bp.route("/confirmations/<int:confirmation_id>/complete", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def complete(confirmation_id: int):
    confirmation = _managed(confirmation_id)
    form = CompleteForm()
    if not form.validate():
        flash_form_errors(form)
        return _detail_page(confirmation, complete_form=form, status=422)
    db = get_session()
    try:
        next_due = confirmations.complete(
            db,
            confirmation,
            current_actor(),
            method=form.method.data,
            result=form.result.data,
            today=today_jst(),
            version=_version(form),
        )
    except ConfirmationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail_page(_for_staff(confirmation_id), complete_form=form, status=422)
    db.commit()
    flash(
        f"{confirmation.label}を完了しました。次回の確認期限は{format_date(next_due)}です。",
        "success",
    )
    return redirect(url_for("confirmations.detail", confirmation_id=confirmation.id), code=303)


# ---------------------------------------------------------------------------------------------
# Answering: the vendor, or staff keying in a paper reply
# ---------------------------------------------------------------------------------------------


def _answer_page(
    confirmation: Confirmation,
    mode: str,
    *,
    failed: str | None = None,
    errors: dict | None = None,
    submitted: dict | None = None,
    section_form: SectionForm | None = None,
    add_row: str | None = None,
    status: int = 200,
):
    views = confirmations.section_views(confirmation)
    version = confirmation.version
    forms = {}
    for view in views:
        if failed == view.key and section_form is not None:
            forms[view.key] = section_form
        else:
            change = {True: "changed", False: "unchanged"}.get(view.row.changed)
            forms[view.key] = SectionForm(
                formdata=None, prefix=view.key, change=change, note=view.row.note, version=version
            )
    if mode == "vendor":
        urls = {
            "section": lambda key: url_for(
                "confirmations.vendor_section", confirmation_id=confirmation.id, section_key=key
            ),
            "upload": url_for("confirmations.vendor_upload", confirmation_id=confirmation.id),
            "submit": url_for("confirmations.vendor_submit", confirmation_id=confirmation.id),
        }
    else:
        urls = {
            "section": lambda key: url_for(
                "confirmations.staff_section", confirmation_id=confirmation.id, section_key=key
            ),
            "upload": url_for("confirmations.staff_upload", confirmation_id=confirmation.id),
            "submit": url_for("confirmations.staff_submit", confirmation_id=confirmation.id),
        }
    editable = confirmation.editable_by_vendor and confirmation.schedule.status == "active"
    return render_template(
        "reviews/confirmation_answer.html",
        confirmation=confirmation,
        schedule=confirmation.schedule,
        questionnaire=confirmations.questionnaire_of(confirmation),
        views=views,
        forms=forms,
        failed=failed,
        errors=errors or {},
        submitted=submitted or {},
        add_row=add_row,
        countries=COUNTRIES,
        files=files.files_of(get_session(), confirmation),
        editable=editable,
        mode=mode,
        urls=urls,
        submit_form=SubmitForm(formdata=None, version=version) if editable else None,
        unanswered=[v.section.title for v in views if not v.answered],
    ), status


def _answer_section(confirmation: Confirmation, section_key: str, mode: str):
    view = next(
        (v for v in confirmations.section_views(confirmation) if v.key == section_key), None
    )
    if view is None:
        abort(404)
    page = _answer_url(confirmation, mode)
    form = SectionForm(prefix=section_key)
    raw = {q.key: _raw(q) for q in view.questions}
    add_row = request.form.get("add_row")
    if add_row in {q.key for q in view.questions if q.type == "table"}:
        # A row is added to the table being edited; nothing is saved yet.
        flash(
            "行を追加しました。入力してから「この項目の回答を保存する」を押してください。", "info"
        )
        form.change.data = "changed"
        return _answer_page(
            confirmation,
            mode,
            failed=section_key,
            submitted=raw,
            section_form=form,
            add_row=add_row,
        )
    if not form.validate():
        flash_form_errors(form)
        return _answer_page(
            confirmation, mode, failed=section_key, submitted=raw, section_form=form, status=422
        )
    db = get_session()
    try:
        confirmations.answer_section(
            db,
            confirmation,
            current_actor(),
            section_key,
            changed=form.change.data == "changed",
            raw=request.form,
            note=form.note.data,
            version=_version(form),
        )
    except SectionInvalid as exc:
        db.rollback()
        flash(str(exc), "error")
        return _answer_page(
            _reload(confirmation),
            mode,
            failed=section_key,
            errors=exc.errors,
            submitted=raw,
            section_form=form,
            status=422,
        )
    except ConfirmationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _answer_page(
            _reload(confirmation),
            mode,
            failed=section_key,
            submitted=raw,
            section_form=form,
            status=422,
        )
    db.commit()
    flash(f"「{view.section.title}」の回答を保存しました。", "success")
    return redirect(f"{page}#section-{section_key}", code=303)


def _raw(question):
    return answer_rules.from_form(question, request.form)


def _reload(confirmation: Confirmation) -> Confirmation:
    return get_session().get(Confirmation, confirmation.id)


def _answer_url(confirmation: Confirmation, mode: str) -> str:
    if mode == "vendor":
        return url_for("confirmations.vendor_answer", confirmation_id=confirmation.id)
    return url_for("confirmations.staff_answer", confirmation_id=confirmation.id)


def _upload(confirmation: Confirmation, mode: str):
    back = redirect(_answer_url(confirmation, mode) + "#files", code=303)
    actor = current_actor()
    if not confirmations.can_answer(actor, confirmation):
        abort(404)
    if confirmation.schedule.status != "active" or not confirmation.editable_by_vendor:
        flash("提出済み又は完了した定期確認にはファイルを添付できません。", "error")
        return back
    uploads = [f for f in request.files.getlist("file") if f.filename]
    if not uploads:
        flash("添付するファイルを選んでください。", "error")
        return back
    db = get_session()
    evidence_dir = setup.evidence_dir_for(current_app)
    stored = []
    try:
        for upload in uploads:
            try:
                stored.append(
                    files.store_file(
                        db,
                        owner=confirmation,
                        purpose="evidence",
                        upload=upload,
                        actor=actor,
                        evidence_dir=evidence_dir,
                        scanner=setup.scanner_for(current_app),
                        max_bytes=setup.max_bytes_for(current_app),
                    )
                )
            except files.FileError as exc:
                name = normalise_name(upload.filename)
                raise files.FileError(
                    f"「{name}」: {exc}" if len(uploads) > 1 else str(exc)
                ) from exc
        db.commit()
    except BaseException as exc:
        written = [row.stored_name for row in stored]
        db.rollback()
        files.discard(evidence_dir, written)
        if not isinstance(exc, files.FileError):
            raise
        flash(str(exc), "error")
        return back
    names = "、".join(f"「{row.original_name}」" for row in stored)
    flash(f"{names}を添付しました。", "success")
    return back


def _submit(confirmation: Confirmation, mode: str):
    form = SubmitForm()
    if not form.validate():
        flash_form_errors(form)
        return redirect(_answer_url(confirmation, mode), code=303)
    db = get_session()
    try:
        confirmations.submit(db, confirmation, current_actor(), _version(form))
    except ConfirmationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(_answer_url(confirmation, mode), code=303)
    db.commit()
    if mode == "vendor":
        flash(
            f"{confirmation.label}の回答を提出しました。"
            f"{confirmation.schedule.organisation.name}が内容を確認します。",
            "success",
        )
        return redirect(url_for("confirmations.vendor_index"), code=303)
    flash(f"{confirmation.label}の回答（代理入力）を提出しました。", "success")
    return redirect(url_for("confirmations.detail", confirmation_id=confirmation.id), code=303)


# Staff keying in a paper reply ---------------------------------------------------------------


@bp.route("/confirmations/<int:confirmation_id>/answer")
@require(Permission.REVIEWS_VIEW)
def staff_answer(confirmation_id: int):
    confirmation = _for_staff(confirmation_id)
    if not schedules.can_manage_schedule(current_actor(), confirmation.schedule):
        return redirect(url_for("confirmations.detail", confirmation_id=confirmation.id))
    return _answer_page(confirmation, "staff")


@bp.route("/confirmations/<int:confirmation_id>/answer/sections/<section_key>", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def staff_section(confirmation_id: int, section_key: str):
    return _answer_section(_managed(confirmation_id), section_key, "staff")


@bp.route("/confirmations/<int:confirmation_id>/files", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def staff_upload(confirmation_id: int):
    return _upload(_managed(confirmation_id), "staff")


@bp.route("/confirmations/<int:confirmation_id>/answer/submit", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def staff_submit(confirmation_id: int):
    return _submit(_managed(confirmation_id), "staff")


# The vendor ----------------------------------------------------------------------------------


@bp.route("/vendor/confirmations")
@require(Permission.REVIEWS_ANSWER)
def vendor_index():
    actor = current_actor()
    rows = (
        get_session()
        .scalars(
            sa.select(Confirmation)
            .join(ReviewSchedule, ReviewSchedule.id == Confirmation.schedule_id)
            .options(selectinload(Confirmation.schedule).selectinload(ReviewSchedule.organisation))
            .where(
                ReviewSchedule.vendor_company_id == actor.vendor_company_id,
                ReviewSchedule.organisation_id.in_(list(actor.vendor_organisation_ids)),
            )
            .order_by(Confirmation.due_on, Confirmation.id)
        )
        .all()
    )
    waiting = [c for c in rows if c.editable_by_vendor and c.schedule.status == "active"]
    others = sorted((c for c in rows if c not in waiting), key=lambda c: c.due_on, reverse=True)
    return render_template(
        "reviews/vendor_confirmations.html", waiting=waiting, others=others, today=today_jst()
    )


@bp.route("/vendor/confirmations/<int:confirmation_id>")
@require(Permission.REVIEWS_ANSWER)
def vendor_answer(confirmation_id: int):
    return _answer_page(_for_vendor(confirmation_id), "vendor")


@bp.route("/vendor/confirmations/<int:confirmation_id>/sections/<section_key>", methods=["POST"])
@require(Permission.REVIEWS_ANSWER)
def vendor_section(confirmation_id: int, section_key: str):
    return _answer_section(_for_vendor(confirmation_id), section_key, "vendor")


@bp.route("/vendor/confirmations/<int:confirmation_id>/files", methods=["POST"])
@require(Permission.REVIEWS_ANSWER)
def vendor_upload(confirmation_id: int):
    return _upload(_for_vendor(confirmation_id), "vendor")


@bp.route("/vendor/confirmations/<int:confirmation_id>/submit", methods=["POST"])
@require(Permission.REVIEWS_ANSWER)
def vendor_submit(confirmation_id: int):
    return _submit(_for_vendor(confirmation_id), "vendor")
