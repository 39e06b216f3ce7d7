"""Downloading the files of confirmations, exits, contractor audits and vendor reports: POST
(audited, no state change on GET), as attachments, SHA-256 re-checked, only when scanned clean."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, send_file
from flask_login import current_user

from portal.db import get_session
from portal.errors import render_error
from portal.evidence import setup
from portal.evidence.names import content_disposition, download_name
from portal.permissions import Permission, require
from portal.reviews import files
from portal.reviews.models import ReviewFile
from portal.web import CSP

bp = Blueprint("review_files", __name__, template_folder="templates")


@bp.route("/review-files/<int:file_id>/download", methods=["POST"])
@require(Permission.EVIDENCE_READ)
def download(file_id: int):
    db = get_session()
    actor = current_user._get_current_object()
    row = db.get(ReviewFile, file_id)
    if row is None or row.deleted_at is not None or not files.can_read(db, actor, row):
        abort(404)
    if not row.downloadable:
        return render_template("reviews/file_unavailable.html", file=row), 409
    try:
        path = files.open_verified(row, setup.evidence_dir_for(current_app))
    except files.EvidenceIntegrityError as exc:
        current_app.logger.error("review file %s failed its integrity check", row.id)
        return render_error(500, str(exc))
    files.record_download(db, row, actor)
    db.commit()
    response = send_file(
        path,
        mimetype=row.content_type.split(";")[0],
        as_attachment=True,
        conditional=False,
        etag=False,
        max_age=0,
    )
    name = download_name(row.original_name, files.kind_of(row))
    response.headers["Content-Disposition"] = content_disposition(
        name, row.id, fallback_prefix="file"
    )
    response.headers["Content-Security-Policy"] = f"sandbox; {CSP}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
