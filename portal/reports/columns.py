"""The columns of the 定期確認 list, once: (key, Japanese header, getter, width).

The list page and both exports (CSV, XLSX) write ``COLUMNS`` in this order (対策基準 9.1(3),
9.2(6): the state of every confirmation at a glance). A getter takes a ``ReviewRow`` and
returns text, a date, a number or None (empty); several values in one cell are one per line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.register.columns import Column
from portal.scoring.engine import RATINGS
from portal.web import format_date

if TYPE_CHECKING:
    from portal.reports.service import ReviewRow


def _interval(row: ReviewRow) -> str:
    schedule = row.schedule
    custom = "（個別に設定）" if schedule.interval_custom else ""
    return f"{schedule.interval_months}か月{custom}"


def _due(row: ReviewRow) -> str:
    """The effective due date (brought forward by open triggers) of an active schedule."""
    if row.schedule.status != "active":
        return ""
    mark = "（期限超過）" if row.overdue else ""
    return f"{format_date(row.schedule.due_on)}{mark}"


def _triggers(row: ReviewRow) -> str:
    return "\n".join(
        f"{t.kind_label}（期限 {format_date(t.due_on)}）" for t in row.schedule.open_triggers
    )


COLUMNS: tuple[Column, ...] = (
    Column("id", "番号", lambda r: r.schedule.id, 8),
    Column("subject", "対象（案件・サービス）", lambda r: r.schedule.title, 30),
    Column("kind", "区分", lambda r: r.schedule.kind_label, 12),
    Column("vendor", "委託先・提供者", lambda r: r.schedule.vendor_company.name, 26),
    Column("department", "担当課", lambda r: r.schedule.department.name, 16),
    Column(
        "risk", "リスク評価", lambda r: RATINGS.get(r.schedule.risk_rating or "", "評価なし"), 10
    ),
    Column(
        "personal_data",
        "個人情報の取扱い",
        lambda r: "あり" if r.schedule.personal_data else "なし",
        10,
    ),
    Column("interval", "確認の間隔", _interval, 16),
    Column("last_confirmed", "前回の確認日", lambda r: r.schedule.last_confirmed_on, 14),
    Column("due", "次回の確認期限", _due, 22),
    Column("triggers", "前倒しの理由（未対応）", _triggers, 36),
    Column("state", "状態", lambda r: r.state_label, 14),
)

HEADERS = tuple(column.header for column in COLUMNS)
