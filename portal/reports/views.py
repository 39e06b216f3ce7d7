"""/reviews: the dashboard of 定期確認 and the lists behind its figures — schedules (filtered,
paged, exported as CSV / XLSX: audited, so POST forms), expiring certificates and ISMAP
registrations, incident reports (対策基準 9.1(3), 9.2(6)). Staff see their departments', the
organisation-wide readers the whole organisation's."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from portal.db import get_session
from portal.evidence.names import content_disposition
from portal.permissions import Permission, require
from portal.register import exports
from portal.reports import service
from portal.reports.service import ReviewFilter
from portal.web import CSP, today_jst

bp = Blueprint("reports", __name__, url_prefix="/reviews", template_folder="templates")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_PAGE = 100_000


def _page_number(raw: str | None) -> int:
    raw = (raw or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_PAGE else 1


def _pages(total: int) -> tuple[int, int]:
    """(page, pages) of the request's ?page= for ``total`` rows."""
    pages = max((total + service.PAGE_SIZE - 1) // service.PAGE_SIZE, 1)
    return min(_page_number(request.args.get("page")), pages), pages


@bp.route("/dashboard")
@require(Permission.REVIEWS_VIEW)
def dashboard():
    figures = service.figures(get_session(), current_user, today_jst())
    return render_template("reports/dashboard.html", figures=figures)


@bp.route("")
@require(Permission.REVIEWS_VIEW)
def schedules():
    filters = ReviewFilter.parse(request.args)
    db = get_session()
    today = today_jst()
    total = service.count(db, current_user, filters, today)
    page, pages = _pages(total)
    rows = service.rows(
        db,
        current_user,
        filters,
        today,
        limit=service.PAGE_SIZE,
        offset=(page - 1) * service.PAGE_SIZE,
    )
    departments = service.departments_in_scope(db, current_user)
    return render_template(
        "reports/schedules.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        page_size=service.PAGE_SIZE,
        columns=service.COLUMNS,
        cell=exports.as_text,
        filters=filters,
        args=filters.as_args(),
        conditions=filters.described(departments),
        states=service.STATE_FILTERS,
        risks=service.RISK_FILTERS,
        kinds=service.KIND_FILTERS,
        departments=departments,
        scope=service.scope_label(current_user),
    )


@bp.route("/expiring")
@require(Permission.REVIEWS_VIEW)
def expiring():
    kind = request.args.get("kind", "")
    kind = kind if kind in service.EXPIRY_KINDS else "certificate"
    rows = service.expiring(get_session(), current_user, today_jst(), kind)
    return render_template(
        "reports/expiring.html",
        rows=rows,
        kind=kind,
        kinds=service.EXPIRY_KINDS,
        days=service.EXPIRY_DAYS,
        scope=service.scope_label(current_user),
    )


@bp.route("/incidents")
@require(Permission.REVIEWS_VIEW)
def incidents():
    state = request.args.get("state", "")
    state = state if state in service.INCIDENT_FILTERS else ""
    show_all = state == "all"
    db = get_session()
    total = service.incident_count(db, current_user, show_all=show_all)
    page, pages = _pages(total)
    reports = service.incidents(
        db,
        current_user,
        show_all=show_all,
        limit=service.PAGE_SIZE,
        offset=(page - 1) * service.PAGE_SIZE,
    )
    return render_template(
        "reports/incidents.html",
        reports=reports,
        total=total,
        page=page,
        pages=pages,
        state=state,
        states=service.INCIDENT_FILTERS,
        scope=service.scope_label(current_user),
    )


def _export(kind: str) -> Response:
    """The filtered list (the filter comes with the form), audited with its size."""
    filters = ReviewFilter.parse(request.form)
    db = get_session()
    today = today_jst()
    actor = current_user._get_current_object()
    data, _count = service.export(db, actor, filters, today, kind)
    db.commit()
    response = Response(data, mimetype="text/csv" if kind == "csv" else XLSX)
    response.headers["Content-Disposition"] = content_disposition(
        f"定期確認_{today:%Y%m%d}.{kind}", 0, fallback_prefix="reviews"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = f"sandbox; {CSP}"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/export.csv", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_csv():
    return _export("csv")


@bp.route("/export.xlsx", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_xlsx():
    return _export("xlsx")
