"""/assessments: vendors answer (per section, with or without JavaScript) and submit;
staff read what was answered."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from portal.assessments import answers as answer_rules
from portal.assessments import autosave as autosave_checks
from portal.assessments import service, store
from portal.assessments.models import Answer, Assessment
from portal.audit import service as audit
from portal.db import defer_write, get_session, write_phase
from portal.evaluations import service as evaluations
from portal.evidence.service import files_by_question
from portal.mail import service as mail
from portal.permissions import (
    Permission,
    can,
    can_answer,
    can_edit_engagement,
    can_view_engagement,
    require,
)
from portal.questionnaires import loader
from portal.questionnaires.conditions import visible_sections
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import PREFILL_SOURCES
from portal.users.models import User
from portal.web import parse_id, today_jst

bp = Blueprint("assessments", __name__, url_prefix="/assessments", template_folder="templates")


def _for_vendor(assessment_id: int, *, lock: bool = False) -> Assessment:
    """Another company's assessment does not exist as far as a vendor can tell (404).

    ``lock`` (requests that write answers or the status): on PostgreSQL the row stays locked to
    the end of the transaction, as in the autosave's write phase (``FOR NO KEY UPDATE``), so
    these writes and autosaves follow one another and each reads the answers the one before
    committed; SQLite's writer lock already orders them."""
    assessment = get_session().get(
        Assessment, assessment_id, with_for_update={"key_share": True} if lock else None
    )
    if assessment is None or not can_answer(current_user, assessment):
        abort(404)
    return assessment


def _for_staff(assessment_id: int) -> Assessment:
    assessment = get_session().get(Assessment, assessment_id)
    if assessment is None or not can_view_engagement(current_user, assessment.engagement):
        abort(404)
    return assessment


class Sheet:
    """An assessment as a page needs it: questionnaire, visible sections, values, progress."""

    def __init__(self, assessment: Assessment):
        db = get_session()
        self.assessment = assessment
        self.questionnaire = loader.get(
            assessment.questionnaire_key, assessment.questionnaire_version
        )
        self.rows = store.answers(db, assessment)
        # Derived from the rows already loaded (no second query for the values).
        self.values = {
            key: value
            for key, row in self.rows.items()
            if (value := json.loads(row.value)) is not None
        }
        self.files = files_by_question(db, assessment)
        self.evidence = evaluations.answering_files(self.files)
        self.sections = visible_sections(
            self.questionnaire, assessment.engagement.facts, self.values
        )
        self.questions = [q for _s, qs in self.sections for q in qs]
        self.progress = answer_rules.progress(self.questions, self.values, self.evidence)

    def section(self, key: str):
        for section, questions in self.sections:
            if section.key == key:
                return section, questions
        abort(404)

    def section_progress(self, questions):
        return answer_rules.progress(questions, self.values, self.evidence)


def _prefill(sheet: Sheet) -> dict:
    company = sheet.assessment.vendor_company
    return {
        q.key: getattr(company, PREFILL_SOURCES[q.prefill], None)
        for q in sheet.questions
        if q.prefill and q.key not in sheet.values
    }


@bp.route("/<int:assessment_id>")
@require(Permission.ASSESSMENTS_ANSWER)
def answer(assessment_id: int):
    sheet = Sheet(_for_vendor(assessment_id))
    if not sheet.sections:
        abort(404)
    return redirect(
        url_for(
            "assessments.section", assessment_id=assessment_id, section_key=sheet.sections[0][0].key
        )
    )


