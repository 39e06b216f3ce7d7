"""Ending a contract or a service runs the exit checklist (対策基準 9.1(2)⑧⑨, 9.2(7)): a 業務委託
contract is ended, its items recorded (the 消去証明書 uploaded and read back), then closed — or
closed with a recorded reason by a second person, the approver or the CISO, never the department
(兼務の禁止, 2(6)); an external service's 廃止 keeps it 廃止手続中 in the register
until its exit checks are complete, or until the approver (never the manager alone) records
why it is retired anyway. Every refusal changes nothing."""

from __future__ import annotations

import io
import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.approvals import service as approvals
from portal.approvals.service import ApprovalError
from portal.audit.models import AuditEvent
from portal.evaluations.models import Outcome, Score
from portal.evidence.scanner import NoScanner
from portal.lifecycle import checklists, retirement
from portal.lifecycle import service as lifecycle
from portal.lifecycle.models import LifecycleCheck
from portal.permissions import Role
from portal.reviews import confirmations, exits, schedules
from portal.reviews.confirmations import ConfirmationError
from portal.reviews.exits import ExitError
from portal.reviews.models import ExitCheck, ReviewFile, ReviewSchedule
from tests.helpers import flashes, reload, soup, text_of
from tests.test_evidence_files import pdf_bytes
from tests.test_lifecycle import Upload, approved, at
from tests.test_review_web import signed_in

STARTED = date(2026, 4, 1)
CERTIFICATE = pdf_bytes()
ITEMS = [item.key for item in checklists.contract_exit().phase("exit").items]


@pytest.fixture
def team(make, org, other_org):
    department = make.department(org, "情報政策課")
    other = make.department(org, "市民課")
    company = make.company(org, name="株式会社委託先")
    return {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="担当 一郎"),
        "colleague": make.user(org, roles={Role.STAFF}, departments=[other], name="他課 二郎"),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 三郎"),
        "manager": make.user(
            org,
            roles={Role.STAFF, Role.SERVICE_MANAGER},
            departments=[department],
            name="管理 四郎",
        ),
        "auditor": make.user(org, roles={Role.AUDITOR}, name="監査 五郎"),
        "ciso": make.user(org, roles={Role.CISO}, name="統括 八郎"),
        "foreign": make.user(other_org, roles={Role.STAFF}, name="他団体 六郎"),
        "foreign_approver": make.user(other_org, roles={Role.APPROVER}, name="他団体 九郎"),
        "company": company,
        "vendor": make.user(org, company=company, name="事業者 七郎"),
    }


@pytest.fixture
def contract(db, make, org, team) -> ReviewSchedule:
    """The schedule of a decided 業務委託 contract, started on ``STARTED``."""
    with at(STARTED):
        engagement = make.engagement(org, team["department"], team["staff"], title="窓口業務委託")
        assessment = make.assessment(engagement, team["company"], team["staff"], status="decided")
        score = Score(
            assessment_id=assessment.id,
            kind="final",
            questionnaire_version="2026.11",
            rules_version="2026.11",
            scored_on=STARTED,
            rating="medium",
            summary="{}",
            created_by_id=team["staff"].id,
        )
        db.add(score)
        db.flush()
        db.add(
            Outcome(
                assessment_id=assessment.id,
                decision="approve",
                score_id=score.id,
                recommended_by_id=team["staff"].id,
            )
        )
        schedule = schedules.open_for_assessment(db, assessment, team["staff"])
        db.commit()
    assert schedule.starts_on == STARTED
    return schedule


def storage(app) -> dict:
    return {
        "evidence_dir": Path(app.config["EVIDENCE_DIR"]),
        "scanner": NoScanner(),
        "max_bytes": 1024 * 1024,
    }


def end(db, schedule, actor, *, on=date(2027, 3, 31), reason="契約期間の満了") -> None:
    exits.end_contract(db, schedule, actor, ending_on=on, reason=reason, version=schedule.version)
    db.commit()


def record_all(app, db, schedule, actor, on: date, skip=()) -> None:
    for key in ITEMS:
        if key in skip:
            continue
        upload = Upload("消去証明書.pdf", CERTIFICATE) if key == "information_deletion" else None
        exits.record(
            db, schedule, actor, key, result="done", checked_on=on, note="", upload=upload,
            today=on, **storage(app),
        )  # fmt: skip
    db.commit()


def events(db, action: str) -> list[dict]:
    db.rollback()
    return [
        json.loads(e.details)
        for e in db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    ]


def exit_page(schedule) -> str:
    return f"/reviews/{schedule.id}/exit"


def item_form(key: str) -> str:
    return f"form[action$='/exit/{key}']"


def item_fields(key: str, **values) -> dict:
    return {f"{key}-{name}": value for name, value in values.items()}


