"""Ending a contract or a service: the exit checklist (対策基準 9.1(2)⑧⑨, 9.2(7)).

A 業務委託 contract (a schedule whose subject is an assessment):

- ``end_contract``: staff of the responsible department record that the contract ends (the day
  and why). The schedule goes to ``ending`` (終了手続中): the exit checklist
  (``questionnaires/checklists/exit.toml``) opens and no more confirmations are asked for.
- ``record``: one item at a time — done or not applicable (with the reason), the day it was
  checked (not in the future, not before the schedule started) and a note. The item that needs
  a file (the 消去証明書, 9.1(2)⑨) is done only with the certificate uploaded; it is kept as a
  ``ReviewFile`` of the schedule. Records are append-only: the latest record of an item is its
  state, the earlier ones its history.
- ``close``: when every item is recorded, the schedule ``ended`` on the day it is closed;
  ``close_with_override``: before that, only with a recorded reason (audited as
  ``exit.override``) and only by a second person — the 許可権限者 (the approver, checked as
  ``approvals.service.require_approver`` does) or the CISO of the organisation, never the
  department's staff nor anyone who recorded the end or an item (兼務の禁止, 対策基準 2(6),
  9.1(2)⑨; the same rule as ``retirement.retire_with_override`` for a service).

An external service ends through its register entry (``portal/lifecycle/retirement.py``, the
lifecycle checklist's exit items, 9.2(7)); ``begin`` and ``finish`` move its schedule the same
way. Services flush, callers commit; a refused action raises ``ExitError`` and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session, selectinload

from portal.audit import service as audit
from portal.audit.models import AuditEvent
from portal.evidence.scanner import CLEAN, INFECTED, Scanner
from portal.evidence.service import Upload
from portal.lifecycle import checklists
from portal.lifecycle.checklists import Item, Phase
from portal.permissions import Role, same_organisation
from portal.reviews import files
from portal.reviews.models import EXIT_RESULTS, ExitCheck, ReviewFile, ReviewSchedule
from portal.reviews.schedules import can_manage_schedule
from portal.users.models import User
from portal.web import clean_text, format_date, today_jst

MAX_TEXT = 2000
EXIT_LEAD_DAYS = 30  # an end further ahead is recorded later; confirmations go on until then
CERTIFICATE = "deletion_certificate"


class ExitError(ValueError):
    """A refused exit action, with a message in Japanese. Nothing has been changed."""


# ---------------------------------------------------------------------------------------------
# The checklist and its state
# ---------------------------------------------------------------------------------------------


def checklist() -> checklists.Checklist:
    return checklists.contract_exit()


def phase() -> Phase:
    return checklist().phase("exit")


def satisfied(item: Item, record, file: ReviewFile | None) -> bool:
    """Does this record settle the item? A file-backed item (the 消去証明書) needs its file,
    kept and not found infected, unless the item does not apply. Works for contract exit
    records and for the exit records of a service (``LifecycleCheck``) alike."""
    if record is None or record.result == "issue":
        return False
    if not item.requires_file or record.result == "not_applicable":
        return True
    return file_kept(file)


def file_kept(file: ReviewFile | None) -> bool:
    """A file that is there and scanned clean: a file whose scan is pending or failed is
    quarantined (until ``evidence rescan``) and proves nothing yet."""
    return file is not None and file.deleted_at is None and file.scan_status == CLEAN


def history(session: Session, schedule: ReviewSchedule) -> dict[str, list[ExitCheck]]:
    """item key → the item's records, newest first (the first is its state)."""
    found: dict[str, list[ExitCheck]] = defaultdict(list)
    rows = session.scalars(
        sa.select(ExitCheck)
        .where(ExitCheck.schedule_id == schedule.id)
        .options(selectinload(ExitCheck.recorded_by), selectinload(ExitCheck.file))
        .order_by(ExitCheck.id.desc())
    )
    for row in rows:
        found[row.item_key].append(row)
    return found


@dataclass(frozen=True)
class ExitState:
    done: int
    total: int
    missing: tuple[Item, ...]  # not recorded yet, or the certificate is missing

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def label(self) -> str:
        if self.complete:
            return f"完了（全{self.total}項目）"
        return f"{self.total}項目中{self.done}項目実施済み" if self.done else "未着手"


