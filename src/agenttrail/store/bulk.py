"""Many rows into one table in as few statements as each engine does best.

- PostgreSQL: one `INSERT … SELECT` per group of rows, from `json_to_recordset` of one JSON document
  for rows of text and times (the event rows), else from `unnest` of one binary array per column. The
  roll-up triggers are statement triggers, so they fire once for the whole group; and the statement
  text stays a few hundred bytes. A multi-row VALUES list of 1,000 rows is ~100 kB of text that psycopg
  re-parses on every execution (it caches only short queries): measured at 70% of ingest's client time.
- SQLite: pages of a multi-row `INSERT … VALUES` (RETURNING, when the caller needs to know which rows
  were new), parameters flattened here: SQLAlchemy's per-row bind processing cost as much as SQLite's
  own work for an event row, triggers included. SQLite has only row triggers, so for a table with
  roll-ups the insert pauses them and rolls the batch up at its end in one statement per roll-up
  table (migration 0010; measured: ~80 µs of triggers per call row, a third of ingest's CPU).

Rows are grouped by the columns they name, so a column a row leaves out takes its default.
"""

from __future__ import annotations

import functools
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Column, Connection, DateTime, Float, Integer, String, Table
from sqlalchemy.dialects import postgresql

from agenttrail.store.rollup_pause import rollups_paused


def insert_rows(
    conn: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    ignore: bool = False,
    returning: Column[Any] | None = None,
) -> list[Any]:
    """Insert `rows`; with `ignore`, a row whose key exists is skipped. Returns the `returning` column
    of the rows inserted (an empty list without `returning`)."""
    out: list[Any] = []
    rows = clipped(table, rows)
    if conn.dialect.name == "postgresql":
        for group in by_columns(rows):
            bulk = _recordset if _text_only(table, tuple(group[0])) else _unnest
            out += bulk(conn, table, group, ignore, returning)
        return out
    with rollups_paused(conn, table, rows):
        for group in by_columns(rows):
            out += _values(conn, table, group, ignore, returning)
    return out


@functools.cache
def _texts(table: Table) -> tuple[tuple[str, int | None], ...]:
    return tuple((c.name, c.type.length) for c in table.columns if isinstance(c.type, String))