# ---------------------------------------------------------------------------------------------
# The contract exit checklist as data (the lifecycle checklist's loader)
# ---------------------------------------------------------------------------------------------


def test_the_contract_exit_checklist_loads_cites_9_1_2_and_asks_for_the_certificate(runner):
    checklist = checklists.contract_exit()
    [phase] = checklist.phases
    assert phase.key == "exit"
    assert ITEMS == [
        "information_return",
        "information_deletion",
        "subcontractor_return_deletion",
        "access_removal",
        "handover_migration",
    ]
    for item in phase.items:
        assert item.title and item.help, item.key
        assert any(c.startswith("9.1(2)") for c in item.cites), item.key
    assert [i.key for i in phase.items if i.requires_file] == ["information_deletion"]
    assert {"9.1(2)⑧", "9.1(2)⑨"} <= {c for i in phase.items for c in i.cites}
    # The lifecycle checklist's deletion item needs its certificate too (9.2(7)①(イ)).
    lifecycle_exit = checklists.latest().phase("exit")
    assert [i.key for i in lifecycle_exit.items if i.requires_file] == ["data_deletion"]
    result = runner.invoke(args=["questionnaires", "check"])
    assert result.exit_code == 0, result.output
    assert "questionnaires/checklists/exit.toml: 業務委託の契約終了時の確認" in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["exit"]["item"][0].update(cites=["9.2(7)②"]),
            "exit.item[information_return].cites: 9.1(2) を含む規定を引用してください",
        ),
        (
            lambda d: d["exit"]["item"][1].update(requires_file="yes"),
            "exit.item[information_deletion].requires_file: true 又は false",
        ),
        (
            lambda d: d["exit"]["item"][0].update(key="close"),
            "exit.item[close].key: このキーは使えません",
        ),
        (
            lambda d: d["exit"]["item"][0].update(categories=["9.1"]),
            "exit.item[information_return].categories: 未知の項目です",
        ),
        (
            lambda d: d["exit"]["item"][0].update(label="x"),
            "exit.item[information_return].label: 未知の項目です",
        ),
        (lambda d: d["exit"]["item"][0].pop("title"), "exit.item[information_return].title"),
        (
            lambda d: d["exit"].update(interval_months=12),
            "exit.interval_months: 繰り返しの間隔は指定できません",
        ),
        (lambda d: d.pop("exit"), "exit: 契約終了時のチェックリスト [exit] がありません"),
    ],
)
def test_a_broken_contract_exit_checklist_names_the_file_and_the_item(change, expected):
    data = tomllib.loads(checklists.CONTRACT_EXIT_PATH.read_text("utf-8"))
    change(data)
    with pytest.raises(checklists.ChecklistError) as caught:
        checklists.parse(data, "exit.toml", checklists.CONTRACT_EXIT)
    assert any(p.startswith("exit.toml: ") and expected in p for p in caught.value.problems), (
        caught.value.problems
    )


# ---------------------------------------------------------------------------------------------
# 業務委託: the whole way through the web
# ---------------------------------------------------------------------------------------------


