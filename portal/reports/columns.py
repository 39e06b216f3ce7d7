"""The columns of the lists behind the dashboard's figures, once each: (key, Japanese header,
getter, width).

- ``COLUMNS``: the 定期確認 list (a ``ReviewRow``; 対策基準 9.1(3), 9.2(6): the state of every
  confirmation at a glance);
- ``EXPIRING_COLUMNS``: certificates and ISMAP registrations running out (an ``ExpiringRow``;
  9.1(3), 9.2(6): an expiry brings the confirmation forward);
- ``INCIDENT_COLUMNS``: incident reports of contractors and services (a ``VendorReport``; 9.1(3));
- ``FINDING_COLUMNS``: findings and their corrective actions (a ``FindingRow``; 9.1(3), 9.2(6),
  10.1(4)).

Each list page and both exports (CSV, XLSX) of it write these columns in this order (a page
leaves out the long texts named in its ``*_PAGE_COLUMNS``). A getter returns text, a date, a
number or None (empty); several values in one cell are one per line. The first two columns are
the number and the name: the workbook keeps them in view when scrolled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.register.columns import Column
from portal.scoring.engine import RATINGS
from portal.web import format_date, format_jst

if TYPE_CHECKING:
    from portal.reports.service import ExpiringRow, FindingRow, ReviewRow
    from portal.reviews.models import VendorReport


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


# ---------------------------------------------------------------------------------------------
# Certificates and ISMAP registrations running out (9.1(3), 9.2(6))
# ---------------------------------------------------------------------------------------------


def days_left(row: ExpiringRow) -> str:
    if row.expired:
        return f"期限切れ（{-row.days_left}日経過）"
    if row.days_left == 0:
        return "本日まで"
    return f"あと{row.days_left}日"


EXPIRING_COLUMNS: tuple[Column, ...] = (
    Column("id", "番号", lambda r: r.schedule.id, 8),
    Column("subject", "対象（案件・サービス）", lambda r: r.schedule.title, 30),
    Column("kind", "区分", lambda r: r.schedule.kind_label, 12),
    Column("vendor", "委託先・提供者", lambda r: r.schedule.vendor_company.name, 26),
    Column("department", "担当課", lambda r: r.schedule.department.name, 16),
    Column("label", "認証・登録", lambda r: r.expiry.label, 30),
    Column("until", "有効期限", lambda r: r.expiry.until, 14),
    Column("days-left", "残り日数", days_left, 20),
)


# ---------------------------------------------------------------------------------------------
# Incident reports (9.1(3))
# ---------------------------------------------------------------------------------------------


def _acknowledged(report: VendorReport) -> str:
    if report.acknowledged_at is None:
        return "未確認"
    return f"{format_jst(report.acknowledged_at)} 確認済み"


INCIDENT_COLUMNS: tuple[Column, ...] = (
    Column("id", "番号", lambda r: r.id, 8),
    Column("subject", "対象（案件・サービス）", lambda r: r.schedule.title, 30),
    Column("vendor", "委託先・提供者", lambda r: r.schedule.vendor_company.name, 26),
    Column("department", "担当課", lambda r: r.schedule.department.name, 16),
    Column("reported-at", "報告日時", lambda r: format_jst(r.reported_at), 20),
    Column("occurred-at", "発生日時", lambda r: format_jst(r.occurred_at), 20),
    Column("summary", "概要", lambda r: r.summary, 40),
    Column("information", "影響を受けた情報", lambda r: r.information_affected, 30),
    Column(
        "personal-data",
        "個人情報への影響",
        lambda r: "あり" if r.personal_data_affected else "なし",
        10,
    ),
    Column("measures", "講じた措置", lambda r: r.measures, 40),
    Column("acknowledged", "確認", _acknowledged, 26),
)
INCIDENT_PAGE_COLUMNS = tuple(
    c for c in INCIDENT_COLUMNS if c.key not in {"information", "measures"}
)


# ---------------------------------------------------------------------------------------------
# Findings and their corrective actions (9.1(3), 9.2(6), 10.1(4))
# ---------------------------------------------------------------------------------------------


def _source(row: FindingRow) -> str:
    return f"{row.source.subject}／{row.source.label}" if row.source else ""


def _finding_due(row: FindingRow) -> str:
    mark = "（期限超過）" if row.overdue else ""
    return f"{format_date(row.finding.due_on)}{mark}"


def _finding_status(row: FindingRow) -> str:
    finding = row.finding
    closed = f"（{format_date(finding.closed_on)}）" if finding.closed_on else ""
    return f"{finding.status_label}{closed}"


FINDING_COLUMNS: tuple[Column, ...] = (
    Column("id", "番号", lambda r: r.finding.id, 8),
    Column("title", "指摘事項", lambda r: r.finding.title, 30),
    Column("severity", "重要度", lambda r: r.finding.severity_label, 8),
    Column("source", "指摘の元", _source, 36),
    Column("department", "担当課", lambda r: r.department, 16),
    Column("owner", "担当者", lambda r: r.finding.owner.name, 16),
    Column("corrective-action", "是正措置", lambda r: r.finding.corrective_action, 40),
    Column("due", "期限", _finding_due, 22),
    Column("status", "状態", _finding_status, 20),
    Column("closing-note", "対応の内容", lambda r: r.finding.closing_note, 40),
)
FINDING_PAGE_COLUMNS = tuple(
    c for c in FINDING_COLUMNS if c.key not in {"department", "corrective-action", "closing-note"}
)
