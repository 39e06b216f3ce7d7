"""/assessments/<id>/excel: the questionnaire as a workbook to fill offline, and its import.

Registered on the ``assessments`` blueprint (imported at the end of ``views.py``). The vendor
rule is the online one: another company's assessment is a 404; only a draft or returned
assessment takes an import, and only the answers it may change.
"""

from __future__ import annotations

from flask import Response, render_template, request
from flask_login import current_user

from portal.assessments import excel, store
from portal.assessments.excel_checks import MAX_BYTES
from portal.assessments.excel_layout import offered_questions
from portal.assessments.models import Assessment
from portal.assessments.views import Sheet, _for_vendor, _prefill, bp, editable_keys
from portal.audit import service as audit
from portal.db import get_session
from portal.evidence.filetypes import KINDS
from portal.evidence.names import content_disposition
from portal.permissions import Permission, require
from portal.web import CSP

XLSX = KINDS["xlsx"].content_type
NO_FILE = "取り込むExcelファイル（.xlsx）を選んでください。"


def _context(assessment: Assessment) -> tuple[Sheet, list, dict[str, int]]:
    sheet = Sheet(assessment)
    offered = offered_questions(sheet.questionnaire, assessment.engagement.facts)
    return sheet, offered, {key: row.revision for key, row in sheet.rows.items()}


@bp.route("/<int:assessment_id>/excel")
@require(Permission.ASSESSMENTS_ANSWER)
def excel_download(assessment_id: int):
    assessment = _for_vendor(assessment_id)
    sheet, offered, revisions = _context(assessment)
    engagement = assessment.engagement
    company = assessment.vendor_company.name
    data = excel.build_workbook(
        sheet.questionnaire,
        offered,
        {**_prefill(sheet), **sheet.values},
        title=f"{sheet.questionnaire.title}（{engagement.organisation.name}「{engagement.title}」）",
        company_name=company,
        assessment_id=assessment.id,
        revisions=revisions,
    )
    response = Response(data, mimetype=XLSX)
    response.headers["Content-Disposition"] = content_disposition(
        f"評価票_{company}.xlsx", assessment.id, fallback_prefix="assessment"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    # As for evidence downloads: never a document of the portal's origin, the policy kept.
    response.headers["Content-Security-Policy"] = f"sandbox; {CSP}"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:assessment_id>/excel/import", methods=["GET", "POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def excel_import(assessment_id: int):
    assessment = _for_vendor(assessment_id, lock=request.method == "POST")

    def page(status: int = 200, **context):
        return render_template(
            "assessments/excel_import.html",
            assessment=assessment,
            max_mb=MAX_BYTES // (1024 * 1024),
            **context,
        ), status

    if not assessment.editable_by_vendor:
        return page(409 if request.method == "POST" else 200)
    if request.method == "GET":
        return page()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return page(400, error=NO_FILE)
    data = upload.stream.read(MAX_BYTES + 1)
    db = get_session()
    sheet, offered, revisions = _context(assessment)
    try:
        result = excel.parse_workbook(
            data,
            sheet.questionnaire,
            offered,
            editable_keys(db, assessment),
            assessment_id=assessment.id,
            facts=assessment.engagement.facts,
            saved=sheet.values,
            revisions=revisions,
        )
    except excel.WorkbookRefused as exc:
        return page(400, error=str(exc))
    imported = sum(
        store.save(db, assessment, key, value, current_user) for key, value in result.values.items()
    )
    audit.record(
        db,
        "assessment.imported",
        actor=current_user,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "imported": imported,
            "unchanged": result.unchanged,
            "problems": len(result.problems),
        },
    )
    db.commit()
    return page(result=result, imported=imported)
