"""Bulk loading with SQLAlchemy Core, for SQLite and PostgreSQL alike.

- Ids are taken up front (``ids``), so rows can refer to each other before they are written; on
  PostgreSQL the tables are locked for the transaction and their sequences moved past the ids
  afterwards (``finish``).
- Rows go in chunks through one prepared ``insert(table)`` statement compiled by Core for the
  connection's dialect and handed to the driver's ``executemany``. ``connection.execute(insert,
  rows)`` would run SQLAlchemy's parameter processing for every value of every row, which at two
  million answers costs more than the insert itself; instead values are converted with the
  column type's own bind processor — per row for small tables, once per distinct value by the
  caller (``convert``) for the large ones (``converted=True``).
- The audit trail is chained in Python exactly as ``audit.record`` chains one event at a time
  (``AuditTrail``), after the current head, and the head is moved once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

import sqlalchemy as sa

from portal.audit import service as audit
from portal.audit.models import AuditChain, AuditEvent

CHUNK = 10_000
SQLITE_ANALYSIS_LIMIT = 1000  # rows sampled per index
SQLITE_LOAD_CACHE_KIB = 262_144  # page cache while loading (256 MiB); restored afterwards


class BulkWriter:
    def __init__(self, connection: sa.Connection, chunk: int = CHUNK):
        self.connection = connection
        self.dialect = connection.dialect
        self.chunk = chunk
        self.counts: Counter[str] = Counter()
        self._next_id: dict[str, int] = {}
        self._tables: dict[str, sa.Table] = {}
        self._statements: dict[tuple[str, tuple[str, ...]], tuple[str, list]] = {}

    @property
    def postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    @contextmanager
    def tuned(self) -> Iterator[None]:
        """SQLite: a larger page cache while loading (the indexes of the answer tables grow by
        millions of entries), put back afterwards. The connection already writes in WAL mode
        with ``synchronous=NORMAL`` inside one ``BEGIN IMMEDIATE`` transaction."""
        if self.dialect.name != "sqlite":
            yield
            return
        before = self.connection.exec_driver_sql("PRAGMA cache_size").scalar()
        self.connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_LOAD_CACHE_KIB}")
        try:
            yield
        finally:
            self.connection.exec_driver_sql(f"PRAGMA cache_size={int(before)}")

    def lock(self, tables: Iterable[sa.Table]) -> None:
        """PostgreSQL: nobody else inserts into these tables until the load commits, so the ids
        taken here stay free. (SQLite's ``BEGIN IMMEDIATE`` already holds the write lock.)"""
        if self.postgres:
            for table in tables:
                self.connection.exec_driver_sql(f'LOCK TABLE "{table.name}" IN EXCLUSIVE MODE')

    def ids(self, table: sa.Table, count: int) -> range:
        """The next ``count`` ids of ``table``, after every id already used."""
        start = self._next_id.get(table.name)
        if start is None:
            start = (self.connection.scalar(sa.select(sa.func.max(table.c.id))) or 0) + 1
            if self.postgres:  # past the sequence too: it never moves backwards (``finish``)
                sequence = sa.func.pg_get_serial_sequence(table.name, "id")
                start = max(start, self.connection.scalar(sa.select(sa.func.nextval(sequence))))
        self._next_id[table.name] = start + count
        self._tables[table.name] = table
        return range(start, start + count)

    def converter(self, table: sa.Table, column: str) -> Callable[[Any], Any]:
        """The column type's bind processor for this dialect (identity when it has none)."""
        processor = _processor(table.c[column].type, self.dialect)
        return processor or _identity

    def _statement(self, table: sa.Table, columns: tuple[str, ...]):
        key = (table.name, columns)
        if key not in self._statements:
            compiled = sa.insert(table).compile(
                dialect=self.dialect, column_keys=list(columns), for_executemany=True
            )
            if compiled.insert_prefetch or compiled.effective_returning:
                missing = [c.key for c in compiled.insert_prefetch]
                raise ValueError(f"{table.name}: give values for {missing} (Python defaults)")
            if compiled.positional and tuple(compiled.positiontup) != columns:
                raise ValueError(f"{table.name}: list the columns in table order")
            processors = [
                (index, processor)
                for index, name in enumerate(columns)
                if (processor := _processor(table.c[name].type, self.dialect))
            ]
            self._statements[key] = (str(compiled), processors)
        return self._statements[key]

    def insert(
        self,
        table: sa.Table,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        converted: bool = False,
    ) -> int:
        """Insert ``rows`` (tuples in ``columns`` order) in chunks; returns how many."""
        columns = tuple(columns)
        sql, processors = self._statement(table, columns)
        if converted:
            processors = []
        if processors:
            rows = (_converted(row, processors) for row in rows)
        if not self.dialect.positional:  # PostgreSQL (psycopg): named parameters
            rows = (dict(zip(columns, row, strict=True)) for row in rows)
        rows = iter(rows)
        count = 0
        while batch := list(islice(rows, self.chunk)):
            self.connection.exec_driver_sql(sql, batch)
            count += len(batch)
        self.counts[table.name] += count
        return count

    def insert_dicts(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows given as dicts (small tables): every row has the first row's keys."""
        if not rows:
            return 0
        order = [c.name for c in table.columns if c.name in rows[0]]
        return self.insert(table, order, (tuple(row[name] for name in order) for row in rows))

    def insert_from(self, table: sa.Table, columns: Sequence[str], select: sa.Select) -> int:
        """``INSERT … SELECT``: rows derived from rows already written, without Python."""
        statement = sa.insert(table).from_select(list(columns), select)
        result = self.connection.execute(statement.execution_options(preserve_rowcount=True))
        self.counts[table.name] += result.rowcount
        return result.rowcount

    def finish(self) -> None:
        """PostgreSQL: move each sequence past the ids taken here. Both: statistics for the
        query planner (SQLite has none before ``ANALYZE`` and then reads one department's 案件
        through the organisation's index; ``analysis_limit`` samples rather than scans)."""
        if self.postgres:
            for table in self._tables.values():
                last = sa.select(sa.func.max(table.c.id)).scalar_subquery()
                sequence = sa.func.pg_get_serial_sequence(table.name, "id")
                self.connection.execute(sa.select(sa.func.setval(sequence, last)))
            # Only the tables loaded here (a bare ANALYZE would lock every table to the commit).
            quote = self.connection.dialect.identifier_preparer.quote
            self.connection.exec_driver_sql(f"ANALYZE {', '.join(map(quote, self._tables))}")
        else:
            self.connection.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            self.connection.exec_driver_sql("ANALYZE")


def _converted(row: Sequence[Any], processors: list) -> tuple:
    values = list(row)
    for index, processor in processors:
        values[index] = processor(values[index])
    return tuple(values)


def _identity(value: Any) -> Any:
    return value


def _processor(type_: sa.types.TypeEngine, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    return type_.dialect_impl(dialect).bind_processor(dialect)


class _Event(NamedTuple):
    """The fields ``audit.compute_hash`` reads, without an ORM object per event."""

    seq: int
    occurred_at: datetime
    action: str
    actor_user_id: int | None
    actor_label: str
    organisation_id: int | None
    object_type: str
    object_id: str
    ip: str
    request_id: str
    details: str
    prev_hash: str


AUDIT_COLUMNS = tuple(c.name for c in AuditEvent.__table__.columns)


class AuditTrail:
    """Events collected during the load; ``write`` chains them, oldest first, after the head."""

    def __init__(self) -> None:
        self._events: list[tuple] = []

    def __len__(self) -> int:
        return len(self._events)

    def add(
        self,
        at: datetime,
        action: str,
        *,
        actor: tuple[int, str] | None = None,
        actor_label: str | None = None,
        organisation_id: int | None,
        object_type: str,
        object_id: int | str,
        details: dict[str, Any],
    ) -> None:
        label = actor_label if actor_label is not None else (actor[1] if actor else "")
        self._events.append(
            (
                at,
                action,
                actor[0] if actor else None,
                label,
                organisation_id,
                object_type,
                str(object_id),
                json.dumps(details, ensure_ascii=False, sort_keys=True, default=str),
            )
        )

    def write(self, writer: BulkWriter) -> int:
        """Append every event to the chain in this transaction, as ``audit.record`` would one by
        one: the head's UPDATE is taken first (it serialises concurrent writers on PostgreSQL)."""
        connection = writer.connection
        head = connection.execute(
            sa.update(AuditChain)
            .where(AuditChain.id == audit.CHAIN_ID)
            .values(last_seq=AuditChain.last_seq)
            .returning(AuditChain.last_seq, AuditChain.last_hash)
        ).first()
        if head is None:  # only if the migration's head row was removed by hand
            connection.execute(sa.insert(AuditChain).values(**audit.GENESIS_CHAIN_HEAD))
            seq, prev_hash = 0, audit.GENESIS_HASH
        else:
            seq, prev_hash = head.last_seq, head.last_hash
        context = audit.audit_context.get()
        ip, request_id = context.ip[:45], context.request_id[:64]
        self._events.sort(key=lambda event: event[0])  # stable: same moment keeps its order

        def rows() -> Iterator[tuple]:
            nonlocal seq, prev_hash
            for at, action, actor_id, label, org_id, obj_type, obj_id, details in self._events:
                seq += 1
                event = _Event(
                    seq,
                    at,
                    action,
                    actor_id,
                    label,
                    org_id,
                    obj_type,
                    obj_id,
                    ip,
                    request_id,
                    details,
                    prev_hash,
                )
                row_hash = audit.compute_hash(event)
                yield (*event, row_hash)
                prev_hash = row_hash

        written = writer.insert(AuditEvent.__table__, AUDIT_COLUMNS, rows())
        connection.execute(
            sa.update(AuditChain)
            .where(AuditChain.id == audit.CHAIN_ID)
            .values(last_seq=seq, last_hash=prev_hash)
        )
        self._events.clear()
        return written
