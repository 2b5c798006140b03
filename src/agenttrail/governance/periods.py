"""Calendar periods for budgets and fixed windows for rate limits, in a configurable time zone.

A budget's day, week (Monday to Sunday, as ISO weeks) and month start at local midnight in the
budget time zone; `total` is one window for the budget's lifetime. Windows are stored by their start
as naive UTC (the store's convention), so two processes agree on a row's key whatever their own zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("day", "week", "month", "total")
ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly", "total": "lifetime"}
# The one window of a lifetime budget, and of counters that are not windowed (concurrency).
EPOCH = datetime(1970, 1, 1)


class PeriodError(ValueError):
    """An unknown period or time zone; the message says what is accepted."""


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"unknown time zone {name!r}; use an IANA name such as UTC or America/New_York") from None


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime  # naive UTC: the stored key
    end: datetime | None  # naive UTC; None: never ends
    tz: tzinfo

    def seconds_left(self, now: datetime) -> int | None:
        """Whole seconds until the window ends (rounded up, so a client never retries early)."""
        if self.end is None:
            return None
        left = (self.end - _naive_utc(now)).total_seconds()
        return max(1, math.ceil(left))

    def contains(self, now: datetime) -> bool:
        n = _naive_utc(now)
        return self.start <= n and (self.end is None or n < self.end)

    def describe_end(self) -> str:
        """`2026-12-01 00:00 UTC`, in the window's own zone, as people read the reset time."""
        if self.end is None:
            return "never"
        local = self.end.replace(tzinfo=UTC).astimezone(self.tz)
        return f"{local:%Y-%m-%d %H:%M} {_zone_label(self.tz)}"


def period_window(period: str, now: datetime, tz: tzinfo) -> Window:
    """The calendar period containing `now` (timezone-aware)."""
    if period == "total":
        return Window(EPOCH, None, tz)
    local = now.astimezone(tz)
    day = local.date()
    if period == "day":
        first, nxt = day, day + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        nxt = (
            (first.replace(year=first.year + 1, month=1)) if first.month == 12 else first.replace(month=first.month + 1)
        )
    else:
        raise PeriodError(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")
    return Window(
        _local_midnight_utc(first.year, first.month, first.day, tz),
        _local_midnight_utc(nxt.year, nxt.month, nxt.day, tz),
        tz,
    )


class Windows:
    """The current window of each period, recomputed only when time has moved past it: a call asks
    for several every time, and calendar arithmetic in a time zone is not free."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._current: dict[str, Window] = {}

    def get(self, period: str, now: datetime) -> Window:
        w = self._current.get(period)
        if w is None or not w.contains(now):
            w = period_window(period, now, self.tz)
            self._current[period] = w
        return w


def fixed_window(now: datetime, seconds: int) -> Window:
    """A fixed window of `seconds` aligned to the UTC epoch (rate limits: one-minute windows)."""
    n = _naive_utc(now)
    offset = int((n - EPOCH).total_seconds()) // seconds * seconds
    start = EPOCH + timedelta(seconds=offset)
    return Window(start, start + timedelta(seconds=seconds), UTC)


def _local_midnight_utc(year: int, month: int, day: int, tz: tzinfo) -> datetime:
    # A zone whose clocks jump at midnight has no local 00:00 that day; zoneinfo maps such a time
    # with the pre-transition offset, which lands on the first instant of the local day.
    local = datetime(year, month, day, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def _naive_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)


def _zone_label(tz: tzinfo) -> str:
    if tz is UTC:
        return "UTC"
    return str(getattr(tz, "key", None) or tz)
