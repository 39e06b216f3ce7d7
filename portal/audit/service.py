"""Record, verify and purge audit events.

Callers pass the actor and object; the request's IP and ID come from ``audit_context``, which the
web layer fills for each request (``cli`` for commands), so services never read ``request``.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.models import AuditChain, AuditEvent
from portal.db import utcnow

GENESIS_HASH = "0" * 64
CHAIN_ID = 1
# The head row the initial migration inserts; the chain starts from it.
GENESIS_CHAIN_HEAD = {
    "id": CHAIN_ID,
    "last_seq": 0,
    "last_hash": GENESIS_HASH,
    "anchor_seq": 0,
    "anchor_hash": GENESIS_HASH,
}


@dataclass(frozen=True)
class AuditContext:
    ip: str = ""
    request_id: str = ""


audit_context: contextvars.ContextVar[AuditContext] = contextvars.ContextVar(
    "audit_context",
    default=AuditContext(ip="cli", request_id=""),  # noqa: B039 (frozen)
)


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "action": event.action,
        "actor_user_id": event.actor_user_id,
        "actor_label": event.actor_label,
        "organisation_id": event.organisation_id,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "ip": event.ip,
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def _advance_chain(session: Session) -> tuple[int, str]:
    """Reserve the next sequence number; the UPDATE locks the head until the transaction ends."""
    row = session.execute(
        sa.update(AuditChain)
        .where(AuditChain.id == CHAIN_ID)
        .values(last_seq=AuditChain.last_seq + 1)
        .returning(AuditChain.last_seq, AuditChain.last_hash)
    ).first()
    if row is not None:
        return row.last_seq, row.last_hash
    # Only reached if the head row was removed by hand; the migration creates it.
    session.execute(sa.insert(AuditChain).values(**{**GENESIS_CHAIN_HEAD, "last_seq": 1}))
    return 1, GENESIS_HASH


def record(
    session: Session,
    action: str,
    *,
    actor: Any = None,
    actor_label: str | None = None,
    organisation_id: int | None = None,
    obj: Any = None,
    object_type: str = "",
    object_id: Any = "",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (flushes, never commits)."""
    ctx = audit_context.get()
    if obj is not None:
        object_type = object_type or obj.__tablename__
        object_id = getattr(obj, "id", object_id)
    if actor is not None and organisation_id is None:
        organisation_id = getattr(actor, "organisation_id", None)
    seq, prev_hash = _advance_chain(session)
    event = AuditEvent(
        seq=seq,
        occurred_at=(at or utcnow()),
        action=action,
        actor_user_id=getattr(actor, "id", None),
        actor_label=actor_label if actor_label is not None else getattr(actor, "email", ""),
        organisation_id=organisation_id,
        object_type=object_type,
        object_id="" if object_id is None else str(object_id),
        ip=ctx.ip[:45],
        request_id=ctx.request_id[:64],
        details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        prev_hash=prev_hash,
    )
    event.row_hash = compute_hash(event)
    session.execute(
        sa.update(AuditChain).where(AuditChain.id == CHAIN_ID).values(last_hash=event.row_hash)
    )
    session.add(event)
    session.flush()
    return event


def visible_to(organisation_id: int) -> sa.ColumnElement[bool]:
    """The events an organisation's auditors read: its own, and those by or about the vendor
    users it granted access (their logins, profile changes …), which carry no organisation."""
    from portal.vendors.models import VendorAccess

    vendor_users = sa.select(VendorAccess.user_id).where(
        VendorAccess.organisation_id == organisation_id
    )
    return sa.or_(
        AuditEvent.organisation_id == organisation_id,
        sa.and_(
            AuditEvent.organisation_id.is_(None),
            sa.or_(
                AuditEvent.actor_user_id.in_(vendor_users),
                sa.and_(
                    AuditEvent.object_type == "user_account",
                    AuditEvent.object_id.in_(
                        sa.select(sa.cast(VendorAccess.user_id, sa.String)).where(
                            VendorAccess.organisation_id == organisation_id
                        )
                    ),
                ),
            ),
        ),
    )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the chain in order; report the first row whose content or link does not hold."""
    head = session.get(AuditChain, CHAIN_ID, populate_existing=True)
    if head is None:
        count = session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        if count:
            return VerifyResult(False, 0, None, "チェーンの先頭情報がありません")
        return VerifyResult(True, 0)
    expected_seq, expected_prev = head.anchor_seq + 1, head.anchor_hash
    checked = 0
    # Only up to the head as read now: rows committed meanwhile belong to a later check.
    for event in _iter_events(session, head.anchor_seq, head.last_seq, batch):
        if event.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, "行が欠落しています（削除の可能性）")
        if event.prev_hash != expected_prev:
            return VerifyResult(False, checked, event.seq, "直前の行とのつながりが一致しません")
        if compute_hash(event) != event.row_hash:
            return VerifyResult(
                False, checked, event.seq, "行の内容がハッシュと一致しません（改ざんの可能性）"
            )
        expected_prev, expected_seq = event.row_hash, event.seq + 1
        checked += 1
    if expected_seq - 1 != head.last_seq:
        return VerifyResult(
            False, checked, expected_seq, "末尾の行が欠落しています（削除の可能性）"
        )
    if expected_prev != head.last_hash:
        return VerifyResult(
            False, checked, head.last_seq, "チェーンの先頭情報が末尾の行と一致しません"
        )
    return VerifyResult(True, checked)


def _iter_events(
    session: Session, after_seq: int, up_to_seq: int, batch: int
) -> Iterator[AuditEvent]:
    last = after_seq
    while True:
        rows = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.seq > last, AuditEvent.seq <= up_to_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def purge_older_than(session: Session, days: int, now: datetime | None = None) -> int:
    """Delete events older than the retention period, moving the anchor past them."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    head = session.get(AuditChain, CHAIN_ID, populate_existing=True)
    if head is None:
        return 0
    last_old = session.scalars(
        sa.select(AuditEvent)
        .where(AuditEvent.occurred_at < cutoff, AuditEvent.seq < head.last_seq)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).first()
    if last_old is None:
        return 0
    deleted = session.execute(sa.delete(AuditEvent).where(AuditEvent.seq <= last_old.seq)).rowcount
    head.anchor_seq, head.anchor_hash = last_old.seq, last_old.row_hash
    session.flush()
    return deleted or 0


def recent_count(session: Session, actor_id: int, actions: tuple[str, ...], since: datetime) -> int:
    """How often a user did one of ``actions`` since a moment: a per-user rate limit that holds
    across every worker, counted from the trail the actions write anyway."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.actor_user_id == actor_id,
                AuditEvent.action.in_(actions),
                AuditEvent.occurred_at >= since,
            )
        )
        or 0
    )
