"""What every PDF download shares: the per-user rate limit (SECURITY.md "PDF rendering"),
counted from the audit trail, and the response headers."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from portal.audit import service as audit
from portal.db import get_session, utcnow
from portal.evidence.names import content_disposition

# Audit actions of PDF generation: each counts against PDF_PER_MINUTE.
PDF_ACTIONS = ("assessment.report_pdf", "clauses.generate")
RATE_LIMIT_MESSAGE = "短時間に多くのPDFを作成しました。1分ほど待ってからお試しください。"


def rate_limited(actor_id: int) -> bool:
    """More PDFs generated in the last minute than PDF_PER_MINUTE (every PDF kind counts)."""
    since = utcnow() - timedelta(minutes=1)
    count = audit.recent_count(get_session(), actor_id, PDF_ACTIONS, since)
    return count >= current_app.config["PDF_PER_MINUTE"]


def pdf_response(data: bytes, filename: str, object_id: int = 0, prefix: str = "report"):
    response = current_app.response_class(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = content_disposition(filename, object_id, prefix)
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response
