"""Read-only SQL over the documented views, made safe the way Datasette does it.

SQLite: an authorizer that allows only SELECTs reading the documented views (and the tables
behind them only through those views), plus `PRAGMA query_only`, a time limit through the
progress handler, and a row cap. PostgreSQL: a READ ONLY transaction, `statement_timeout`, and a
role that can read only the views (`agenttrail_reader`, see `grant_reader`). The statement goes to
PostgreSQL as a prepared statement (extended protocol), which holds exactly one command: through the
simple protocol a `COMMIT;` hidden after an `E'\''` literal would end the read-only transaction and
reset the role for the commands after it.

A caller may narrow the readable views (`views=`): roles that may not see content read only the
aggregate views, enforced by the SQLite authorizer and by a second PostgreSQL role
(`agenttrail_aggregates`) that has SELECT on those views only.

On PostgreSQL the statement runs on a connection that logs in as the reader role itself, not as the
application's role switched with SET ROLE: a role switched into can switch back (`set_config('role',
…)` is an expression, and `query_to_xml` runs a query string after it), which would let a single
SELECT read any table. A login as the reader has no role to go back to. The login URL is the
store's with the role as user (trust or peer auth), or AGENTTRAIL_SQL_READER_URL /
AGENTTRAIL_SQL_AGGREGATES_URL. Where neither works, the SET ROLE fallback also refuses the
functions that switch roles or run query strings, and says so in the log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from agenttrail.store.views import CONTENT_VIEWS, VIEW_NAMES, view_sql

log = logging.getLogger("agenttrail.sql")

READER_ROLE = "agenttrail_reader"
AGGREGATES_ROLE = "agenttrail_aggregates"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_ROWS = 10_000
_VIEWS = frozenset(VIEW_NAMES)
AGGREGATE_VIEWS = _VIEWS - CONTENT_VIEWS
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
    views: frozenset[str] | None = None,
) -> SQLResult:
    """Run one read-only statement. `views` narrows what may be read (default: every documented view)."""
    allowed = _VIEWS if views is None else frozenset(views) & _VIEWS
    if allowed not in (_VIEWS, AGGREGATE_VIEWS):
        raise ValueError("views must be all documented views or the aggregate views")
    # On PostgreSQL a statement_timeout of 0 means no limit at all: a limit must be a positive time.
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise SQLRefused(f"the time limit must be a positive number of seconds, not {timeout_s:g}")
    if max_rows < 0:
        raise SQLRefused(f"the row cap must be 0 or more, not {max_rows}")
    sql = sql.strip().rstrip(";").strip()
    body = _LEADING_COMMENTS.sub("", sql)
    if not body.strip(" \n\t;"):
        raise SQLRefused("empty statement: give a SELECT over the views " + ", ".join(VIEW_NAMES))
    if ";" in _strip_strings(sql):
        raise SQLRefused("one statement at a time: remove the ';' between statements")
    first = body.lstrip("( \n\t").split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH", "VALUES", "EXPLAIN"):
        # A friendlier message than the engine's; the authorizer and read-only transaction still enforce it.
        raise SQLRefused(f"only read-only SELECT statements are allowed; {first} is refused")
    if engine.dialect.name == "sqlite":
        return _run_sqlite(engine, sql, timeout_s, max_rows, params or {}, allowed)
    return _run_postgres(engine, sql, timeout_s, max_rows, params or {}, allowed)


# Comments before the statement (`-- why`, `/* note */`): its first word comes after them.
_LEADING_COMMENTS = re.compile(r"\A(?:\s*(?:--[^\n]*(?:\n|\Z)|/\*.*?\*/))*\s*", re.S)


def views_named(sql: str) -> frozenset[str]:
    """The documented views a statement names (for the audit trail: a false positive only adds a line)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql.lower()))
    return frozenset(v for v in VIEW_NAMES if v in words)


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


Lineage = dict[str, frozenset[tuple[str, str]]]


