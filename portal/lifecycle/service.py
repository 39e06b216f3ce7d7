"""Recording the build, operation and exit checks of a register entry and reading their state
(対策基準 9.2(5)–(7)).

Who and when: only the entry's current 外部サービス管理者 (holding ``LIFECYCLE_RECORD``) records.
Build and operation checks are recorded while the entry is in use or suspended (承認・条件付承認・
停止); exit checks also while it is being retired (廃止手続中: the approver's 廃止 opens the exit
checklist, ``portal/lifecycle/retirement.py``) and after it has been retired, because a late
deletion certificate is still worth keeping. The latest record of an item is its state.
A record needs its evidence (what shows it and where it is kept) unless the item does not apply;
"issue" needs the matter to act on and "not applicable" the reason, in the note. An item marked
``requires_file`` (the 消去証明書, 9.2(7)①(イ)) is done only with the file uploaded; it is kept as a
file of the entry's review schedule and counts only while it is kept.

Operation checks recur: an item is current while its latest record is less than
``interval_months`` old (the period counted as 民法143条 does, like the periodic review); the next
check is due on the earliest last day of those periods, and for an item never checked on the last
day of the period starting on the decision date. Only entries in use can be overdue."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.approvals.models import ACTIVE_STATES, UseApplication
from portal.approvals.service import manager_of
from portal.audit import service as audit
from portal.evidence.scanner import Scanner
from portal.evidence.service import Upload
from portal.lifecycle import checklists
from portal.lifecycle.models import RESULTS, LifecycleCheck
from portal.permissions import Permission, can
from portal.reviews import exits, schedules
from portal.scoring.ismap import add_months_period_end
from portal.users.models import User
from portal.web import JST, clean_text, format_date

MAX_TEXT = 2000
RECORDING_STATES = {
    "build": ("approved", "conditional", "suspended"),
    "operation": ("approved", "conditional", "suspended"),
    "exit": ("approved", "conditional", "suspended", "ending", "retired"),
}


class LifecycleError(ValueError):
    """A refused record, with a message in Japanese. Nothing has been changed."""


@dataclass(frozen=True)
class LifecycleState:
    build_done: int
    build_total: int
    operation_current: int
    operation_total: int
    operation_last: date | None
    operation_next_due: date | None
    operation_overdue: bool
    exit_done: int
    exit_total: int
    open_issues: int

    @property
    def build_label(self) -> str:
        return _progress(self.build_done, self.build_total)

    @property
    def exit_label(self) -> str:
        return _progress(self.exit_done, self.exit_total)

    @property
    def operation_label(self) -> str:
        if not self.operation_total:
            return "対象外"
        due = format_date(self.operation_next_due)
        if self.operation_overdue:
            return f"期限超過（期限 {due}）"
        if self.operation_last is None:
            return f"未実施（期限 {due}）" if due else "未実施"
        return f"最終 {format_date(self.operation_last)}・次回 {due}"

    @property
    def issues_label(self) -> str:
        return f"要対応 {self.open_issues}件" if self.open_issues else ""


def _progress(done: int, total: int) -> str:
    if not total:
        return "対象外"
    if done >= total:
        return f"完了（{done}/{total}）"
    if not done:
        return "未着手"
    return f"{done}/{total} 実施"


def decision_date(application: UseApplication) -> date | None:
    """The day of the approval, in Japan."""
    decided = application.decided_at
    return decided.astimezone(JST).date() if decided else None


def recorded(item: checklists.Item, record: LifecycleCheck | None) -> bool:
    """Does the item count as checked? A file-backed item needs its file unless it does not
    apply."""
    if record is None:
        return False
    if not item.requires_file or record.result == "not_applicable":
        return True
    return exits.file_kept(record.file)


def latest_records(
    checks: list[LifecycleCheck],
) -> dict[tuple[str, str], LifecycleCheck]:
    """(phase, item key) → the item's latest record (the one recorded last)."""
    latest: dict[tuple[str, str], LifecycleCheck] = {}
    for check in sorted(checks, key=lambda c: c.id):
        latest[(check.phase, check.item_key)] = check
    return latest


def operation_due(
    application: UseApplication, record: LifecycleCheck | None, interval_months: int
) -> date | None:
    """The day by which an operation item must be checked (again): the last day of the period
    starting on its last check, or on the decision date when it was never checked."""
    since = record.checked_on if record else decision_date(application)
    return add_months_period_end(since, interval_months) if since else None


