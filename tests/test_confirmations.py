"""定期確認 (対策基準 9.1(3), 9.2(6)): the confirmation questionnaire as data, opening a
confirmation, the vendor's answers section by section (変更なし / 変更あり with evidence), the
staff's diff, return and completion with the method, the next due date, the external service's
record kept up to date — and every refusal."""

from __future__ import annotations

import io
import json
from datetime import date
from functools import partial

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict

from portal.approvals import service as approvals
from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.permissions import Role
from portal.questionnaires.loader import QuestionnaireError
from portal.reviews import confirmations, schedules
from portal.reviews import questionnaire as bank
from portal.reviews.confirmations import ConfirmationError, SectionInvalid
from portal.reviews.models import Confirmation, ReviewFile
from tests.helpers import Browser, flashes, link_in, outbox, reload, soup, text_of
from tests.test_evidence_files import pdf_bytes
from tests.test_review_web import submitted

OPENED = date(2026, 11, 24)  # a Tuesday


@pytest.fixture
def people(make, org):
    department = make.department(org, "情報政策課")
    other_department = make.department(org, "市民課")
    company = make.company(org, name="株式会社定期確認")
    other_company = make.company(org, name="株式会社別会社")
    return {
        "department": department,
        "staff": make.user(org, roles={Role.STAFF}, departments=[department], name="担当 一郎"),
        "colleague": make.user(org, roles={Role.STAFF}, departments=[department], name="同僚 二郎"),
        "stranger": make.user(
            org, roles={Role.STAFF}, departments=[other_department], name="他課 三郎"
        ),
        "approver": make.user(org, roles={Role.APPROVER}, name="許可 四郎"),
        "company": company,
        "vendor": make.user(org, company=company, name="事業者 五郎"),
        "other_vendor": make.user(org, company=other_company, name="別会社 六郎"),
    }


def contract_schedule(db, make, org, people, **fields):
    """A decided 業務委託 assessment (answered with plausible values) and its schedule."""
    assessment = submitted(
        db, make, org, people, title="窓口業務委託", kind="outsourcing", **fields
    )
    assessment.status = "decided"
    schedule = schedules.open_for_assessment(db, assessment, people["staff"])
    db.commit()
    return schedule


def service_schedule(db, make, org, people):
    """An approved 利用申請 of a service recorded from the provider's assessment (9.2)."""
    assessment = submitted(db, make, org, people, title="クラウド会計サービスの利用")
    assessment.status = "decided"
    db.commit()
    data = approvals.prefill_from(db, assessment)
    data.name = "クラウド会計"
    service = approvals.create_service(db, people["staff"], people["company"].id, data, assessment)
    application = approvals.file(
        db,
        people["staff"],
        approvals.ApplicationInput(
            department_id=people["department"].id,
            service_id=service.id,
            plan_id=None,
            assessment_id=assessment.id,
            purpose="会計事務のため。",
            business="会計事務",
            network_segment="internet",
            max_confidentiality=2,
            personal_data=False,
            specific_personal_data=False,
            sensitive_personal_data=False,
        ),
    )
    application.status, application.decision = "approved", "approve"
    application.decided_by_id, application.decided_at = people["approver"].id, utcnow()
    schedule = schedules.open_for_application(db, application, people["approver"], OPENED)
    db.commit()
    return schedule


def form_of(confirmation, section_key, changes=None) -> MultiDict:
    """The section's fields as the answer form sends them: the values shown, with ``changes``."""
    view = next(v for v in confirmations.section_views(confirmation) if v.key == section_key)
    values = {**view.values, **(changes or {})}
    form = MultiDict()
    for question in view.questions:
        name = f"a:{question.key}"
        value = values.get(question.key)
        if question.type == "table":
            rows = value or []
            form.add(f"{name}:rows", str(len(rows)))
            for n, row in enumerate(rows):
                for column, cell in row.items():
                    form.add(f"{name}:{n}:{column}", cell)
        elif question.type == "multiple":
            for item in value or []:
                form.add(name, item)
        elif value is not None:
            form.add(name, str(value))
    return form


def answer_all(db, confirmation, actor, changed=None, note="変更がありました。"):
    """Every section 変更なし except those in ``changed`` (section → value changes)."""
    changed = changed or {}
    for row in confirmation.sections:
        key = row.section_key
        confirmations.answer_section(
            db,
            confirmation,
            actor,
            key,
            changed=key in changed,
            raw=form_of(confirmation, key, changed.get(key)),
            note=note if key in changed else "",
            version=confirmation.version,
        )


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    assert browser.login(user).status_code == 302
    return browser


