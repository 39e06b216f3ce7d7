"""The assessment report as PDF: the report template rendered by the one render function,
rate-limited per user and audited (SECURITY.md "PDF rendering", "Audit trail")."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from portal.audit import service as audit
from portal.db import get_session, utcnow
from portal.evaluations.reports import report_context
from portal.evaluations.views import Review, _scored, bp
from portal.evidence.names import content_disposition
from portal.pdf.render import PdfRenderError, render_pdf
from portal.permissions import Permission, require

PDF_ACTIONS = ("assessment.report_pdf",)
REPORT_STYLES = ("css/print.css", "css/report.css")


def rate_limited(actor_id: int) -> bool:
    """More PDFs in the last minute than PDF_PER_MINUTE (every PDF kind counts)."""
    since = utcnow() - timedelta(minutes=1)
    count = audit.recent_count(get_session(), actor_id, PDF_ACTIONS, since)
    return count >= current_app.config["PDF_PER_MINUTE"]


def pdf_response(data: bytes, filename: str):
    response = current_app.response_class(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = content_disposition(filename, 0, "report")
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:assessment_id>/report.pdf", methods=["POST"])
@require(Permission.ENGAGEMENTS_VIEW)
def report_pdf(assessment_id: int):
    assessment = _scored(assessment_id)
    back = redirect(url_for("evaluations.report", assessment_id=assessment.id))
    if rate_limited(current_user.id):
        flash("短時間に多くのPDFを作成しました。1分ほど待ってからお試しください。", "error")
        return back, 303
    context = report_context(Review(assessment))
    try:
        data = render_pdf(
            render_template("evaluations/report_pdf.html", **context), stylesheets=REPORT_STYLES
        )
    except PdfRenderError as exc:
        flash(str(exc), "error")
        return back, 303
    db = get_session()
    audit.record(
        db,
        "assessment.report_pdf",
        actor=current_user,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "rules_version": context["card"].rules_version,
            "questionnaire_version": assessment.questionnaire_version,
        },
    )
    db.commit()
    day = context["generated_at"].strftime("%Y%m%d")
    return pdf_response(data, f"評価報告書_{assessment.vendor_company.name}_{day}.pdf")
