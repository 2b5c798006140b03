"""Parsing the --since/--until filters every report takes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


class PeriodError(ValueError):
    pass


def parse_when(value: str | None, *, now: datetime, end: bool = False) -> datetime | None:
    """A date (2026-11-01), a datetime, or a span back from now (7d, 12h, 4w). Returns naive UTC.
    An `--until` date means the end of that day."""
    if not value:
        return None
    try:
        when = _parse(value, now=now, end=end)
    except OverflowError:
        when = None
    # Reports step by days and months from these bounds: a year at the calendar's edge would overflow.
    if when is None or when.year >= END_YEAR:
        raise PeriodError(f"{value!r} is out of range: give a time between the years 1 and {END_YEAR - 1}")
    return when


END_YEAR = 9000


def _parse(value: str, *, now: datetime, end: bool) -> datetime:
    v = value.strip().lower()
    units = {"d": "days", "h": "hours", "w": "weeks", "m": "minutes"}
    if v[-1:] in units and v[:-1].isdigit():
        return (now - timedelta(**{units[v[-1]]: int(v[:-1])})).astimezone(UTC).replace(tzinfo=None)
    try:
        if len(v) == 10:
            d = date.fromisoformat(v)
            start = datetime(d.year, d.month, d.day)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(
            f"cannot read {value!r} as a time: use a date (2026-11-01), "
            "an ISO time (2026-11-01T09:00Z) or a span back from now (7d, 12h, 4w)"
        ) from None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
