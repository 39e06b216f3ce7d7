"""Upload, show, download and delete evidence files.

Another company's or organisation's file or assessment does not exist as far as the user can
tell (404). Downloading is a POST (it is audited, and no GET changes anything): the GET page
shows the file's details and scan status, with the download button once the file is clean.
Viewing in the browser (PDF and images only) is the same POST with an ``inline`` disposition and
a policy that lets the browser render the file and nothing else; it is audited as a download.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
)
from flask_login import current_user

from portal.assessments import store as answers
from portal.assessments.models import Assessment
from portal.assessments.views import editable_keys
from portal.auth.views import safe_next
from portal.db import get_session
from portal.errors import render_error
from portal.evidence import service, setup
from portal.evidence.filetypes import EvidenceError
from portal.evidence.models import EvidenceFile
from portal.evidence.names import content_disposition, download_name, normalise_name
from portal.permissions import Permission, can_answer, can_read_evidence, require
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_sections
from portal.web import CSP

# The policy of a file viewed in the browser, by the kind ``filetypes`` found in its bytes; a kind
# not listed here (Office, text) is download-only. Both keep ``sandbox``: the file is shown in an
# opaque origin, so it can never act as a document of the portal, and ``default-src 'none'``
# forbids every script, fetch, frame and plugin load of the document itself. The browser wraps
# the file in a page of its own that uses inline styles (centring, the viewer's size), hence
# ``style-src 'unsafe-inline'``: that page has no author markup to abuse.
# - Images: the image page also gets ``img-src 'self'`` for the image itself.
# - PDF: older Chromium refused its PDF viewer in a sandboxed document (crbug.com/413851) and
#   wanted ``object-src`` (and the ``plugin-types`` directive, now obsolete: gone from CSP 3 and
#   from Chromium 90). Checked on 2026-11-21 with Chromium 156 (Debian) through Playwright: a PDF
#   posted to this view opens in the built-in viewer under the policy below, with the current
#   out-of-process viewer and with the older GuestView one (``--disable-features=PdfOopif``);
#   only an ``<iframe sandbox>`` attribute still blocks the viewer, and this view is a top-level
#   tab. Should a supported browser show its "blocked" page instead, the fallback is to drop
#   ``sandbox`` for PDFs alone and keep the rest; never loosen ``default-src``.
_VIEW_COMMON = (
    "sandbox; default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
IMAGE_VIEW_CSP = f"{_VIEW_COMMON}; img-src 'self'; style-src 'unsafe-inline'"
PDF_VIEW_CSP = f"{_VIEW_COMMON}; style-src 'unsafe-inline'"
VIEW_CSP = {
    "pdf": PDF_VIEW_CSP,
    "png": IMAGE_VIEW_CSP,
    "jpeg": IMAGE_VIEW_CSP,
    "gif": IMAGE_VIEW_CSP,
    "webp": IMAGE_VIEW_CSP,
}

bp = Blueprint("evidence", __name__, template_folder="templates")
bp.record_once(lambda state: setup.init_app(state.app))


def _back() -> str:
    return safe_next(request.form.get("next")) or "/"


def _answerable_or_404(assessment_id: int) -> Assessment:
    assessment = get_session().get(Assessment, assessment_id)
    if assessment is None or not can_answer(current_user, assessment):
        abort(404)
    return assessment


def _evidence_question_or_404(assessment: Assessment, question_key: str):
    """The questionnaire's evidence question ``question_key``; anything else is a forged URL."""
    try:
        questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    except KeyError:
        abort(404)
    question = questionnaire.question(question_key)
    if question is None or question.type != "evidence":
        abort(404)
    return question


def _why_not_changeable(
    assessment: Assessment, question_key: str, adding: bool = True
) -> str | None:
    """The Japanese reason the vendor may not add (or remove) files of this question now, if
    any: files are added only to questions the current answers show, and once the assessment was
    returned only to the questions sent back — the same rules as the answer pages. Files of a
    question that became hidden may still be removed."""
    db = get_session()
    if adding:
        questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
        shown = visible_sections(
            questionnaire, assessment.engagement.facts, answers.values(db, assessment)
        )
        if question_key not in {q.key for _section, questions in shown for q in questions}:
            return "この設問は現在の回答では対象外のため、ファイルを添付できません。"
    editable = editable_keys(db, assessment)
    if assessment.editable_by_vendor and editable is not None and question_key not in editable:
        return "差し戻された設問のファイルだけを変更できます。"
    return None


def _readable_or_404(evidence_id: int) -> tuple[EvidenceFile, Assessment]:
    db = get_session()
    evidence = db.get(EvidenceFile, evidence_id)
    assessment = db.get(Assessment, evidence.assessment_id) if evidence else None
    if (
        evidence is None
        or assessment is None
        or evidence.deleted_at is not None
        or not can_read_evidence(current_user, evidence, assessment)
    ):
        abort(404)
    return evidence, assessment


def _may_delete(evidence: EvidenceFile, assessment: Assessment) -> bool:
    return (
        can_answer(current_user, assessment)
        and current_user.vendor_company_id == evidence.vendor_company_id
        and assessment.editable_by_vendor
        and _why_not_changeable(assessment, evidence.question_key, adding=False) is None
    )


