from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template
from flask_login import current_user

from portal.assessments.service import for_vendor_user
from portal.db import get_session
from portal.permissions import Permission, public, require

bp = Blueprint("main", __name__, template_folder="templates")


@bp.route("/")
@require(Permission.DASHBOARD)
def dashboard():
    assessments = for_vendor_user(get_session(), current_user) if current_user.is_vendor else []
    return render_template("main/dashboard.html", user=current_user, assessments=assessments)


@bp.route("/healthz")
@public
def healthz():
    """For load balancers and monitoring: 200 when the database answers, 503 otherwise."""
    try:
        get_session().execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means "not healthy"
        return jsonify({"status": "error", "database": "unavailable"}), 503
    return jsonify({"status": "ok", "database": "ok"})
