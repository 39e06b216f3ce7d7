"""/engagements: 案件 — list, create, edit, and address the questionnaire to vendors."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal.admin.views import send_link
from portal.assessments import service as assessments
from portal.assessments.forms import InviteForm
from portal.auth.tokens import INVITATION
from portal.clauses import service as clauses
from portal.db import get_session
from portal.engagements import service as engagements
from portal.engagements.forms import EngagementEditForm, EngagementForm
from portal.engagements.models import Engagement
from portal.mail import service as mail
from portal.permissions import Permission, can_edit_engagement, can_view_engagement, require
from portal.questionnaires import loader
from portal.questionnaires.conditions import applicable_by_engagement
from portal.questionnaires.schema import TRACKS
from portal.reviews import schedules
from portal.users import service as users
from portal.vendors import service as vendors

bp = Blueprint("engagements", __name__, url_prefix="/engagements", template_folder="templates")

QUESTIONNAIRE_KEY = "assessment"


def _actor():
    return current_user._get_current_object()


def _engagement_or_404(engagement_id: int) -> Engagement:
    engagement = get_session().get(Engagement, engagement_id)
    if engagement is None or not can_view_engagement(current_user, engagement):
        abort(404)
    return engagement


def _department_choices() -> list[SelectChoice]:
    return [SelectChoice(d.id, d.name) for d in current_user.departments if d.active]


def _input(form: EngagementForm) -> engagements.EngagementInput:
    return engagements.EngagementInput(
        **{
            name: getattr(form, name).data
            for name in engagements.FIELDS
            if name != "network_segment"
        },
        network_segment=form.network_segment.data or None,
    )


@bp.route("/")
@require(Permission.ENGAGEMENTS_VIEW)
def index():
    db = get_session()
    departments = engagements.department_choices(db, current_user)
    filters = engagements.EngagementFilter.parse(request.args, departments)
    listed = engagements.visible_page(db, current_user, filters, request.args.get("page"))
    return render_template(
        "engagements/index.html",
        listed=listed,
        tracks=TRACKS,
        departments=departments,
        filters=filters,
        args=filters.as_args(),
        page_size=engagements.PAGE_SIZE,
    )


@bp.route("/new", methods=["GET", "POST"])
@require(Permission.ENGAGEMENTS_MANAGE)
def new():
    form = EngagementForm()
    form.department_id.choices = _department_choices()
    if not form.department_id.choices:
        flash(
            "所属している課等がないため、案件を登録できません。システム管理者に所属の設定を依頼してください。",
            "error",
        )
        return redirect(url_for("engagements.index"))
    if form.validate_on_submit():
        db = get_session()
        try:
            engagement = engagements.create(db, _actor(), _input(form))
        except engagements.EngagementError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("案件を登録しました。", "success")
            return redirect(url_for("engagements.detail", engagement_id=engagement.id))
    return render_template("engagements/form.html", form=form, engagement=None)


@bp.route("/<int:engagement_id>")
@require(Permission.ENGAGEMENTS_VIEW)
def detail(engagement_id: int):
    engagement = _engagement_or_404(engagement_id)
    db = get_session()
    questionnaire = loader.latest(QUESTIONNAIRE_KEY)
    form = InviteForm()
    form.company_id.choices = [SelectChoice("", "（新しい事業者を登録する）")] + [
        SelectChoice(str(c.id), f"{c.name}（{c.corporate_number}）")
        for c in vendors.companies_of(db, engagement.organisation_id)
    ]
    summary = applicable_by_engagement(questionnaire, engagement.facts)
    listed = assessments.for_engagement(db, engagement.id)
    return render_template(
        "engagements/detail.html",
        engagement=engagement,
        track_label=TRACKS[engagement.track],
        track_reason=engagements.track_reason(engagement.kind, engagement.confidentiality),
        questionnaire=questionnaire,
        summary=summary,
        total=sum(n for _s, n, _f in summary),
        assessments=listed,
        contracts=clauses.contracts_for(db, [a.id for a in listed]),
        # 定期確認 of the decided 業務委託 contracts (one query for the list).
        review_schedules=schedules.ids_by_assessment(db, [a.id for a in listed]),
        can_edit=can_edit_engagement(current_user, engagement),
        form=form,
    )


@bp.route("/<int:engagement_id>/edit", methods=["GET", "POST"])
@require(Permission.ENGAGEMENTS_MANAGE)
def edit(engagement_id: int):
    engagement = _engagement_or_404(engagement_id)
    if not can_edit_engagement(current_user, engagement):
        abort(404)
    form = EngagementEditForm(obj=engagement)
    form.department_id.choices = _department_choices()
    if request.method != "POST":
        form.version.data = str(engagement.version)
        form.network_segment.data = engagement.network_segment or ""
    if form.validate_on_submit():
        db = get_session()
        try:
            engagements.update(
                db, _actor(), engagement, _input(form), form.expected_version() or -1
            )
        except engagements.EngagementError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("案件を更新しました。", "success")
            return redirect(url_for("engagements.detail", engagement_id=engagement.id))
    return render_template("engagements/form.html", form=form, engagement=engagement)


@bp.route("/<int:engagement_id>/assessments", methods=["POST"])
@require(Permission.ENGAGEMENTS_MANAGE)
def invite(engagement_id: int):
    engagement = _engagement_or_404(engagement_id)
    if not can_edit_engagement(current_user, engagement):
        abort(404)
    db = get_session()
    form = InviteForm()
    form.company_id.choices = [SelectChoice("", "")] + [
        SelectChoice(str(c.id), c.name)
        for c in vendors.companies_of(db, engagement.organisation_id)
    ]
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("engagements.detail", engagement_id=engagement.id))
    actor = _actor()
    try:
        invitation = assessments.invite(
            db,
            actor,
            engagement,
            loader.latest(QUESTIONNAIRE_KEY),
            company_id=int(form.company_id.data) if form.company_id.data else None,
            corporate_number=form.corporate_number.data or "",
            company_name=form.company_name.data or "",
            contact_name=form.contact_name.data,
            contact_email=form.contact_email.data,
        )
        token = None
        if invitation.new_contact:
            token = users.issue_invitation(
                db,
                actor,
                invitation.contact,
                timedelta(hours=current_app.config["INVITATION_HOURS"]),
            )
    except (assessments.AssessmentError, users.UserAdminError) as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("engagements.detail", engagement_id=engagement.id))
    db.commit()
    if token:
        send_link(invitation.contact, token, INVITATION)
    else:
        if not mail.send_after_commit(
            invitation.contact.email,
            "【回答のご依頼】委託先・外部サービス 情報セキュリティ評価票",
            "assessment_request",
            user=invitation.contact,
            organisation=engagement.organisation.name,
            engagement=engagement,
            link=current_app.config["BASE_URL"]
            + url_for("assessments.answer", assessment_id=invitation.assessment.id),
        ):
            flash(mail.MAIL_FAILED, "warning")
    flash(f"{invitation.assessment.vendor_company.name} に回答を依頼しました。", "success")
    return redirect(url_for("engagements.detail", engagement_id=engagement.id))
