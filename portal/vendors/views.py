"""/vendors: the companies an organisation works with; /vendor: a vendor's own company profile."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.admin.views import send_link
from portal.auth.tokens import INVITATION
from portal.db import get_session
from portal.permissions import Permission, require
from portal.users import service as users
from portal.users.models import User
from portal.vendors import service as vendors
from portal.vendors.forms import CompanyForm, CompanyProfileForm, VendorUserForm

bp = Blueprint("vendors", __name__, template_folder="templates")


def _company_or_404(company_id: int):
    company = vendors.get_for_organisation(get_session(), current_user.organisation_id, company_id)
    if company is None:
        abort(404)
    return company


@bp.route("/vendors")
@require(Permission.VENDORS_VIEW)
def index():
    companies = vendors.companies_of(get_session(), current_user.organisation_id)
    return render_template("vendors/index.html", companies=companies)


@bp.route("/vendors/new", methods=["GET", "POST"])
@require(Permission.VENDORS_MANAGE)
def new():
    form = CompanyForm()
    if form.validate_on_submit():
        db = get_session()
        try:
            company, created = vendors.register_company(
                db,
                current_user._get_current_object(),
                number=form.corporate_number.data,
                name=form.name.data,
                address=form.address.data,
                representative=form.representative.data,
            )
        except vendors.VendorError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash(
                "事業者を登録しました。"
                if created
                else "登録済みの事業者を一覧に追加しました（事業者情報は事業者自身が管理します）。",
                "success",
            )
            return redirect(url_for("vendors.detail", company_id=company.id))
    return render_template("vendors/new.html", form=form)


@bp.route("/vendors/<int:company_id>")
@require(Permission.VENDORS_VIEW)
def detail(company_id: int):
    company = _company_or_404(company_id)
    contacts = (
        get_session()
        .scalars(
            sa.select(User)
            .where(
                User.vendor_company_id == company.id,
                User.invited_by_organisation_id == current_user.organisation_id,
            )
            .order_by(User.name)
        )
        .all()
    )
    return render_template(
        "vendors/detail.html", company=company, contacts=contacts, form=VendorUserForm()
    )


@bp.route("/vendors/<int:company_id>/users", methods=["POST"])
@require(Permission.VENDORS_MANAGE)
def invite_user(company_id: int):
    company = _company_or_404(company_id)
    form = VendorUserForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("vendors.detail", company_id=company.id))
    db = get_session()
    actor = current_user._get_current_object()
    try:
        target = users.create_vendor_user(
            db, actor, company, email=form.email.data, name=form.name.data
        )
        token = users.issue_invitation(
            db, actor, target, timedelta(hours=current_app.config["INVITATION_HOURS"])
        )
    except users.UserAdminError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        send_link(target, token, INVITATION)
        flash(f"{target.name} 様に利用登録の案内メールを送信しました。", "success")
    return redirect(url_for("vendors.detail", company_id=company.id))


@bp.route("/vendor/profile", methods=["GET", "POST"])
@require(Permission.VENDOR_PROFILE)
def profile():
    """The vendor keeps its own company profile, reused by every body it works with."""
    company = current_user.vendor_company
    form = CompanyProfileForm(obj=company)
    if form.validate_on_submit():
        db = get_session()
        values = {key: getattr(form, key).data or None for key in vendors.PROFILE_FIELDS}
        if vendors.update_profile(db, current_user._get_current_object(), company, values):
            db.commit()
        flash("会社情報を保存しました。", "success")
        return redirect(url_for("vendors.profile"))
    return render_template("vendors/profile.html", form=form, company=company)
