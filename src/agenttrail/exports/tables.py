"""CSV and NDJSON of the `sessions` or `llm_calls` view, streamed (an export can be millions of rows)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import orjson
from sqlalchemy import Engine, text

from agenttrail.reports.base import Filters

WHAT = {"sessions": ("sessions", "started_at"), "calls": ("llm_calls", "started_at")}
TIME_COLUMNS = frozenset({"started_at", "ended_at", "ts", "merged_at", "committed_at", "created_at"})


def plain_value(col: str, v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, str) and col in TIME_COLUMNS:
        # SQLite hands a view's timestamps back as text; write them as PostgreSQL's do.
        try:
            return datetime.fromisoformat(v).isoformat()
        except ValueError:
            return v
    return v


def rows(engine: Engine, what: str, f: Filters, *, batch: int = 5000) -> Iterator[dict[str, Any]]:
    it = _stream(engine, what, f, batch)
    next(it)  # the column names
    yield from it


def _stream(engine: Engine, what: str, f: Filters, batch: int) -> Iterator[Any]:
    """First the column names, then one dict per row."""
    if what not in WHAT:
        raise ValueError(f"cannot export {what!r}; choose sessions or calls")
    view, time_col = WHAT[what]
    repo_col = "repo" if what == "sessions" else None
    where, params = f.where(time_col=time_col, repo_col=repo_col)
    if what == "calls" and f.repo is not None:
        where += " AND session_id IN (SELECT session_id FROM sessions WHERE repo = :repo)"
        params["repo"] = f.repo
    sql = f"SELECT * FROM {view} WHERE {where} ORDER BY {time_col}"
    with engine.connect().execution_options(stream_results=True, yield_per=batch) as conn:
        res = conn.execute(text(sql), params)
        cols = list(res.keys())
        yield cols
        for r in res:
            yield {c: plain_value(c, v) for c, v in zip(cols, r, strict=True)}


def write_csv(engine: Engine, what: str, f: Filters, out: TextIO) -> int:
    it = _stream(engine, what, f, 5000)
    w = csv.DictWriter(out, fieldnames=next(it), lineterminator="\n")
    w.writeheader()  # even for no rows: a consumer still learns the columns
    n = 0
    for rec in it:
        w.writerow({k: "" if v is None else v for k, v in rec.items()})
        n += 1
    return n


def write_ndjson(engine: Engine, what: str, f: Filters, out: TextIO) -> int:
    n = 0
    for rec in rows(engine, what, f):
        out.write(orjson.dumps(rec).decode() + "\n")
        n += 1
    return n
