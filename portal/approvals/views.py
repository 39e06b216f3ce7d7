"""/services …: external service records; /applications …: 利用申請, the decision, the entry of
the 承認済み外部サービス台帳 with its history, 外部サービス管理者 handovers, 停止 / 廃止, and the
terms of 約款型 services; /my-services: what the signed-in 外部サービス管理者 manages."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import contains_eager, selectinload
from wtforms import SelectChoice

from portal.approvals import service as approvals
from portal.approvals.forms import (
    ApplicationForm,
    DecisionForm,
    HandoverForm,
    NewServiceForm,
    PlanForm,
    RevisionForm,
    ServiceEditForm,
    StatusForm,
    TermsForm,
)
from portal.approvals.models import (
    ACTIVE_STATES,
    ExternalService,
    ManagerAssignment,
    TermsVersion,
    UseApplication,
)
from portal.approvals.service import ApprovalError
from portal.assessments.models import Assessment
from portal.audit.models import AuditEvent
from portal.audit.views import ACTION_LABELS
from portal.clauses.service import contracts_for
from portal.db import get_session
from portal.engagements.models import Engagement
from portal.evidence.names import normalise_name
from portal.lifecycle import retirement
from portal.lifecycle import service as lifecycle
from portal.lifecycle.forms import RetireCompleteForm, RetireOverrideForm
from portal.mail import service as mail
from portal.permissions import (
    Permission,
    can,
    can_decide_application,
    can_edit_application,
    can_view_application,
    can_view_engagement,
    require,
)
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import DATA_PURPOSES
from portal.reviews import schedules
from portal.scoring.engine import DECISIONS as OUTCOME_DECISIONS
from portal.scoring.engine import RATINGS
from portal.users.models import User
from portal.vendors import service as vendors
from portal.web import current_actor, flash_form_errors, parse_id, today_jst

bp = Blueprint("approvals", __name__, template_folder="templates")
log = logging.getLogger(__name__)


def _service_or_404(service_id: int) -> ExternalService:
    service = get_session().get(ExternalService, service_id)
    if service is None or service.organisation_id != current_user.organisation_id:
        abort(404)
    return service


# The detail page lists the managers and the terms versions with who did what (one query
# each, however long the history).
DETAIL = (
    selectinload(UseApplication.managers).selectinload(ManagerAssignment.user),
    selectinload(UseApplication.managers).selectinload(ManagerAssignment.appointed_by),
    selectinload(UseApplication.terms_versions).selectinload(TermsVersion.recorded_by),
    selectinload(UseApplication.terms_versions).selectinload(TermsVersion.confirmed_by),
)


def _application_or_404(application_id: int, options=()) -> UseApplication:
    application = get_session().get(UseApplication, application_id, options=options)
    if application is None or not can_view_application(current_user, application):
        abort(404)
    return application


def _id_arg(name: str) -> int | None:
    return parse_id(request.args.get(name))


def _detail(application: UseApplication):
    return redirect(url_for("approvals.detail", application_id=application.id), code=303)


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------


@bp.route("/services")
@require(Permission.REGISTER_VIEW)
def services():
    db = get_session()
    rows = approvals.services_of(db, current_user.organisation_id)
    counts = dict(
        db.execute(
            sa.select(UseApplication.service_id, sa.func.count())
            .where(
                UseApplication.organisation_id == current_user.organisation_id,
                UseApplication.status.in_(ACTIVE_STATES),
            )
            .group_by(UseApplication.service_id)
        ).all()
    )
    return render_template(
        "approvals/services.html", services=rows, counts=counts, today=today_jst()
    )


def _importable_assessment() -> Assessment | None:
    """``?assessment=`` : an assessment of this organisation the user may see."""
    assessment_id = _id_arg("assessment")
    if assessment_id is None:
        return None
    assessment = get_session().get(Assessment, assessment_id)
    if assessment is None or not can_view_engagement(current_user, assessment.engagement):
        abort(404)
    return assessment


def _service_input(form, tables: dict | None = None) -> approvals.ServiceInput:
    values = {name: getattr(form, name).data for name in approvals.SCALAR_FIELDS}
    if values["sla_availability"] is not None:
        values["sla_availability"] = float(values["sla_availability"])
    for name in ("description", "contracting_party", "ismap_number", "backup", "exit_plan"):
        values[name] = values[name] or ""
    for name in ("governing_law", "jurisdiction", "ismap_scope_covers"):
        values[name] = values[name] or None  # 「（未確認）」
    return approvals.ServiceInput(**values, tables=tables or {})


@bp.route("/services/new", methods=["GET", "POST"])
@require(Permission.APPLICATIONS_FILE)
def service_new():
    db = get_session()
    form = NewServiceForm()
    if request.method == "POST":
        raw = form.assessment_id.data or ""
        assessment_id = parse_id(raw)
        assessment = db.get(Assessment, assessment_id) if assessment_id else None
        if raw and (
            assessment is None or not can_view_engagement(current_user, assessment.engagement)
        ):
            abort(404)
    else:
        assessment = _importable_assessment()
    form.company_id.choices = [
        SelectChoice(c.id, f"{c.name}（{c.corporate_number}）")
        for c in vendors.companies_of(db, current_user.organisation_id)
        if assessment is None or c.id == assessment.vendor_company_id
    ]
    prefill = approvals.prefill_from(db, assessment) if assessment else None
    if request.method == "GET" and prefill is not None:
        for name in approvals.SCALAR_FIELDS:
            getattr(form, name).data = getattr(prefill, name)
        form.company_id.data = assessment.vendor_company_id
        form.assessment_id.data = str(assessment.id)
    if form.validate_on_submit():
        try:
            service = approvals.create_service(
                db,
                current_actor(),
                form.company_id.data,
                _service_input(form, prefill.tables if prefill else None),
                assessment,
            )
        except ApprovalError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("外部サービスを登録しました。", "success")
            return redirect(url_for("approvals.service_detail", service_id=service.id), code=303)
    elif request.method == "POST":
        flash_form_errors(form)
    return render_template(
        "approvals/service_form.html",
        form=form,
        service=None,
        assessment=assessment,
        prefill=prefill,
    )


@bp.route("/services/<int:service_id>")
@require(Permission.REGISTER_VIEW)
def service_detail(service_id: int):
    service = _service_or_404(service_id)
    db = get_session()
    applications = [
        a
        for a in db.scalars(
            sa.select(UseApplication)
            .options(*approvals.LISTED)
            .where(UseApplication.service_id == service.id)
            .order_by(UseApplication.id.desc())
        )
        if can_view_application(current_user, a)
    ]
    return render_template(
        "approvals/service_detail.html",
        service=service,
        applications=applications,
        plan_form=PlanForm(),
        today=today_jst(),
        countries=COUNTRIES,
        purposes=DATA_PURPOSES,
    )


@bp.route("/services/<int:service_id>/edit", methods=["GET", "POST"])
@require(Permission.APPLICATIONS_FILE)
def service_edit(service_id: int):
    service = _service_or_404(service_id)
    form = ServiceEditForm(obj=service if request.method == "GET" else None)
    if request.method == "GET":
        form.version.data = str(service.version)
    if form.validate_on_submit():
        db = get_session()
        try:
            approvals.update_service(
                db, service, current_actor(), _service_input(form), form.expected_version() or 0
            )
        except ApprovalError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("外部サービスの情報を更新しました。", "success")
            return redirect(url_for("approvals.service_detail", service_id=service.id), code=303)
    elif request.method == "POST":
        flash_form_errors(form)
    return render_template(
        "approvals/service_form.html", form=form, service=service, assessment=None, prefill=None
    )


@bp.route("/services/<int:service_id>/plans", methods=["POST"])
@require(Permission.APPLICATIONS_FILE)
def plan_add(service_id: int):
    service = _service_or_404(service_id)
    form = PlanForm()
    db = get_session()
    if not form.validate():
        flash_form_errors(form)
    else:
        try:
            approvals.add_plan(db, service, current_actor(), form.name.data, form.notes.data or "")
        except ApprovalError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("プラン・エディションを追加しました。", "success")
    return redirect(url_for("approvals.service_detail", service_id=service.id), code=303)


# ---------------------------------------------------------------------------------------------
# Applications
# ---------------------------------------------------------------------------------------------


@bp.route("/applications")
@require(Permission.REGISTER_VIEW)
def applications():
    """Applications not (yet) in the register: awaiting a decision, returned, rejected."""
    db = get_session()
    rows = [
        a
        for a in db.scalars(
            sa.select(UseApplication)
            .options(*approvals.LISTED)
            .where(
                UseApplication.organisation_id == current_user.organisation_id,
                UseApplication.status.in_(("submitted", "returned", "rejected")),
            )
            .order_by(UseApplication.submitted_at.desc())
        )
        if can_view_application(current_user, a)
    ]
    return render_template("approvals/applications.html", applications=rows)


def _application_choices(form: ApplicationForm, service_id: int | None) -> None:
    db = get_session()
    org_id = current_user.organisation_id
    form.department_id.choices = [
        SelectChoice(d.id, d.name) for d in current_user.departments if d.active
    ]
    services = approvals.services_of(db, org_id)
    form.service_id.choices = [SelectChoice(s.id, s.label) for s in services]
    chosen = next((s for s in services if s.id == service_id), None)
    plans = [p for s in services for p in s.plans if chosen is None or s.id == chosen.id]
    form.plan_id.choices = [SelectChoice("", "（指定しない）")] + [
        SelectChoice(str(p.id), f"{p.service.name}　{p.name}") for p in plans
    ]
    assessments = db.scalars(
        sa.select(Assessment)
        .join(Engagement, Engagement.id == Assessment.engagement_id)
        .options(contains_eager(Assessment.engagement), selectinload(Assessment.vendor_company))
        .where(Assessment.organisation_id == org_id)
        .order_by(Assessment.id.desc())
    )
    form.assessment_id.choices = [SelectChoice("", "（紐づけない・約款型で機密性1の情報のみ）")] + [
        SelectChoice(
            str(a.id),
            f"{a.engagement.title}／{a.vendor_company.name}（{a.status_label}）",
        )
        for a in assessments
        if can_view_engagement(current_user, a.engagement)
        and (chosen is None or a.vendor_company_id == chosen.vendor_company_id)
    ]


def _terms_input(form) -> approvals.TermsInput:
    upload = form.terms_file.data
    content, source = b"", ""
    if upload is not None and getattr(upload, "filename", ""):
        content = upload.read()
        # Only the hash is kept; the name is cleaned like any uploaded file's (last path
        # component, no control or bidi characters).
        source = normalise_name(upload.filename)
    elif form.terms_text.data and form.terms_text.data.strip():
        content, source = form.terms_text.data.strip().encode("utf-8"), "貼り付け"
    return approvals.TermsInput(
        url=form.terms_url.data or "",
        content=content,
        source=source,
        risks_confirmed=bool(
            getattr(form, "terms_risks_confirmed", None) and form.terms_risks_confirmed.data
        ),
    )


def _application_input(form: ApplicationForm) -> approvals.ApplicationInput:
    return approvals.ApplicationInput(
        department_id=form.department_id.data,
        service_id=form.service_id.data,
        plan_id=parse_id(form.plan_id.data),
        assessment_id=parse_id(form.assessment_id.data),
        purpose=form.purpose.data or "",
        business=form.business.data or "",
        network_segment=form.network_segment.data,
        max_confidentiality=form.max_confidentiality.data,
        personal_data=form.personal_data.data,
        specific_personal_data=form.specific_personal_data.data,
        sensitive_personal_data=form.sensitive_personal_data.data,
        terms=_terms_input(form),
    )


@bp.route("/applications/new", methods=["GET", "POST"])
@require(Permission.APPLICATIONS_FILE)
def application_new():
    form = ApplicationForm()
    service_id = _id_arg("service") if request.method == "GET" else None
    _application_choices(form, service_id)
    if not form.department_id.choices:
        flash("所属している課等がないため、利用申請を行えません。", "error")
        return redirect(url_for("approvals.applications"))
    if not form.service_id.choices:
        flash("先に、利用する外部サービスを登録してください。", "error")
        return redirect(url_for("approvals.services"))
    if request.method == "GET":
        if service_id:
            form.service_id.data = service_id
        if (assessment_id := _id_arg("assessment")) is not None:
            form.assessment_id.data = str(assessment_id)
    if form.validate_on_submit():
        db = get_session()
        try:
            application = approvals.file(db, current_actor(), _application_input(form))
        except ApprovalError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("利用申請を提出しました。許可権限者の判断をお待ちください。", "success")
            return _detail(application)
    elif request.method == "POST":
        flash_form_errors(form)
    return render_template("approvals/application_form.html", form=form, application=None)


@bp.route("/applications/<int:application_id>/revise", methods=["GET", "POST"])
@require(Permission.APPLICATIONS_FILE)
def revise(application_id: int):
    application = _application_or_404(application_id)
    if not can_edit_application(current_user, application):
        abort(403)
    if current_user.id != application.applicant_id:
        flash("差し戻された申請を修正できるのは申請者本人だけです。", "error")
        return redirect(url_for("approvals.detail", application_id=application.id))
    if application.status != "returned":
        flash("修正できるのは、差し戻された申請だけです。", "error")
        return redirect(url_for("approvals.detail", application_id=application.id))
    form = RevisionForm(obj=application if request.method == "GET" else None)
    _application_choices(form, None)
    if request.method == "GET":
        form.version.data = str(application.version)
        form.plan_id.data = str(application.plan_id or "")
        form.assessment_id.data = str(application.assessment_id or "")
        if application.accepted_terms:
            form.terms_url.data = application.accepted_terms.url
    if form.validate_on_submit():
        db = get_session()
        try:
            approvals.revise(
                db,
                application,
                current_actor(),
                _application_input(form),
                form.expected_version() or 0,
            )
        except ApprovalError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("申請を修正して、再度提出しました。", "success")
            return _detail(application)
    elif request.method == "POST":
        flash_form_errors(form)
    return render_template("approvals/application_form.html", form=form, application=application)


def _history(application: UseApplication) -> list[dict]:
    db = get_session()
    events = list(
        db.scalars(
            sa.select(AuditEvent)
            .where(
                AuditEvent.object_type == UseApplication.__tablename__,
                AuditEvent.object_id == str(application.id),
                AuditEvent.organisation_id == application.organisation_id,
            )
            .order_by(AuditEvent.seq)
        )
    )
    ids = {e.actor_user_id for e in events if e.actor_user_id}
    names = (
        dict(db.execute(sa.select(User.id, User.name).where(User.id.in_(ids))).all()) if ids else {}
    )
    return [
        {
            "at": e.occurred_at,
            "label": ACTION_LABELS.get(e.action, e.action),
            "actor": names.get(e.actor_user_id, e.actor_label),
            "details": json.loads(e.details or "{}"),
        }
        for e in events
    ]


def _managers(application: UseApplication) -> list[SelectChoice]:
    return [
        SelectChoice(
            str(u.id), f"{u.name}（{'、'.join(d.name for d in u.departments) or '所属なし'}）"
        )
        for u in approvals.eligible_managers(get_session(), application.organisation_id)
    ]


def _render_detail(application: UseApplication, decision_form: DecisionForm | None = None):
    db = get_session()
    state = approvals.assessment_state(db, application.assessment)
    if decision_form is None:
        decision_form = DecisionForm(
            version=str(application.version), conditions=state.conditions if state else ""
        )
    decision_form.manager_id.choices = [SelectChoice("", "（選んでください）")] + _managers(
        application
    )
    handover_form = HandoverForm(version=str(application.version), appointed_on=today_jst())
    handover_form.manager_id.choices = decision_form.manager_id.choices
    contract = (
        contracts_for(db, [application.assessment_id]).get(application.assessment_id)
        if application.assessment_id
        else None
    )
    ending = application.status == "ending"
    schedule = schedules.schedule_of_application(get_session(), application)
    return render_template(
        "approvals/detail.html",
        application=application,
        schedule=schedule
        if schedule and schedules.can_view_schedule(current_user, schedule)
        else None,
        service=application.service,
        state=state,
        ratings=RATINGS,
        outcome_labels=OUTCOME_DECISIONS,
        show_assessment=application.assessment is not None
        and can_view_engagement(current_user, application.assessment.engagement),
        contract=contract[1] if contract else None,
        history=_history(application),
        can_decide=can_decide_application(current_user, application)
        and application.status == "submitted",
        is_applicant=current_user.id == application.applicant_id,
        can_manage=can(current_user, Permission.APPLICATIONS_DECIDE),
        can_edit=can_edit_application(current_user, application),
        is_manager=approvals.manager_of(application, current_user),
        decision_form=decision_form,
        handover_form=handover_form,
        status_form=StatusForm(version=str(application.version)),
        exit_state=lifecycle.state_of(db, application, today_jst())
        if application.in_register
        else None,
        exit_missing=lifecycle.exit_missing(db, application) if ending else (),
        may_complete=ending and retirement.may_complete(current_user, application),
        complete_form=RetireCompleteForm(version=str(application.version)),
        override_form=RetireOverrideForm(version=str(application.version)),
        terms_form=TermsForm(),
        today=today_jst(),
        countries=COUNTRIES,
        purposes=DATA_PURPOSES,
    )


@bp.route("/applications/<int:application_id>")
@require(Permission.REGISTER_VIEW)
def detail(application_id: int):
    return _render_detail(_application_or_404(application_id, DETAIL))


def _report(application: UseApplication) -> None:
    """Tell the ネットワーク管理者 and CISO of a conditional or high-risk approval (9.1(3))."""
    db = get_session()
    failed = 0
    for user in approvals.report_recipients(db, application.organisation_id):
        sent = mail.send_after_commit(
            user.email,
            f"【報告】外部サービスの利用を{application.status_label}しました（{' '.join(application.title.split())}）",
            "application_reported",
            user=user,
            application=application,
            risk=RATINGS.get(application.risk_rating or "", "評価なし"),
            url=url_for("approvals.detail", application_id=application.id, _external=True),
        )
        failed += not sent
    if failed:
        flash(
            "判断は記録しましたが、ネットワーク管理者・CISOへの報告メールの一部を送信できませんでした。"
            "ダッシュボードには表示されています。",
            "warning",
        )


@bp.route("/applications/<int:application_id>/decide", methods=["POST"])
@require(Permission.APPLICATIONS_DECIDE)
def decide(application_id: int):
    application = _application_or_404(application_id)
    form = DecisionForm()
    form.manager_id.choices = [SelectChoice("", "")] + _managers(application)
    if not form.validate():
        flash_form_errors(form)
        return _render_detail(application, form), 422
    db = get_session()
    try:
        report = approvals.decide(
            db,
            application,
            current_actor(),
            approvals.DecisionInput(
                decision=form.decision.data,
                reason=form.reason.data or "",
                conditions=form.conditions.data or "",
                override_reason=form.override_reason.data or "",
                manager_id=parse_id(form.manager_id.data),
                version=form.expected_version() or 0,
            ),
            today_jst(),
        )
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _render_detail(application, form), 422
    db.commit()
    flash(f"申請を「{application.status_label}」としました。", "success")
    if report:
        _report(application)
    return _detail(application)


@bp.route("/applications/<int:application_id>/handover", methods=["POST"])
@require(Permission.APPLICATIONS_DECIDE)
def handover(application_id: int):
    application = _application_or_404(application_id)
    form = HandoverForm()
    form.manager_id.choices = _managers(application)
    db = get_session()
    if not form.validate():
        flash_form_errors(form)
        return _detail(application)
    try:
        approvals.hand_over(
            db,
            application,
            current_actor(),
            user_id=parse_id(form.manager_id.data),
            on=form.appointed_on.data,
            note=form.note.data or "",
            version=form.expected_version() or 0,
            today=today_jst(),
        )
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(application)
    db.commit()
    flash("外部サービス管理者を引き継ぎました。", "success")
    return _detail(application)


@bp.route("/applications/<int:application_id>/status", methods=["POST"])
@require(Permission.APPLICATIONS_DECIDE)
def change_status(application_id: int):
    application = _application_or_404(application_id)
    form = StatusForm()
    db = get_session()
    if not form.validate():
        flash_form_errors(form)
        return _detail(application)
    try:
        approvals.change_status(
            db,
            application,
            current_actor(),
            form.action.data,
            form.reason.data or "",
            form.expected_version() or 0,
            today=today_jst(),
        )
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(application)
    db.commit()
    if application.status == "ending":
        flash(
            "台帳の状態を「廃止手続中」にしました。外部サービス管理者が利用終了時の確認を"
            "すべて記録すると、廃止を完了できます。",
            "success",
        )
    else:
        flash(f"台帳の状態を「{application.status_label}」にしました。", "success")
    return _detail(application)


@bp.route("/applications/<int:application_id>/terms", methods=["POST"])
@require(Permission.REGISTER_VIEW)
def terms(application_id: int):
    application = _application_or_404(application_id)
    form = TermsForm()
    db = get_session()
    if not form.validate():
        flash_form_errors(form)
        return _detail(application)
    try:
        version = approvals.record_terms(db, application, current_actor(), _terms_input(form))
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(application)
    db.commit()
    if version is None:
        flash("記録済みの版と同じ内容です（ハッシュ値が一致しました）。", "info")
    else:
        flash(
            "利用規約の新しい版を記録しました。リスクを再確認するまで、台帳に「要再確認」と表示されます。",
            "warning",
        )
    return _detail(application)


@bp.route("/applications/<int:application_id>/terms/<int:terms_id>/confirm", methods=["POST"])
@require(Permission.REGISTER_VIEW)
def terms_confirm(application_id: int, terms_id: int):
    application = _application_or_404(application_id)
    db = get_session()
    if request.form.get("risks_confirmed") != "y":
        flash("リスクを再確認したことにチェックしてください（対策基準9.3(2)）。", "error")
        return _detail(application)
    try:
        approvals.confirm_terms(db, application, current_actor(), terms_id)
    except ApprovalError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _detail(application)
    db.commit()
    flash("新しい版の利用規約について、リスクの再確認を記録しました。", "success")
    return _detail(application)


@bp.route("/my-services")
@require(Permission.REGISTER_VIEW)
def mine():
    db = get_session()
    rows = approvals.managed_by(db, current_user)
    return render_template(
        "approvals/mine.html",
        applications=rows,
        today=today_jst(),
        soon=today_jst() + timedelta(days=90),
    )