def test_a_contract_is_ended_its_checklist_recorded_with_the_certificate_and_closed(
    app, db, team, contract
):
    with at(date(2027, 3, 25)):
        browser = signed_in(app, team["staff"])
        page = browser.get(exit_page(contract))
        assert page.status_code == 200
        assert text_of(page, "[data-field=status]") == "契約・利用中"
        assert soup(page).select_one(item_form("information_return")) is None  # not yet open
        response = browser.submit(
            exit_page(contract),
            {"ending_on": "2027-03-31", "reason": "契約期間の満了（次期事業者へ移行）"},
            "form[data-form=end]",
        )
        assert response.status_code == 303
        contract = reload(db, contract)
        assert (contract.status, contract.ending_on) == ("ending", date(2027, 3, 31))
        assert contract.end_reason == "契約期間の満了（次期事業者へ移行）"
        assert events(db, "exit.start")[0]["ending_on"] == "2027-03-31"
        opened = browser.get(exit_page(contract))
        assert text_of(opened, "[data-field=status]") == "終了手続中"
        assert text_of(opened, "[data-field=progress]") == "未着手"
        missing = text_of(opened, "[data-field=missing]")
        assert all(item.title in missing for item in exits.phase().items)
        assert soup(opened).select_one("form[data-form=close]") is None
        # No more confirmations for a contract that is ending.
        with pytest.raises(ConfirmationError):
            confirmations.open_confirmation(db, contract, team["staff"], date(2027, 3, 25))

    with at(date(2027, 4, 5)):
        browser = signed_in(app, team["staff"])
        # The 消去証明書 item without the certificate is refused and nothing is kept.
        refused = browser.submit(
            exit_page(contract),
            item_fields("information_deletion", result="done", checked_on="2027-04-02"),
            item_form("information_deletion"),
        )
        assert refused.status_code == 422
        assert "消去証明書のファイルを添付してください" in text_of(
            refused, "[data-item=information_deletion] [data-field=error]"
        )
        db.rollback()
        assert db.scalar(sa.select(sa.func.count()).select_from(ExitCheck)) == 0

        response = browser.submit(
            exit_page(contract),
            item_fields(
                "information_deletion",
                result="done",
                checked_on="2027-04-02",
                note="暗号化消去。バックアップ媒体は物理破壊。",
                certificate=(io.BytesIO(CERTIFICATE), "消去証明書.pdf"),
            ),
            item_form("information_deletion"),
        )
        assert response.status_code == 303
        browser.submit(
            exit_page(contract),
            item_fields(
                "subcontractor_return_deletion",
                result="not_applicable",
                checked_on="2027-04-02",
                note="再委託はしていない。",
            ),
            item_form("subcontractor_return_deletion"),
        )
        for key in ("information_return", "access_removal", "handover_migration"):
            done = browser.submit(
                exit_page(contract),
                item_fields(key, result="done", checked_on="2027-04-05"),
                item_form(key),
            )
            assert done.status_code == 303, flashes(done)

        shown = browser.get(exit_page(contract))
        assert text_of(shown, "[data-field=progress]") == f"完了（全{len(ITEMS)}項目）"
        deletion = soup(shown).select_one("[data-item=information_deletion]")
        assert deletion.select_one("[data-field=result]").get_text(strip=True) == "実施済み"
        assert deletion.select_one("[data-field=checked-on]").get_text(strip=True) == "2027年4月2日"
        certificate = deletion.select_one("[data-field=certificate] [data-file-id]")
        assert certificate.select_one("[data-field=name]").get_text() == "消去証明書.pdf"
        other = soup(shown).select_one("[data-item=subcontractor_return_deletion]")
        assert other.select_one("[data-field=result]").get_text(strip=True) == "該当なし"
        assert other.select_one("[data-field=note]").get_text(strip=True) == "再委託はしていない。"

        # The certificate reads back byte for byte, as a file of the schedule.
        db.rollback()
        row = db.get(ReviewFile, int(certificate["data-file-id"]))
        assert (row.schedule_id, row.purpose) == (contract.id, "deletion_certificate")
        download = browser.post(f"/review-files/{row.id}/download", token_from=exit_page(contract))
        assert download.status_code == 200
        assert download.data == CERTIFICATE
        download.close()
        recorded = events(db, "exit.record")
        assert [e["item_key"] for e in recorded][0] == "information_deletion"
        assert recorded[0]["sha256"] == row.sha256

        closed = browser.submit(exit_page(contract), {}, "form[data-form=close]")
        assert closed.status_code == 303
        contract = reload(db, contract)
        assert (contract.status, contract.ended_on) == ("ended", date(2027, 4, 5))
        assert contract.exit_override_reason == ""
        assert events(db, "exit.close")[0]["ended_on"] == "2027-04-05"
        ended = browser.get(exit_page(contract))
        assert text_of(ended, "[data-field=status]") == "終了"
        assert text_of(ended, "[data-field=ended-on]") == "2027年4月5日"

    # An ended contract is confirmed no more: no confirmation opens, no trigger is added.
    with pytest.raises(ConfirmationError, match="終了した契約"):
        confirmations.open_confirmation(db, contract, team["staff"], date(2027, 4, 6))
    assert confirmations.open_due(db, date(2027, 4, 6), lead_days=3650) == []
    assert (
        schedules.add_trigger(
            db, contract, "incident", key="late", occurred_on=date(2027, 4, 6), detail="x"
        )
        is None
    )
    assert schedules.state_of(contract, date(2027, 4, 6)) == "ended"


OVERRIDE_REASON = "委託先が倒産し、消去証明書の提出を受けられないため。"