class _SQLiteAuthorizer:
    """Allows SELECTs that read only the views (tables only through a view).

    A table read carries the name of the view "responsible" for it (a4), but SQLite gives a CTE's name
    there too, so `WITH sessions AS (SELECT key_hash FROM virtual_key) …` would pass as a read through
    the `sessions` view. A table column is therefore allowed only if that view really reads it: its
    lineage, traced once from `SELECT * FROM view`. A CTE's reads of itself have no database (a3).

    SQLite reports the tables of a view's LEFT JOINs that the planner eliminated as reads with an
    empty column name and no view attached. Such a read carries no column value; it is allowed
    only once a view has been entered in this statement, so a bare `SELECT count(*) FROM team` is
    still refused.
    """

    def __init__(self, views: frozenset[str] = _VIEWS, lineage: Lineage | None = None) -> None:
        self.views = views
        self.lineage = lineage or {}
        self.in_view = False

    def __call__(self, action: int, a1: str | None, a2: str | None, a3: str | None, a4: str | None) -> int:
        if action == sqlite3.SQLITE_SELECT:
            if a4 in self.views:
                self.in_view = True
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # a1 is the table or view read, a2 the column, a3 the database, a4 the view (or CTE) responsible.
            ok = (
                a3 is None  # a recursive CTE reading its own rows
                or a1 in self.views
                or (a4 in self.views and (a1 or "", a2 or "") in self.lineage.get(a4 or "", frozenset()))
                or (a2 == "" and self.in_view)
            )
            return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_DENY if (a2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_RECURSIVE:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY


_lineage_cache: dict[tuple[str, str], Lineage] = {}


def _lineage(db: sqlite3.Connection, key: str) -> Lineage:
    """view -> the (table, column) pairs it reads, traced with an authorizer that records and allows."""
    digest = hashlib.sha256(repr(sorted(view_sql("sqlite").items())).encode()).hexdigest()
    cached = _lineage_cache.get((key, digest))
    if cached is not None:
        return cached
    seen: dict[str, set[tuple[str, str]]] = {v: set() for v in VIEW_NAMES}

    def record(action: int, a1: str | None, a2: str | None, a3: str | None, a4: str | None) -> int:
        if action == sqlite3.SQLITE_READ and a4 in seen and a1 is not None:
            seen[a4].add((a1, a2 or ""))
        return sqlite3.SQLITE_OK

    db.set_authorizer(record)
    try:
        for v in VIEW_NAMES:
            db.execute(f"SELECT * FROM {v} LIMIT 0").fetchall()
    finally:
        db.set_authorizer(None)
    lineage = {v: frozenset(cols) for v, cols in seen.items()}
    _lineage_cache[(key, digest)] = lineage
    return lineage


def _explain_sqlite_error(e: sqlite3.Error, sql: str, views: frozenset[str] = _VIEWS) -> SQLRefused:
    msg = str(e)
    if "not authorized" in msg or "prohibited" in msg:
        first = sql.split(None, 1)[0].upper() if sql.split() else ""
        if first != "SELECT" and first != "WITH":
            return SQLRefused(f"only read-only SELECT statements are allowed; {first} is refused")
        readable = [v for v in VIEW_NAMES if v in views]
        return SQLRefused(
            f"this query reads something other than the documented views ({', '.join(readable)}), which is refused"
        )
    if "one statement at a time" in msg:
        return SQLRefused("one statement at a time: remove the ';' between statements")
    if "attempt to write a readonly database" in msg:
        return SQLRefused("the SQL interface is read-only; writes are refused")
    if "interrupted" in msg:
        return SQLRefused("the query was stopped at the statement time limit")
    return SQLRefused(f"SQL error: {msg}")


def _run_sqlite(
    engine: Engine, sql: str, timeout_s: float, max_rows: int, params: dict[str, Any], views: frozenset[str]
) -> SQLResult:
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
        db.set_authorizer(_SQLiteAuthorizer(views, _lineage(db, str(engine.url))))
        db.set_progress_handler(progress, 10_000)
        try:
            cur = db.execute(sql, params)
            rows = cur.fetchmany(max_rows + 1)
            columns = [d[0] for d in cur.description or ()]
        except sqlite3.Error as e:
            if timed_out:
                raise SQLRefused(f"the query ran past the time limit of {timeout_s:g} s and was stopped") from None
            raise _explain_sqlite_error(e, sql, views) from None
        finally:
            db.set_authorizer(None)
            db.set_progress_handler(None, 0)
            db.execute("PRAGMA query_only = 0")
    finally:
        raw.close()
    truncated = len(rows) > max_rows
    return SQLResult(columns, [tuple(r) for r in rows[:max_rows]], truncated, max_rows)


LOGIN_URL_ENV = {READER_ROLE: "AGENTTRAIL_SQL_READER_URL", AGGREGATES_ROLE: "AGENTTRAIL_SQL_AGGREGATES_URL"}
# Functions that change the role or run a query given as a string: with SET ROLE (the fallback) they
# would let a statement leave the reader role. Matched in the text, so a quoted name is refused too.
_ESCALATION = re.compile(
    r"set_config|query_to_xml|table_to_xml|schema_to_xml|database_to_xml|cursor_to_xml|ts_stat|dblink"
    r"|pg_read|lo_import|lo_export|lo_get|lo_put|pg_file|pg_ls_",
    re.I,
)
_logins: dict[str, Engine | None] = {}
_logins_lock = threading.Lock()


def _login_engine(engine: Engine, role: str) -> Engine | None:
    """An engine that logs in as `role` (NullPool: SQL is not a hot path, and idle logins per schema
    would pile up), or None when that login is refused."""
    url = os.environ.get(LOGIN_URL_ENV[role]) or engine.url.set(username=role, password=None).render_as_string(
        hide_password=False
    )
    with _logins_lock:
        if url in _logins:
            return _logins[url]
    login: Engine | None = create_engine(url, poolclass=NullPool)
    try:
        assert login is not None
        with login.connect() as conn:
            who = conn.execute(text("SELECT session_user")).scalar_one()
        if os.environ.get(LOGIN_URL_ENV[role]) is None and who != role:
            raise OperationalError("session_user", {}, Exception(f"logged in as {who}, not {role}"))
    except (OperationalError, DBAPIError) as e:
        log.warning(
            "cannot log in as %s (%s); read-only SQL falls back to SET ROLE with escalation functions refused. "
            "Allow that login or set %s.",
            role,
            str(e).splitlines()[0],
            LOGIN_URL_ENV[role],
        )
        if login is not None:
            login.dispose()
        login = None
    with _logins_lock:
        _logins[url] = login
    return login


def _run_postgres(
    engine: Engine, sql: str, timeout_s: float, max_rows: int, params: dict[str, Any], views: frozenset[str]
) -> SQLResult:
    role = READER_ROLE if views == _VIEWS else AGGREGATES_ROLE
    login = _login_engine(engine, role)
    escalation = _ESCALATION.search(sql) if login is None else None
    if escalation is not None:
        raise SQLRefused(f"{escalation.group(0)}() is not available in the SQL interface")
    with (login or engine).connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"SET LOCAL statement_timeout = {max(1, math.ceil(timeout_s * 1000))}"))
            if login is None:
                conn.execute(text(f"SET LOCAL ROLE {role}"))
            dbapi = conn.connection.driver_connection
            assert dbapi is not None
            try:
                with dbapi.cursor() as cur:
                    # prepare=True: the extended protocol, so the server refuses a second command.
                    cur.execute(sql, params or None, prepare=True)
                    if cur.description is None:
                        raise SQLRefused("only SELECT statements that return rows are allowed")
                    rows = cur.fetchmany(max_rows + 1)
                    columns = [d.name for d in cur.description]
            except psycopg_errors() as e:
                raise _explain_pg_error(e, timeout_s, views) from None
        finally:
            try:
                trans.rollback()
                # Session-level advisory locks outlive the transaction; none may stay on a pooled connection.
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
                conn.commit()
            except DBAPIError:
                # The statement ended its own connection (pg_terminate_backend): nothing is left to undo,
                # and the pool discards the connection.
                conn.invalidate()
    truncated = len(rows) > max_rows
    return SQLResult(columns, [tuple(r) for r in rows[:max_rows]], truncated, max_rows)


