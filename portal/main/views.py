from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from flask_login import current_user

from portal.approvals import service as approvals
from portal.approvals.models import UseApplication
from portal.assessments.service import for_vendor_user
from portal.db import get_session, utcnow
from portal.permissions import Permission, Role, can, public, require
from portal.reports import service as reports
from portal.scoring.engine import RATINGS
from portal.web import today_jst

bp = Blueprint("main", __name__, template_folder="templates")

# Conditional and high-risk approvals stay on the ネットワーク管理者's and CISO's home page this long.
REPORTED_DAYS = 90


@bp.route("/")
@require(Permission.DASHBOARD)
def dashboard():
    db = get_session()
    if current_user.is_vendor:
        return render_template(
            "main/dashboard.html",
            user=current_user,
            assessments=for_vendor_user(db, current_user),
        )
    roles = current_user.role_set
    org_id = current_user.organisation_id
    show_reported = bool(roles & {Role.CISO, Role.NETWORK_ADMIN})
    reported = (
        approvals.reported_since(db, org_id, utcnow() - timedelta(days=REPORTED_DAYS))
        if show_reported
        else []
    )
    awaiting = (
        db.scalar(
            sa.select(sa.func.count()).where(
                UseApplication.organisation_id == org_id,
                UseApplication.status == "submitted",
                UseApplication.applicant_id != current_user.id,
            )
        )
        if can(current_user, Permission.APPLICATIONS_DECIDE)
        else 0
    )
    managed = approvals.managed_by(db, current_user) if Role.SERVICE_MANAGER in roles else []
    # 定期確認 (9.1(3), 9.2(6)): the same figures as /reviews/dashboard, in the user's scope.
    review_figures = (
        reports.figures(db, current_user, today_jst())
        if can(current_user, Permission.REVIEWS_VIEW)
        else None
    )
    return render_template(
        "main/dashboard.html",
        user=current_user,
        assessments=[],
        show_reported=show_reported,
        reported=reported,
        reported_days=REPORTED_DAYS,
        awaiting=awaiting,
        managed=managed,
        ratings=RATINGS,
        review_figures=review_figures,
    )


@bp.route("/healthz")
@public
def healthz():
    """For load balancers and monitoring: 200 when the database answers, 503 otherwise."""
    try:
        get_session().execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means "not healthy"
        return jsonify({"status": "error", "database": "unavailable"}), 503
    return jsonify({"status": "ok", "database": "ok"})