def events(db, action):
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


# ---------------------------------------------------------------------------------------------
# The whole way through the web
# ---------------------------------------------------------------------------------------------


def test_a_confirmation_goes_from_opening_to_completion(app, db, make, org, people, time_machine):
    time_machine.move_to("2026-05-20 10:00 +09:00", tick=False)
    schedule = contract_schedule(db, make, org, people)
    assert schedule.due_on == date(2027, 5, 19)
    time_machine.move_to("2026-11-24 10:00 +09:00", tick=False)
    staff = signed_in(app, people["staff"])
    page = staff.get(f"/reviews/{schedule.id}")
    assert text_of(page, "[data-field=due]").startswith("2027年5月19日")
    assert text_of(page, "[data-field=state]") == "予定どおり"

    # Staff open the confirmation; the vendor is asked by e-mail.
    opened = staff.submit(f"/reviews/{schedule.id}", selector="form[data-form=open]")
    assert opened.status_code == 303
    confirmation = db.scalar(sa.select(Confirmation))
    assert (confirmation.number, confirmation.reason, confirmation.status) == (
        1,
        "scheduled",
        "open",
    )
    assert (confirmation.period_from, confirmation.period_to) == (date(2026, 5, 20), OPENED)
    assert confirmation.due_on == date(2027, 5, 19)
    assert "contract.manager_name" in confirmation.baseline_values()
    assert [s.section_key for s in confirmation.sections] == [
        "staff",
        "certifications",
        "subcontracting",
        "incidents",
        "service_level",
        "training",
        "exit",
    ]  # no data-location or personal-data questions apply to this contract
    [mail] = outbox(app)
    assert mail["To"] == people["vendor"].email
    assert link_in(mail).endswith(f"/vendor/confirmations/{confirmation.id}")
    assert events(db, "confirmation.opened")

    # The vendor answers: everything unchanged but the 業務責任者, with a renewed 体制届.
    vendor = signed_in(app, people["vendor"])
    listing = vendor.get("/vendor/confirmations")
    assert text_of(listing, "[data-table=waiting] [data-field=title]") == "窓口業務委託"
    url = f"/vendor/confirmations/{confirmation.id}"
    answer = vendor.get(url)
    assert answer.status_code == 200
    baseline = soup(answer).select_one(
        "[data-section-key=staff] [data-field=baseline] [data-question='contract.manager_name']"
    )
    assert "佐藤一郎" in baseline.get_text()
    for row in confirmation.sections:
        if row.section_key == "staff":
            continue
        saved = vendor.submit(
            url,
            {f"{row.section_key}-change": "unchanged"},
            f"form[action$='/sections/{row.section_key}']",
        )
        assert saved.status_code == 303, row.section_key
    # 変更あり without saying what changed is refused, nothing is saved.
    refused = vendor.submit(
        url,
        {
            "staff-change": "changed",
            "a:contract.manager_name": "公共システム事業部 第二課長 鈴木花子",
        },
        "form[action$='/sections/staff']",
    )
    assert refused.status_code == 422
    assert "変更の概要を入力してください。" in flashes(refused)
    changed = vendor.submit(
        url,
        {
            "staff-change": "changed",
            "staff-note": "2026年10月1日付で業務責任者が交代しました。",
            "a:contract.manager_name": "公共システム事業部 第二課長 鈴木花子",
        },
        "form[action$='/sections/staff']",
    )
    assert changed.status_code == 303
    token = soup(vendor.get(url)).select_one("input[name=csrf_token]")["value"]
    uploaded = vendor.client.post(
        f"{url}/files",
        data={"csrf_token": token, "file": (io.BytesIO(pdf_bytes()), "体制届.pdf")},
    )
    assert uploaded.status_code == 303
    db.rollback()
    assert db.scalar(sa.select(ReviewFile.original_name)) == "体制届.pdf"
    submitted_ = vendor.submit(url, selector="form[data-form=submit]")
    assert submitted_.status_code == 303
    assert reload(db, confirmation).status == "submitted"
    assert confirmation.answered_by_id == people["vendor"].id

    # Staff see the difference against what was confirmed before.
    detail = staff.get(f"/confirmations/{confirmation.id}")
    row = soup(detail).select_one(
        "[data-diff-section=staff] tr[data-question='contract.manager_name']"
    )
    assert row["data-changed"] == "yes"
    assert "佐藤一郎" in row.select_one("[data-field=before]").get_text()
    assert "鈴木花子" in row.select_one("[data-field=after]").get_text()
    assert (
        soup(detail).select_one("[data-diff-section=exit] [data-field=answer]")["data-changed"]
        == "no"
    )
    assert "体制届.pdf" in text_of(detail, "[data-section=files]")

    # Returned with a comment the vendor reads, then handed in again.
    staff.submit(
        f"/confirmations/{confirmation.id}",
        {"comment": "体制届の押印版を添付してください。"},
        "form[data-form=return]",
    )
    assert reload(db, confirmation).status == "returned"
    again = vendor.get(url)
    assert "体制届の押印版を添付してください。" in text_of(again, "[data-field=return-comment]")
    vendor.submit(url, selector="form[data-form=submit]")
    assert reload(db, confirmation).status == "submitted"

    # Completion needs the method; then the next period starts.
    no_method = staff.submit(
        f"/confirmations/{confirmation.id}",
        {"result": "体制の変更を確認した。"},
        "form[data-form=complete]",
    )
    assert no_method.status_code == 422
    assert reload(db, confirmation).status == "submitted"
    done = staff.submit(
        f"/confirmations/{confirmation.id}",
        {"method": "document", "result": "体制の変更を体制届で確認した。問題なし。"},
        "form[data-form=complete]",
    )
    assert done.status_code == 303
    reload(db, confirmation)
    assert (confirmation.status, confirmation.method) == ("completed", "document")
    assert confirmation.checked_by_id == people["staff"].id
    # 12 months from 24 November 2026 end on 23 November 2027, 勤労感謝の日: the next day.
    assert confirmation.next_due_on == date(2027, 11, 24)
    reload(db, schedule)
    assert schedule.last_confirmed_on == OPENED
    assert schedule.due_on == schedule.regular_due_on == date(2027, 11, 24)
    current = schedules.current_values(db, schedule)
    assert current["contract.manager_name"] == "公共システム事業部 第二課長 鈴木花子"
    page = staff.get(f"/reviews/{schedule.id}")
    assert "勤労感謝の日" in text_of(page, "[data-field=holiday-shift]")
    assert text_of(page, "[data-table=confirmations] [data-field=method]") == "書面"
    assert events(db, "confirmation.completed")
    # The vendor never reads the staff's sign-off.
    final = vendor.get(url)
    assert "問題なし" not in soup(final).get_text()
    assert soup(final).select_one("form[data-form=section]") is None


