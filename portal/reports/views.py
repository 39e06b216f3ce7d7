"""/reviews: the dashboard of 定期確認 and the lists behind its figures — schedules (filtered,
paged), expiring certificates and ISMAP registrations, incident reports (対策基準 9.1(3),
9.2(6)) — each exported, with the page's filter, as CSV / XLSX (audited, so POST forms; the
findings list's exports are in ``portal.reviews.findings_views``). Staff see their
departments', the organisation-wide readers the whole organisation's."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from flask_login import current_user

from portal.db import get_session
from portal.evidence.names import content_disposition
from portal.permissions import Permission, require
from portal.register import exports
from portal.reports import columns, service
from portal.reports.service import ReviewFilter
from portal.web import CSP, page_of, today_jst

bp = Blueprint("reports", __name__, url_prefix="/reviews", template_folder="templates")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _pages(total: int) -> tuple[int, int]:
    """(page, pages) of the request's ?page= for ``total`` rows."""
    return page_of(request.args.get("page"), total, service.PAGE_SIZE)


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
    kind = service.expiry_kind(request.args.get("kind"))
    rows = service.expiring(get_session(), current_user, today_jst(), kind)
    return render_template(
        "reports/expiring.html",
        rows=rows,
        kind=kind,
        kinds=service.EXPIRY_KINDS,
        days=service.EXPIRY_DAYS,
        columns=columns.EXPIRING_COLUMNS,
        cell=exports.as_text,
        args={"kind": kind},
        scope=service.scope_label(current_user),
    )


@bp.route("/incidents")
@require(Permission.REVIEWS_VIEW)
def incidents():
    state = service.incident_state(request.args.get("state"))
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
        columns=columns.INCIDENT_PAGE_COLUMNS,
        cell=exports.as_text,
        args={"state": state} if state else {},
        scope=service.scope_label(current_user),
    )


def export_response(data: bytes, fmt: str, name: str, fallback: str) -> Response:
    """A CSV or XLSX download named ``name``_YYYYMMDD.csv|xlsx (RFC 5987 with an ASCII
    fallback), never sniffed, run or cached."""
    response = Response(data, mimetype="text/csv" if fmt == "csv" else XLSX)
    response.headers["Content-Disposition"] = content_disposition(
        f"{name}_{today_jst():%Y%m%d}.{fmt}", 0, fallback_prefix=fallback
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = f"sandbox; {CSP}"
    response.headers["Cache-Control"] = "no-store"
    return response


def _actor():
    return current_user._get_current_object()


def _export(fmt: str) -> Response:
    """The filtered schedules (the filter comes with the form), audited with its size."""
    db = get_session()
    data, _count = service.export(db, _actor(), ReviewFilter.parse(request.form), today_jst(), fmt)
    db.commit()
    return export_response(data, fmt, "定期確認", "reviews")


@bp.route("/export.csv", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_csv():
    return _export("csv")


@bp.route("/export.xlsx", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def export_xlsx():
    return _export("xlsx")


def _export_expiring(fmt: str) -> Response:
    """The expiring certificates or ISMAP registrations of the form's ``kind``."""
    db = get_session()
    kind = service.expiry_kind(request.form.get("kind"))
    data, _count = service.export_expiring(db, _actor(), today_jst(), kind, fmt)
    db.commit()
    name = "有効期限が近いISMAP登録" if kind == "ismap" else "有効期限が近い認証"
    return export_response(data, fmt, name, f"expiring-{kind}")


@bp.route("/expiring/export.csv", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def expiring_export_csv():
    return _export_expiring("csv")


@bp.route("/expiring/export.xlsx", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def expiring_export_xlsx():
    return _export_expiring("xlsx")


def _export_incidents(fmt: str) -> Response:
    """The incident reports of the form's ``state`` (every page)."""
    db = get_session()
    data, _count = service.export_incidents(db, _actor(), request.form.get("state"), fmt)
    db.commit()
    return export_response(data, fmt, "事故報告", "incidents")


@bp.route("/incidents/export.csv", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def incidents_export_csv():
    return _export_incidents("csv")


@bp.route("/incidents/export.xlsx", methods=["POST"])
@require(Permission.REVIEWS_VIEW)
def incidents_export_xlsx():
    return _export_incidents("xlsx")
