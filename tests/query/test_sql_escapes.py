"""Read-only SQL: a corpus of writes and escapes is refused with a clear message on both databases,
and every table is byte-for-byte the same afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from agenttrail.query.readonly_sql import AGGREGATE_VIEWS, SQLRefused, run_sql
from agenttrail.store.database import open_engine
from agenttrail.store.tables import metadata
from reports.handbuilt import build_org

WRITES = [
    "DELETE FROM sessions",
    "DELETE FROM team",
    "UPDATE llm_calls SET cost_usd = 0",
    "UPDATE llm_call SET cost_usd = 0",
    "INSERT INTO teams (team) VALUES ('x')",
    "INSERT INTO team (name, created_at) VALUES ('x', '2026-01-01')",
    "REPLACE INTO team VALUES (99, 'x', '2026-01-01')",
    "DROP TABLE sessions",
    "DROP VIEW sessions",
    "DROP TABLE team",
    "CREATE TABLE t(x)",
    "CREATE TEMP TABLE t(x)",
    "CREATE VIEW v AS SELECT 1",
    "ALTER TABLE team ADD COLUMN x int",
    "ATTACH DATABASE '/tmp/agenttrail-escape.db' AS x",
    "DETACH DATABASE main",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = 1",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT a",
    "SELECT 1; DELETE FROM team",
    "SELECT 1 ;DELETE FROM team",
    "select 1;\nDELETE FROM team",
    # A literal whose quoting a naive splitter misreads: through PostgreSQL's simple protocol the
    # COMMIT would end the read-only transaction and reset the role for the DELETE.
    "SELECT E'\\'';COMMIT;DELETE FROM team;--'",
    "SELECT $$;$$; DELETE FROM team",
    "WITH d AS (DELETE FROM team RETURNING *) SELECT * FROM d",
    "EXPLAIN ANALYZE DELETE FROM team",
    "EXPLAIN DELETE FROM team",
    "SELECT * FROM sessions FOR UPDATE",
    "COPY team TO STDOUT",
    "SET ROLE postgres",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT nextval('team_id_seq')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT * INTO TEMP t FROM sessions",
    "SELECT load_extension('/tmp/evil')",
    "SELECT readfile('/etc/passwd')",
    "SELECT writefile('/tmp/agenttrail-escape', 'x')",
]
READS_OUTSIDE_VIEWS = [
    "SELECT * FROM team",
    "SELECT * FROM virtual_key",
    "SELECT key_hash FROM virtual_key",
    "SELECT token_hash FROM api_token",
    "SELECT * FROM audit_log",
    "SELECT * FROM session_rollup",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pragma_table_info('team')",
    "SELECT * FROM sessions s JOIN virtual_key k ON 1 = 1",
    "WITH t AS (SELECT * FROM virtual_key) SELECT * FROM t",
    # A CTE named like a view: SQLite reports its reads as if through that view.
    "WITH sessions AS (SELECT key_hash FROM virtual_key) SELECT * FROM sessions",
    "WITH sessions AS (SELECT command FROM agent_session) SELECT * FROM sessions",
    "WITH events AS (SELECT token_hash AS payload FROM api_token) SELECT payload FROM events",
    "SELECT (SELECT key_hash FROM virtual_key LIMIT 1) FROM sessions",
    "SELECT * FROM sessions WHERE session_id IN (SELECT prefix FROM virtual_key)",
    # A role switched into with SET ROLE could switch back inside one SELECT and then run a query string.
    "SELECT set_config('role', 'postgres', true), query_to_xml('SELECT key_hash FROM virtual_key', true, true, '')",
    "SELECT query_to_xml('SELECT token_hash FROM api_token', true, true, '')",
    "SELECT table_to_xml('virtual_key', true, true, '')",
]


def _snapshot(engine: Engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            out[table.name] = sorted(repr(tuple(r)) for r in conn.execute(select(table)))
    return out


@pytest.fixture
def engine(db_url: str) -> Engine:
    e = open_engine(db_url)
    build_org(e)
    return e


def _refused(engine: Engine, sql: str, **kw: Any) -> str:
    with pytest.raises(SQLRefused) as info:
        run_sql(engine, sql, **kw)
    msg = str(info.value)
    assert msg and "Traceback" not in msg, sql
    return msg


def test_writes_and_escapes_are_refused_and_change_nothing(engine: Engine) -> None:
    before = _snapshot(engine)
    messages = {sql: _refused(engine, sql) for sql in WRITES}
    # The messages say why, in words a person can act on.
    assert "only read-only SELECT" in messages["DELETE FROM sessions"]
    assert "one statement at a time" in messages["SELECT 1; DELETE FROM team"]
    if engine.dialect.name == "postgresql":  # SQLite has no E'' literals: a plain syntax error there
        assert "one statement at a time" in messages["SELECT E'\\'';COMMIT;DELETE FROM team;--'"]
    for sql in READS_OUTSIDE_VIEWS:
        msg = _refused(engine, sql)
        assert "documented views" in msg or "SQL error" in msg, (sql, msg)
    assert _snapshot(engine) == before
    # And the interface still works afterwards, on the same pooled connections.
    assert run_sql(engine, "SELECT COUNT(*) AS n FROM sessions").rows == [(10,)]


def test_reader_cannot_leave_its_role(pg_url: str) -> None:
    engine = open_engine(pg_url)
    who = run_sql(engine, "SELECT session_user, current_user").rows[0]
    assert who == ("agenttrail_reader", "agenttrail_reader")
    assert "permission denied" in _refused(engine, "SELECT set_config('role', 'postgres', true)")
    run_sql(engine, "SELECT pg_advisory_lock(4242)")  # a session lock must not outlive the query
    with engine.connect() as conn:
        assert conn.execute(select(func.pg_try_advisory_lock(4242))).scalar() is True
        conn.execute(select(func.pg_advisory_unlock(4242)))


def test_ctes_over_views_still_work(engine: Engine) -> None:
    res = run_sql(engine, "WITH w AS (SELECT engineer, cost_usd FROM sessions) SELECT COUNT(*), SUM(cost_usd) FROM w")
    assert res.rows[0][0] == 10


def test_time_limit_and_row_cap_are_reported(engine: Engine) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c"
    assert "time limit" in _refused(engine, forever, timeout_s=0.5)
    res = run_sql(
        engine,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) SELECT x FROM c",
        max_rows=10,
    )
    assert res.truncated and len(res.rows) == 10 and res.max_rows == 10


def test_aggregate_views_only_for_roles_without_content(engine: Engine) -> None:
    ok = run_sql(engine, "SELECT COUNT(*) FROM sessions", views=AGGREGATE_VIEWS)
    assert ok.rows[0][0] == 10
    for view in ("events", "file_changes", "commits"):
        msg = _refused(engine, f"SELECT * FROM {view}", views=AGGREGATE_VIEWS)
        assert "documented views" in msg and "events" not in msg.split("(", 1)[1]


def test_the_seed_query_returns_the_right_numbers(engine: Engine) -> None:
    res = run_sql(
        engine,
        "SELECT engineer, repo, SUM(cost_usd), SUM(files_changed) FROM sessions WHERE week = '2026-W19' "
        "GROUP BY engineer, repo",
    )
    got = {(r[0], r[1]): (round(float(r[2]), 9), int(r[3])) for r in res.rows}
    assert got == {
        ("ana@acme.test", "github.com/acme/pay"): (3.1, 6),
        ("ben@acme.test", "github.com/acme/pay"): (7.3, 6),
        ("cara@acme.test", "github.com/acme/find"): (3.0, 2),
        ("dan@acme.test", "github.com/acme/find"): (2.0, 2),
    }