def test_completing_a_service_confirmation_updates_the_service_record(db, make, org, people):
    schedule = service_schedule(db, make, org, people)
    service = schedule.application.service
    assert [r["region"] for r in service.rows("data_locations")] == ["東京都", "大阪府"]
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    assert "locations" in [s.section_key for s in confirmation.sections]
    certificates = confirmation.baseline_values()["certifications.others"]
    renewed = [{**certificates[0], "expires": "2028-03-31"}]
    answer_all(
        db,
        confirmation,
        people["vendor"],
        {
            "locations": {
                "external.data_locations": [
                    {"purpose": "primary", "country": "JP", "region": "東京都"},
                    {"purpose": "backup", "country": "JP", "region": "北海道"},
                ]
            },
            "certifications": {"certifications.others": renewed},
        },
    )
    confirmations.submit(db, confirmation, people["vendor"], confirmation.version)
    rows = {r.key: r for s in confirmations.diff(confirmation) for r in s.rows}
    assert rows["external.data_locations"].changed
    assert "地域（都道府県・リージョン）: 北海道" in rows["external.data_locations"].after
    assert "用途: バックアップ" in rows["external.data_locations"].after
    assert not rows["external.sla_availability"].changed
    confirmations.complete(
        db,
        confirmation,
        people["staff"],
        method="remote",
        result="ウェブ会議で確認した。",
        today=OPENED,
        version=confirmation.version,
    )
    db.commit()
    db.refresh(service)
    assert [r["region"] for r in service.rows("data_locations")] == ["東京都", "北海道"]
    assert service.rows("certificates")[0]["expires"] == "2028-03-31"
    assert service.earliest_expiry == min(until for _label, until in service.expiries())
    update = events(db, "service.update")[-1]
    assert json.loads(update.details)["confirmation_id"] == confirmation.id
    assert schedule.application.next_review_on == schedule.due_on