def _state(
    application: UseApplication,
    checks: list[LifecycleCheck],
    checklist: checklists.Checklist,
    today: date,
) -> LifecycleState:
    latest = latest_records(checks)
    counts: dict[str, int] = {}
    totals: dict[str, int] = {}
    issues = 0
    for phase in checklist.phases:
        items = phase.items_for(application.category)
        totals[phase.key] = len(items)
        counts[phase.key] = sum(
            1 for item in items if recorded(item, latest.get((phase.key, item.key)))
        )
        issues += sum(
            1
            for item in items
            if (record := latest.get((phase.key, item.key))) and record.result == "issue"
        )

    operation = checklist.phase("operation")
    items = operation.items_for(application.category) if operation else ()
    interval = (operation.interval_months if operation else None) or 12
    last: date | None = None
    due: date | None = None
    current = 0
    for item in items:
        record = latest.get(("operation", item.key))
        if record:
            last = max(last, record.checked_on) if last else record.checked_on
        item_due = operation_due(application, record, interval)
        if item_due is None:
            continue
        if record and item_due >= today:
            current += 1
        due = min(due, item_due) if due else item_due
    return LifecycleState(
        build_done=counts.get("build", 0),
        build_total=totals.get("build", 0),
        operation_current=current,
        operation_total=len(items),
        operation_last=last,
        operation_next_due=due,
        operation_overdue=bool(due and due < today and application.status in ACTIVE_STATES),
        exit_done=counts.get("exit", 0),
        exit_total=totals.get("exit", 0),
        open_issues=issues,
    )


def checks_of(session: Session, application_ids: list[int]) -> dict[int, list[LifecycleCheck]]:
    """Every record of the given entries in one query, oldest first."""
    found: dict[int, list[LifecycleCheck]] = defaultdict(list)
    if not application_ids:
        return found
    rows = session.scalars(
        sa.select(LifecycleCheck)
        .where(LifecycleCheck.application_id.in_(application_ids))
        .options(selectinload(LifecycleCheck.file))
        .order_by(LifecycleCheck.application_id, LifecycleCheck.id)
    )
    for row in rows:
        found[row.application_id].append(row)
    return found


def states_for(
    session: Session, applications: list[UseApplication], today: date
) -> dict[int, LifecycleState]:
    """application id → its lifecycle state, with one query for all of them."""
    checklist = checklists.latest()
    checks = checks_of(session, [a.id for a in applications])
    return {a.id: _state(a, checks.get(a.id, []), checklist, today) for a in applications}


def state_of(session: Session, application: UseApplication, today: date) -> LifecycleState:
    return states_for(session, [application], today)[application.id]


def history_of(
    session: Session, application: UseApplication
) -> dict[tuple[str, str], list[LifecycleCheck]]:
    """(phase, item key) → the item's records, newest first (the first is its state)."""
    found: dict[tuple[str, str], list[LifecycleCheck]] = defaultdict(list)
    rows = session.scalars(
        sa.select(LifecycleCheck)
        .where(LifecycleCheck.application_id == application.id)
        .options(selectinload(LifecycleCheck.recorded_by), selectinload(LifecycleCheck.file))
        .order_by(LifecycleCheck.id.desc())
    )
    for row in rows:
        found[(row.phase, row.item_key)].append(row)
    return found


def exit_items(application: UseApplication) -> tuple[checklists.Item, ...]:
    stage = checklists.latest().phase("exit")
    return stage.items_for(application.category) if stage else ()


def exit_missing(session: Session, application: UseApplication) -> tuple[checklists.Item, ...]:
    """The exit items (9.2(7)) not settled yet: not recorded, recorded with a matter still to act
    on ("issue"), or the 消去証明書 without its file."""
    latest = latest_records(checks_of(session, [application.id]).get(application.id, []))
    return tuple(
        item
        for item in exit_items(application)
        if not exits.satisfied(
            item,
            record := latest.get(("exit", item.key)),
            record.file if record is not None else None,
        )
    )


def may_record(application: UseApplication, actor: User) -> bool:
    """Is ``actor`` the one who records this entry's checks (its current 外部サービス管理者)?"""
    return (
        can(actor, Permission.LIFECYCLE_RECORD)
        and actor.organisation_id == application.organisation_id
        and manager_of(application, actor)
    )