@pytest.mark.parametrize("closer", ["approver", "ciso"])
def test_the_approver_or_the_ciso_closes_an_incomplete_contract_with_a_reason_staff_cannot(
    app, db, team, contract, closer
):
    """兼務の禁止 (2(6), 9.1(2)⑨): the department records the checklist; closing it unfinished
    is a second person's — the 許可権限者 or the CISO — with the reason, as for a service."""
    with at(date(2027, 4, 1)):
        end(db, contract, team["staff"])
        record_all(
            app, db, contract, team["staff"], date(2027, 4, 1), skip={"information_deletion"}
        )
        with pytest.raises(ExitError, match="終わっていない項目があります: .*消去証明書"):
            exits.close(db, contract, team["staff"], version=contract.version)
        db.rollback()

        # The department's staff: no override form, told who records one, refused if they post.
        staff = signed_in(app, team["staff"])
        page = staff.get(exit_page(contract))
        assert soup(page).select_one("form[data-form=override]") is None
        assert soup(page).select_one("form[data-form=close]") is None
        told = text_of(page, "[data-field=override-by]")
        assert "許可権限者又はCISO" in told and "2(6)" in told
        refused = staff.post(
            f"/reviews/{contract.id}/exit/override",
            {"reason": OVERRIDE_REASON, "version": str(contract.version)},
            token_from=exit_page(contract),
        )
        assert refused.status_code == 403
        assert any("許可権限者又はCISO" in m for m in flashes(refused))
        with pytest.raises(ExitError, match="許可権限者又はCISO"):
            exits.close_with_override(
                db, contract, team["staff"], reason=OVERRIDE_REASON, version=contract.version
            )
        db.rollback()
        assert reload(db, contract).status == "ending"
        assert events(db, "exit.override") == []

        # The approver / the CISO sees the form (and nothing of the department's) ...
        browser = signed_in(app, team[closer])
        page = browser.get(exit_page(contract))
        assert page.status_code == 200
        assert soup(page).select_one("form[data-form=override]") is not None
        assert soup(page).select_one("[data-field=override-by]") is None
        assert soup(page).select_one("form[data-form=close]") is None
        assert soup(page).select_one(item_form("information_deletion")) is None
        # ... a reason is required ...
        no_reason = browser.submit(
            exit_page(contract), {"reason": "  "}, "form[data-form=override]"
        )
        assert no_reason.status_code == 422
        assert any("確認を終えずに終了する理由" in m for m in flashes(no_reason))
        with pytest.raises(ExitError, match="理由を入力してください"):
            exits.close_with_override(
                db, contract, team[closer], reason="  ", version=contract.version
            )
        db.rollback()
        assert reload(db, contract).status == "ending"
        assert events(db, "exit.override") == []
        # ... and with it the contract ends.
        closed = browser.submit(
            exit_page(contract), {"reason": OVERRIDE_REASON}, "form[data-form=override]"
        )
        assert closed.status_code == 303, flashes(closed)
    contract = reload(db, contract)
    assert (contract.status, contract.ended_on) == ("ended", date(2027, 4, 1))
    assert contract.exit_override_reason == OVERRIDE_REASON
    [override] = events(db, "exit.override")
    assert override["reason"] == contract.exit_override_reason
    assert override["missing"] == ["information_deletion"]
    assert events(db, "exit.close") == []
    actor_id = db.scalar(
        sa.select(AuditEvent.actor_user_id).where(AuditEvent.action == "exit.override")
    )
    assert actor_id == team[closer].id
    with at(date(2027, 4, 2)):
        page = signed_in(app, team["auditor"]).get(exit_page(contract))
    assert text_of(page, "[data-field=override-reason]") == contract.exit_override_reason
    assert (
        text_of(page, "[data-field=progress]") == f"{len(ITEMS)}項目中{len(ITEMS) - 1}項目実施済み"
    )


def test_only_a_second_person_may_override_never_the_department_or_whoever_recorded(
    app, db, make, org, team, contract
):
    department = team["department"]
    # An approver who is also staff of the department, and a CISO who recorded an item while in
    # the department (moved since): neither is a second person (2(6)).
    approver_in_department = make.user(
        org, roles={Role.STAFF, Role.APPROVER}, departments=[department], name="兼務 十郎"
    )
    recorder = make.user(org, roles={Role.STAFF, Role.CISO}, departments=[department])
    with at(date(2027, 4, 1)):
        end(db, contract, team["staff"])
        exits.record(
            db, contract, recorder, "information_return", result="done",
            checked_on=date(2027, 4, 1), today=date(2027, 4, 1), **storage(app),
        )  # fmt: skip
        db.commit()
        recorder.departments = [make.department(org, "総務課")]
        db.commit()
        assert not schedules.can_manage_schedule(recorder, contract)
        refusals = [
            (team["staff"], "許可権限者又はCISO"),
            (team["manager"], "許可権限者又はCISO"),
            (team["colleague"], "許可権限者又はCISO"),
            (team["auditor"], "許可権限者又はCISO"),
            (team["foreign_approver"], "許可権限者又はCISO"),
            (approver_in_department, "担当課の職員"),
            (recorder, "記録した方"),
        ]
        for actor, message in refusals:
            assert not exits.may_override(db, contract, actor), actor.name
            with pytest.raises(ExitError, match=message):
                exits.close_with_override(
                    db, contract, actor, reason=OVERRIDE_REASON, version=contract.version
                )
            db.rollback()
        # Through the web: those who see the contract get 403 and no form; others 404.
        for actor, status in (
            (team["manager"], 403),
            (team["auditor"], 403),
            (approver_in_department, 403),
            (team["colleague"], 404),
            (team["foreign_approver"], 404),
        ):
            browser = signed_in(app, actor)
            if status == 403:
                page = browser.get(exit_page(contract))
                assert soup(page).select_one("form[data-form=override]") is None, actor.name
                assert "許可権限者又はCISO" in text_of(page, "[data-field=override-by]")
            response = browser.post(
                f"/reviews/{contract.id}/exit/override",
                {"reason": OVERRIDE_REASON, "version": str(contract.version)},
            )
            assert response.status_code == status, actor.name
    assert reload(db, contract).status == "ending"
    assert contract.exit_override_reason == ""
    assert events(db, "exit.override") == []
    assert exits.may_override(db, contract, team["approver"])
    assert exits.may_override(db, contract, team["ciso"])


