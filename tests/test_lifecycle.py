"""Build, operation and exit checks of a register entry (対策基準 9.2(5)–(7)): the checklist as
validated data, the state computed from the records, recording through the web by the current
外部サービス管理者 only, the recurrence of operation checks, and one query for many entries."""

from __future__ import annotations

import io
import json
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine

from portal.approvals import service as approvals
from portal.approvals.models import UseApplication
from portal.audit.models import AuditEvent
from portal.evidence.scanner import NoScanner
from portal.lifecycle import checklists, service
from portal.lifecycle.models import LifecycleCheck
from portal.lifecycle.service import LifecycleError
from portal.permissions import Role
from portal.reviews.models import ReviewFile
from portal.reviews.schedules import schedule_of_application
from portal.web import JST
from tests.helpers import QueryCounter, flashes, soup, text_of
from tests.test_evidence_files import pdf_bytes
from tests.test_review_web import signed_in

DECIDED = date(2026, 5, 1)
TERMS = "第1条 本規約は、当社の動画配信サービスの利用条件を定める。".encode()


@dataclass
class Upload:
    """A file as a form uploads it (``filename`` and ``stream``)."""

    filename: str
    content: bytes
    stream: io.BytesIO = field(init=False)

    def __post_init__(self):
        self.stream = io.BytesIO(self.content)


def at(day: date, hour: int = 10):
    """Travel to ``day`` in Japan, the clock standing still."""
    return time_machine.travel(datetime.combine(day, time(hour), JST), tick=False)


@pytest.fixture
def team(make, org, other_org):
    department = make.department(org, "情報政策課")
    company = make.company(org, name="株式会社クラウド提供")
    return {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="申請 一郎"),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 二郎"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="管理 三郎",
        ),
        "other_manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="別管理 四郎",
        ),
        "foreign_manager": make.user(
            other_org, roles={Role.STAFF, Role.SERVICE_MANAGER}, name="他団体 五郎"
        ),
        "company": company,
        "vendor": make.user(org, company=company, name="事業者 六郎"),
    }


def approved(db, make, org, team, *, name="文書管理サービス", category="9.2") -> UseApplication:
    """An approved entry of the register, decided on ``DECIDED``, managed by ``team["manager"]``."""
    with at(DECIDED):
        assessment = None
        if category != "9.3":
            engagement = make.engagement(
                org, team["department"], team["staff"], kind="external_service"
            )
            assessment = make.assessment(engagement, team["company"], team["staff"])
            assessment.status = "decided"  # the review is tested elsewhere
            db.commit()
        svc = approvals.create_service(
            db, team["staff"], team["company"].id, approvals.ServiceInput(name=name)
        )
        application = approvals.file(
            db,
            team["staff"],
            approvals.ApplicationInput(
                department_id=team["department"].id,
                service_id=svc.id,
                plan_id=None,
                assessment_id=assessment.id if assessment else None,
                purpose="庁内文書を共有するため。",
                business="庁内の文書共有。",
                network_segment="internet",
                max_confidentiality=2 if assessment else 1,
                personal_data=False,
                specific_personal_data=False,
                sensitive_personal_data=False,
                terms=approvals.TermsInput(
                    url="https://example.com/terms", content=TERMS, risks_confirmed=True
                ),
            ),
        )
        approvals.decide(
            db,
            application,
            team["approver"],
            approvals.DecisionInput(
                "approve",
                "業務上必要であるため。",
                manager_id=team["manager"].id,
                version=application.version,
            ),
            DECIDED,
        )
        db.commit()
    assert application.category == category
    return application


def checks(db) -> list[LifecycleCheck]:
    db.rollback()
    return list(db.scalars(sa.select(LifecycleCheck).order_by(LifecycleCheck.id)))


def record(db, application, actor, phase, key, *, on, today=None, **fields):
    values = {"result": "done", "evidence": "設定画面の写し（共有フォルダ「証跡」）", "note": ""}
    check = service.record(
        db,
        application,
        actor,
        phase=phase,
        item_key=key,
        checked_on=on,
        today=today or on,
        **(values | fields),
    )
    db.commit()
    return check


def items(phase: str, category: str = "9.2") -> list[str]:
    return [i.key for i in checklists.latest().phase(phase).items_for(category)]


def page(application) -> str:
    return f"/applications/{application.id}/checks"


def form_selector(phase: str, key: str) -> str:
    return f"form[action$='/checks/{phase}/{key}']"


