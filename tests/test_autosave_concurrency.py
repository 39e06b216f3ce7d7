"""The autosave under concurrency, with real threads on the test database (a SQLite file, or
TEST_DATABASE_URL): it reads and validates in a read transaction and takes the write lock only
for the save (``portal.db.write_phase``), deciding again under the lock what it decided while
reading. Several sessions autosave at once into the same assessment and into different ones;
a change made between an autosave's two phases (a submit, someone else's save, the account
switched off) makes it refuse, never overwrite."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from portal.assessments import autosave as autosave_checks
from portal.assessments import views
from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.assessments.views import STALE as STALE_MESSAGE
from portal.audit import service as audit
from portal.audit.models import AuditEvent
from portal.db import engine_for
from portal.permissions import Role
from portal.questionnaires.conditions import visible_questions
from portal.users.models import User
from tests.test_answering import (
    BANK,
    answer_everything,
    autosave,
    csrf,
    logged_in_as,
    make_assessment,
    make_engagement,
    submit,
)

ROUNDS = 4
SUBMITTED = "提出済みのため変更できません。"


@pytest.fixture
def department(make, org):
    return make.department(org, "市民課")


@pytest.fixture
def staff(make, org, department):
    return make.user(org, roles={Role.STAFF}, departments=[department], name="市民 課長")


@pytest.fixture
def engagement(db, org, department, staff):
    return make_engagement(db, org, department, staff)


@pytest.fixture
def company(make, org):
    return make.company(org, "みなと情報システム株式会社")


@pytest.fixture
def first_vendor(make, org, company):
    return make.user(company=company, invited_by=org, name="回答 花子")


@pytest.fixture
def second_vendor(make, org, company):
    return make.user(company=company, invited_by=org, name="回答 次郎")


@pytest.fixture
def assessment(db, engagement, company, staff):
    return make_assessment(db, engagement, company, staff)


@pytest.fixture
def other_assessment(db, make, org, department, staff):
    """Another company's assessment, answered by its own contact."""
    company = make.company(org, "さくら通信株式会社")
    vendor = make.user(company=company, invited_by=org, name="回答 三郎")
    engagement = make_engagement(db, org, department, staff, title="電話受付業務委託")
    return make_assessment(db, engagement, company, staff), vendor


def text_questions(engagement) -> list[str]:
    """Plain text questions (room for 20 characters) shown before anything is answered."""
    keys = [
        q.key
        for q in visible_questions(BANK, engagement.facts, {})
        if q.type in ("text", "long_text") and (q.max_length or 200) >= 20
    ]
    assert len(keys) >= 4, keys
    return keys