def test_a_complete_checklist_is_not_overridden_it_is_closed(app, db, team, contract):
    with at(date(2027, 4, 1)):
        end(db, contract, team["staff"])
        record_all(app, db, contract, team["staff"], date(2027, 4, 1))
        page = signed_in(app, team["approver"]).get(exit_page(contract))
        assert soup(page).select_one("form[data-form=override]") is None
        assert soup(page).select_one("form[data-form=close]") is None  # the department's
        with pytest.raises(ExitError, match="すべて記録されています"):
            exits.close_with_override(
                db, contract, team["approver"], reason=OVERRIDE_REASON, version=contract.version
            )
        db.rollback()
    assert reload(db, contract).status == "ending"
    assert events(db, "exit.override") == []


# ---------------------------------------------------------------------------------------------
# 業務委託: refusals change nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "changes", "message"),
    [
        ("information_deletion", {}, "消去証明書のファイルを添付してください"),
        ("information_return", {"checked_on": date(2027, 4, 2)}, "未来の日付"),
        (
            "information_return",
            {"checked_on": date(2026, 3, 31)},
            "確認の開始日（2026年4月1日）以降",
        ),
        ("information_return", {"result": "not_applicable"}, "「該当なし」とする理由"),
        ("information_return", {"result": "maybe"}, "結果を選んでください"),
        ("information_return", {"note": "あ" * 2001}, "2000文字以内"),
        ("no_such_item", {}, "この確認項目はありません"),
    ],
)
def test_a_record_that_breaks_a_rule_is_refused(app, db, team, contract, key, changes, message):
    with at(date(2027, 4, 1)):
        end(db, contract, team["staff"])
        args = {"result": "done", "checked_on": date(2027, 4, 1), "note": ""} | changes
        with pytest.raises(ExitError, match=message):
            exits.record(
                db, contract, team["staff"], key, today=date(2027, 4, 1), **args, **storage(app)
            )
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(ExitCheck)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(ReviewFile)) == 0


def test_ending_needs_a_reason_a_date_the_right_person_and_the_current_version(
    app, db, team, contract
):
    version = contract.version
    refusals = [
        ({"reason": ""}, "契約を終了する理由を入力してください"),
        ({"ending_on": None}, "契約の終了日を入力してください"),
        ({"ending_on": date(2026, 3, 31)}, "確認の開始日（2026年4月1日）以降"),
        ({"version": version + 1}, "他の利用者が先に"),
        ({"actor": team["colleague"]}, "権限がありません"),
        ({"actor": team["approver"]}, "権限がありません"),
        # Further than 30 days ahead: recorded later, the confirmations go on until then.
        ({"ending_on": date(2027, 4, 16)}, "終了日が近づいてから記録してください"),
    ]
    for changes, message in refusals:
        args = {"actor": team["staff"], "ending_on": date(2027, 3, 31), "reason": "満了"}
        args |= {"version": version} | changes
        actor = args.pop("actor")
        with at(date(2027, 3, 16)), pytest.raises(ExitError, match=message):
            exits.end_contract(db, contract, actor, **args)
        db.rollback()
        assert reload(db, contract).status == "active"
    # Items cannot be recorded before the end, nor the contract closed.
    with pytest.raises(ExitError, match="契約の終了を記録してから"):
        exits.record(
            db, contract, team["staff"], "information_return", result="done",
            checked_on=date(2026, 5, 1), today=date(2026, 5, 1),
        )  # fmt: skip
    with pytest.raises(ExitError, match="終了手続中の契約ではありません"):
        exits.close(db, contract, team["staff"], version=version)
    db.rollback()
    assert events(db, "exit.start") == []