def clipped(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose text every database takes: cut to its column's length, and a NUL character replaced
    by U+FFFD. PostgreSQL refuses a longer value, or any text holding a NUL (which a damaged transcript
    or a client's JSON `\\u0000` carries), and with it the whole statement (a gateway's batch of call
    records, an import), where SQLite stores anything; the full text stays where it came from (an
    event's payload, as JSON, which escapes a NUL). Identities are checked before they get here
    (`store.event_fields`); the `event` table's own columns are checked when a batch is parsed."""
    texts = _texts(table) if table.name != "event" else ()
    if not texts:
        return rows
    out = rows
    for i, r in enumerate(rows):
        for name, length in texts:
            v = r.get(name)
            if type(v) is str and ((length is not None and len(v) > length) or "\x00" in v):
                fixed = v.replace("\x00", "\ufffd")[:length]
                if out is rows:
                    out = list(rows)
                out[i] = r = {**r, name: fixed}
    return out


def by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they name, in the order they name them (rows made by one piece of
    code name them in one order; sorting every row's keys cost a microsecond a row)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r), []).append(r)
    return list(groups.values())


def _recordset(
    conn: Connection, table: Table, rows: list[dict[str, Any]], ignore: bool, returning: Column[Any] | None
) -> list[Any]:
    """The rows as one JSON document the server unpacks (`json_to_recordset`): orjson writes it in C,
    where binary arrays cost a Python call per value (psycopg has no C array dumper). Measured on
    seed-demo's event rows: 1.7-2.3 against 3.5-4.9 us of client CPU a row, the backend's the same."""
    try:
        doc = orjson.dumps(rows).decode()
    except (orjson.JSONEncodeError, TypeError):
        return _unnest(conn, table, rows, ignore, returning)  # text orjson refuses (a lone surrogate)
    sql = _recordset_sql(table, tuple(rows[0]), ignore, None if returning is None else returning.name)
    if returning is not None:
        return [r[0] for r in conn.exec_driver_sql(sql, (doc,)).all()]
    conn.exec_driver_sql(sql, (doc,))
    return []


@functools.lru_cache(maxsize=256)
def _text_only(table: Table, names: tuple[str, ...]) -> bool:
    """Rows of text and times only (the `event` rows, most of ingest's): sent as JSON. Numbers and flags
    made the server's unpacking dearer than the client's arrays (seed-demo's call rows: the backend's
    CPU +3 to +8 us an event, about what the client saved), so those rows keep the arrays."""
    return all(isinstance(table.c[n].type, String | DateTime) for n in names)


_PG = postgresql.dialect()


@functools.lru_cache(maxsize=256)
def _recordset_sql(table: Table, names: tuple[str, ...], ignore: bool, returning: str | None) -> str:
    """For `_text_only` rows: each column read as text, or as a timestamp (orjson's ISO 8601)."""
    q = _PG.identifier_preparer.quote  # `binary` is a column name and a keyword
    fields = [f"{q(n)} {'timestamp' if isinstance(table.c[n].type, DateTime) else 'text'}" for n in names]
    sql = (
        f"INSERT INTO {q(table.name)} ({', '.join(map(q, names))}) SELECT {', '.join('x.' + q(n) for n in names)} "
        f"FROM json_to_recordset(%s::json) AS x({', '.join(fields)})"
    )
    if ignore:
        sql += " ON CONFLICT DO NOTHING"
    if returning is not None:
        sql += f" RETURNING {q(returning)}"
    return sql


def _unnest(
    conn: Connection, table: Table, rows: list[dict[str, Any]], ignore: bool, returning: Column[Any] | None
) -> list[Any]:
    names = list(rows[0])
    cols = [table.c[n] for n in names]
    arrays = tuple(_column(c, rows) for c in cols)
    # %b: binary arrays, no text escaping of every element (that was most of the client's time).
    casts = ", ".join(f"%b::{c.type.compile(dialect=conn.dialect)}[]" for c in cols)
    q = conn.dialect.identifier_preparer.quote  # `binary` is a column name and a keyword
    sql = f"INSERT INTO {q(table.name)} ({', '.join(map(q, names))}) SELECT * FROM unnest({casts})"
    if ignore:
        sql += " ON CONFLICT DO NOTHING"
    if returning is not None:
        sql += f" RETURNING {q(returning.name)}"
        return [r[0] for r in conn.exec_driver_sql(sql, arrays).all()]
    conn.exec_driver_sql(sql, arrays)
    return []


def _column(col: Column[Any], rows: list[dict[str, Any]]) -> list[Any]:
    """One Python type per array: psycopg refuses a list mixing int and float (a cost of 0 next to
    0.25), or int and bool."""
    name = col.name
    if isinstance(col.type, Float):
        return [None if (v := r[name]) is None else float(v) for r in rows]
    if isinstance(col.type, Boolean):
        return [None if (v := r[name]) is None else bool(v) for r in rows]
    if isinstance(col.type, Integer | BigInteger):
        return [None if (v := r[name]) is None else int(v) for r in rows]
    return [r[name] for r in rows]


SQLITE_MAX_VARIABLES = 32766


def _values(
    conn: Connection, table: Table, rows: list[dict[str, Any]], ignore: bool, returning: Column[Any] | None
) -> list[Any]:
    names = list(rows[0])
    times = {n for n in names if isinstance(table.c[n].type, DateTime)}
    page = max(1, min(1000, SQLITE_MAX_VARIABLES // len(names)))
    q = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {q(table.name)} ({', '.join(map(q, names))}) VALUES "
    tail = " ON CONFLICT DO NOTHING" if ignore else ""
    if returning is not None:
        tail += f" RETURNING {q(returning.name)}"
    one = "(" + ", ".join("?" * len(names)) + ")"
    get = itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)
    at = [i for i, n in enumerate(names) if n in times]
    out: list[Any] = []
    for i in range(0, len(rows), page):
        chunk = rows[i : i + page]
        params: list[Any] = []
        for r in chunk:
            values = get(r)
            if at:
                values = list(values)
                for j in at:
                    values[j] = sqlite_time(values[j])
            params += values
        result = conn.exec_driver_sql(head + ", ".join([one] * len(chunk)) + tail, tuple(params))
        if returning is not None:
            out += [r[0] for r in result.all()]
    return out


def sqlite_time(v: Any) -> Any:
    """As SQLAlchemy stores a DateTime on SQLite, so text comparison orders them right."""
    return v.isoformat(" ", "microseconds") if isinstance(v, datetime) else v