def fields(phase: str, key: str, **values) -> dict:
    return {f"{phase}-{key}-{name}": value for name, value in values.items()}


# ---------------------------------------------------------------------------------------------
# The checklist as data
# ---------------------------------------------------------------------------------------------


def test_the_checklist_loads_and_every_item_cites_its_phase():
    checklist, problems = checklists.check()
    assert problems == []
    assert [p.key for p in checklist.phases] == ["build", "operation", "exit"]
    assert checklist.phase("operation").interval_months == 12
    assert checklist.phase("build").interval_months is None
    required = {"build": "9.2(5)", "operation": "9.2(6)", "exit": "9.2(7)"}
    for phase in checklist.phases:
        assert 5 <= len(phase.items) <= 9, phase.key
        keys = [i.key for i in phase.items]
        assert len(keys) == len(set(keys))
        for item in phase.items:
            assert item.label and item.help, item.key
            assert any(c.startswith(required[phase.key]) for c in item.cites), item.key
    # Every sub-item of the three policy items is checked by some item.
    cited = {c for p in checklist.phases for i in p.items for c in i.cites}
    for sub in "アイウエ":
        assert f"9.2(5)①({sub})" in cited
    for sub in "アイウエオカキク":
        assert f"9.2(6)①({sub})" in cited
    for sub in "アイウ":
        assert f"9.2(7)①({sub})" in cited
    assert "9.2(6)②" in cited
    # 約款型 services get the checks that fit them, never none.
    for phase in checklist.phases:
        assert phase.items_for("9.3")


def _real() -> dict:
    return tomllib.loads(checklists.CHECKLIST_PATH.read_text("utf-8"))


def _break(change) -> list[str]:
    data = _real()
    change(data)
    with pytest.raises(checklists.ChecklistError) as caught:
        checklists.parse(data, "broken.toml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["build"]["item"][0].update(colour="red"),
            "build.item[access_control].colour: 未知の項目です",
        ),
        (lambda d: d.update(extra=1), "file.extra: 未知の項目です"),
        (lambda d: d["operation"].update(owner="x"), "operation.owner: 未知の項目です"),
        (
            lambda d: d["build"]["item"].append(dict(d["build"]["item"][0])),
            "build.item[access_control]: 確認項目のキーが重複しています",
        ),
        (
            lambda d: d["exit"]["item"][0].update(cites=["9.2(7)x"]),
            "exit.item[exit_measures].cites: 規定の書き方が正しくありません",
        ),
        (
            lambda d: d["build"]["item"][0].update(cites=["9.2(6)①(エ)"]),
            "build.item[access_control].cites: 9.2(5) を含む規定を引用してください",
        ),
        (lambda d: d["build"]["item"][0].pop("cites"), "build.item[access_control].cites"),
        (lambda d: d["build"]["item"][0].pop("label"), "build.item[access_control].label"),
        (lambda d: d["build"]["item"][0].update(key="Access-Control"), "build.item[1].key"),
        (lambda d: d.pop("exit"), "exit: 利用終了時のチェックリスト [exit] がありません"),
        (lambda d: d["exit"].update(item=[]), "exit.item: 確認項目を1つ以上指定してください"),
        (lambda d: d["operation"].pop("interval_months"), "operation.interval_months"),
        (lambda d: d["operation"].update(interval_months=0), "operation.interval_months"),
        (lambda d: d["operation"].update(interval_months="12"), "operation.interval_months"),
        (
            lambda d: d["build"].update(interval_months=12),
            "build.interval_months: 繰り返しの間隔は運用・保守時（operation）だけです",
        ),
        (
            lambda d: d["operation"]["item"][0].update(categories=["9.4"]),
            "operation.item[usage_policy].categories",
        ),
        (
            lambda d: d["operation"]["item"][0].update(categories=[]),
            "operation.item[usage_policy].categories",
        ),
        (lambda d: d.pop("version"), "version"),
    ],
)
def test_a_broken_checklist_names_the_file_and_the_item(change, expected):
    problems = _break(change)
    assert any(p.startswith("broken.toml: ") and expected in p for p in problems), problems


def test_a_file_that_is_not_toml_is_named(tmp_path):
    path = tmp_path / "lifecycle.toml"
    path.write_text('version = "1\n', encoding="utf-8")
    checklist, problems = checklists.check(path)
    assert checklist is None
    assert problems and problems[0].startswith("lifecycle.toml: TOMLとして読めません")


