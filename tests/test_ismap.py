"""ISMAP registration validity: 1年4か月 counted from the day after the end of the audit period
(民法143条), valid while a renewal is pending, a warning window before the end."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.scoring import ismap
from portal.scoring.ismap import IsmapStatus, status, valid_until


def d(text: str) -> date:
    return date.fromisoformat(text)


# The period starts on the day after the audit period ends (the 起算日). 民法143条2項: it ends on
# the day before the day of the 16th month that corresponds to the start day; if that month has
# no corresponding day, on its last day. A start on the 1st ends on the last day of the 15th
# month after it (143条1項, the same result).
@pytest.mark.parametrize(
    ("audit_period_end", "expected"),
    [
        # Audit period ends on a month end: start 2025-04-01 → 16 whole months → 2026-07-31.
        ("2025-03-31", "2026-07-31"),
        ("2024-11-30", "2026-03-31"),  # start 12-01 → the day before 2026-04-01
        # Start 2024-10-31; February 2026 has no 31st → its last day.
        ("2024-10-30", "2026-02-28"),
        # Start 2022-10-30; February 2024 (leap) has 29 days but no 30th → 02-29.
        ("2022-10-29", "2024-02-29"),
        # Start 2022-10-29; February 2024 has a 29th → the day before it.
        ("2022-10-28", "2024-02-28"),
        # Start 2023-10-30; February 2025 (not leap) has no 30th → its last day, 02-28.
        ("2023-10-29", "2025-02-28"),
        # Start 2023-10-29: no 29th in February 2025 either → also 02-28 …
        ("2023-10-28", "2025-02-28"),
        # … while start 2023-10-28 has a corresponding day (02-28) → the day before it.
        ("2023-10-27", "2025-02-27"),
        # Start 2022-11-01 (the 1st): the whole of February 2024, leap day included.
        ("2022-10-31", "2024-02-29"),
        # Audit period ends on the leap day's eve: start 2024-02-29 → the day before 2025-06-29.
        ("2024-02-28", "2025-06-28"),
        # Ends on the leap day: start 2024-03-01 → 16 whole months → 2025-06-30.
        ("2024-02-29", "2025-06-30"),
        # Non-leap February end: start 2023-03-01 → 2024-06-30.
        ("2023-02-28", "2024-06-30"),
        # Year boundaries: start 2025-01-01 → 2026-04-30; start 2025-12-31 → April 2027 has no
        # 31st → 2027-04-30; start 2026-01-01 → 2027-04-30 as well.
        ("2024-12-31", "2026-04-30"),
        ("2025-12-30", "2027-04-30"),
        ("2025-12-31", "2027-04-30"),
        # The period itself ends on 12-31: start 2025-09-01 → the day before 2027-01-01.
        ("2025-08-31", "2026-12-31"),
        # An ordinary mid-month date: start 2025-06-16 → the day before 2026-10-16.
        ("2025-06-15", "2026-10-15"),
    ],
)
def test_valid_until(audit_period_end, expected):
    assert valid_until(d(audit_period_end)) == d(expected)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2025-01-01", 1, "2025-01-31"),  # 143条1項: from the first of a month, the calendar
        ("2025-01-15", 1, "2025-02-14"),
        ("2025-01-31", 1, "2025-02-28"),  # no 31st in February
        ("2024-01-30", 1, "2024-02-29"),
        ("2024-01-29", 1, "2024-02-28"),
        ("2025-12-31", 2, "2026-02-28"),  # across the year end
        ("2025-03-01", 12, "2026-02-28"),
    ],
)
def test_add_months_period_end(start, months, expected):
    assert ismap.add_months_period_end(d(start), months) == d(expected)


# ---------------------------------------------------------------------------------------------
# status()
# ---------------------------------------------------------------------------------------------

AUDIT_END = d("2025-03-31")
UNTIL = d("2026-07-31")  # valid_until(AUDIT_END)


@pytest.mark.parametrize(
    ("today", "renewal_pending", "expected"),
    [
        (UNTIL - timedelta(days=400), False, "valid"),
        (UNTIL - timedelta(days=121), False, "valid"),  # one day outside the warning window
        (UNTIL - timedelta(days=120), False, "expiring"),  # exactly warn_days before
        (UNTIL - timedelta(days=1), False, "expiring"),
        (UNTIL, False, "expiring"),  # the last day itself is still valid
        (UNTIL + timedelta(days=1), False, "expired"),  # the next day it is not
        (UNTIL + timedelta(days=1), True, "renewal_pending"),
        (UNTIL + timedelta(days=365), True, "renewal_pending"),
        (UNTIL + timedelta(days=365), False, "expired"),
        # A pending renewal changes nothing before the end.
        (UNTIL - timedelta(days=200), True, "valid"),
        (UNTIL - timedelta(days=10), True, "expiring"),
    ],
)
def test_status_around_the_end(today, renewal_pending, expected):
    result = status(True, AUDIT_END, renewal_pending, today, warn_days=120)
    assert result == IsmapStatus(expected, UNTIL)


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("valid", True),
        ("expiring", True),
        ("renewal_pending", True),  # 更新申請中は有効として扱う
        ("expired", False),
        ("none", False),
        ("unknown", False),
    ],
)
def test_which_statuses_count_as_valid(name, counts):
    assert IsmapStatus(name).counts_as_valid is counts
    assert IsmapStatus(name).label == ismap.STATUS_LABELS[name]


def test_warn_days_is_a_parameter():
    today = UNTIL - timedelta(days=30)
    assert status(True, AUDIT_END, False, today, warn_days=30).status == "expiring"
    assert status(True, AUDIT_END, False, today, warn_days=29).status == "valid"


def test_not_registered_is_none_whatever_the_dates():
    assert status(False, AUDIT_END, False, d("2026-01-01")) == IsmapStatus("none")
    assert status(False, AUDIT_END, True, d("2030-01-01")) == IsmapStatus("none")
    assert status(False, None, False, d("2026-01-01")) == IsmapStatus("none")


def test_registered_without_an_audit_period_end_is_unknown():
    assert status(True, None, False, d("2026-01-01")) == IsmapStatus("unknown")
    assert status(True, None, True, d("2026-01-01")) == IsmapStatus("unknown")
    assert IsmapStatus("unknown").valid_until is None


def test_leap_day_end_is_valid_on_the_day_and_expired_the_next():
    end = valid_until(d("2022-10-29"))
    assert end == d("2024-02-29")
    assert status(True, d("2022-10-29"), False, d("2024-02-29")).status == "expiring"
    assert status(True, d("2022-10-29"), False, d("2024-03-01")).status == "expired"


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

AUDIT_DATES = st.dates(min_value=date(1990, 1, 1), max_value=date(2098, 12, 31))


# 16 consecutive months are one year (365 or 366 days) plus four months (120 days for
# November–February in a common year, up to 123 for May–August or July–October), and a start
# that is not the 1st only ever shortens the period (the missing-day rule). So the period —
# valid_until(d) − d days, since it starts on d + 1 — is between 365 + 120 = 485 (e.g. start
# 2020-11-01, two common Februaries) and 366 + 123 = 489 days (e.g. start 2019-05-01, a leap
# February and two Mays to Augusts). Checked over 1990–2100 by enumeration: 485 … 489.
@given(AUDIT_DATES)
def test_validity_lasts_between_485_and_489_days(audit_period_end):
    assert (
        audit_period_end + timedelta(days=485)
        <= valid_until(audit_period_end)
        <= audit_period_end + timedelta(days=489)
    )


def test_the_bounds_are_reached():
    assert valid_until(d("2020-10-31")) - d("2020-10-31") == timedelta(days=485)
    assert valid_until(d("2019-04-30")) - d("2019-04-30") == timedelta(days=489)


@given(AUDIT_DATES, AUDIT_DATES)
def test_valid_until_never_decreases(a, b):
    if a > b:
        a, b = b, a
    assert valid_until(a) <= valid_until(b)


@given(AUDIT_DATES, st.booleans())
def test_the_last_day_counts_and_the_next_does_not(audit_period_end, renewal_pending):
    until = valid_until(audit_period_end)
    on_the_day = status(True, audit_period_end, renewal_pending, until)
    after = status(True, audit_period_end, renewal_pending, until + timedelta(days=1))
    assert on_the_day.counts_as_valid
    assert after.status == ("renewal_pending" if renewal_pending else "expired")
    assert after.counts_as_valid is renewal_pending
    assert on_the_day.valid_until == after.valid_until == until