def state(schedule: ReviewSchedule, session: Session | None = None) -> ExitState:
    """How far the contract's exit checklist is: done / total / the items still missing."""
    session = session or object_session(schedule)
    latest = {key: rows[0] for key, rows in history(session, schedule).items()}
    items = phase().items
    missing = tuple(
        item
        for item in items
        if not satisfied(item, latest.get(item.key), getattr(latest.get(item.key), "file", None))
    )
    return ExitState(done=len(items) - len(missing), total=len(items), missing=missing)


# ---------------------------------------------------------------------------------------------
# The schedule's side of every exit (contracts and services)
# ---------------------------------------------------------------------------------------------


def _reason(value: str | None, label: str) -> str:
    return clean_text(value, label, limit=MAX_TEXT, required=True, error=ExitError)


def _record(session: Session, action: str, actor: User, schedule: ReviewSchedule, details):
    audit.record(
        session,
        action,
        actor=actor,
        obj=schedule,
        organisation_id=schedule.organisation_id,
        details={k: (v.isoformat() if isinstance(v, date) else v) for k, v in details.items()},
    )


def begin(
    session: Session, schedule: ReviewSchedule, actor: User, *, ending_on: date, reason: str
) -> None:
    """The contract or service ends: the schedule is ``ending`` and asks no more confirmations
    (open triggers stay as they are, answered by nothing)."""
    schedule.status = "ending"
    schedule.ending_on = ending_on
    schedule.end_reason = reason
    session.flush()
    _record(
        session,
        "exit.start",
        actor,
        schedule,
        {"ending_on": ending_on, "reason": reason, "subject": schedule.kind},
    )


def finish(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    *,
    on: date,
    override_reason: str = "",
    missing: tuple[Item, ...] = (),
) -> None:
    """The exit is over: the schedule ``ended`` on ``on`` — with the checklist complete, or
    with the reason it was ended before (``exit.override``)."""
    schedule.status = "ended"
    schedule.ended_on = on
    schedule.exit_override_reason = override_reason
    session.flush()
    details = {"ended_on": on, "subject": schedule.kind}
    if override_reason:
        details |= {"reason": override_reason, "missing": [item.key for item in missing]}
    _record(session, "exit.override" if override_reason else "exit.close", actor, schedule, details)


def attach(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    upload: Upload,
    *,
    purpose: str,
    evidence_dir: Path | None,
    scanner: Scanner | None,
    max_bytes: int | None,
) -> ReviewFile:
    """Keep an uploaded file (the 消去証明書, or another proof) as a file of the schedule. A
    file found infected is refused and its bytes are removed."""
    if evidence_dir is None or scanner is None or max_bytes is None:
        from flask import current_app

        from portal.evidence import setup

        evidence_dir = evidence_dir or setup.evidence_dir_for(current_app)
        scanner = scanner or setup.scanner_for(current_app)
        max_bytes = max_bytes or setup.max_bytes_for(current_app)
    try:
        row = files.store_file(
            session,
            owner=schedule,
            purpose=purpose,
            upload=upload,
            actor=actor,
            evidence_dir=evidence_dir,
            scanner=scanner,
            max_bytes=max_bytes,
        )
    except files.FileError as exc:
        raise ExitError(str(exc)) from exc
    if row.scan_status == INFECTED:
        files.discard(evidence_dir, [row.stored_name])
        raise ExitError(
            "添付したファイルからウイルスが検出されました。事業者に確認し、"
            "安全なファイルを添付し直してください。"
        )
    return row


def has_file(upload: Upload | None) -> bool:
    return upload is not None and bool(getattr(upload, "filename", None))


# ---------------------------------------------------------------------------------------------
# 業務委託: end, record, close
# ---------------------------------------------------------------------------------------------


def _contract_only(schedule: ReviewSchedule) -> None:
    if schedule.assessment_id is None:
        raise ExitError(
            "外部サービスの利用の終了は、外部サービス台帳の「廃止」から行ってください"
            "（利用終了時の確認、対策基準9.2(7)）。"
        )


