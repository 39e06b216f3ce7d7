"""/admin: the organisation's users, departments and profile. Only the ``admin`` role."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.admin.forms import (
    DepartmentForm,
    NewUserForm,
    OrganisationForm,
    ResetForm,
    UserForm,
    role_choices,
)
from portal.auth.tokens import INVITATION
from portal.db import get_session
from portal.mail import service as mail
from portal.orgs import service as orgs
from portal.orgs.models import Organisation
from portal.permissions import Permission, require
from portal.users import service as users

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")


def _actor():
    return current_user._get_current_object()


def _user_or_404(user_id: int):
    target = users.get_manageable(get_session(), _actor(), user_id)
    if target is None:
        abort(404)
    return target


def _department_choices() -> list[tuple[int, str]]:
    departments = orgs.departments_of(get_session(), current_user.organisation_id, active_only=True)
    return [(d.id, d.name) for d in departments]


def send_link(target, token: str, purpose: str) -> bool:
    """E-mail an invitation or reset link (after the transaction has committed)."""
    config = current_app.config
    organisation = get_session().get(Organisation, current_user.organisation_id)
    if purpose == INVITATION:
        path = url_for("auth.invitation", token=token)
        template, subject, hours = (
            "invitation",
            "【利用登録のご案内】委託先・外部サービス リスク評価ポータル",
            config["INVITATION_HOURS"],
        )
    else:
        path = url_for("auth.reset", token=token)
        template, subject, hours = (
            "password_reset",
            "【パスワード再設定】委託先・外部サービス リスク評価ポータル",
            config["RESET_HOURS"],
        )
    sent = mail.send_after_commit(
        target.email,
        subject,
        template,
        user=target,
        link=config["BASE_URL"] + path,
        hours=hours,
        inviter_name=organisation.name,
    )
    if not sent:
        flash(mail.MAIL_FAILED, "warning")
    return sent


# Users ------------------------------------------------------------------------------------


@bp.route("/users")
@require(Permission.USERS_MANAGE)
def users_list():
    accounts = users.users_of_organisation(get_session(), current_user.organisation_id)
    return render_template("admin/users.html", accounts=accounts)


@bp.route("/users/new", methods=["GET", "POST"])
@require(Permission.USERS_MANAGE)
def user_new():
    form = NewUserForm()
    form.departments.choices = _department_choices()
    if form.validate_on_submit():
        db = get_session()
        try:
            target = users.create_staff_user(
                db,
                _actor(),
                email=form.email.data,
                name=form.name.data,
                roles=form.selected_roles(),
                department_ids=form.departments.data,
            )
            token = users.issue_invitation(
                db, _actor(), target, timedelta(hours=current_app.config["INVITATION_HOURS"])
            )
        except users.UserAdminError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            send_link(target, token, INVITATION)
            flash(f"{target.name} さんを登録し、利用登録の案内メールを送信しました。", "success")
            return redirect(url_for("admin.user_edit", user_id=target.id))
    return render_template("admin/user_new.html", form=form)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@require(Permission.USERS_MANAGE)
def user_edit(user_id: int):
    target = _user_or_404(user_id)
    form = UserForm(obj=target)
    if target.is_vendor:
        form.roles.choices = role_choices(True)
    form.departments.choices = _department_choices()
    if request.method != "POST":
        form.roles.data = sorted(r.value for r in target.role_set)
        form.departments.data = [d.id for d in target.departments]
        form.version.data = str(target.version)
    if form.validate_on_submit():
        db = get_session()
        try:
            users.update_user(
                db,
                _actor(),
                target,
                name=form.name.data,
                roles=form.selected_roles(),
                department_ids=form.departments.data or [],
                expected_version=form.expected_version(),
            )
        except users.UserAdminError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("利用者の情報を更新しました。", "success")
            return redirect(url_for("admin.user_edit", user_id=target.id))
    _ask_to_reload(form)
    return render_template("admin/user_edit.html", form=form, target=target, reset_form=ResetForm())


def _ask_to_reload(form) -> None:
    """A refused hidden version has no field on the page to show its error next to."""
    if form.version.errors:
        flash("画面を読み込み直してから、もう一度操作してください。", "error")


def _user_action(user_id: int, action, success: str):
    target = _user_or_404(user_id)
    db = get_session()
    try:
        result = action(db, target)
    except users.UserAdminError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.user_edit", user_id=user_id))
    db.commit()
    if callable(result):
        result()
    flash(success.format(name=target.name), "success")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@require(Permission.USERS_MANAGE)
def user_disable(user_id: int):
    return _user_action(
        user_id,
        lambda db, t: users.set_active(db, _actor(), t, False),
        "{name} さんのアカウントを無効にしました。ログイン中のセッションも終了しました。",
    )


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@require(Permission.USERS_MANAGE)
def user_enable(user_id: int):
    return _user_action(
        user_id,
        lambda db, t: users.set_active(db, _actor(), t, True),
        "{name} さんのアカウントを有効にしました。",
    )


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
@require(Permission.USERS_MANAGE)
def user_unlock(user_id: int):
    return _user_action(
        user_id,
        lambda db, t: users.unlock(db, _actor(), t),
        "{name} さんのアカウントのロックを解除しました。",
    )


@bp.route("/users/<int:user_id>/reset", methods=["POST"])
@require(Permission.USERS_MANAGE)
def user_reset(user_id: int):
    form = ResetForm()
    if not form.validate_on_submit():
        abort(400)

    def action(db, target):
        token = users.reset_credentials(
            db,
            _actor(),
            target,
            reset_mfa=form.reset_mfa.data,
            valid_for=timedelta(hours=current_app.config["RESET_HOURS"]),
        )
        return lambda: send_link(target, token, "reset")

    return _user_action(
        user_id,
        action,
        "{name} さんのパスワードを無効にし、再設定の案内メールを送信しました。",
    )


@bp.route("/users/<int:user_id>/invite", methods=["POST"])
@require(Permission.USERS_MANAGE)
def user_invite(user_id: int):
    def action(db, target):
        token = users.issue_invitation(
            db, _actor(), target, timedelta(hours=current_app.config["INVITATION_HOURS"])
        )
        return lambda: send_link(target, token, INVITATION)

    return _user_action(user_id, action, "{name} さんに利用登録の案内メールを再送しました。")


# Departments ------------------------------------------------------------------------------


@bp.route("/departments", methods=["GET", "POST"])
@require(Permission.DEPARTMENTS_MANAGE)
def departments():
    db = get_session()
    form = DepartmentForm()
    if form.validate_on_submit():
        org = db.get(Organisation, current_user.organisation_id)
        try:
            orgs.create_department(db, _actor(), org, form.name.data, form.code.data)
        except orgs.OrganisationError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash(f"所属「{form.name.data}」を追加しました。", "success")
            return redirect(url_for("admin.departments"))
    return render_template(
        "admin/departments.html",
        form=form,
        departments=orgs.departments_of(db, current_user.organisation_id),
    )


@bp.route("/departments/<int:department_id>", methods=["GET", "POST"])
@require(Permission.DEPARTMENTS_MANAGE)
def department_edit(department_id: int):
    db = get_session()
    department = orgs.get_department(db, current_user.organisation_id, department_id)
    if department is None:
        abort(404)
    form = DepartmentForm(obj=department)
    if form.validate_on_submit():
        try:
            orgs.update_department(
                db,
                _actor(),
                department,
                name=form.name.data,
                code=form.code.data,
                active=form.active.data,
            )
        except orgs.OrganisationError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("所属を更新しました。", "success")
            return redirect(url_for("admin.departments"))
    return render_template("admin/department_edit.html", form=form, department=department)


# Organisation profile ---------------------------------------------------------------------


@bp.route("/organisation", methods=["GET", "POST"])
@require(Permission.ORGANISATION_MANAGE)
def organisation():
    db = get_session()
    org = db.get(Organisation, current_user.organisation_id)
    form = OrganisationForm(obj=org)
    if request.method != "POST":
        form.version.data = str(org.version)
    if form.validate_on_submit():
        values = {key: getattr(form, key).data for key in orgs.PROFILE_FIELDS}
        try:
            orgs.update_profile(db, _actor(), org, values, form.expected_version() or -1)
        except orgs.OrganisationError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("団体情報を更新しました。", "success")
            return redirect(url_for("admin.organisation"))
    _ask_to_reload(form)
    return render_template("admin/organisation.html", form=form, org=org)
