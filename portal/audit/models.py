from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime


class AuditEvent(Base):
    """One event. ``row_hash`` covers every field and the previous row's hash."""

    __tablename__ = "audit_event"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    actor_label: Mapped[str] = mapped_column(sa.String(254), default="")
    organisation_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    object_type: Mapped[str] = mapped_column(sa.String(40), default="")
    object_id: Mapped[str] = mapped_column(sa.String(64), default="")
    ip: Mapped[str] = mapped_column(sa.String(45), default="")
    request_id: Mapped[str] = mapped_column(sa.String(64), default="")
    details: Mapped[str] = mapped_column(sa.Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    row_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class AuditChain(Base):
    """The single head of the chain. Updating it first serialises concurrent writers.

    ``anchor_seq`` / ``anchor_hash`` mark where the retained chain starts after old events were
    purged under the retention policy.
    """

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(sa.String(64))
    anchor_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    anchor_hash: Mapped[str] = mapped_column(sa.String(64))