def _contract(schedule: ReviewSchedule, actor: User) -> None:
    _contract_only(schedule)
    if not can_manage_schedule(actor, schedule):
        raise ExitError("この契約の終了の手続を行う権限がありません。")


OVERRIDE_BY = "この団体の許可権限者又はCISO（担当課の職員以外の方）"
OVERRIDE_REFUSED = (
    f"確認を終えずに契約を終了できるのは、{OVERRIDE_BY}だけです"
    "（兼務の禁止、対策基準2(6)、9.1(2)⑨）。"
    "担当課では、確認をすべて記録してから「契約を終了する」で終了してください。"
)
SECOND_PERSON_REFUSED = (
    "担当課の職員や、この契約の終了・終了時の確認を記録した方は、確認を終えずに契約を終了する"
    f"ことはできません（兼務の禁止、対策基準2(6)、9.1(2)⑨）。{OVERRIDE_BY}に依頼してください。"
)


def _recorded_exit(session: Session, schedule: ReviewSchedule, actor: User) -> bool:
    """Did ``actor`` record the end of this contract or an item of its checklist?"""
    return (
        session.scalar(
            sa.select(AuditEvent.seq)
            .where(
                AuditEvent.object_type == ReviewSchedule.__tablename__,
                AuditEvent.object_id == str(schedule.id),
                AuditEvent.action.in_(("exit.start", "exit.record")),
                AuditEvent.actor_user_id == actor.id,
            )
            .limit(1)
        )
        is not None
    )


def require_override(session: Session, schedule: ReviewSchedule, actor: User) -> None:
    """Refuse (``ExitError``) unless ``actor`` may close the contract before its checklist is
    complete: the 許可権限者 (as ``approvals.service.require_approver`` checks) or the CISO of the
    schedule's organisation, a second person — neither staff of the responsible department nor
    the one who recorded the end or an item (兼務の禁止, 対策基準 2(6), 9.1(2)⑨)."""
    from portal.approvals import service as approvals  # approvals imports this module

    _contract_only(schedule)
    ciso = Role.CISO in actor.role_set and same_organisation(actor, schedule.organisation_id)
    if not ciso:
        try:
            approvals.require_approver(actor, schedule, OVERRIDE_REFUSED)
        except approvals.ApprovalError as exc:
            raise ExitError(str(exc)) from exc
    if can_manage_schedule(actor, schedule) or _recorded_exit(session, schedule, actor):
        raise ExitError(SECOND_PERSON_REFUSED)


def may_override(session: Session, schedule: ReviewSchedule, actor: User) -> bool:
    """May ``actor`` use ``close_with_override`` on this contract (see ``require_override``)?"""
    try:
        require_override(session, schedule, actor)
    except ExitError:
        return False
    return True


def _check_version(schedule: ReviewSchedule, version: int | None) -> None:
    if schedule.version != version:
        raise ExitError(
            "他の利用者が先にこの契約の情報を変更しました。最新の内容を確認してからやり直してください。"
        )


def end_contract(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    *,
    ending_on: date | None,
    reason: str,
    version: int | None,
) -> None:
    """The contract ends on ``ending_on``: the exit checklist opens (9.1(2)⑨)."""
    _contract(schedule, actor)
    _check_version(schedule, version)
    if schedule.status != "active":
        raise ExitError("この契約は既に終了の手続に入っているか、終了しています。")
    if ending_on is None:
        raise ExitError("契約の終了日を入力してください。")
    if ending_on < schedule.starts_on:
        raise ExitError(
            f"契約の終了日は、確認の開始日（{format_date(schedule.starts_on)}）以降にしてください。"
        )
    if ending_on > today_jst() + timedelta(days=EXIT_LEAD_DAYS):
        raise ExitError(
            f"契約の終了日が{EXIT_LEAD_DAYS}日より先の場合は、終了日が近づいてから記録してください"
            "（それまでは定期確認を続けます）。"
        )
    begin(
        session,
        schedule,
        actor,
        ending_on=ending_on,
        reason=_reason(reason, "契約を終了する理由"),
    )