def psycopg_errors() -> type[Exception]:
    import psycopg

    return psycopg.Error


def _explain_pg_error(e: Exception, timeout_s: float, views: frozenset[str] = _VIEWS) -> SQLRefused:
    code = getattr(e, "sqlstate", None)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if code == "25006":
        return SQLRefused("the SQL interface is read-only; writes are refused")
    if code == "57014":
        return SQLRefused(f"the query ran past the time limit of {timeout_s:g} s and was stopped")
    if code == "42501":
        readable = [v for v in VIEW_NAMES if v in views]
        return SQLRefused(f"permission denied: only the documented views can be read ({', '.join(readable)})")
    if code == "42601" and "multiple commands" in msg:
        return SQLRefused("one statement at a time: remove the ';' between statements")
    return SQLRefused(f"SQL error: {msg}")


def grant_reader(conn: Connection) -> None:
    """PostgreSQL: a role that can read the views and nothing else (views run as their owner), and one
    that can read only the aggregate views (for roles that may not see content)."""
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    for role, names in ((READER_ROLE, VIEW_NAMES), (AGGREGATES_ROLE, sorted(AGGREGATE_VIEWS))):
        found = conn.execute(text("SELECT rolcanlogin FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        # LOGIN, without a password: read-only SQL connects as this role (see the module's docstring);
        # pg_hba decides who may, and AGENTTRAIL_SQL_*_URL can name a login with a password instead.
        ddl = f"CREATE ROLE {role} LOGIN" if found is None else (None if found[0] else f"ALTER ROLE {role} LOGIN")
        if ddl:
            try:
                with conn.begin_nested():
                    conn.execute(text(ddl))
            except DBAPIError as e:  # made concurrently by another process, or not permitted
                log.warning("could not %s: %s", ddl.lower(), e.orig)
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
        for name in names:
            conn.execute(text(f'GRANT SELECT ON "{schema}".{name} TO {role}'))
        # The connecting role must be able to switch to the reader roles.
        conn.execute(text(f"GRANT {role} TO CURRENT_USER"))
