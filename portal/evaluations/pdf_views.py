"""The assessment report as PDF: the report template rendered by the one render function,
rate-limited per user and audited (SECURITY.md "PDF rendering", "Audit trail")."""

from __future__ import annotations

import hashlib

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from portal.audit import service as audit
from portal.db import get_session
from portal.evaluations.reports import report_context
from portal.evaluations.views import Review, _scored, bp
from portal.pdf.render import PdfRenderError, render_pdf
from portal.pdf.web import RATE_LIMIT_MESSAGE, pdf_response, rate_limited
from portal.permissions import Permission, require

REPORT_STYLES = ("css/print.css", "css/report.css")


@bp.route("/<int:assessment_id>/report.pdf", methods=["POST"])
@require(Permission.ENGAGEMENTS_VIEW)
def report_pdf(assessment_id: int):
    assessment = _scored(assessment_id)
    back = redirect(url_for("evaluations.report", assessment_id=assessment.id))
    if rate_limited(current_user.id):
        flash(RATE_LIMIT_MESSAGE, "error")
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