def test_a_stale_form_is_refused_with_a_clear_message(app, db, team, contract):
    with at(date(2027, 4, 1)):
        end(db, contract, team["staff"])
        record_all(app, db, contract, team["staff"], date(2027, 4, 1))
        browser = signed_in(app, team["staff"])
        page = browser.get(exit_page(contract))
        form = soup(page).select_one("form[data-form=close]")
        stale = form.select_one("input[name=version]")["value"]
        assert soup(page).select_one("form[data-form=override]") is None  # complete: no override
        # Someone else changes the contract in the meantime: the close form is stale.
        contract.end_reason = "契約期間の満了（理由を補足）"
        db.commit()
        response = browser.post(
            f"/reviews/{contract.id}/exit/close", {"version": stale}, token_from=exit_page(contract)
        )
        assert response.status_code == 303
        shown = browser.get(response.headers["Location"])
        assert any("他の利用者が先に" in m for m in flashes(shown))
        assert reload(db, contract).status == "ending"
        with pytest.raises(ExitError, match="他の利用者が先に"):
            exits.close_with_override(
                db, contract, team["approver"], reason="理由", version=int(stale)
            )


def test_another_department_gets_404_and_readers_cannot_change_anything(app, db, team, contract):
    with at(date(2027, 4, 1)):
        colleague = signed_in(app, team["colleague"])
        assert colleague.get(exit_page(contract)).status_code == 404
        token_page = "/"
        for path, data in (
            (f"/reviews/{contract.id}/end", {"ending_on": "2027-03-31", "reason": "x"}),
            (f"/reviews/{contract.id}/exit/information_return", {}),
            (f"/reviews/{contract.id}/exit/close", {}),
            (f"/reviews/{contract.id}/exit/override", {"reason": "x"}),
        ):
            data = {"version": str(contract.version), **data}
            assert colleague.post(path, data, token_from=token_page).status_code == 404, path
        foreign = signed_in(app, team["foreign"])
        assert foreign.get(exit_page(contract)).status_code == 404
        # The auditor reads the checklist, without any form, and cannot post.
        auditor = signed_in(app, team["auditor"])
        page = auditor.get(exit_page(contract))
        assert page.status_code == 200
        assert soup(page).select("form[method=post]:not([action='/auth/logout'])") == []
        response = auditor.post(
            f"/reviews/{contract.id}/end",
            {"ending_on": "2027-03-31", "reason": "x", "version": str(contract.version)},
        )
        assert response.status_code == 403
        response = auditor.post(
            f"/reviews/{contract.id}/exit/override",
            {"reason": "x", "version": str(contract.version)},
        )
        assert response.status_code == 403
    assert reload(db, contract).status == "active"


def test_a_service_schedule_has_no_contract_exit(app, db, make, org, team):
    application = approved(db, make, org, team, category="9.3")
    schedule = schedules.schedule_of_application(db, application)
    with pytest.raises(ExitError, match="外部サービス台帳の「廃止」"):
        exits.end_contract(
            db, schedule, team["manager"], ending_on=date(2026, 6, 1), reason="x",
            version=schedule.version,
        )  # fmt: skip
    with at(date(2026, 6, 1)):
        page = signed_in(app, team["staff"]).get(exit_page(schedule))
    assert page.status_code == 302
    assert page.headers["Location"].endswith(f"/applications/{application.id}/checks")


# ---------------------------------------------------------------------------------------------
# External services: 廃止手続中 → 廃止
# ---------------------------------------------------------------------------------------------


def register_row(browser, application, query: str = ""):
    page = browser.get(f"/register{query}")
    assert page.status_code == 200
    return soup(page).select_one(
        f"[data-table=register] tr[data-application-id='{application.id}']"
    )


def check_fields(key: str, **values) -> dict:
    return {f"exit-{key}-{name}": value for name, value in values.items()}