def test_the_check_command_validates_the_checklist_too(runner):
    result = runner.invoke(args=["questionnaires", "check"])
    assert result.exit_code == 0, result.output
    assert "questionnaires/checklists/lifecycle.toml" in result.output


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


def test_a_new_entry_has_nothing_done_and_its_first_operation_check_due_a_year_on(
    db, make, org, team
):
    application = approved(db, make, org, team)
    state = service.state_of(db, application, date(2026, 6, 1))
    assert (state.build_done, state.build_total) == (0, len(items("build")))
    assert state.build_label == "未着手"
    assert state.exit_label == "未着手"
    assert state.operation_last is None
    # The 12 months starting on the decision day end on 2027-04-30 (民法143条).
    assert state.operation_next_due == date(2027, 4, 30)
    assert not state.operation_overdue
    assert state.operation_label == "未実施（期限 2027年4月30日）"
    late = service.state_of(db, application, date(2027, 5, 1))
    assert late.operation_overdue
    assert late.operation_label == "期限超過（期限 2027年4月30日）"


def test_state_counts_done_items_and_issues(db, make, org, team):
    application = approved(db, make, org, team)
    manager = team["manager"]
    build = items("build")
    for key in build[:3]:
        record(db, application, manager, "build", key, on=date(2026, 5, 10))
    state = service.state_of(db, application, date(2026, 5, 10))
    assert state.build_done == 3
    assert state.build_label == f"3/{len(build)} 実施"

    record(
        db,
        application,
        manager,
        "build",
        build[3],
        on=date(2026, 5, 11),
        result="issue",
        note="共有リンクの既定値が「全員」になっていた。",
    )
    for key in build[4:]:
        record(
            db, application, manager, "build", key, on=date(2026, 5, 11),
            result="not_applicable", evidence="", note="団体側の開発はない。",
        )  # fmt: skip
    state = service.state_of(db, application, date(2026, 5, 11))
    assert state.build_label == f"完了（{len(build)}/{len(build)}）"
    assert state.open_issues == 1
    assert state.issues_label == "要対応 1件"

    # Recorded again without the issue: the latest record is the item's state.
    record(db, application, manager, "build", build[3], on=date(2026, 5, 12))
    assert service.state_of(db, application, date(2026, 5, 12)).open_issues == 0


def test_operation_checks_recur_and_become_overdue(db, make, org, team):
    application = approved(db, make, org, team)
    operation = items("operation")
    for key in operation:
        record(db, application, team["manager"], "operation", key, on=date(2026, 6, 1))
    record(db, application, team["manager"], "operation", operation[0], on=date(2026, 9, 15))

    state = service.state_of(db, application, date(2027, 5, 31))
    assert state.operation_last == date(2026, 9, 15)
    assert state.operation_current == len(operation)
    assert state.operation_next_due == date(2027, 5, 31)  # the items checked on 2026-06-01
    assert not state.operation_overdue
    assert state.operation_label == "最終 2026年9月15日・次回 2027年5月31日"

    later = service.state_of(db, application, date(2027, 6, 1))
    assert later.operation_overdue
    assert later.operation_current == 1  # only the one checked in September is current
    assert later.operation_label == "期限超過（期限 2027年5月31日）"

    # A suspended entry is not in use: nothing is overdue.
    with at(date(2027, 6, 1)):
        approvals.change_status(
            db, application, team["approver"], "suspend", "利用を一時停止する。",
            application.version,
        )  # fmt: skip
        db.commit()
    assert not service.state_of(db, application, date(2027, 6, 1)).operation_overdue


def test_only_the_items_of_the_entrys_category_count(db, make, org, team):
    application = approved(db, make, org, team, name="研修動画配信", category="9.3")
    state = service.state_of(db, application, date(2026, 6, 1))
    assert state.build_total == len(items("build", "9.3")) < len(items("build", "9.2"))
    assert state.operation_total == len(items("operation", "9.3"))
    only_92 = next(k for k in items("build") if k not in items("build", "9.3"))
    with pytest.raises(LifecycleError, match="この確認項目はありません"):
        record(db, application, team["manager"], "build", only_92, on=date(2026, 6, 1))