def run_together(*workers) -> None:
    """Start the workers at the same moment, each in its own thread; re-raise their errors."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(worker):
        try:
            barrier.wait()
            worker()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def post(browser, assessment_id: int, key: str, value: str, token: str, revision: int | None):
    data = {"csrf_token": token, "question": key, f"a:{key}": value}
    if revision is not None:
        data[f"r:{key}"] = str(revision)
    return browser.client.post(f"/assessments/{assessment_id}/autosave", data=data)


def stored(db, assessment_id: int) -> dict[str, tuple[str, int]]:
    """Question key → (JSON value, revision), as committed now."""
    db.rollback()
    return {
        key: (value, revision)
        for key, value, revision in db.execute(
            sa.select(Answer.question_key, Answer.value, Answer.revision).where(
                Answer.assessment_id == assessment_id
            )
        )
    }


def history(db, assessment_id: int, key: str) -> list[tuple[int, str]]:
    db.rollback()
    return list(
        db.execute(
            sa.select(AnswerRevision.revision, AnswerRevision.value)
            .join(Answer, Answer.id == AnswerRevision.answer_id)
            .where(Answer.assessment_id == assessment_id, Answer.question_key == key)
            .order_by(AnswerRevision.revision)
        )
    )


def autosave_events(db) -> Counter:
    db.rollback()
    return Counter(
        (int(object_id), details)
        for object_id, details in db.execute(
            sa.select(AuditEvent.object_id, AuditEvent.details).where(
                AuditEvent.action == "assessment.saved"
            )
        )
    )


def test_sessions_autosave_at_once_into_the_same_and_different_assessments(
    app, db, engagement, assessment, other_assessment, first_vendor, second_vendor
):
    other, third_vendor = other_assessment
    browsers = [logged_in_as(app, v) for v in (first_vendor, second_vendor, third_vendor)]
    tokens = [csrf(b) for b in browsers]
    keys = text_questions(engagement)
    # Two contacts of one company share one assessment, each on questions of their own; the
    # third answers another company's assessment.
    plan = [
        (browsers[0], tokens[0], assessment.id, keys[0:2], "一"),
        (browsers[1], tokens[1], assessment.id, keys[2:4], "二"),
        (browsers[2], tokens[2], other.id, keys[0:4], "三"),
    ]
    acknowledged: list[tuple[int, str, str, int]] = []
    lock = threading.Lock()

    def worker(browser, token, assessment_id, own_keys, mark):
        def work():
            shown = dict.fromkeys(own_keys, 0)
            for n in range(ROUNDS):
                for key in own_keys:
                    value = f"{mark}の回答{n}"
                    response = post(browser, assessment_id, key, value, token, shown[key])
                    assert response.status_code == 200, (key, response.get_json())
                    reply = response.get_json()
                    assert reply["status"] == "saved"
                    shown[key] = reply["revision"]
                    with lock:
                        acknowledged.append((assessment_id, key, value, reply["revision"]))

        return work

    run_together(*(worker(*p) for p in plan))

    assert len(acknowledged) == sum(len(p[3]) for p in plan) * ROUNDS
    for _browser, _token, assessment_id, own_keys, mark in plan:
        now = stored(db, assessment_id)
        for key in own_keys:
            assert now[key] == (f'"{mark}の回答{ROUNDS - 1}"', ROUNDS)
            # Every acknowledged save is in the history, under the revision it was told.
            assert history(db, assessment_id, key) == sorted(
                (revision, f'"{value}"')
                for a_id, k, value, revision in acknowledged
                if (a_id, k) == (assessment_id, key)
            )
    events = autosave_events(db)
    assert sum(n for (object_id, _d), n in events.items() if object_id == assessment.id) == (
        4 * ROUNDS
    )
    assert sum(n for (object_id, _d), n in events.items() if object_id == other.id) == 4 * ROUNDS
    assert audit.verify(db).ok


def test_two_sessions_saving_one_answer_from_the_same_revision_never_overwrite_each_other(
    app, db, engagement, assessment, first_vendor, second_vendor
):
    browsers = [logged_in_as(app, v) for v in (first_vendor, second_vendor)]
    tokens = [csrf(b) for b in browsers]
    key = text_questions(engagement)[0]
    for n in range(ROUNDS):
        revision = stored(db, assessment.id).get(key, (None, 0))[1]
        replies: dict[int, tuple[int, dict]] = {}

        def racer(i, revision=revision, n=n, replies=replies):
            def race():
                response = post(browsers[i], assessment.id, key, f"{i}回目{n}", tokens[i], revision)
                replies[i] = (response.status_code, response.get_json())

            return race

        run_together(racer(0), racer(1))

        codes = sorted(code for code, _reply in replies.values())
        assert codes == [200, 409], replies
        winner = next(i for i, (code, _r) in replies.items() if code == 200)
        loser = 1 - winner
        assert replies[loser][1] == {"status": "conflict", "message": STALE_MESSAGE}
        assert replies[winner][1]["revision"] == revision + 1
        # The winner's value is kept; the loser's never written.
        assert stored(db, assessment.id)[key] == (f'"{winner}回目{n}"', revision + 1)
        assert [v for _r, v in history(db, assessment.id, key)][-1] == f'"{winner}回目{n}"'
        assert len(history(db, assessment.id, key)) == revision + 1
    assert audit.verify(db).ok


@contextlib.contextmanager
def between_the_phases(monkeypatch, change):
    """Run ``change`` in another thread (its own connection) after the next autosave's read
    phase has decided and before its write phase begins."""
    real = views.write_phase
    ran: list[bool] = []

    @contextlib.contextmanager
    def with_change(session):
        if ran:  # the change itself, or a later request: no second change
            with real(session) as s:
                yield s
            return
        ran.append(True)
        errors: list[BaseException] = []

        def run():
            try:
                change()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        with real(session) as s:
            yield s

    monkeypatch.setattr(views, "write_phase", with_change)
    yield
    monkeypatch.setattr(views, "write_phase", real)
    assert ran, "the autosave never reached its write phase"


def assert_no_writer_lock_held(app, assessment_id: int) -> None:
    """Nobody holds the write lock now: a writer could start at once (no waiting)."""
    engine = engine_for(app)
    if engine.dialect.name == "sqlite":
        probe = sqlite3.connect(engine.url.database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # "database is locked" if a writer holds it
            probe.execute("ROLLBACK")
        finally:
            probe.close()
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1 FROM audit_chain FOR UPDATE NOWAIT")
            conn.execute(
                sa.text("SELECT 1 FROM assessment WHERE id = :id FOR UPDATE NOWAIT"),
                {"id": assessment_id},
            )
            conn.rollback()


def test_a_submit_between_the_two_phases_makes_the_autosave_refuse(
    app, db, monkeypatch, engagement, assessment, first_vendor, second_vendor
):
    vendor_browser = logged_in_as(app, first_vendor)
    answer_everything(vendor_browser, assessment.id)
    key = text_questions(engagement)[0]
    before = stored(db, assessment.id)[key]
    before_history = history(db, assessment.id, key)
    before_events = autosave_events(db)
    submitter = logged_in_as(app, second_vendor)
    token = csrf(vendor_browser)
    submit_page = submitter.get(f"/assessments/{assessment.id}/submit")
    assert submit_page.status_code == 200

    def submit_meanwhile():
        assert_no_writer_lock_held(app, assessment.id)  # the read phase holds no write lock
        response = submit(submitter, assessment.id)
        assert response.status_code == 302, response.status_code

    with between_the_phases(monkeypatch, submit_meanwhile):
        response = post(vendor_browser, assessment.id, key, "提出直前の変更", token, before[1])

    assert response.status_code == 409
    assert response.get_json() == {"status": "error", "message": SUBMITTED}
    db.rollback()
    assert db.get(Assessment, assessment.id, populate_existing=True).status == "submitted"
    assert stored(db, assessment.id)[key] == before
    assert history(db, assessment.id, key) == before_history
    assert autosave_events(db) == before_events
    assert audit.verify(db).ok


def test_a_save_by_someone_else_between_the_two_phases_is_kept(
    app, db, monkeypatch, engagement, assessment, first_vendor, second_vendor
):
    first, second = logged_in_as(app, first_vendor), logged_in_as(app, second_vendor)
    first_token, second_token = csrf(first), csrf(second)
    key = text_questions(engagement)[0]
    saved = post(first, assessment.id, key, "最初の回答", first_token, 0)
    assert saved.status_code == 200
    revision = saved.get_json()["revision"]

    def save_meanwhile():
        response = post(second, assessment.id, key, "同僚の修正", second_token, revision)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["revision"] == revision + 1

    with between_the_phases(monkeypatch, save_meanwhile):
        response = post(first, assessment.id, key, "古い画面からの変更", first_token, revision)

    assert response.status_code == 409
    assert response.get_json() == {"status": "conflict", "message": STALE_MESSAGE}
    assert stored(db, assessment.id)[key] == ('"同僚の修正"', revision + 1)
    assert [v for _r, v in history(db, assessment.id, key)] == ['"最初の回答"', '"同僚の修正"']


def test_an_account_switched_off_between_the_two_phases_writes_nothing(
    app, db, monkeypatch, engagement, assessment, first_vendor
):
    browser = logged_in_as(app, first_vendor)
    token = csrf(browser)
    key = text_questions(engagement)[0]

    def switch_off():
        with app.extensions["db_sessionmaker"]() as other:
            other.get(User, first_vendor.id).active = False
            other.commit()

    with between_the_phases(monkeypatch, switch_off):
        response = post(browser, assessment.id, key, "止められた後の回答", token, 0)

    assert response.status_code == 404
    assert key not in stored(db, assessment.id)
    assert autosave_events(db) == Counter()


def test_the_page_script_still_gets_the_revision_of_a_first_answer_and_of_no_change(
    app, db, engagement, assessment, first_vendor
):
    """The reply's revision, read from the saved row (no longer queried again afterwards)."""
    browser = logged_in_as(app, first_vendor)
    token = csrf(browser)
    key = text_questions(engagement)[0]
    first = autosave(browser, assessment.id, key, "はじめての回答", token)
    assert first.get_json() == {"status": "saved", "message": "自動保存しました。", "revision": 1}
    same = autosave(browser, assessment.id, key, "はじめての回答", token)
    assert same.get_json()["revision"] == 1
    cleared = post(browser, assessment.id, key, "", token, 1)
    assert cleared.get_json()["revision"] == 2
    assert stored(db, assessment.id)[key] == ("null", 2)


