"""The 特記事項 as HTML (preview) and PDF: one template, one stylesheet, one render function."""

from __future__ import annotations

from flask import render_template
from sqlalchemy.orm import Session

from portal.assessments.models import Assessment
from portal.clauses import service
from portal.clauses.assemble import Document
from portal.clauses.models import ClauseVersion
from portal.pdf.render import render_pdf
from portal.users.models import User

STYLESHEETS = ("contracts/clauses.css",)
MISSING_MESSAGE = "必要な項目が埋まっていないため作成できません。下の一覧の項目を補ってください。"


def document_html(
    built: Document, number: str, version_label: str, *, preview: bool = False
) -> str:
    return render_template(
        "clauses/document.html",
        doc=built,
        number=number,
        version_label=version_label,
        preview=preview,
    )


def generate(session: Session, assessment: Assessment, actor: User) -> ClauseVersion:
    """Render the current 特記事項 and keep it as the next version. Raises ClauseError when
    values are missing and PdfRenderError when rendering fails; the caller commits."""
    document = service.ensure_document(session, assessment)
    built = service.build(session, assessment, document)
    if built.missing:
        raise service.ClauseError(MISSING_MESSAGE)
    number = service.next_version_number(session, document)
    pdf = render_pdf(
        document_html(built, document.number, f"第{number}版"), stylesheets=STYLESHEETS
    )
    return service.store_version(session, assessment, document, built, number, pdf, actor)
