"""Spend by a dimension over a period.

Three sources, chosen for speed without changing the answer:
- the calendar roll-ups (kept by triggers) for call dimensions (team, project, engineer, model,
  provider, day, week, month) over whole UTC days: `monthly_spend` for the whole months of the
  period, `daily_spend` for the days before the first and after the last of them (and for day and
  week, which months cannot give);
- `sessions` (one row per session) for session dimensions (repo, agent, session), and for any
  dimension under a --repo filter; a session's spend counts at its start, and calls outside any
  session appear as "(no session)";
- `llm_calls` joined to `sessions` for what neither answers exactly (a period that is not whole days,
  or model/provider under --repo).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share

CALL_DIMS = ("team", "project", "engineer", "model", "provider")
TIME_DIMS = ("day", "week", "month")
SESSION_DIMS = ("repo", "agent", "session")
DIMENSIONS = (*CALL_DIMS, *SESSION_DIMS, *TIME_DIMS, "period")
NONE = "(none)"
NO_SESSION = "(no session)"
MEASURES = ("calls", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_usd")


@dataclass(slots=True)
class SpendReport:
    """The older shape `spend()` returns (one table)."""

    by: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _period_label(day: str, by: str) -> str:
    if by == "day":
        return day
    if by == "month":
        return day[:7]
    y, w, _ = date.fromisoformat(day).isocalendar()
    return f"{y}-W{w:02d}"


def _fold(rows: list[tuple[Any, ...]], by: str) -> dict[str, list[float]]:
    """Sum rows (label, *measures) by label, turning days into weeks or months when asked."""
    out: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(MEASURES))
    for label, *values in rows:
        key = NONE if label is None else str(label)
        if by in TIME_DIMS and label is not None:
            key = _period_label(str(label)[:10], by)
        acc = out[key]
        for i, v in enumerate(values):
            acc[i] += float(v or 0)
    return out


def _next_month(d: date) -> date:
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def _calendar(f: Filters, by: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The period as (view, period column, WHERE, params) parts: whole months from `monthly_spend`,
    the days around them from `daily_spend`. `until` is exclusive."""
    since = f.since.date() if f.since else None
    until = f.until.date() if f.until else None
    team_sql = " AND team_id = (SELECT team_id FROM teams WHERE team = :team)" if f.team else ""
    base: dict[str, Any] = {"team": f.team} if f.team else {}

    def daily(lo: date | None, hi: date | None) -> tuple[str, str, str, dict[str, Any]]:
        parts, params = ["1=1"], dict(base)
        if lo:
            parts.append("day >= :lo")
            params["lo"] = lo.isoformat()
        if hi:
            parts.append("day < :hi")
            params["hi"] = hi.isoformat()
        return "daily_spend", "day", " AND ".join(parts) + team_sql, params

    if by in ("day", "week"):
        return [daily(since, until)]
    first = since if since is None or since.day == 1 else _next_month(since)
    last = until if until is None or until.day == 1 else until.replace(day=1)
    if first is not None and last is not None and first >= last:
        return [daily(since, until)]  # no whole month inside the period
    parts, params = ["1=1"], dict(base)
    if first:
        parts.append("month >= :m_lo")
        params["m_lo"] = first.isoformat()[:7]
    if last:
        parts.append("month < :m_hi")
        params["m_hi"] = last.isoformat()[:7]
    out = [("monthly_spend", "month", " AND ".join(parts) + team_sql, params)]
    if since is not None and first is not None and since < first:
        out.append(daily(since, first))
    if until is not None and last is not None and last < until:
        out.append(daily(last, until))
    return out


_SUMS = (
    "COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(cost_usd)"
)
_DAILY_SUMS = (
    "SUM(calls), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(cost_usd)"
)
_SESSION_SUMS = (
    "SUM(calls), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(output_tokens), SUM(cost_usd)"
)


# Directory dimensions are grouped by id (no name lookup per row) and named afterwards.
ID_DIMS = {
    "team": ("team_id", "SELECT team_id, team FROM teams"),
    "project": ("project_id", "SELECT project_id, project FROM projects"),
    "engineer": ("engineer_id", "SELECT engineer_id, engineer FROM engineers"),
}


