"""/assessments/<id>/review …: the staff review of a submitted assessment, its outcome, the
report (HTML and PDF) and the comparison with an earlier assessment of the same company."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.assessments.models import Assessment
from portal.assessments.views import Sheet
from portal.db import get_session
from portal.evaluations import service
from portal.evaluations.reports import compare_rows, earlier_assessments, report_context
from portal.permissions import Permission, can_confirm, can_review, can_view_engagement, require
from portal.questionnaires.countries import COUNTRIES
from portal.scoring.engine import DECISIONS
from portal.web import parse_id, today_jst

bp = Blueprint("evaluations", __name__, url_prefix="/assessments", template_folder="templates")


def _visible(assessment_id: int) -> Assessment:
    assessment = get_session().get(Assessment, assessment_id)
    if assessment is None or not can_view_engagement(current_user, assessment.engagement):
        abort(404)
    return assessment


def _scored(assessment_id: int) -> Assessment:
    assessment = _visible(assessment_id)
    if assessment.status not in service.SCORED_STATES:
        flash("提出されていない評価票は審査できません。提出後に審査してください。", "error")
        abort(redirect(url_for("assessments.staff_view", assessment_id=assessment.id)))
    return assessment


class Review:
    """What every review page shows: the sheet, the live score card and both progress figures."""

    def __init__(self, assessment: Assessment, *, authors: bool = False):
        db = get_session()
        self.assessment = assessment
        self.sheet = Sheet(assessment)
        self.reviews = service.reviews_of(db, assessment, authors=authors)
        self.card = service.card_for(
            db,
            assessment,
            today_jst(),
            reviews=self.reviews,
            values=self.sheet.values,
            evidence=self.sheet.evidence,
        )
        self.progress = service.review_progress(self.card, self.reviews)
        self.outcome = service.outcome_of(db, assessment)
        self.first_score = service.latest_score(db, assessment, "automatic")
        self.editable = assessment.status == "submitted" and can_review(current_user, assessment)

    def section_counts(self, questions) -> tuple[int, int]:
        checked = sum(1 for q in questions if (r := self.reviews.get(q.key)) and r.checked)
        return checked, len(questions)


@bp.route("/<int:assessment_id>/review")
@require(Permission.ENGAGEMENTS_VIEW)
def overview(assessment_id: int):
    review = Review(_scored(assessment_id))
    return render_template(
        "evaluations/overview.html",
        review=review,
        decisions=DECISIONS,
        can_confirm=review.outcome is not None
        and review.assessment.status == "reviewed"
        and can_confirm(current_user, review.assessment, review.outcome.recommended_by_id),
        earlier=earlier_assessments(get_session(), review.assessment, current_user),
    )


@bp.route("/<int:assessment_id>/review/<section_key>")
@require(Permission.ENGAGEMENTS_VIEW)
def section(assessment_id: int, section_key: str):
    review = Review(_scored(assessment_id), authors=True)  # each answer shows who saved it
    current, questions = review.sheet.section(section_key)
    return render_template(
        "evaluations/section.html",
        review=review,
        current=current,
        questions=questions,
        countries=COUNTRIES,
    )


def _review_input(form) -> service.ReviewInput:
    raw_points = form.get("manual_points", "").strip()
    if raw_points and not (raw_points.isascii() and raw_points.isdigit() and len(raw_points) <= 3):
        raise service.EvaluationError("点数は0以上の整数で入力してください。")
    version = parse_id(form.get("version", "0"), minimum=0)
    if version is None:
        abort(400)
    return service.ReviewInput(
        checked=form.get("checked") == "1",
        manual_points=int(raw_points) if raw_points else None,
        dismissed={v for v in form.getlist("dismiss") if len(v) <= 100},
        override_reason=form.get("override_reason", ""),
        vendor_comment=form.get("vendor_comment", ""),
        internal_note=form.get("internal_note", ""),
        version=version,
    )


@bp.route("/<int:assessment_id>/review/<section_key>/<question_key>", methods=["POST"])
@require(Permission.ASSESSMENTS_REVIEW)
def save(assessment_id: int, section_key: str, question_key: str):
    assessment = _scored(assessment_id)
    if not can_review(current_user, assessment):
        abort(404 if not can_view_engagement(current_user, assessment.engagement) else 403)
    db = get_session()
    back = url_for(
        "evaluations.section",
        assessment_id=assessment.id,
        section_key=section_key,
        _anchor=f"q-{question_key}",
    )
    try:
        data = _review_input(request.form)
        service.save_review(db, assessment, current_user, question_key, data, today_jst())
    except service.ReviewConflict as conflict:
        db.rollback()
        review = Review(assessment)
        question = review.sheet.questionnaire.question(question_key)
        return render_template(
            "evaluations/conflict.html",
            review=review,
            question=question,
            section_key=section_key,
            mine=data,
            current=conflict.current,
            countries=COUNTRIES,
        ), 409
    except service.EvaluationError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(back)
    db.commit()
    flash("審査の内容を保存しました。", "success")
    return redirect(back)


@bp.route("/<int:assessment_id>/decision", methods=["GET", "POST"])
@require(Permission.ASSESSMENTS_REVIEW)
def decision(assessment_id: int):
    assessment = _scored(assessment_id)
    if not can_review(current_user, assessment):
        abort(404 if not can_view_engagement(current_user, assessment.engagement) else 403)
    review = Review(assessment)
    form = {
        "decision": request.form.get("decision", review.card.suggested_decision),
        "conditions": request.form.get(
            "conditions", "\n".join(f"・{r.rule.message}" for r in review.card.conditions)
        ),
        "reasoning": request.form.get("reasoning", ""),
    }
    if request.method == "POST":
        db = get_session()
        try:
            service.finish(
                db,
                assessment,
                current_user,
                decision=form["decision"],
                conditions=form["conditions"],
                reasoning=form["reasoning"],
                today=today_jst(),
            )
        except service.EvaluationError as exc:
            db.rollback()
            flash(str(exc), "error")
        else:
            db.commit()
            flash(
                "判定を記録しました。別の職員の確認を待っています。"
                if assessment.status == "reviewed"
                else "判定を記録し、評価を完了しました。",
                "success",
            )
            return redirect(url_for("evaluations.overview", assessment_id=assessment.id))
    return render_template(
        "evaluations/decision.html", review=review, form=form, decisions=DECISIONS
    )


@bp.route("/<int:assessment_id>/decision/confirm", methods=["POST"])
@require(Permission.ASSESSMENTS_CONFIRM)
def confirm(assessment_id: int):
    assessment = _scored(assessment_id)
    db = get_session()
    try:
        service.confirm(
            db,
            assessment,
            current_user,
            accept=request.form.get("action") == "confirm",
            comment=request.form.get("comment", ""),
        )
    except service.EvaluationError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        db.commit()
        flash(
            "判定を確認し、評価を完了しました。"
            if assessment.status == "decided"
            else "判定を差し戻しました。担当者が審査をやり直します。",
            "success",
        )
    return redirect(url_for("evaluations.overview", assessment_id=assessment.id))


@bp.route("/<int:assessment_id>/report")
@require(Permission.ENGAGEMENTS_VIEW)
def report(assessment_id: int):
    review = Review(_scored(assessment_id))
    return render_template("evaluations/report.html", **report_context(review))


@bp.route("/<int:assessment_id>/compare")
@require(Permission.ENGAGEMENTS_VIEW)
def compare(assessment_id: int):
    assessment = _visible(assessment_id)
    db = get_session()
    candidates = earlier_assessments(db, assessment, current_user)
    raw = request.args.get("with", "")
    other = None
    if raw:
        other_id = parse_id(raw)
        if other_id is None:
            abort(404)
        other = next((a for a in candidates if a.id == other_id), None)
        if other is None:
            abort(404)
    elif candidates:
        other = candidates[0]
    changed_only = request.args.get("all") != "1"
    rows = compare_rows(db, other, assessment) if other else []
    return render_template(
        "evaluations/compare.html",
        assessment=assessment,
        other=other,
        candidates=candidates,
        rows=[r for r in rows if r.changed] if changed_only else rows,
        changed=sum(1 for r in rows if r.changed),
        total=len(rows),
        changed_only=changed_only,
        countries=COUNTRIES,
    )


from portal.evaluations import pdf_views  # noqa: E402,F401 - registers the PDF route
