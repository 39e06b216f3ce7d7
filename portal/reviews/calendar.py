"""Business days of a Japanese local government: not Saturday or Sunday, not a national holiday
(国民の祝日に関する法律, including 振替休日 and 国民の休日, from the ``holidays`` package), and not the
year-end closure of 12月29日–1月3日 (地方自治法4条の2, the same days as 行政機関の休日)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

YEAR_END_CLOSURE = frozenset({(12, 29), (12, 30), (12, 31), (1, 1), (1, 2), (1, 3)})


@lru_cache(maxsize=64)
def _national_holidays(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("JP", years=year, language="ja"))


def closed_because(day: date) -> str | None:
    """Why the offices are closed on ``day`` (in Japanese), or None on a business day."""
    name = _national_holidays(day.year).get(day)
    if name:
        return name
    if (day.month, day.day) in YEAR_END_CLOSURE:
        return "年末年始の休日"
    if day.weekday() == 5:
        return "土曜日"
    if day.weekday() == 6:
        return "日曜日"
    return None


def is_business_day(day: date) -> bool:
    return closed_because(day) is None


def next_business_day(day: date) -> date:
    """``day`` itself when it is a business day, otherwise the first business day after it."""
    while not is_business_day(day):
        day += timedelta(days=1)
    return day