@bp.route("/assessments/<int:assessment_id>/evidence/<question_key>", methods=["POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def upload(assessment_id: int, question_key: str):
    assessment = _answerable_or_404(assessment_id)
    question = _evidence_question_or_404(assessment, question_key)
    back = _back()
    if reason := _why_not_changeable(assessment, question.key):
        flash(reason, "error")
        return redirect(back)
    uploads = [f for f in request.files.getlist("file") if f.filename]
    if not uploads:
        flash("添付するファイルを選んでください。", "error")
        return redirect(back)
    db = get_session()
    actor = current_user._get_current_object()
    evidence_dir = setup.evidence_dir_for(current_app)
    stored: list[EvidenceFile] = []
    try:
        for upload_ in uploads:
            try:
                stored.append(
                    service.store(
                        db,
                        assessment=assessment,
                        question_key=question.key,
                        upload=upload_,
                        actor=actor,
                        evidence_dir=evidence_dir,
                        scanner=setup.scanner_for(current_app),
                        max_bytes=setup.max_bytes_for(current_app),
                        max_files=question.max_files,
                    )
                )
            except EvidenceError as exc:
                name = normalise_name(upload_.filename)
                raise EvidenceError(f"「{name}」: {exc}" if len(uploads) > 1 else str(exc)) from exc
        db.commit()
    except BaseException as exc:
        written = [e.stored_name for e in stored]
        db.rollback()
        service.discard(evidence_dir, written)
        if not isinstance(exc, EvidenceError):
            raise
        flash(str(exc), "error")
        return redirect(back)
    flash(_uploaded_message(stored), "success")
    return redirect(back)


def _uploaded_message(stored: list[EvidenceFile]) -> str:
    message = f"ファイルを添付しました（{len(stored)}件）。"
    if any(e.scan_status == "infected" for e in stored):
        message += (
            "ウイルスが検出されたファイルは隔離しました。削除して、別のファイルを添付してください。"
        )
    elif any(not e.downloadable for e in stored):
        message += "ウイルス検査が終わるまで、ダウンロードはできません。"
    return message


def view_csp_of(evidence: EvidenceFile) -> str | None:
    """The policy under which the file may be shown in the browser; None if download-only."""
    kind = service.kind_of(evidence)
    return VIEW_CSP.get(kind.kind) if kind else None


@bp.route("/evidence/<int:evidence_id>")
@require(Permission.EVIDENCE_READ)
def detail(evidence_id: int):
    evidence, assessment = _readable_or_404(evidence_id)
    return render_template(
        "evidence/detail.html",
        evidence=evidence,
        kind=service.kind_of(evidence),
        viewable=view_csp_of(evidence) is not None,
        may_delete=_may_delete(evidence, assessment),
    )


@bp.route("/evidence/<int:evidence_id>/download", methods=["POST"])
@require(Permission.EVIDENCE_READ)
def download(evidence_id: int):
    return _send_evidence(evidence_id, inline=False)


@bp.route("/evidence/<int:evidence_id>/view", methods=["POST"])
@require(Permission.EVIDENCE_READ)
def view(evidence_id: int):
    """The file shown in the browser (PDF and images): a download in all but its disposition and
    policy — the same readers, the same scan and SHA-256 checks, the same audit event."""
    return _send_evidence(evidence_id, inline=True)


def _send_evidence(evidence_id: int, *, inline: bool):
    evidence, _assessment = _readable_or_404(evidence_id)
    if inline:
        policy = view_csp_of(evidence)
        if policy is None:  # Office and text files have no view, like any other unknown URL
            abort(404)
    else:
        # sandbox: never a document of the portal's origin, even if a browser renders it; the
        # portal's own policy (frame-ancestors 'none' …) holds for downloads too.
        policy = f"sandbox; {CSP}"
    if not evidence.downloadable:
        return render_template("evidence/unavailable.html", evidence=evidence), 409
    db = get_session()
    actor = current_user._get_current_object()
    try:
        path = service.open_verified(evidence, setup.evidence_dir_for(current_app))
    except service.EvidenceIntegrityError as exc:
        service.record_integrity_failure(db, evidence, actor)
        db.commit()
        return render_error(500, str(exc))
    service.record_download(db, evidence, actor, inline=inline)
    db.commit()
    response = send_file(
        path,
        mimetype=evidence.content_type.split(";")[0],  # Werkzeug adds the charset of text/*
        as_attachment=not inline,  # the disposition is replaced below (RFC 5987 name)
        conditional=False,
        etag=False,
        max_age=0,
    )
    name = download_name(evidence.original_name, service.kind_of(evidence))
    response.headers["Content-Disposition"] = content_disposition(
        name, evidence.id, kind="inline" if inline else "attachment"
    )
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/evidence/<int:evidence_id>/delete", methods=["POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def delete(evidence_id: int):
    db = get_session()
    evidence = db.get(EvidenceFile, evidence_id)
    assessment = db.get(Assessment, evidence.assessment_id) if evidence else None
    if (
        evidence is None
        or assessment is None
        or not can_answer(current_user, assessment)
        or current_user.vendor_company_id != evidence.vendor_company_id
    ):
        abort(404)
    if evidence.deleted_at is None and (
        reason := _why_not_changeable(assessment, evidence.question_key, adding=False)
    ):
        flash(reason, "error")
        return redirect(_back())
    try:
        service.delete(db, evidence, current_user._get_current_object())
        db.commit()
    except EvidenceError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        flash("添付ファイルを削除しました。", "success")
    return redirect(_back())