def test_states_for_many_entries_is_one_query(app, db, make, org, team):
    entries = [approved(db, make, org, team, name=f"サービス{n}") for n in range(5)]
    for application in entries:
        record(db, application, team["manager"], "build", items("build")[0], on=date(2026, 6, 1))
        record(db, application, team["manager"], "operation", "training", on=date(2026, 6, 1))
    ids = [a.id for a in entries]

    def count(subset: list[int]) -> tuple[int, dict]:
        db.rollback()
        loaded = list(db.scalars(sa.select(UseApplication).where(UseApplication.id.in_(subset))))
        with QueryCounter(app) as counter:
            states = service.states_for(db, loaded, date(2026, 6, 2))
        return counter.count, states

    one, states_one = count(ids[:1])
    five, states_five = count(ids)
    assert one == five == 1
    assert set(states_five) == set(ids)
    assert all(
        s.build_done == 1 and s.operation_last == date(2026, 6, 1) for s in states_five.values()
    )
    assert states_one[ids[0]] == states_five[ids[0]]
    assert service.states_for(db, [], date(2026, 6, 2)) == {}


# ---------------------------------------------------------------------------------------------
# Recording: rules of the service
# ---------------------------------------------------------------------------------------------


def test_recording_is_audited_and_keeps_the_checklist_version(db, make, org, team):
    application = approved(db, make, org, team)
    check = record(db, application, team["manager"], "build", "encryption", on=date(2026, 5, 20))
    assert check.checklist_version == checklists.latest().version
    assert check.recorded_by_id == team["manager"].id
    event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lifecycle.record"))
    details = json.loads(event.details)
    assert event.object_type == "use_application"
    assert event.object_id == str(application.id)
    assert details["phase"] == "build"
    assert details["item_key"] == "encryption"
    assert details["result"] == "done"
    assert details["checked_on"] == "2026-05-20"
    assert details["check_id"] == check.id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"on": date(2026, 6, 2), "today": date(2026, 6, 1)}, "未来の日付"),
        ({"on": date(2026, 4, 30), "today": date(2026, 6, 1)}, "利用の承認日（2026年5月1日）以降"),
        ({"evidence": "  "}, "証跡（確認の根拠と保管場所）を入力してください"),
        ({"evidence": "あ" * 2001}, "2000文字以内"),
        ({"result": "issue", "note": ""}, "要対応事項を入力してください"),
        (
            {"result": "not_applicable", "evidence": "", "note": ""},
            "該当しない理由を入力してください",
        ),
        ({"result": "maybe"}, "結果を選んでください"),
        ({"phase": "planning"}, "この確認項目はありません"),
        ({"key": "no_such_item"}, "この確認項目はありません"),
    ],
)
def test_a_record_that_breaks_a_rule_is_refused(db, make, org, team, changes, message):
    application = approved(db, make, org, team)
    args = {"phase": "build", "key": "access_control", "on": date(2026, 6, 1)} | changes
    with pytest.raises(LifecycleError, match=message):
        record(db, application, team["manager"], args.pop("phase"), args.pop("key"), **args)
    assert checks(db) == []


def test_only_the_current_manager_records(db, make, org, team):
    application = approved(db, make, org, team)
    for who in ("staff", "approver", "other_manager", "foreign_manager", "vendor"):
        with pytest.raises(LifecycleError, match="現在の外部サービス管理者だけ"):
            record(db, application, team[who], "build", "access_control", on=date(2026, 6, 1))
    # After a handover the previous manager may no longer record; the successor may.
    with at(date(2026, 7, 1)):
        approvals.hand_over(
            db, application, team["approver"], user_id=team["other_manager"].id,
            on=date(2026, 7, 1), note="異動のため", version=application.version, today=date(2026, 7, 1),
        )  # fmt: skip
        db.commit()
    with pytest.raises(LifecycleError):
        record(db, application, team["manager"], "build", "access_control", on=date(2026, 7, 1))
    record(db, application, team["other_manager"], "build", "access_control", on=date(2026, 7, 1))
    assert [c.recorded_by_id for c in checks(db)] == [team["other_manager"].id]


