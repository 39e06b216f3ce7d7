"""/register: the 承認済み外部サービス台帳 — the filtered list, its CSV and XLSX exports (audited,
so they are POST forms: no GET changes anything) and a printable view for the
情報セキュリティ委員会. Everyone holding ``REGISTER_VIEW`` reads the entries of their own
organisation; applications in progress or rejected only as ``can_view_application`` allows."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from portal.audit import service as audit
from portal.db import get_session, utcnow
from portal.evidence.names import content_disposition
from portal.permissions import Permission, require
from portal.questionnaires.schema import SEGMENTS
from portal.register import exports, service
from portal.register.service import RegisterFilter
from portal.web import CSP, format_jst, page_of, today_jst

bp = Blueprint("register", __name__, url_prefix="/register", template_folder="templates")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TITLE = "承認済み外部サービス台帳"


def _choices(filters: RegisterFilter) -> dict:
    return {
        "statuses": service.STATUS_FILTERS,
        "departments": service.departments_of(get_session(), current_user.organisation_id),
        "classifications": service.CLASSIFICATION_FILTERS,
        "segments": SEGMENTS,
        "ismap_statuses": service.ISMAP_FILTERS,
        "reviews": service.REVIEW_FILTERS,
        "filters": filters,
        "args": filters.as_args(),
    }


@bp.route("")
@require(Permission.REGISTER_VIEW)
def index():
    filters = RegisterFilter.parse(request.args)
    db = get_session()
    today = today_jst()
    organisation_id = current_user.organisation_id
    counts = service.count(db, organisation_id, filters, today, current_user)
    page, pages = page_of(request.args.get("page"), counts["total"], service.PAGE_SIZE)
    rows = service.rows(
        db,
        organisation_id,
        filters,
        today,
        current_user,
        limit=service.PAGE_SIZE,
        offset=(page - 1) * service.PAGE_SIZE,
    )
    return render_template(
        "register/index.html",
        rows=rows,
        counts=counts,
        page=page,
        pages=pages,
        page_size=service.PAGE_SIZE,
        status_labels=service.STATUS_FILTERS,
        today=today,
        **_choices(filters),
    )


@bp.route("/print")
@require(Permission.REGISTER_VIEW)
def printable():
    filters = RegisterFilter.parse(request.args)
    db = get_session()
    today = today_jst()
    organisation = current_user.organisation
    rows = service.rows(db, organisation.id, filters, today, current_user)
    departments = service.departments_of(db, organisation.id)
    return render_template(
        "register/print.html",
        title=TITLE,
        organisation=organisation,
        printed_at=format_jst(utcnow()),
        conditions=filters.described(departments),
        rows=rows,
        columns=service.COLUMNS,
        args=filters.as_args(),
        cell=exports.as_text,
    )


def _export(kind: str) -> Response:
    """The filtered register (the filter comes with the form), audited with its size."""
    filters = RegisterFilter.parse(request.form)
    db = get_session()
    today = today_jst()
    actor = current_user._get_current_object()
    rows = service.rows(db, actor.organisation_id, filters, today, actor)
    if kind == "csv":
        data, mimetype = exports.to_csv(rows), "text/csv"
    else:
        data, mimetype = exports.to_xlsx(rows, title=f"{TITLE}（{actor.organisation.name}）"), XLSX
    audit.record(
        db,
        "register.export",
        actor=actor,
        details={"format": kind, "count": len(rows), "filters": filters.as_args()},
    )
    db.commit()
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = content_disposition(
        f"外部サービス台帳_{today:%Y%m%d}.{kind}", 0, fallback_prefix="register"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = f"sandbox; {CSP}"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/export.csv", methods=["POST"])
@require(Permission.REGISTER_VIEW)
def export_csv():
    return _export("csv")


@bp.route("/export.xlsx", methods=["POST"])
@require(Permission.REGISTER_VIEW)
def export_xlsx():
    return _export("xlsx")