def test_the_autosave_lock_lets_answers_of_the_assessment_be_inserted(app, db, assessment):
    """PostgreSQL: the autosave's row lock on the assessment (``FOR NO KEY UPDATE``) does not
    block an answer inserted meanwhile (whose foreign key takes ``FOR KEY SHARE`` on it), so a
    section save inserting answers cannot deadlock with an autosave updating one; a submit
    (which updates the row) still waits for it."""
    engine = engine_for(app)
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with its one writer lock")
    session = app.extensions["db_sessionmaker"]()
    try:
        assert autosave_checks.locked_assessment(session, assessment.id) is not None
        with engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '2s'")
            other.execute(
                sa.text("SELECT 1 FROM assessment WHERE id = :id FOR KEY SHARE"),
                {"id": assessment.id},
            )  # what inserting an answer row takes: granted at once
            with pytest.raises(sa.exc.OperationalError):
                other.execute(
                    sa.text("SELECT 1 FROM assessment WHERE id = :id FOR UPDATE NOWAIT"),
                    {"id": assessment.id},
                )
            other.rollback()
    finally:
        session.rollback()
        session.close()


def _facts_and_answers():
    """Any engagement facts, and for every question of the bank that conditions refer to, no
    answer or any of the values the conditions accept (or a value none accepts)."""
    from hypothesis import strategies as st

    from portal.engagements.models import track_for
    from portal.questionnaires.conditions import EngagementFacts

    referred: dict[str, set[str]] = {}
    for section in BANK.sections:
        for condition in [section.when, *(q.when for q in section.questions)]:
            for key, values in condition.answers if condition else ():
                referred.setdefault(key, set()).update(values)

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(["outsourcing", "external_service"]))
        confidentiality = draw(st.integers(1, 3))
        facts = EngagementFacts(
            track=track_for(kind, confidentiality),
            kind=kind,
            confidentiality=confidentiality,
            integrity=draw(st.integers(1, 2)),
            availability=draw(st.integers(1, 2)),
            personal_data=draw(st.booleans()),
            specific_personal_data=draw(st.booleans()),
            sensitive_personal_data=draw(st.booleans()),
            segment=draw(st.sampled_from([None, "mynumber", "lgwan", "internet"])),
        )
        answers = {}
        for key, values in sorted(referred.items()):
            choice = draw(st.sampled_from([None, "(none of these)", *sorted(values)]))
            if choice is not None:
                answers[key] = draw(st.sampled_from([choice, [choice]]))
        return facts, answers

    return build()