def record(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    item_key: str,
    *,
    result: str,
    checked_on: date | None,
    note: str = "",
    upload: Upload | None = None,
    today: date | None = None,
    evidence_dir: Path | None = None,
    scanner: Scanner | None = None,
    max_bytes: int | None = None,
) -> ExitCheck:
    """Record one item of the contract's exit checklist. ``evidence_dir`` / ``scanner`` /
    ``max_bytes`` default to the application's evidence store."""
    _contract(schedule, actor)
    if schedule.status not in ("ending", "ended"):
        raise ExitError(
            "契約終了時の確認は、契約の終了を記録してから（終了手続中になってから）記録してください。"
        )
    item = phase().item(item_key)
    if item is None:
        raise ExitError("この確認項目はありません。")
    if result not in EXIT_RESULTS:
        raise ExitError("結果を選んでください。")
    today = today or today_jst()
    if checked_on is None:
        raise ExitError("確認した日を入力してください。")
    if checked_on > today:
        raise ExitError("確認した日に未来の日付は入力できません。")
    if checked_on < schedule.starts_on:
        raise ExitError(
            f"確認した日は、確認の開始日（{format_date(schedule.starts_on)}）以降にしてください。"
        )
    note = (note or "").strip()
    if len(note) > MAX_TEXT:
        raise ExitError(f"メモは{MAX_TEXT}文字以内で入力してください。")
    if result == "not_applicable" and not note:
        raise ExitError("「該当なし」とする理由を入力してください。")
    if item.requires_file and result == "done" and not has_file(upload):
        raise ExitError(
            "消去証明書のファイルを添付してください（対策基準9.1(2)⑨）。"
            "受領していない場合は、受領してから記録してください。"
        )
    file = None
    if has_file(upload):
        file = attach(
            session,
            schedule,
            actor,
            upload,
            purpose=CERTIFICATE if item.requires_file else "evidence",
            evidence_dir=evidence_dir,
            scanner=scanner,
            max_bytes=max_bytes,
        )
    check = ExitCheck(
        schedule_id=schedule.id,
        item_key=item.key,
        checklist_version=checklist().version,
        result=result,
        checked_on=checked_on,
        note=note,
        file_id=file.id if file else None,
        recorded_by_id=actor.id,
    )
    session.add(check)
    session.flush()
    _record(
        session,
        "exit.record",
        actor,
        schedule,
        {
            "check_id": check.id,
            "item_key": item.key,
            "checklist_version": check.checklist_version,
            "result": result,
            "checked_on": checked_on,
            "note": note,
            "file_id": file.id if file else None,
            "sha256": file.sha256 if file else None,
        },
    )
    return check


def close(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    *,
    version: int | None,
    today: date | None = None,
) -> None:
    """Every item is recorded (the certificate with its file): the contract has ended."""
    _contract(schedule, actor)
    _check_version(schedule, version)
    if schedule.status != "ending":
        raise ExitError("終了手続中の契約ではありません。")
    current = state(schedule, session)
    if not current.complete:
        raise ExitError(
            "契約終了時の確認が終わっていない項目があります: "
            + "、".join(item.title for item in current.missing)
        )
    finish(session, schedule, actor, on=today or today_jst())


def close_with_override(
    session: Session,
    schedule: ReviewSchedule,
    actor: User,
    *,
    reason: str,
    version: int | None,
    today: date | None = None,
) -> None:
    """End the contract before its checklist is complete, with the reason recorded — by the
    approver or the CISO, never by the department that recorded the checklist (2(6), 9.1(2)⑨)."""
    require_override(session, schedule, actor)
    _check_version(schedule, version)
    if schedule.status != "ending":
        raise ExitError("終了手続中の契約ではありません。")
    reason = _reason(reason, "確認を終えずに終了する理由")
    current = state(schedule, session)
    if current.complete:
        raise ExitError(
            "契約終了時の確認はすべて記録されています。理由を付けずに「契約を終了する」で終了してください。"
        )
    finish(
        session,
        schedule,
        actor,
        on=today or today_jst(),
        override_reason=reason,
        missing=current.missing,
    )
