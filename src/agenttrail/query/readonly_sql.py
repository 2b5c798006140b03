"""Read-only SQL over the documented views, made safe the way Datasette does it.

SQLite: an authorizer that allows only SELECTs reading the documented views (and the tables
behind them only through those views), plus `PRAGMA query_only`, a time limit through the
progress handler, and a row cap. PostgreSQL: a READ ONLY transaction, `statement_timeout`, and a
role that can read only the views (`agenttrail_reader`, see `grant_reader`).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from agenttrail.store.views import VIEW_NAMES

log = logging.getLogger("agenttrail.sql")

READER_ROLE = "agenttrail_reader"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 10_000
_VIEWS = frozenset(VIEW_NAMES)
# Functions that read outside the views or change state.
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


class SQLRefused(Exception):
    """The statement is not allowed, failed, or hit a limit; the message says which."""


@dataclass(slots=True)
class SQLResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False
    max_rows: int = DEFAULT_MAX_ROWS

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, (jsonable(v) for v in r), strict=True)) for r in self.rows]


def jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes | memoryview):
        return bytes(v).hex()
    return v


def run_sql(
    engine: Engine,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
    params: dict[str, Any] | None = None,
) -> SQLResult:
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise SQLRefused("empty statement: give a SELECT over the views " + ", ".join(VIEW_NAMES))
    if ";" in _strip_strings(sql):
        raise SQLRefused("one statement at a time: remove the ';' between statements")
    first = sql.lstrip("( \n\t").split(None, 1)[0].upper() if sql.split() else ""
    if first not in ("SELECT", "WITH", "VALUES", "EXPLAIN"):
        # A friendlier message than the engine's; the authorizer and read-only transaction still enforce it.
        raise SQLRefused(f"only read-only SELECT statements are allowed; {first} is refused")
    if engine.dialect.name == "sqlite":
        return _run_sqlite(engine, sql, timeout_s, max_rows, params or {})
    return _run_postgres(engine, sql, timeout_s, max_rows, params or {})


def _strip_strings(sql: str) -> str:
    out, quote = [], None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
            continue
        out.append(ch)
    return "".join(out)


class _SQLiteAuthorizer:
    """Allows SELECTs that read only the views (tables only through a view).

    SQLite reports the tables of a view's LEFT JOINs that the planner eliminated as reads with an
    empty column name and no view attached. Such a read carries no column value; it is allowed
    only once a view has been entered in this statement, so a bare `SELECT count(*) FROM team` is
    still refused.
    """

    def __init__(self) -> None:
        self.in_view = False

    def __call__(self, action: int, a1: str | None, a2: str | None, a3: str | None, a4: str | None) -> int:
        if action == sqlite3.SQLITE_SELECT:
            if a4 in _VIEWS:
                self.in_view = True
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # a1 is the table or view read; a4 the view through which a table is read, if any.
            ok = (a1 in _VIEWS and a4 is None) or a4 in _VIEWS or (a2 == "" and self.in_view)
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (a2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_RECURSIVE:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


def _explain_sqlite_error(e: sqlite3.Error, sql: str) -> SQLRefused:
    msg = str(e)
    if "not authorized" in msg or "prohibited" in msg:
        first = sql.split(None, 1)[0].upper() if sql.split() else ""
        if first != "SELECT" and first != "WITH":
            return SQLRefused(f"only read-only SELECT statements are allowed; {first} is refused")
        return SQLRefused(
            f"this query reads something other than the documented views ({', '.join(VIEW_NAMES)}), which is refused"
        )
    if "attempt to write a readonly database" in msg:
        return SQLRefused("the SQL interface is read-only; writes are refused")
    if "interrupted" in msg:
        return SQLRefused("the query was stopped at the statement time limit")
    return SQLRefused(f"SQL error: {msg}")


def _run_sqlite(engine: Engine, sql: str, timeout_s: float, max_rows: int, params: dict[str, Any]) -> SQLResult:
    raw = engine.raw_connection()
    try:
        db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
        deadline = time.monotonic() + timeout_s
        timed_out = False

        def progress() -> int:
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return 1
            return 0

        db.execute("PRAGMA query_only = 1")
        db.set_authorizer(_SQLiteAuthorizer())
        db.set_progress_handler(progress, 10_000)
        try:
            cur = db.execute(sql, params)
            rows = cur.fetchmany(max_rows + 1)
            columns = [d[0] for d in cur.description or ()]
        except sqlite3.Error as e:
            if timed_out:
                raise SQLRefused(f"the query ran past the time limit of {timeout_s:g} s and was stopped") from None
            raise _explain_sqlite_error(e, sql) from None
        finally:
            db.set_authorizer(None)
            db.set_progress_handler(None, 0)
            db.execute("PRAGMA query_only = 0")
    finally:
        raw.close()
    truncated = len(rows) > max_rows
    return SQLResult(columns, [tuple(r) for r in rows[:max_rows]], truncated, max_rows)


def _run_postgres(engine: Engine, sql: str, timeout_s: float, max_rows: int, params: dict[str, Any]) -> SQLResult:
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}"))
            conn.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
            try:
                res = conn.exec_driver_sql(sql, params) if params else conn.exec_driver_sql(sql)
                if not res.returns_rows:
                    raise SQLRefused("only SELECT statements that return rows are allowed")
                rows = res.fetchmany(max_rows + 1)
                columns = list(res.keys())
            except DBAPIError as e:
                raise _explain_pg_error(e, timeout_s) from None
        finally:
            trans.rollback()
    truncated = len(rows) > max_rows
    return SQLResult(columns, [tuple(r) for r in rows[:max_rows]], truncated, max_rows)


def _explain_pg_error(e: DBAPIError, timeout_s: float) -> SQLRefused:
    code = getattr(e.orig, "sqlstate", None)
    msg = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
    if code == "25006":
        return SQLRefused("the SQL interface is read-only; writes are refused")
    if code == "57014":
        return SQLRefused(f"the query ran past the time limit of {timeout_s:g} s and was stopped")
    if code == "42501":
        return SQLRefused(f"permission denied: only the documented views can be read ({', '.join(VIEW_NAMES)})")
    return SQLRefused(f"SQL error: {msg}")


def grant_reader(conn: Connection) -> None:
    """PostgreSQL: a role that can read the views and nothing else (views run as their owner)."""
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": READER_ROLE}).first()
    if not exists:
        try:
            with conn.begin_nested():
                conn.execute(text(f"CREATE ROLE {READER_ROLE} NOLOGIN"))
        except DBAPIError as e:  # created concurrently by another process, or not permitted
            log.warning("could not create role %s: %s", READER_ROLE, e.orig)
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {READER_ROLE}'))
    for name in VIEW_NAMES:
        conn.execute(text(f'GRANT SELECT ON "{schema}".{name} TO {READER_ROLE}'))
    # The connecting role must be able to switch to the reader role.
    conn.execute(text(f"GRANT {READER_ROLE} TO CURRENT_USER"))