def _from_calendar(engine: Engine, f: Filters, by: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for view, period_col, where, params in _calendar(f, by):
        col = period_col if by in TIME_DIMS else ID_DIMS[by][0] if by in ID_DIMS else by
        rows += fetch(engine, f"SELECT {col}, {_DAILY_SUMS} FROM {view} WHERE {where} GROUP BY {col}", params)[1]
    if by in ID_DIMS:
        names = dict(fetch(engine, ID_DIMS[by][1])[1])
        rows = [(names.get(r[0]) if r[0] is not None else None, *r[1:]) for r in rows]
    return rows


def _no_session(engine: Engine, f: Filters) -> list[float]:
    """Spend of calls that carry no session id, over the filters (no repo: such calls have none)."""
    totals = [0.0] * len(MEASURES)
    if f.day_aligned():
        for view, _col, where, params in _calendar(f, "month"):
            row = fetch(engine, f"SELECT {_DAILY_SUMS} FROM {view} WHERE in_session = 0 AND {where}", params)[1][0]
            totals = [t + float(v or 0) for t, v in zip(totals, row, strict=True)]
        return totals
    where, params = f.where(time_col="started_at", repo_col=None)
    row = fetch(engine, f"SELECT {_SUMS} FROM llm_calls WHERE session_id IS NULL AND {where}", params)[1][0]
    return [float(v or 0) for v in row]


def _from_sessions(engine: Engine, f: Filters, by: str) -> list[tuple[Any, ...]]:
    col = {"session": "session_id", "day": "day", "week": "day", "month": "day"}.get(by, by)
    # The team by id, looked up once: the view's `team` is a name looked up per row (8.8 s for
    # `--by repo --team T` over a million sessions on PostgreSQL).
    where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
    return fetch(engine, f"SELECT {col}, {_SESSION_SUMS} FROM sessions WHERE {where} GROUP BY {col}", params)[1]


def _from_calls(engine: Engine, f: Filters, by: str) -> list[tuple[Any, ...]]:
    col = {"repo": "s.repo", "agent": "s.agent", "session": "c.session_id"}.get(by, f"c.{by}")
    if by in TIME_DIMS:
        col = "c.day"
    where, params = f.where(time_col="c.started_at", team_col="c.team", repo_col="s.repo")
    sql = f"""
SELECT {col}, COUNT(*), SUM(c.input_tokens), SUM(c.cache_read_tokens), SUM(c.cache_write_tokens),
       SUM(c.output_tokens), SUM(c.cost_usd)
FROM llm_calls c LEFT JOIN sessions s ON s.session_id = c.session_id
WHERE {where} GROUP BY {col}"""
    return fetch(engine, sql, params)[1]


def spend_report(engine: Engine, f: Filters, by: str = "team") -> Report:
    if by == "period":
        by = "week"
    if by not in DIMENSIONS:
        raise ValueError(f"cannot report spend by {by!r}; choose one of {', '.join(DIMENSIONS)}")
    source: str
    call_dim = by in CALL_DIMS or by in TIME_DIMS
    if call_dim and f.repo is None and f.day_aligned():
        totals, source = _fold(_from_calendar(engine, f, by), by), "monthly_spend + daily_spend"
    elif by in SESSION_DIMS or (f.repo is not None and by not in ("model", "provider")):
        totals, source = _fold(_from_sessions(engine, f, by), by), "sessions"
        if f.repo is None:
            extra = _no_session(engine, f)
            if any(extra):
                totals[NO_SESSION] = extra
    else:
        totals, source = _fold(_from_calls(engine, f, by), by), "llm_calls"
    grand = sum(v[-1] for v in totals.values())
    ordered = sorted(totals.items(), key=(lambda kv: kv[0]) if by in TIME_DIMS else (lambda kv: -kv[1][-1]))
    rows = [
        (label, int(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]), v[5], share(v[5], grand)) for label, v in ordered
    ]
    section = Section("by_" + by, f"Spend by {by}", [by, *MEASURES, "share"], rows)
    return Report("spend", f, [section], [f"source: {source}", f"total cost_usd: {grand:.6f}"])


def spend(
    engine: Engine,
    by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
) -> SpendReport:
    """The one-table form (kept for callers of the first version)."""
    rep = spend_report(engine, Filters(since, until, team), by)
    s = rep.sections[0]
    return SpendReport(by, s.columns, s.rows)
