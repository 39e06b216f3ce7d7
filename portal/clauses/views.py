"""/assessments/<id>/clauses …: the 特記事項 of an assessment — page with the staff's choices,
preview, generated versions (PDF), comparison of two versions, and the contract."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2 import ChoiceLoader, FileSystemLoader
from sqlalchemy.exc import IntegrityError
from wtforms import SelectChoice

from portal.assessments.models import Assessment
from portal.clauses import pdf, service
from portal.clauses.catalogue import TEMPLATE_DIR
from portal.clauses.forms import ContractForm, OptionsForm
from portal.clauses.service import ClauseError, ContractInput
from portal.db import get_session
from portal.pdf.render import PdfRenderError, asset_path
from portal.pdf.web import RATE_LIMIT_MESSAGE, pdf_response, rate_limited
from portal.permissions import Permission, can_edit_engagement, can_view_engagement, require
from portal.web import parse_id

bp = Blueprint("clauses", __name__, url_prefix="/assessments", template_folder="templates")


@bp.record_once
def _catalogue_templates(state) -> None:
    """The document and form templates live beside the catalogue in contracts/templates/."""
    app = state.app
    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(TEMPLATE_DIR)])


def _assessment(assessment_id: int, edit: bool = False) -> Assessment:
    assessment = get_session().get(Assessment, assessment_id)
    if assessment is None or not can_view_engagement(current_user, assessment.engagement):
        abort(404)
    if edit and not can_edit_engagement(current_user, assessment.engagement):
        abort(403)
    return assessment


def _page(assessment: Assessment, code: int = 303):
    """Back to the clauses page (303 after a POST, 302 from a page that cannot be shown)."""
    return redirect(url_for("clauses.page", assessment_id=assessment.id), code=code)


def _render_page(assessment: Assessment, contract_form: ContractForm | None = None):
    db = get_session()
    problem = service.availability_problem(db, assessment)
    document = service.document_of(db, assessment)
    versions = service.versions_of(db, document)
    contract = service.contract_of(db, document)
    return render_template(
        "clauses/page.html",
        assessment=assessment,
        engagement=assessment.engagement,
        problem=problem,
        document=document,
        built=None if problem else service.build(db, assessment, document),
        versions=versions,
        contract=contract,
        can_edit=can_edit_engagement(current_user, assessment.engagement),
        options_form=OptionsForm(
            special_terms=document.special_terms if document else None,
            version=str(document.version if document else 0),
        ),
        contract_form=contract_form or _contract_form(versions, contract),
    )


@bp.route("/<int:assessment_id>/clauses")
@require(Permission.ENGAGEMENTS_VIEW)
def page(assessment_id: int):
    return _render_page(_assessment(assessment_id))


def _contract_form(versions, contract, formdata=None) -> ContractForm:
    form = ContractForm(formdata=formdata, obj=contract)
    if formdata is None and contract is not None:
        form.attached_version.data = str(contract.attached_version_id or "")
        form.version.data = str(contract.version)
    form.attached_version.choices = [SelectChoice("", "（まだ添付していない）")] + [
        SelectChoice(
            str(v.id), f"{v.label}（{v.created_at:%Y-%m-%d}作成、SHA-256 {v.sha256[:12]}…）"
        )
        for v in versions
    ]
    return form


@bp.route("/<int:assessment_id>/clauses/options", methods=["POST"])
@require(Permission.CLAUSES_MANAGE)
def options(assessment_id: int):
    assessment = _assessment(assessment_id, edit=True)
    db = get_session()
    if problem := service.availability_problem(db, assessment):
        flash(problem, "error")
        return _page(assessment)
    form = OptionsForm()
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return _page(assessment)
    version = parse_id(form.version.data or "0", minimum=0)
    if version is None:
        abort(400)
    included = {v for v in request.form.getlist("included") if len(v) <= 100}
    try:
        service.save_options(
            db,
            assessment,
            current_user,
            included=included,
            special_terms=form.special_terms.data or "",
            version=version,
        )
    except ClauseError as exc:
        db.rollback()
        flash(str(exc), "error")
        return _page(assessment)
    db.commit()
    flash("特記事項の設定を保存しました。プレビューで確認してから作成してください。", "success")
    return _page(assessment)


@bp.route("/<int:assessment_id>/clauses/preview")
@require(Permission.ENGAGEMENTS_VIEW)
def preview(assessment_id: int):
    assessment = _assessment(assessment_id)
    db = get_session()
    if problem := service.availability_problem(db, assessment):
        flash(problem, "error")
        return _page(assessment, 302)
    document = service.document_of(db, assessment)
    built = service.build(db, assessment, document)
    number = document.number if document else "（作成時に採番）"
    next_label = f"第{service.next_version_number(db, document)}版" if document else "第1版"
    return pdf.document_html(built, number, f"{next_label}（プレビュー）", preview=True)


@bp.route("/<int:assessment_id>/clauses/versions", methods=["POST"])
@require(Permission.CLAUSES_MANAGE)
def generate(assessment_id: int):
    assessment = _assessment(assessment_id, edit=True)
    db = get_session()
    if problem := service.availability_problem(db, assessment):
        flash(problem, "error")
        return _page(assessment)
    if rate_limited(current_user.id):
        flash(RATE_LIMIT_MESSAGE, "error")
        return _page(assessment)
    try:
        version = pdf.generate(db, assessment, current_user)
        db.commit()
    except (ClauseError, PdfRenderError) as exc:
        db.rollback()
        flash(str(exc), "error")
        return _page(assessment)
    except IntegrityError:  # another version was generated at the same moment
        db.rollback()
        flash("同時に別の版が作成されました。一覧を確認してからもう一度作成してください。", "error")
        return _page(assessment)
    flash(f"{version.label}を作成しました（SHA-256 {version.sha256[:16]}…）。", "success")
    return _page(assessment)


@bp.route("/<int:assessment_id>/clauses/versions/<int:number>/pdf", methods=["POST"])
@require(Permission.ENGAGEMENTS_VIEW)
def download(assessment_id: int, number: int):
    assessment = _assessment(assessment_id)
    db = get_session()
    try:
        version = service.version_of(db, service.document_of(db, assessment), number)
    except LookupError:
        abort(404)
    try:
        data = service.download(db, assessment, version, current_user)
    except ClauseError as exc:
        flash(str(exc), "error")
        return _page(assessment)
    db.commit()
    name = (
        f"特記事項_{assessment.vendor_company.name}_{version.document.number}_{version.label}.pdf"
    )
    return pdf_response(data, name, version.id, "clauses")


@bp.route("/<int:assessment_id>/clauses/compare")
@require(Permission.ENGAGEMENTS_VIEW)
def compare(assessment_id: int):
    assessment = _assessment(assessment_id)
    db = get_session()
    document = service.document_of(db, assessment)
    numbers = []
    for name in ("before", "after"):
        number = parse_id(request.args.get(name))
        if number is None:
            flash("比較する2つの版を選んでください。", "error")
            return _page(assessment, 302)
        numbers.append(number)
    try:
        before, after = (service.version_of(db, document, n) for n in sorted(numbers))
    except LookupError:
        abort(404)
    return render_template(
        "clauses/compare.html",
        assessment=assessment,
        document=document,
        before=before,
        after=after,
        rows=service.compare(before, after),
    )


@bp.route("/<int:assessment_id>/clauses/contract", methods=["POST"])
@require(Permission.CLAUSES_MANAGE)
def contract(assessment_id: int):
    assessment = _assessment(assessment_id, edit=True)
    db = get_session()
    document = service.document_of(db, assessment)
    versions = service.versions_of(db, document)
    form = _contract_form(versions, None, formdata=request.form)
    version = parse_id(form.version.data or "0", minimum=0)
    if version is None:
        abort(400)
    if form.validate():
        data = ContractInput(
            contract_number=form.contract_number.data,
            contract_date=form.contract_date.data,
            period_start=form.period_start.data,
            period_end=form.period_end.data,
            amount=form.amount.data,
            signatory=form.signatory.data,
            attached_version_id=int(form.attached_version.data)
            if form.attached_version.data
            else None,
            version=version,
        )
        try:
            service.record_contract(db, assessment, current_user, data)
        except ClauseError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash("契約の情報を記録しました。", "success")
            return _page(assessment)
    return _render_page(assessment, form), 422


@bp.route("/clauses.css")
@require(Permission.ENGAGEMENTS_VIEW)
def stylesheet():
    """The document's own stylesheet for the preview (the PDF reads the same file)."""
    css = asset_path(f"asset:{pdf.STYLESHEETS[0]}").read_text(encoding="utf-8")
    return current_app.response_class(css, mimetype="text/css")