@bp.route("/<int:assessment_id>/sections/<section_key>", methods=["GET", "POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def section(assessment_id: int, section_key: str):
    assessment = _for_vendor(assessment_id, lock=request.method == "POST")
    sheet = Sheet(assessment)
    current, questions = sheet.section(section_key)
    errors: dict[str, str] = {}
    submitted: dict = {}
    if request.method == "POST":
        if not assessment.editable_by_vendor:
            flash("提出済みのため変更できません。", "error")
            return redirect(request.path)
        db = get_session()
        editable = editable_keys(db, assessment)
        changed = 0
        for question in questions:
            if question.type == "evidence" or (
                editable is not None and question.key not in editable
            ):
                continue
            raw = answer_rules.from_form(question, request.form)
            submitted[question.key] = raw
            try:
                value = answer_rules.validate(question, raw)
            except answer_rules.AnswerInvalid as exc:
                errors[question.key] = str(exc)
                continue
            if autosave_checks.is_stale(sheet, question.key, value, request.form):
                errors[question.key] = STALE
                continue
            changed += store.save(db, assessment, question.key, value, current_user)
        if changed:
            audit.record(
                db,
                "assessment.saved",
                actor=current_user,
                obj=assessment,
                organisation_id=assessment.organisation_id,
                details={"section": section_key, "answers": changed},
            )
        db.commit()
        tables = {q.key for q in questions if q.type == "table"}
        add_row = request.form.get("add_row") if request.form.get("add_row") in tables else None
        if not errors:
            flash("保存しました。" if changed else "変更はありませんでした。", "success")
            return redirect(
                url_for(
                    "assessments.section",
                    assessment_id=assessment.id,
                    section_key=section_key,
                    add=add_row,
                    _anchor=f"q-{add_row}" if add_row else None,
                )
            )
        flash(
            "入力内容に誤りがある項目は保存していません。各項目のメッセージを確認してください。",
            "error",
        )
        sheet = Sheet(assessment)
        current, questions = sheet.section(section_key)
    return render_template(
        "assessments/section.html",
        sheet=sheet,
        current=current,
        questions=questions,
        errors=errors,
        submitted=submitted,
        prefill=_prefill(sheet),
        add_row=request.args.get("add"),
        countries=COUNTRIES,
        editable=editable_keys(get_session(), assessment)
        if assessment.editable_by_vendor
        else set(),
        readonly=not assessment.editable_by_vendor,
        earlier=copy_sources(assessment),
        comments=evaluations.vendor_comments(get_session(), assessment),
    )


def copy_sources(assessment: Assessment) -> list[Assessment]:
    """Earlier (handed-in) assessments of the company this vendor user may see, to copy from."""
    if assessment.status != "draft":
        return []
    return [
        a
        for a in service.for_vendor_user(get_session(), current_user)
        if a.id != assessment.id and a.status != "draft"
    ]


STALE = (
    "ほかの方が先にこの回答を更新したため、保存していません。"
    "ページを読み込み直して最新の内容を確認してから、もう一度入力してください。"
)


def editable_keys(db, assessment: Assessment) -> set[str] | None:
    """None: every question may change (draft). A set: the returned answers and the follow-up
    questions that depend on them (changing a returned answer may reveal questions that must
    then be answered). Empty when submitted."""
    if assessment.status == "draft":
        return None
    if assessment.status != "returned":
        return set()
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    return autosave_checks.returned_editable(db, assessment, questionnaire)


@bp.route("/<int:assessment_id>/autosave", methods=["POST"])
@defer_write
@require(Permission.ASSESSMENTS_ANSWER)
def autosave(assessment_id: int):
    """One question's fields, posted by the page's script as the vendor types (JSON reply).

    Reads and validates in a read transaction; only the save runs in a write transaction
    (``write_phase``: on SQLite the writer lock is taken there, not at the request's first
    query). Under the lock, from rows read again there, it decides once more everything the
    read phase decided — the vendor's access, the assessment still open for answers, the
    question shown and editable, the answer still at the revision the page showed — so a change
    made in between is never overwritten: the save is refused as it would have been had it
    come after that change."""
    db = get_session()
    assessment = _for_vendor(assessment_id)
    key = request.form.get("question", "")
    refusal, _value, _snap = _autosave_decide(db, assessment, key)
    if refusal:
        return refusal
    user = current_user._get_current_object()
    with write_phase(db):  # the read transaction ends here; what is re-checked is read again
        assessment = autosave_checks.locked_assessment(db, assessment_id)
        account = autosave_checks.account_now(
            db, user.id, assessment.organisation_id if assessment else 0
        )
        if (
            assessment is None
            or account is None
            or account.session_version != user.session_version
            or not can(account, Permission.ASSESSMENTS_ANSWER)
            or not can_answer(account, assessment)
        ):
            abort(404)
        refusal, value, snap = _autosave_decide(db, assessment, key)
        if refusal:
            return refusal
        row = snap.rows.get(key)
        if store.save(db, assessment, key, value, user, current=row):
            row = (
                snap.rows.get(key)
                or db.scalars(
                    sa.select(Answer).where(
                        Answer.assessment_id == assessment.id, Answer.question_key == key
                    )
                ).one()
            )
            audit.record(
                db,
                "assessment.saved",
                actor=user,
                obj=assessment,
                organisation_id=assessment.organisation_id,
                details={"question": key, "autosave": True},
            )
        revision = row.revision if row is not None else 0
    return jsonify({"status": "saved", "message": "自動保存しました。", "revision": revision})


def _autosave_decide(db, assessment: Assessment, key: str):
    """(the refusal — a JSON reply — or None, the value to save, the rows read).

    Run in both phases, on what each has read: the same questions, in the same order, as a
    whole ``Sheet`` would answer them, from only the rows this one question needs."""
    if not assessment.editable_by_vendor:
        return _reply("error", "提出済みのため変更できません。", 409)
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    question = questionnaire.question(key)
    if question is None or question.type == "evidence":
        return _reply("error", "この設問には回答できません。", 400)
    snap = autosave_checks.snapshot(
        db, assessment, autosave_checks.relevant_keys(questionnaire, key)
    )
    if not autosave_checks.is_visible(
        questionnaire, assessment.engagement.facts, snap.values, key
    ) or (
        assessment.status == "returned"
        and key not in autosave_checks.returned_editable(db, assessment, questionnaire)
    ):
        return _reply("error", "この設問には回答できません。", 400)
    try:
        value = answer_rules.validate(question, answer_rules.from_form(question, request.form))
    except answer_rules.AnswerInvalid as exc:
        return _reply("invalid", str(exc), 422)
    if autosave_checks.is_stale(snap, key, value, request.form):
        return _reply("conflict", STALE, 409)
    return None, value, snap


def _reply(status: str, message: str, code: int):
    """A refusal as the decision returns it: (JSON reply, nothing to save, no rows)."""
    return (jsonify({"status": status, "message": message}), code), None, None


@bp.route("/<int:assessment_id>/submit", methods=["GET", "POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def submit(assessment_id: int):
    assessment = _for_vendor(assessment_id, lock=request.method == "POST")
    sheet = Sheet(assessment)
    if request.method == "POST":
        if not sheet.progress.complete:
            flash("未回答の必須項目があるため提出できません。", "error")
        else:
            db = get_session()
            try:
                service.submit(db, assessment, current_user)
                evaluations.score_on_submission(db, assessment, current_user, today_jst())
            except service.AssessmentError as exc:
                db.rollback()
                flash(str(exc), "error")
            else:
                db.commit()
                flash("回答を提出しました。ご協力ありがとうございました。", "success")
                return redirect(url_for("assessments.submit", assessment_id=assessment.id))
    return render_template("assessments/submit.html", sheet=sheet)


@bp.route("/<int:assessment_id>/copy", methods=["POST"])
@require(Permission.ASSESSMENTS_ANSWER)
def copy(assessment_id: int):
    """Fill empty answers from an earlier assessment of the same company."""
    assessment = _for_vendor(assessment_id, lock=True)
    source_id = parse_id(request.form.get("source"))
    if source_id is None:
        abort(404)
    source = get_session().get(Assessment, source_id)
    if source is None or not can_answer(current_user, source):
        abort(404)
    db = get_session()
    try:
        copied, skipped = service.copy_answers(db, assessment, source, current_user)
    except service.AssessmentError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        message = f"以前の評価票から{copied}件の回答を転記しました。"
        if skipped:
            message += f"（現在の評価票の設問に合わない{skipped}件は転記していません）"
        flash(message + "内容を確認し、必要に応じて修正してください。", "success")
    return redirect(url_for("assessments.answer", assessment_id=assessment.id))


@bp.route("/<int:assessment_id>/view")
@require(Permission.ENGAGEMENTS_VIEW)
def staff_view(assessment_id: int):
    assessment = _for_staff(assessment_id)
    sheet = Sheet(assessment)
    db = get_session()
    return render_template(
        "assessments/staff_view.html",
        sheet=sheet,
        countries=COUNTRIES,
        history=store.histories(db, assessment),
        can_return=assessment.status == "submitted"
        and can_edit_engagement(current_user, assessment.engagement),
        decode=store.decode,
    )


@bp.route("/<int:assessment_id>/return", methods=["POST"])
@require(Permission.ENGAGEMENTS_MANAGE)
def return_answers(assessment_id: int):
    assessment = _for_staff(assessment_id)
    sheet = Sheet(assessment)
    keys = set(request.form.getlist("return"))
    comments = {key: request.form.get(f"comment:{key}", "") for key in keys}
    db = get_session()
    try:
        count = service.return_answers(
            db, assessment, current_user, comments, {q.key for q in sheet.questions}
        )
    except service.AssessmentError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        notify_returned(assessment, count)
        flash(f"{count}件の回答を差し戻しました。", "success")
    return redirect(url_for("assessments.staff_view", assessment_id=assessment.id))


def notify_returned(assessment: Assessment, count: int) -> None:
    contacts = get_session().scalars(
        sa.select(User).where(
            User.vendor_company_id == assessment.vendor_company_id, User.active.is_(True)
        )
    )
    link = current_app.config["BASE_URL"] + url_for(
        "assessments.answer", assessment_id=assessment.id
    )
    for contact in contacts:
        if not can_answer(contact, assessment):
            continue  # a user of the company invited by another body must not learn of it
        mail.send_after_commit(
            contact.email,
            "【回答の差戻し】委託先・外部サービス 情報セキュリティ評価票",
            "assessment_returned",
            user=contact,
            assessment=assessment,
            count=count,
            link=link,
        )


from portal.assessments import excel_views  # noqa: E402,F401 - registers the Excel routes