def test_while_being_retired_only_exit_checks_are_recorded_the_certificate_with_its_file(
    app, db, make, org, team
):
    application = approved(db, make, org, team)
    with at(date(2027, 3, 31)):
        approvals.change_status(
            db, application, team["approver"], "retire", "後継サービスに移行した。",
            application.version,
        )  # fmt: skip
        db.commit()
    assert application.status == "ending"  # 廃止手続中: the exit checklist is open
    with pytest.raises(LifecycleError, match="利用中"):
        record(db, application, team["manager"], "operation", "training", on=date(2027, 4, 2))
    # The deletion item needs the 消去証明書 itself, not only a note of where it is kept.
    storage = {
        "evidence_dir": Path(app.config["EVIDENCE_DIR"]),
        "scanner": NoScanner(),
        "max_bytes": 1024 * 1024,
    }
    with pytest.raises(LifecycleError, match="消去証明書のファイルを添付してください"):
        record(
            db, application, team["manager"], "exit", "data_deletion", on=date(2027, 4, 10),
            evidence="消去証明書（2027年4月10日受領、文書管理システム 第123号）", **storage,
        )  # fmt: skip
    assert checks(db) == []
    check = record(
        db, application, team["manager"], "exit", "data_deletion", on=date(2027, 4, 10),
        evidence="消去証明書（2027年4月10日受領、文書管理システム 第123号）",
        upload=Upload("消去証明書.pdf", pdf_bytes()), **storage,
    )  # fmt: skip
    db.rollback()
    certificate = db.get(ReviewFile, check.file_id)
    schedule = schedule_of_application(db, application)
    assert certificate.schedule_id == schedule.id
    assert certificate.purpose == "deletion_certificate"
    assert certificate.original_name == "消去証明書.pdf"
    state = service.state_of(db, application, date(2027, 4, 10))
    assert state.exit_done == 1
    assert state.exit_label == f"1/{len(items('exit'))} 実施"
    assert not state.operation_overdue
    assert [i.key for i in service.exit_missing(db, application)] == [
        key for key in items("exit") if key != "data_deletion"
    ]


# ---------------------------------------------------------------------------------------------
# Through the web
# ---------------------------------------------------------------------------------------------


def test_the_manager_records_build_checks_and_the_page_shows_the_state(app, db, make, org, team):
    application = approved(db, make, org, team)
    build = items("build")
    with at(date(2026, 5, 20)):
        browser = signed_in(app, team["manager"])
        first = browser.get(page(application))
        assert first.status_code == 200
        assert text_of(first, "[data-field=build-state]") == "未着手"
        item = soup(first).select_one("[data-item='build.access_control']")
        assert "9.2(5)①(ア)" in item.select_one("[data-field=cites]").get_text()
        assert item.select_one("[data-field=result]").get_text(strip=True) == "未記録"
        # Every input of the record form has its label.
        form = item.select_one(form_selector("build", "access_control"))
        for control in form.select("select, input:not([type=hidden]), textarea"):
            assert form.select_one(f"label[for='{control['id']}']"), control["name"]

        response = browser.submit(
            page(application),
            fields(
                "build",
                "access_control",
                result="done",
                checked_on="2026-05-19",
                evidence="アカウント一覧の出力（情報政策課 共有フォルダ/証跡/2026-05-19）",
            ),  # fmt: skip
            selector=form_selector("build", "access_control"),
        )
        assert response.status_code == 303
        shown = browser.get(response.headers["Location"])
        assert any("記録しました" in m for m in flashes(shown))
        assert text_of(shown, "[data-field=build-state]") == f"1/{len(build)} 実施"
        item = soup(shown).select_one("[data-item='build.access_control']")
        assert item.select_one("[data-field=result]").get_text(strip=True) == "実施済み（問題なし）"
        assert item.select_one("[data-field=checked-on]").get_text(strip=True) == "2026年5月19日"
        assert "共有フォルダ" in item.select_one("[data-field=evidence]").get_text()
        assert "管理 三郎" in item.select_one("[data-field=recorder]").get_text()

        for key in build[1:]:
            browser.submit(
                page(application),
                fields("build", key, result="done", evidence="設定チェックシート"),
                selector=form_selector("build", key),
            )
        done = browser.get(page(application))
        assert text_of(done, "[data-field=build-state]") == f"完了（{len(build)}/{len(build)}）"

        # Recording again keeps the earlier record as history.
        browser.submit(
            page(application),
            fields("build", "access_control", result="issue", evidence="棚卸し結果", note="退職者のアカウントが残っていた。"),
            selector=form_selector("build", "access_control"),
        )  # fmt: skip
        again = browser.get(page(application))
    item = soup(again).select_one("[data-item='build.access_control']")
    assert (
        item.select_one("[data-field=result]").get_text(strip=True) == "実施済み（要対応事項あり）"
    )
    history = item.select_one("details[data-field=history]")
    assert history is not None and len(history.select("li[data-record]")) == 1
    assert "実施済み（問題なし）" in history.get_text()
    assert text_of(again, "[data-field=open-issues]") == "要対応 1件"
    assert len(checks(db)) == len(build) + 1