def test_a_retired_service_stays_ending_in_the_register_until_its_exit_checks_are_complete(
    app, db, make, org, team
):
    application = approved(db, make, org, team, category="9.3")
    keys = [item.key for item in lifecycle.exit_items(application)]
    with at(date(2026, 10, 30)):
        approver = signed_in(app, team["approver"])
        approver.submit(
            f"/applications/{application.id}",
            {"action": "retire", "reason": "後継サービスへ移行するため。"},
            "form[data-form=status]",
        )
        application = reload(db, application)
        assert application.status == "ending"
        schedule = schedules.schedule_of_application(db, application)
        assert (schedule.status, schedule.ending_on) == ("ending", date(2026, 10, 30))
        assert schedule.end_reason == "後継サービスへ移行するため。"

        row = register_row(approver, application)
        assert row.select_one("[data-field=status]").get_text(strip=True) == "廃止手続中"
        assert register_row(approver, application, "?status=retired") is None
        assert register_row(approver, application, "?status=ending") is not None
        # Its review date is no longer flagged: it is not confirmed any more.
        application.next_review_on = date(2026, 10, 1)
        db.commit()
        assert register_row(approver, application).select_one("[data-mark=overdue]") is None
        assert register_row(approver, application, "?review=overdue") is None
        # Nothing recorded yet: 廃止 cannot be completed.
        detail = approver.get(f"/applications/{application.id}")
        missing = text_of(detail, "[data-section=retirement] [data-field=exit-missing]")
        assert all(item.label in missing for item in lifecycle.exit_items(application))
        assert soup(detail).select_one("form[data-form=retire-complete]") is None
        refused = approver.post(
            f"/applications/{application.id}/retirement/complete",
            {"version": str(application.version)},
            token_from=f"/applications/{application.id}",
        )
        assert any(
            "利用終了時の確認が終わっていない項目" in m
            for m in flashes(approver.get(refused.headers["Location"]))
        )
        assert reload(db, application).status == "ending"

    with at(date(2026, 11, 6)):
        manager = signed_in(app, team["manager"])
        checks_page = f"/applications/{application.id}/checks"
        page = manager.get(checks_page)
        assert text_of(page, "[data-section=ending] h2") == "廃止手続中"
        # The deletion item needs its certificate.
        without = manager.submit(
            checks_page,
            check_fields("data_deletion", result="done", checked_on="2026-11-05", evidence="受領"),
            "form[action$='/checks/exit/data_deletion']",
        )
        assert without.status_code == 422
        assert "消去証明書のファイルを添付してください" in text_of(
            without, "[data-item='exit.data_deletion'] [data-field=error]"
        )
        with_file = manager.submit(
            checks_page,
            check_fields(
                "data_deletion",
                result="done",
                checked_on="2026-11-05",
                evidence="消去証明書（2026年11月5日受領）",
                certificate=(io.BytesIO(CERTIFICATE), "消去証明書.pdf"),
            ),
            "form[action$='/checks/exit/data_deletion']",
        )
        assert with_file.status_code == 303, flashes(manager.get(checks_page))
        shown = manager.get(checks_page)
        certificate = soup(shown).select_one(
            "[data-item='exit.data_deletion'] [data-field=certificate] [data-file-id]"
        )
        assert certificate.select_one("[data-field=name]").get_text() == "消去証明書.pdf"
        download = manager.post(
            f"/review-files/{certificate['data-file-id']}/download", token_from=checks_page
        )
        assert download.data == CERTIFICATE
        download.close()
        for key in keys:
            if key == "data_deletion":
                continue
            assert (
                soup(manager.get(checks_page)).select_one("form[data-form=retire-complete]") is None
            )
            done = manager.submit(
                checks_page,
                check_fields(key, result="done", checked_on="2026-11-06", evidence="点検記録"),
                f"form[action$='/checks/exit/{key}']",
            )
            assert done.status_code == 303, flashes(done)
        # Still 廃止手続中 until someone completes it.
        assert (
            register_row(manager, application)
            .select_one("[data-field=status]")
            .get_text(strip=True)
            == "廃止手続中"
        )
        completed = manager.submit(checks_page, {}, "form[data-form=retire-complete]")
        assert completed.status_code == 303
    application = reload(db, application)
    assert application.status == "retired"
    assert application.exit_override_reason == ""
    schedule = reload(db, schedule)
    assert (schedule.status, schedule.ended_on) == ("ended", date(2026, 11, 6))
    assert [e["to"] for e in events(db, "application.retire_complete")] == ["retired"]
    with at(date(2026, 11, 6)):
        row = register_row(manager, application, "?status=retired")
        assert row.select_one("[data-field=status]").get_text(strip=True) == "廃止"
        assert row.select_one("[data-mark=exit-override]") is None
        detail = manager.get(f"/applications/{application.id}")
        assert "利用終了時の確認をすべて記録して廃止しました" in text_of(
            detail, "[data-section=retirement] [data-field=retired]"
        )


