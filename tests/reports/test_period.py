"""--since/--until: a time the calendar cannot hold is a clear PeriodError, not an OverflowError."""

from __future__ import annotations

from datetime import datetime

import pytest

from agenttrail.reports.period import PeriodError, parse_when

NOW = datetime(2026, 11, 20, 12, 0)


@pytest.mark.parametrize("value", ["100000000000d", "99999999w", "9999-12-31", "9000-01-01T00:00"])
def test_a_time_out_of_range_is_refused_clearly(value: str) -> None:
    with pytest.raises(PeriodError, match="out of range"):
        parse_when(value, now=NOW, end=True)


def test_times_in_range_still_parse() -> None:
    assert parse_when("7d", now=NOW) == datetime(2026, 11, 13, 12, 0)
    assert parse_when("2026-11-01", now=NOW, end=True) == datetime(2026, 11, 2)
    assert parse_when("0001-01-01", now=NOW) == datetime(1, 1, 1)
    assert parse_when("8999-12-30", now=NOW, end=True) == datetime(8999, 12, 31)