# ---------------------------------------------------------------------------------------------
# Opening
# ---------------------------------------------------------------------------------------------


def test_a_confirmation_is_due_no_sooner_than_two_weeks_and_names_its_trigger(
    db, make, org, people
):
    schedule = contract_schedule(db, make, org, people)
    schedules.add_trigger(
        db,
        schedule,
        "incident",
        key="report:1",
        occurred_on=date(2026, 11, 20),
        detail="誤送信",
    )
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    assert confirmation.reason == "incident"
    # Due on 27 November by the trigger, but the vendor gets two weeks: 8 December (Tue).
    assert confirmation.due_on == date(2026, 12, 8)
    with pytest.raises(ConfirmationError, match="まだ完了していない定期確認があります"):
        confirmations.open_confirmation(db, schedule, people["staff"], OPENED)


def test_open_due_opens_what_is_coming_due_once(db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    far = schedule.due_on
    assert confirmations.open_due(db, far.replace(year=far.year - 1)) == []
    [opened] = confirmations.open_due(db, far)
    assert opened.schedule_id == schedule.id and opened.opened_by_id is None
    assert confirmations.open_due(db, far) == []  # one is open already
    db.commit()
    assert events(db, "confirmation.opened")[0].actor_label == "定期処理"


def test_ended_contracts_are_never_confirmed(db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    schedule.status = "ending"
    with pytest.raises(ConfirmationError, match="終了した契約・サービスの定期確認は回答できません"):
        answer_all(db, confirmation, people["vendor"])
    schedule.status = "ended"
    db.flush()
    with pytest.raises(
        ConfirmationError, match="^終了した契約・サービスの定期確認は開始できません。$"
    ):
        confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    confirmation.status = "submitted"
    with pytest.raises(ConfirmationError, match="完了できません"):
        confirmations.complete(
            db,
            confirmation,
            people["colleague"],
            method="document",
            result="確認した。",
            today=OPENED,
            version=confirmation.version,
        )
    assert confirmations.open_due(db, date(2030, 1, 1)) == []


# ---------------------------------------------------------------------------------------------
# Answering and reviewing: refusals
# ---------------------------------------------------------------------------------------------


def test_changed_sections_are_validated_like_the_assessment(db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    vendor = people["vendor"]

    def answer(changes, note="稼働率を見直しました。"):
        return confirmations.answer_section(
            db,
            confirmation,
            vendor,
            "service_level",
            changed=True,
            raw=form_of(confirmation, "service_level", changes),
            note=note,
            version=confirmation.version,
        )

    with pytest.raises(SectionInvalid) as invalid:
        answer({"contract.availability": "101"})
    assert invalid.value.errors == {"contract.availability": "100以下の値を入力してください。"}
    with pytest.raises(SectionInvalid) as missing:
        answer({"contract.rto": None})
    assert missing.value.errors == {"contract.rto": "入力してください。"}
    with pytest.raises(ConfirmationError, match="前回確認した内容から変わっていません"):
        answer({})
    with pytest.raises(ConfirmationError, match="変更の概要を入力してください"):
        answer({"contract.availability": "99.9"}, note="")
    row = answer({"contract.availability": "99.9"})
    assert row.value_map()["contract.availability"] == 99.9

    # A follow-up that no longer applies is cleared, not kept.
    confirmations.answer_section(
        db,
        confirmation,
        vendor,
        "subcontracting",
        changed=True,
        raw=form_of(confirmation, "subcontracting", {"contract.subcontract": "no"}),
        note="再委託をやめました。",
        version=confirmation.version,
    )
    values = next(s for s in confirmation.sections if s.section_key == "subcontracting").value_map()
    assert values["contract.subcontract"] == "no"
    assert values["contract.subcontractors"] is None

    with pytest.raises(ConfirmationError, match="未回答: 体制・責任者"):
        confirmations.submit(db, confirmation, vendor, confirmation.version)


def test_a_stale_form_is_refused(db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    old = confirmation.version
    confirmations.answer_section(
        db, confirmation, people["vendor"], "staff", changed=False, raw={}, note="", version=old
    )
    assert confirmation.version > old
    with pytest.raises(ConfirmationError, match="他の利用者が先にこの定期確認を更新しました"):
        confirmations.answer_section(
            db, confirmation, people["vendor"], "exit", changed=False, raw={}, note="", version=old
        )
    answer_all(db, confirmation, people["vendor"])
    with pytest.raises(ConfirmationError, match="他の利用者が先に"):
        confirmations.submit(db, confirmation, people["vendor"], old)


def test_the_one_who_answered_never_checks(db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    # The vendor answered on paper; the staff member keys it in.
    answer_all(db, confirmation, people["staff"])
    confirmations.submit(db, confirmation, people["staff"], confirmation.version)
    with pytest.raises(ConfirmationError, match="兼務の禁止"):
        confirmations.complete(
            db,
            confirmation,
            people["staff"],
            method="document",
            result="書面で確認した。",
            today=OPENED,
            version=confirmation.version,
        )
    with pytest.raises(ConfirmationError, match="確認の方法"):
        confirmations.complete(
            db,
            confirmation,
            people["colleague"],
            method=None,
            result="書面で確認した。",
            today=OPENED,
            version=confirmation.version,
        )
    with pytest.raises(ConfirmationError, match="確認の結果を入力してください"):
        confirmations.complete(
            db,
            confirmation,
            people["colleague"],
            method="document",
            result=" ",
            today=OPENED,
            version=confirmation.version,
        )
    confirmations.complete(
        db,
        confirmation,
        people["colleague"],
        method="document",
        result="書面で確認した。",
        today=OPENED,
        version=confirmation.version,
    )
    db.commit()
    assert confirmation.checked_by_id == people["colleague"].id
    # The database holds the rule too.
    confirmation.checked_by_id = confirmation.answered_by_id
    with pytest.raises(IntegrityError):
        db.flush()
    db.rollback()


def test_other_vendors_and_departments_do_not_find_it(app, db, make, org, people):
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    db.commit()
    other_vendor = signed_in(app, people["other_vendor"])
    assert other_vendor.get(f"/vendor/confirmations/{confirmation.id}").status_code == 404
    posted = other_vendor.post(
        f"/vendor/confirmations/{confirmation.id}/sections/staff", {"staff-change": "unchanged"}
    )
    assert posted.status_code == 404
    listing = other_vendor.get("/vendor/confirmations")
    assert "窓口業務委託" not in soup(listing).get_text()
    stranger = signed_in(app, people["stranger"])
    assert stranger.get(f"/reviews/{schedule.id}").status_code == 404
    assert stranger.get(f"/confirmations/{confirmation.id}").status_code == 404
    assert (
        stranger.post(f"/confirmations/{confirmation.id}/return", {"comment": "x"}).status_code
        == 404
    )
    # A reader of the whole organisation sees it, but does not manage it.
    approver = signed_in(app, people["approver"])
    assert approver.get(f"/confirmations/{confirmation.id}").status_code == 200
    assert (
        approver.post(f"/reviews/{schedule.id}/confirmations", {"version": "1"}).status_code == 403
    )
    db.rollback()
    assert reload(db, confirmation).status == "open"


def test_staff_key_in_a_paper_reply_through_the_web(app, db, make, org, people, time_machine):
    time_machine.move_to("2026-11-24 10:00 +09:00", tick=False)
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    db.commit()
    colleague = signed_in(app, people["colleague"])
    url = f"/confirmations/{confirmation.id}/answer"
    page = colleague.get(url)
    assert "代理入力" in text_of(page, "[data-field=keying-in]")
    for row in confirmation.sections:
        key = row.section_key
        colleague.submit(url, {f"{key}-change": "unchanged"}, f"form[action$='/sections/{key}']")
    submitted_ = colleague.submit(url, selector="form[data-form=submit]")
    assert submitted_.status_code == 303
    assert reload(db, confirmation).answered_by_id == people["colleague"].id
    detail = colleague.get(f"/confirmations/{confirmation.id}")
    assert soup(detail).select_one("form[data-form=complete]") is None
    assert "兼務の禁止" in text_of(detail, "[data-field=second-person]")


# ---------------------------------------------------------------------------------------------
# The questionnaire as data
# ---------------------------------------------------------------------------------------------


def test_the_confirmation_questionnaire_reuses_the_question_bank():
    questionnaire = bank.latest()
    assert (questionnaire.key, questionnaire.version) == ("periodic", "2026.11")
    assert questionnaire.section("staff").questions[1].key == "contract.manager_name"
    assert all("9.1(3)" in s.cites for s in questionnaire.sections)
    assert questionnaire.base.question("contract.availability") in questionnaire.questions


BAD = """
key = "periodic"
version = "2026.12"
title = "定期確認票"

[[section]]
key = "staff"
title = "体制"
cites = ["9.1(3)", "第9条"]
questions = ["contract.manager_name", "contract.no_such_question", "certifications.certificate_evidence"]

[[section]]
key = "again"
title = "重複"
cites = ["9.2(6)"]
questions = ["contract.manager_name"]
"""


def test_the_questionnaire_check_names_a_bad_key(tmp_path, runner, monkeypatch):
    (tmp_path / "broken.toml").write_text(BAD, encoding="utf-8")
    loaded, problems = bank.check(tmp_path)
    assert loaded == []
    text = "\n".join(problems)
    assert "contract.no_such_question" in text and "section[staff]" in text
    assert "certifications.certificate_evidence" in text  # evidence: attach to the confirmation
    assert "'第9条'" in text
    assert "section[again]" in text and "contract.manager_name" in text
    with pytest.raises(QuestionnaireError):
        bank.parse({"key": "x"}, "x.toml", {})

    assert runner.invoke(args=["questionnaires", "check"]).exit_code == 0
    monkeypatch.setattr(bank, "check", partial(bank.check, tmp_path))
    result = runner.invoke(args=["questionnaires", "check"])
    assert result.exit_code == 1
    assert "contract.no_such_question" in result.output


def test_the_answer_form_shows_errors_beside_fields_and_adds_table_rows(
    app, db, make, org, people, time_machine
):
    time_machine.move_to("2026-11-24 10:00 +09:00", tick=False)
    schedule = contract_schedule(db, make, org, people)
    confirmation = confirmations.open_confirmation(db, schedule, people["staff"], OPENED)
    db.commit()
    vendor = signed_in(app, people["vendor"])
    url = f"/vendor/confirmations/{confirmation.id}"
    wrong = vendor.submit(
        url,
        {
            "service_level-change": "changed",
            "service_level-note": "稼働率を変更",
            "a:contract.availability": "101",
        },
        "form[action$='/sections/service_level']",
    )
    assert wrong.status_code == 422
    field = soup(wrong).select_one("form .question[data-question='contract.availability']")
    assert (
        field.select_one(".field__error").get_text(strip=True) == "100以下の値を入力してください。"
    )
    assert field.select_one("input")["value"] == "101"  # what was typed is kept
    db.rollback()
    reload(db, confirmation)
    assert {s.section_key: s.changed for s in confirmation.sections}["service_level"] is None

    rows_before = len(
        soup(vendor.get(url)).select("form [data-question='contract.subcontractors'] tbody tr")
    )
    more = vendor.submit(
        url,
        {"add_row": "contract.subcontractors"},
        "form[action$='/sections/subcontracting']",
    )
    assert more.status_code == 200
    table = soup(more).select("form [data-question='contract.subcontractors'] tbody tr")
    assert len(table) == rows_before + 1
    assert (
        soup(more)
        .select_one("[data-section-key=subcontracting] [data-field=values]")
        .has_attr("open")
    )


def test_staff_change_the_interval_on_the_schedule_page(app, db, make, org, people, time_machine):
    time_machine.move_to("2026-11-24 10:00 +09:00", tick=False)
    schedule = contract_schedule(db, make, org, people)
    staff = signed_in(app, people["staff"])
    url = f"/reviews/{schedule.id}"
    refused = staff.submit(url, {"months": "0"}, "form[data-form=interval]")
    assert refused.status_code == 422
    assert reload(db, schedule).interval_months == 12
    changed = staff.submit(url, {"months": "6"}, "form[data-form=interval]")
    assert changed.status_code == 303
    reload(db, schedule)
    assert (schedule.interval_months, schedule.interval_custom) == (6, True)
    # Six months from 24 November 2026 end on 23 May 2027, a Sunday: due on Monday the 24th.
    assert schedule.due_on == date(2027, 5, 24)
    page = staff.get(url)
    assert "日曜日" in text_of(page, "[data-field=holiday-shift]")
    assert text_of(page, "[data-field=interval]") == "6か月（個別に設定）"