def test_the_approver_retires_with_a_reason_before_the_checklist_is_complete_the_manager_cannot(
    app, db, make, org, team
):
    application = approved(db, make, org, team)
    with at(date(2026, 10, 30)):
        approvals.change_status(
            db, application, team["approver"], "retire", "利用を終了する。", application.version,
        )  # fmt: skip
        db.commit()
        # The manager may complete a finished checklist, never override an unfinished one.
        with pytest.raises(ApprovalError, match="許可権限者だけ"):
            retirement.retire_with_override(
                db, application, team["manager"], reason="急ぐため", version=application.version
            )
        db.rollback()
        manager = signed_in(app, team["manager"])
        forbidden = manager.post(
            f"/applications/{application.id}/retirement/override",
            {"reason": "急ぐため", "version": str(application.version)},
            token_from=f"/applications/{application.id}",
        )
        assert forbidden.status_code == 403
        assert (
            soup(manager.get(f"/applications/{application.id}")).select_one(
                "form[data-form=retire-override]"
            )
            is None
        )
        with pytest.raises(ApprovalError, match="廃止を完了できるのは"):
            retirement.complete_retirement(
                db, application, team["staff"], version=application.version
            )
        db.rollback()
        assert reload(db, application).status == "ending"

        approver = signed_in(app, team["approver"])
        no_reason = approver.submit(
            f"/applications/{application.id}", {"reason": ""}, "form[data-form=retire-override]"
        )
        assert any(
            "入力してください" in m for m in flashes(approver.get(no_reason.headers["Location"]))
        )
        assert reload(db, application).status == "ending"
        approver.submit(
            f"/applications/{application.id}",
            {"reason": "事業者が消去証明書の発行に応じないため。消去は実地で確認済み。"},
            "form[data-form=retire-override]",
        )
    application = reload(db, application)
    assert application.status == "retired"
    assert (
        application.exit_override_reason
        == "事業者が消去証明書の発行に応じないため。消去は実地で確認済み。"
    )
    schedule = schedules.schedule_of_application(db, application)
    assert (schedule.status, schedule.ended_on) == ("ended", date(2026, 10, 30))
    assert schedule.exit_override_reason == application.exit_override_reason
    [event] = events(db, "application.retire_override")
    assert event["reason"] == application.exit_override_reason
    assert set(event["missing"]) == {i.key for i in lifecycle.exit_items(application)}
    assert events(db, "exit.override")[0]["reason"] == application.exit_override_reason
    with at(date(2026, 10, 30)):
        row = register_row(approver, application, "?status=retired")
        assert row.select_one("[data-mark=exit-override]").get_text() == "確認未了のまま廃止"
        detail = approver.get(f"/applications/{application.id}")
        assert (
            text_of(detail, "[data-field=exit-override-reason]") == application.exit_override_reason
        )
    # A late certificate can still be recorded after 廃止.
    with at(date(2026, 11, 20)):
        lifecycle.record(
            db, application, team["manager"], phase="exit", item_key="data_deletion",
            result="done", checked_on=date(2026, 11, 20), evidence="遅れて受領", note="",
            today=date(2026, 11, 20), upload=Upload("消去証明書.pdf", CERTIFICATE), **storage(app),
        )  # fmt: skip
        db.commit()
    assert db.scalar(
        sa.select(LifecycleCheck.file_id).where(LifecycleCheck.item_key == "data_deletion")
    )


def test_completing_needs_every_exit_item_settled_and_the_certificate_kept(
    app, db, make, org, team
):
    application = approved(db, make, org, team)
    keys = [item.key for item in lifecycle.exit_items(application)]
    with at(date(2026, 10, 30)):
        approvals.change_status(
            db, application, team["approver"], "retire", "利用を終了する。", application.version,
        )  # fmt: skip
        db.commit()
        for key in keys:
            result = "issue" if key == "account_deletion" else "done"
            lifecycle.record(
                db, application, team["manager"], phase="exit", item_key=key, result=result,
                checked_on=date(2026, 10, 30), evidence="点検記録",
                note="APIキーが1件残っている。" if result == "issue" else "",
                today=date(2026, 10, 30),
                upload=Upload("消去証明書.pdf", CERTIFICATE) if key == "data_deletion" else None,
                **storage(app),
            )  # fmt: skip
        db.commit()
        # A matter still to act on keeps the entry 廃止手続中.
        with pytest.raises(ApprovalError, match="アカウント"):
            retirement.complete_retirement(
                db, application, team["approver"], version=application.version
            )
        db.rollback()
        lifecycle.record(
            db, application, team["manager"], phase="exit", item_key="account_deletion",
            result="done", checked_on=date(2026, 10, 30), evidence="APIキーを削除した",
            note="", today=date(2026, 10, 30),
        )  # fmt: skip
        # A certificate that was deleted no longer counts.
        certificate = db.scalar(sa.select(ReviewFile))
        certificate.deleted_at = certificate.uploaded_at
        db.commit()
        assert [i.key for i in lifecycle.exit_missing(db, application)] == ["data_deletion"]
        with pytest.raises(ApprovalError, match="消去証明書"):
            retirement.complete_retirement(
                db, application, team["manager"], version=application.version
            )
        db.rollback()
        with pytest.raises(ApprovalError, match="他の方が更新しました"):
            retirement.complete_retirement(
                db, application, team["approver"], version=application.version - 1
            )
        db.rollback()
        certificate.deleted_at = None
        db.commit()
        retirement.complete_retirement(
            db, application, team["approver"], version=application.version
        )
        db.commit()
    assert reload(db, application).status == "retired"
    # Once complete there is nothing to override.
    assert events(db, "application.retire_override") == []
