"""Spend by a dimension over a period, from `llm_calls` (and `sessions` for repo and agent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

DIMENSIONS = {
    "team": "c.team",
    "project": "c.project",
    "engineer": "c.engineer",
    "model": "c.model",
    "provider": "c.provider",
    "session": "c.session_id",
    "repo": "s.repo",
    "agent": "s.agent",
    "day": "c.day",
}


@dataclass(slots=True)
class SpendReport:
    by: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


def spend(
    engine: Engine,
    by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
) -> SpendReport:
    if by not in DIMENSIONS:
        raise ValueError(f"cannot report spend by {by!r}; choose one of {', '.join(DIMENSIONS)}")
    dim = DIMENSIONS[by]
    join = "LEFT JOIN sessions s ON s.session_id = c.session_id" if dim.startswith("s.") else ""
    where: list[str] = ["1=1"]
    params: dict[str, Any] = {}
    if since:
        where.append("c.started_at >= :since")
        params["since"] = since
    if until:
        where.append("c.started_at < :until")
        params["until"] = until
    if team:
        where.append("c.team = :team")
        params["team"] = team
    sql = f"""
SELECT COALESCE(CAST({dim} AS TEXT), '(none)') AS {by}, COUNT(*) AS calls,
       SUM(c.input_tokens) AS input_tokens, SUM(c.cache_read_tokens) AS cache_read_tokens,
       SUM(c.cache_write_tokens) AS cache_write_tokens, SUM(c.output_tokens) AS output_tokens,
       SUM(c.cost_usd) AS cost_usd
FROM llm_calls c {join}
WHERE {" AND ".join(where)}
GROUP BY COALESCE(CAST({dim} AS TEXT), '(none)')
ORDER BY cost_usd DESC"""
    with engine.connect() as conn:
        res = conn.execute(text(sql), params)
        cols = list(res.keys())
        rows = [tuple(r) for r in res]
    return SpendReport(by, cols, rows)