def recordable_phases(application: UseApplication, actor: User) -> tuple[str, ...]:
    """The phases ``actor`` may record for this entry in its present status."""
    if not may_record(application, actor):
        return ()
    return tuple(p for p, states in RECORDING_STATES.items() if application.status in states)


def _text(value: str | None, label: str, *, required: bool) -> str:
    return clean_text(value, label, limit=MAX_TEXT, required=required, error=LifecycleError)


def record(
    session: Session,
    application: UseApplication,
    actor: User,
    *,
    phase: str,
    item_key: str,
    result: str,
    checked_on: date | None,
    evidence: str,
    note: str,
    today: date,
    upload: Upload | None = None,
    evidence_dir: Path | None = None,
    scanner: Scanner | None = None,
    max_bytes: int | None = None,
) -> LifecycleCheck:
    """The current 外部サービス管理者 records one item's check, with the uploaded file where
    the item needs one (kept as a file of the entry's review schedule; ``evidence_dir`` /
    ``scanner`` / ``max_bytes`` default to the application's evidence store). Flushes, never
    commits."""
    if not may_record(application, actor):
        raise LifecycleError(
            "構築・運用・利用終了時の確認を記録できるのは、"
            "このサービスの現在の外部サービス管理者だけです。"
        )
    checklist = checklists.latest()
    stage = checklist.phase(phase)
    item = stage.item(item_key) if stage else None
    if stage is None or item is None or not item.applies_to(application.category):
        raise LifecycleError("この確認項目はありません。")
    if application.status not in RECORDING_STATES[phase]:
        if phase == "exit":
            raise LifecycleError(
                "利用終了時の確認を記録できるのは、台帳に載ったサービスだけです（却下・申請中を除く）。"
            )
        raise LifecycleError(
            f"{stage.title}の確認を記録できるのは、利用中（承認・条件付承認・停止）の"
            "サービスだけです。"
        )
    if result not in RESULTS:
        raise LifecycleError("結果を選んでください。")
    if checked_on is None:
        raise LifecycleError("確認した日を入力してください。")
    if checked_on > today:
        raise LifecycleError("確認した日に未来の日付は入力できません。")
    started = decision_date(application)
    if started is not None and checked_on < started:
        raise LifecycleError(
            f"確認した日は、利用の承認日（{format_date(started)}）以降の日付にしてください。"
        )
    evidence = _text(evidence, "証跡（確認の根拠と保管場所）", required=result != "not_applicable")
    note = _text(
        note,
        "要対応事項" if result == "issue" else "該当しない理由" if result != "done" else "メモ",
        required=result != "done",
    )
    if item.requires_file and result == "done" and not exits.has_file(upload):
        raise LifecycleError(
            "消去証明書のファイルを添付してください（対策基準9.2(7)①(イ)）。"
            "受領していない場合は、受領してから記録してください。"
        )
    file = None
    if exits.has_file(upload):
        schedule = schedules.schedule_of_application(session, application)
        if schedule is None:
            raise LifecycleError(
                "このサービスには定期確認の予定がないため、ファイルを添付できません。"
                "システム管理者に連絡してください。"
            )
        try:
            file = exits.attach(
                session,
                schedule,
                actor,
                upload,
                purpose=exits.CERTIFICATE if item.requires_file else "evidence",
                evidence_dir=evidence_dir,
                scanner=scanner,
                max_bytes=max_bytes,
            )
        except exits.ExitError as exc:
            raise LifecycleError(str(exc)) from exc
    check = LifecycleCheck(
        application_id=application.id,
        phase=phase,
        item_key=item_key,
        checklist_version=checklist.version,
        result=result,
        checked_on=checked_on,
        evidence=evidence,
        note=note,
        file_id=file.id if file else None,
        recorded_by_id=actor.id,
    )
    session.add(check)
    session.flush()
    audit.record(
        session,
        "lifecycle.record",
        actor=actor,
        obj=application,
        details={
            "check_id": check.id,
            "phase": phase,
            "item_key": item_key,
            "checklist_version": checklist.version,
            "result": result,
            "checked_on": checked_on.isoformat(),
            "evidence": evidence,
            "note": note,
            "file_id": file.id if file else None,
            "sha256": file.sha256 if file else None,
        },
    )
    return check
