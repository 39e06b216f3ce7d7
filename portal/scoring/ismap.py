"""ISMAP registration validity (ISMAP 登録規則): the registration is valid until 1年4か月 have
passed, counted from the day after the end of the audit period, and stays valid while a renewal
is pending. Periods are counted as 民法第143条 says: a period that starts on the first of a month
ends with its last month; otherwise it ends on the day before the corresponding day of the last
month, or on that month's last day when the month has no corresponding day."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

VALIDITY_MONTHS = 16  # 1年4か月
STATUS_LABELS = {
    "none": "登録なし",
    "unknown": "有効期限を確認できない",
    "valid": "有効",
    "expiring": "有効（期限が近い）",
    "renewal_pending": "期限経過・更新申請中（有効として扱う）",
    "expired": "失効",
}


def add_months_period_end(start: date, months: int) -> date:
    """The last day of a period of ``months`` months that starts on ``start`` (民法143条).

    Starting on the first of a month, the day before the corresponding day is the last day of
    the previous month, so the general rule covers 143条1項 too."""
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last_day = calendar.monthrange(year, month)[1]
    if start.day > last_day:  # no corresponding day in the last month: its last day
        return date(year, month, last_day)
    return date(year, month, start.day) - timedelta(days=1)


def valid_until(audit_period_end: date) -> date:
    return add_months_period_end(audit_period_end + timedelta(days=1), VALIDITY_MONTHS)


@dataclass(frozen=True)
class IsmapStatus:
    status: str  # a key of STATUS_LABELS
    valid_until: date | None = None

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def counts_as_valid(self) -> bool:
        return self.status in ("valid", "expiring", "renewal_pending")


def status(
    registered: bool,
    audit_period_end: date | None,
    renewal_pending: bool,
    today: date,
    warn_days: int = 120,
) -> IsmapStatus:
    if not registered:
        return IsmapStatus("none")
    if audit_period_end is None:
        return IsmapStatus("unknown")
    until = valid_until(audit_period_end)
    if today > until:
        return IsmapStatus("renewal_pending" if renewal_pending else "expired", until)
    if (until - today).days <= warn_days:
        return IsmapStatus("expiring", until)
    return IsmapStatus("valid", until)
