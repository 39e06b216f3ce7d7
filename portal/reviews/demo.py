"""Demo data of the periodic confirmation (定期確認), told as of ``DEMO_TODAY`` (2026-11-20):
the decided 業務委託 contracts of the demo organisation in every state — due soon with the
vendor's answer awaited, overdue with a submitted answer and an incident report, confirmed with
findings open and closed, in exit — plus contractor audits planned and reported. The approved
services get their schedules from their decisions (``portal.approvals.demo``).

Idempotent: nothing is done for a contract whose schedule has a confirmation already. Runs
through the real services, then sets the dates the story needs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from portal.assessments import answers as answer_rules
from portal.assessments.demo import DEMO_TODAY
from portal.assessments.models import Assessment
from portal.contractor_audits import service as contractor_audits
from portal.engagements.models import Engagement
from portal.orgs.models import Organisation
from portal.reviews import confirmations, exits, findings, reports, schedules
from portal.reviews.models import ReviewSchedule
from portal.users.models import User
from portal.vendors.corporate_number import with_check_digit
from portal.web import JST

NETWORK = "庁舎ネットワーク運用保守業務委託"
TAX = "税務システム運用支援業務委託"
MINUTES = "会議録作成業務委託"
RECORDS = "旧文書管理システム保守業務委託"


def _user(session: Session, email: str) -> User:
    return session.scalar(sa.select(User).where(User.email == email))


def _schedule(session: Session, org: Organisation, title: str) -> ReviewSchedule | None:
    assessment = session.scalar(
        sa.select(Assessment)
        .join(Engagement, Assessment.engagement_id == Engagement.id)
        .where(Engagement.organisation_id == org.id, Engagement.title == title)
    )
    if assessment is None or assessment.status != "decided":
        return None
    return schedules.open_for_assessment(session, assessment, None)


def _start(schedule: ReviewSchedule, starts_on: date) -> None:
    """The contract was decided on ``starts_on``: its first period starts then."""
    schedule.starts_on = starts_on
    schedule.regular_due_on = schedule.due_on = schedules.regular_due(
        starts_on, schedule.interval_months
    )


def _form(questions, values: dict) -> MultiDict:
    """Form data that answers ``questions`` with ``values`` (what the vendor's browser posts)."""
    form = MultiDict()
    for question in questions:
        name = answer_rules.field_name(question.key)
        value = values.get(question.key)
        if question.type == "multiple":
            for item in value or []:
                form.add(name, item)
        elif question.type == "table":
            rows = value or []
            form[f"{name}:rows"] = str(len(rows))
            for index, row in enumerate(rows):
                for column in question.columns:
                    cell = row.get(column.key, "")
                    form[answer_rules.cell_name(question.key, index, column.key)] = (
                        "" if cell is None else str(cell)
                    )
        elif value is not None:
            form[name] = str(value)
    return form


def _answer(session, confirmation, vendor: User, changes: dict[str, dict] | None = None) -> None:
    """The vendor answers every section "変更なし", except those in ``changes``."""
    changes = changes or {}
    for view in confirmations.section_views(confirmation):
        key = view.section.key
        if key in changes:
            values = {**confirmation.baseline_values(), **changes[key]}
            confirmations.answer_section(
                session,
                confirmation,
                vendor,
                key,
                changed=True,
                raw=_form(view.questions, values),
                note="再委託先を1社追加しました（2026年10月から、夜間の運用監視）。",
                version=confirmation.version,
            )
        else:
            confirmations.answer_section(
                session,
                confirmation,
                vendor,
                key,
                changed=False,
                raw=MultiDict(),
                note="",
                version=confirmation.version,
            )
    confirmations.submit(session, confirmation, vendor, confirmation.version)


def seed(session: Session, org: Organisation) -> None:
    staff = _user(session, "staff@sakuradai.example.jp")  # 情報政策課
    staff2 = _user(session, "staff2@sakuradai.example.jp")  # 市民課
    auditor = _user(session, "auditor@sakuradai.example.jp")  # 総務課
    minato = _user(session, "sales@minato-is.example.com")
    data_centre = _user(session, "info@data-center.example.com")

    # Due in 10 days; the vendor has been asked and has not answered yet.
    network = _schedule(session, org, NETWORK)
    if network is not None and not network.confirmations:
        _start(network, date(2025, 12, 1))
        confirmations.open_confirmation(session, network, staff, date(2026, 11, 2))

    # Overdue by seven weeks (escalated), answered with a changed subcontractor, and an
    # incident the staff have not acknowledged yet.
    tax = _schedule(session, org, TAX)
    if tax is not None and not tax.confirmations:
        _start(tax, date(2025, 10, 1))
        confirmation = confirmations.open_confirmation(session, tax, staff2, date(2026, 9, 1))
        rows = list(confirmation.baseline_values().get("contract.subcontractors") or [])
        rows.append(
            {
                "name": "株式会社夜間監視サービス",
                "identifier": with_check_digit("010001000002"),
                "country": "JP",
                "role": "夜間の運用監視",
                "wholly_owned": "no",
            }
        )
        _answer(
            session,
            confirmation,
            minato,
            {"subcontracting": {"contract.subcontract": "yes", "contract.subcontractors": rows}},
        )
        reports.submit_report(
            session,
            minato,
            tax,
            reports.ReportInput(
                kind="incident",
                occurred_at=datetime.combine(date(2026, 11, 17), time(22, 40), JST),
                summary="運用端末1台がマルウェアに感染した疑いがあり、ネットワークから切り離した。",
                information_affected="運用手順書（住民の情報は含まない）",
                personal_data_affected=False,
                measures="端末の隔離、全端末のウイルス検査、パスワードの変更。",
            ),
            datetime.combine(DEMO_TODAY, time(9), JST).astimezone(UTC),
        )
        contractor_audits.plan(
            session,
            auditor,
            contractor_audits.AuditPlan(
                vendor_company_id=tax.vendor_company_id,
                schedule_id=tax.id,
                department_id=None,
                subcontractor="",
                title="税務システム運用支援業務の実地監査",
                scope="特定個人情報の取扱い、アクセスログ、再委託先の管理",
                method="onsite",
                auditor_id=auditor.id,
                planned_on=date(2026, 12, 10),
            ),
            DEMO_TODAY,
        )

    # Confirmed in June by 書面 (next due in June 2027); one finding closed, one overdue; the
    # subcontractor was audited (reported) with a finding.
    minutes = _schedule(session, org, MINUTES)
    if minutes is not None and not minutes.confirmations:
        _start(minutes, date(2025, 6, 2))
        confirmation = confirmations.open_confirmation(session, minutes, staff, date(2026, 5, 15))
        _answer(session, confirmation, data_centre)
        confirmations.complete(
            session,
            confirmation,
            staff,
            method="document",
            result="報告書及び証跡により、契約どおりの対策の実施を確認した。教育記録の一部に不足あり。",
            today=date(2026, 6, 10),
            version=confirmation.version,
        )
        closed = findings.raise_finding(
            session,
            staff,
            source=confirmation,
            data=findings.FindingInput(
                severity="low",
                title="従事者名簿の更新漏れ",
                description="4月の異動が名簿に反映されていなかった。",
                corrective_action="従事者名簿を更新し、変更の都度提出する。",
                owner_id=staff.id,
                due_on=date(2026, 7, 31),
            ),
            today=date(2026, 6, 10),
        )
        findings.close(
            session,
            closed,
            staff,
            note="7月20日に更新後の名簿を受領した。",
            today=date(2026, 7, 20),
            version=closed.version,
        )
        findings.raise_finding(
            session,
            staff,
            source=confirmation,
            data=findings.FindingInput(
                severity="medium",
                title="情報セキュリティ教育の記録の不足",
                description="従事者3名の受講記録が提出されていない。",
                corrective_action="未受講者に教育を実施し、受講記録を提出させる。",
                owner_id=staff.id,
                due_on=date(2026, 10, 30),
            ),
            today=date(2026, 6, 10),
        )
        audit_row = contractor_audits.plan(
            session,
            auditor,
            contractor_audits.AuditPlan(
                vendor_company_id=minutes.vendor_company_id,
                schedule_id=minutes.id,
                department_id=None,
                subcontractor="",
                title="会議録作成業務のリモート監査",
                scope="音声データの保管と消去、作業場所の入退室管理",
                method="remote",
                auditor_id=auditor.id,
                planned_on=date(2026, 9, 1),
            ),
            date(2026, 8, 20),
        )
        audit_row.created_at = datetime.combine(date(2026, 8, 20), time(10), JST)
        contractor_audits.record_performed(
            session,
            audit_row,
            auditor,
            performed_on=date(2026, 9, 1),
            evidence="入退室記録（8月分）、消去記録、画面共有による保管場所の確認。監査調書は総務課で保管。",
            today=date(2026, 9, 1),
            version=audit_row.version,
        )
        contractor_audits.record_report(
            session,
            audit_row,
            auditor,
            report="おおむね適切。音声データの消去期限の管理に改善の余地がある。",
            reported_on=date(2026, 9, 15),
            today=date(2026, 9, 15),
            version=audit_row.version,
        )
        findings.raise_finding(
            session,
            auditor,
            source=audit_row,
            data=findings.FindingInput(
                severity="medium",
                title="音声データの消去期限の管理",
                description="消去期限を過ぎた音声データが2件残っていた。",
                corrective_action="消去期限の一覧を作り、月次で消去を確認して報告させる。",
                owner_id=staff.id,
                due_on=date(2026, 12, 25),
            ),
            today=date(2026, 9, 15),
        )

    # The contract ended in September: the exit checklist is under way (certificate awaited).
    records = _schedule(session, org, RECORDS)
    if records is not None and records.status == "active" and not records.confirmations:
        _start(records, date(2025, 4, 1))
        exits.end_contract(
            session,
            records,
            staff,
            ending_on=date(2026, 9, 30),
            reason="新しい文書管理システムへの移行が完了したため。",
            version=records.version,
        )
        for key, note in (
            ("information_return", "紙の保存文書（段ボール42箱）の返還を受けた。"),
            ("access_removal", "保守用VPNアカウント3件と入館証を廃止した。"),
            ("handover_migration", "新システムへのデータ移行を検収した。"),
        ):
            exits.record(
                session,
                records,
                staff,
                key,
                result="done",
                checked_on=date(2026, 10, 15),
                note=note,
                today=DEMO_TODAY,
            )

    # Expiry triggers of every schedule, as the daily job would have found them.
    schedules.sync(session, DEMO_TODAY)
    session.flush()