def test_a_future_date_or_missing_evidence_is_refused_on_the_page(app, db, make, org, team):
    application = approved(db, make, org, team)
    with at(date(2026, 5, 20)):
        browser = signed_in(app, team["manager"])
        response = browser.submit(
            page(application),
            fields("build", "encryption", result="done", checked_on="2026-05-21", evidence="資料"),
            selector=form_selector("build", "encryption"),
        )
        assert response.status_code == 422
        item = soup(response).select_one("[data-item='build.encryption']")
        assert "未来の日付" in item.select_one("[data-field=error]").get_text()
        # What was typed is still there.
        assert (
            item.select_one("textarea[name='build-encryption-evidence']").get_text(strip=True)
            == "資料"
        )

        response = browser.submit(
            page(application),
            fields("build", "encryption", result="done", evidence=""),
            selector=form_selector("build", "encryption"),
        )
        assert response.status_code == 422
        assert any("証跡" in m for m in flashes(response))

        response = browser.submit(
            page(application),
            fields("build", "encryption", result="", evidence="資料"),
            selector=form_selector("build", "encryption"),
        )
        assert response.status_code == 422
        item = soup(response).select_one("[data-item='build.encryption']")
        assert (
            "結果を選んでください"
            in item.select_one("[data-field=build-encryption-result] .field__error").get_text()
        )
    assert checks(db) == []


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("staff", 403),
        ("approver", 403),
        ("vendor", 403),
        ("other_manager", 403),
        ("foreign_manager", 404),
    ],
)
def test_others_cannot_record(app, db, make, org, team, who, status):
    application = approved(db, make, org, team)
    with at(date(2026, 5, 20)):
        browser = signed_in(app, team[who])
        if who in ("staff", "approver", "other_manager"):  # they may read the entry
            shown = browser.get(page(application))
            assert shown.status_code == 200
            assert not soup(shown).select("form[action*='/checks/']")
        response = browser.post(
            f"{page(application)}/build/access_control",
            fields("build", "access_control", result="done", checked_on="2026-05-20", evidence="x"),
        )
    assert response.status_code == status
    assert checks(db) == []


def test_the_page_of_another_organisations_entry_is_not_found(app, db, make, org, team):
    application = approved(db, make, org, team)
    with at(date(2026, 5, 20)):
        browser = signed_in(app, team["foreign_manager"])
        assert browser.get(page(application)).status_code == 404
        assert browser.get("/applications/999999/checks").status_code == 404


@pytest.mark.parametrize(
    "path", ["planning/access_control", "build/no_such_item", "build/" + "a" * 101]
)
def test_unknown_phases_and_items_are_not_found(app, db, make, org, team, path):
    application = approved(db, make, org, team)
    with at(date(2026, 5, 20)):
        browser = signed_in(app, team["manager"])
        response = browser.post(f"{page(application)}/{path}", {})
    assert response.status_code == 404
    assert checks(db) == []


def test_an_overdue_operation_check_shows_on_the_page(app, db, make, org, team):
    application = approved(db, make, org, team)
    for key in items("operation"):
        record(db, application, team["manager"], "operation", key, on=date(2026, 6, 1))
    with at(date(2027, 5, 31)):
        browser = signed_in(app, team["staff"])
        on_time = browser.get(page(application))
        assert text_of(on_time, "[data-field=operation-state]") == (
            "最終 2026年6月1日・次回 2027年5月31日"
        )
    with at(date(2027, 6, 1)):
        browser = signed_in(app, team["manager"])
        late = browser.get(page(application))
        assert text_of(late, "[data-field=operation-state]") == "期限超過（期限 2027年5月31日）"
        item = soup(late).select_one("[data-item='operation.training']")
        assert "期限超過" in item.select_one("[data-field=due]").get_text()
        # Checking it again moves that item's due date a year on.
        browser.submit(
            page(application),
            fields("operation", "training", result="done", evidence="研修の受講記録"),
            selector=form_selector("operation", "training"),
        )
        item = soup(browser.get(page(application))).select_one("[data-item='operation.training']")
        assert item.select_one("[data-field=due]").get_text(strip=True) == "2028年5月31日"