def test_the_autosave_sees_a_question_exactly_when_the_whole_sheet_shows_it():
    """``autosave.is_visible`` walks only the conditions one question depends on; it must agree
    with ``visible_questions`` (the whole sheet) for every question, whatever the facts and
    answers."""
    from hypothesis import given, settings

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(_facts_and_answers())
    def agree(case):
        facts, answers = case
        shown = {q.key for q in visible_questions(BANK, facts, answers)}
        for question in BANK.questions:
            assert autosave_checks.is_visible(BANK, facts, answers, question.key) == (
                question.key in shown
            ), question.key

    agree()


def test_a_section_save_waits_for_an_autosave_holding_the_assessment(
    app, db, assessment, first_vendor
):
    """PostgreSQL: the section save (保存する), submit, copy and Excel import lock the assessment
    as the autosave's write phase does, so they follow one another instead of racing on the
    answers' revisions."""
    engine = engine_for(app)
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with its one writer lock")
    browser = logged_in_as(app, first_vendor)
    token = csrf(browser)
    replies = []

    def save_section():
        replies.append(
            browser.client.post(
                f"/assessments/{assessment.id}/sections/company",
                data={"csrf_token": token, "a:company.security_officer": "港 一郎"},
            )
        )

    with engine.connect() as autosaving:
        autosaving.execute(
            sa.text("SELECT 1 FROM assessment WHERE id = :id FOR NO KEY UPDATE"),
            {"id": assessment.id},
        )
        thread = threading.Thread(target=save_section)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the section save did not wait for the lock"
        autosaving.rollback()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert replies[0].status_code in (302, 303)
    assert json.loads(stored(db, assessment.id)["company.security_officer"][0]) == "港 一郎"
