"""廃止 of a register entry: from 廃止手続中 to 廃止 (対策基準 9.2(7)).

The approver's 廃止 (``approvals.change_status``) puts the entry in ``ending`` (廃止手続中) and
its review schedule in ``ending``: the 外部サービス管理者 records the exit items of the lifecycle
checklist (the 消去証明書 with its file). Then:

- ``complete_retirement``: the approver or the current 外部サービス管理者, once every exit item is
  settled (recorded, no matter left to act on, the certificate kept) → ``retired``, the
  schedule ``ended``;
- ``retire_with_override``: the approver only (never the manager alone), before that, with the
  reason recorded on the entry (``exit_override_reason``) and the schedule.

Services flush, callers commit; a refused action raises ``ApprovalError`` and changes nothing.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from portal.approvals import service as approvals
from portal.approvals.models import UseApplication
from portal.approvals.service import ApprovalError
from portal.lifecycle import service as lifecycle
from portal.permissions import Permission, can
from portal.reviews import exits, schedules
from portal.users.models import User
from portal.web import today_jst


def is_approver(actor: User, application: UseApplication) -> bool:
    return (
        can(actor, Permission.APPLICATIONS_DECIDE)
        and actor.organisation_id == application.organisation_id
    )


def may_complete(actor: User, application: UseApplication) -> bool:
    """The approver, or the entry's current 外部サービス管理者."""
    return is_approver(actor, application) or (
        actor.organisation_id == application.organisation_id
        and approvals.manager_of(application, actor)
    )


def _ending(application: UseApplication, version: int | None) -> None:
    approvals.check_version(application, version)
    if application.status != "ending":
        raise ApprovalError("廃止手続中のサービスではありません。")


def _missing_labels(missing) -> str:
    return "、".join(f"「{item.label}」" for item in missing)


def complete_retirement(
    session: Session,
    application: UseApplication,
    actor: User,
    *,
    version: int | None,
    today: date | None = None,
) -> None:
    """Every exit item is settled: the entry is 廃止 and its schedule ends."""
    if not may_complete(actor, application):
        raise ApprovalError(
            "廃止を完了できるのは、許可権限者又はこのサービスの外部サービス管理者だけです。"
        )
    _ending(application, version)
    missing = lifecycle.exit_missing(session, application)
    if missing:
        raise ApprovalError(
            "利用終了時の確認が終わっていない項目があります（対策基準9.2(7)）: "
            + _missing_labels(missing)
            + "。要対応事項が残る項目は対応後に記録し直し、消去証明書はファイルを添付してください。"
        )
    today = today or today_jst()
    approvals.move(
        session,
        application,
        "retire_complete",
        actor,
        details={"exit_items": len(lifecycle.exit_items(application))},
    )
    schedule = schedules.schedule_of_application(session, application)
    if schedule is not None and schedule.status != "ended":
        exits.finish(session, schedule, actor, on=today)


def retire_with_override(
    session: Session,
    application: UseApplication,
    actor: User,
    *,
    reason: str,
    version: int | None,
    today: date | None = None,
) -> None:
    """The approver retires the entry before its exit checklist is complete, with the reason
    (kept on the entry and shown in the register)."""
    if not is_approver(actor, application):
        raise ApprovalError(
            "利用終了時の確認を終えずに廃止できるのは、許可権限者だけです"
            "（外部サービス管理者は、確認を記録してから廃止を完了してください）。"
        )
    _ending(application, version)
    reason = (reason or "").strip()
    if not reason:
        raise ApprovalError("利用終了時の確認を終えずに廃止する理由を入力してください。")
    if len(reason) > approvals.MAX_TEXT:
        raise ApprovalError(f"理由は{approvals.MAX_TEXT}文字以内で入力してください。")
    missing = lifecycle.exit_missing(session, application)
    if not missing:
        raise ApprovalError(
            "利用終了時の確認はすべて記録されています。理由を付けずに「廃止を完了する」で廃止してください。"
        )
    today = today or today_jst()
    application.exit_override_reason = reason
    approvals.move(
        session,
        application,
        "retire_override",
        actor,
        details={"reason": reason, "missing": [item.key for item in missing]},
    )
    schedule = schedules.schedule_of_application(session, application)
    if schedule is not None and schedule.status != "ended":
        exits.finish(session, schedule, actor, on=today, override_reason=reason, missing=missing)
