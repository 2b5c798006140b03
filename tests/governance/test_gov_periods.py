"""Calendar periods in UTC and in a zone with daylight saving; fixed rate-limit windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrail.governance.periods import EPOCH, PeriodError, fixed_window, period_window, zone

NY = zone("America/New_York")


def test_month_day_week_in_utc() -> None:
    now = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    m = period_window("month", now, UTC)
    assert (m.start, m.end) == (datetime(2026, 11, 1), datetime(2026, 12, 1))
    assert m.describe_end() == "2026-12-01 00:00 UTC"
    assert m.seconds_left(now) == 1
    d = period_window("day", now, UTC)
    assert (d.start, d.end) == (datetime(2026, 11, 30), datetime(2026, 12, 1))
    w = period_window("week", now, UTC)  # 2026-11-30 is a Monday: the week starts that day
    assert (w.start, w.end) == (datetime(2026, 11, 30), datetime(2026, 12, 7))
    dec = period_window("month", datetime(2026, 12, 15, tzinfo=UTC), UTC)
    assert (dec.start, dec.end) == (datetime(2026, 12, 1), datetime(2027, 1, 1))


def test_the_boundary_belongs_to_the_new_period() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert period_window("month", at, UTC).start == datetime(2026, 12, 1)
    assert period_window("month", at - timedelta(microseconds=1), UTC).start == datetime(2026, 11, 1)


def test_new_york_periods_start_at_local_midnight_across_dst() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST. November starts at 04:00 UTC (EDT), December at 05:00 UTC (EST).
    m = period_window("month", datetime(2026, 11, 15, 12, tzinfo=UTC), NY)
    assert (m.start, m.end) == (datetime(2026, 11, 1, 4), datetime(2026, 12, 1, 5))
    assert m.describe_end() == "2026-12-01 00:00 America/New_York"
    # 03:30 UTC on Nov 1 is still October 31 in New York.
    assert period_window("month", datetime(2026, 11, 1, 3, 30, tzinfo=UTC), NY).start == datetime(2026, 10, 1, 4)
    # The DST day itself is 25 hours long.
    d = period_window("day", datetime(2026, 11, 1, 12, tzinfo=UTC), NY)
    assert d.end is not None and d.end - d.start == timedelta(hours=25)
    spring = period_window("day", datetime(2026, 3, 8, 12, tzinfo=UTC), NY)
    assert spring.end is not None and spring.end - spring.start == timedelta(hours=23)


def test_lifetime_and_fixed_windows() -> None:
    t = period_window("total", datetime(2026, 5, 5, tzinfo=UTC), UTC)
    assert (t.start, t.end) == (EPOCH, None)
    assert t.seconds_left(datetime(2026, 5, 5, tzinfo=UTC)) is None
    assert t.describe_end() == "never"
    w = fixed_window(datetime(2026, 5, 5, 10, 20, 30, 500000, tzinfo=UTC), 60)
    assert (w.start, w.end) == (datetime(2026, 5, 5, 10, 20), datetime(2026, 5, 5, 10, 21))
    assert w.seconds_left(datetime(2026, 5, 5, 10, 20, 30, 500000, tzinfo=UTC)) == 30  # rounded up


def test_unknown_period_and_zone_say_what_is_accepted() -> None:
    with pytest.raises(PeriodError, match="day, week, month, total"):
        period_window("year", datetime(2026, 1, 1, tzinfo=UTC), UTC)
    with pytest.raises(PeriodError, match="IANA"):
        zone("Mars/Olympus")
