"""PostgreSQL: the roll-up triggers on `session_rollup` never join their transition tables in a nested
loop (every old row against every new row: 0011's change test took 0.5-0.9 s per 1,065-row UPDATE, the
most of an ingest's database time; migration 0012). Read from the plans auto_explain gives of the
statements the triggers run, for an UPDATE of many roll-up rows at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import event, text
from tests.conftest import need

from agenttrail.events import Event
from agenttrail.store.database import open_engine
from agenttrail.store.engine import make_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.migrate import alembic_config

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _plans(url: str, warm_up: list[str], sql: str) -> list[str]:
    """The plans of `sql` and of every statement its triggers run, after `warm_up` on the same
    connection: PL/pgSQL plans a trigger's statements for the rows at hand the first five times, then
    keeps a generic plan, in which a transition table is estimated at one row (a nested loop looks cheap)."""
    engine = make_engine(url)
    notes: list[str] = []

    @event.listens_for(engine, "connect")
    def _explained(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.add_notice_handler(lambda d: notes.append(d.message_primary or ""))

    try:
        with engine.begin() as conn:
            try:
                conn.exec_driver_sql("LOAD 'auto_explain'")
            except Exception as e:  # not installed: nothing to read the plans with (a failure in CI)
                need(False, f"auto_explain is not available: {e}")
            for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_level = 'notice'"):
                conn.exec_driver_sql(f"SET LOCAL auto_explain.{setting}")
            for stmt in warm_up:
                conn.exec_driver_sql(stmt)
            notes.clear()
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()
    return notes


def test_an_update_of_many_rollup_rows_joins_its_transition_tables_without_a_nested_loop(pg_url: str) -> None:
    engine = open_engine(pg_url)
    starts = [
        Event(f"p{i}", "session_start", T0 + timedelta(minutes=i), {"engineer": "e@x", "team_id": 1}, f"p{i}-start")
        for i in range(300)
    ]
    ingest(engine, starts)
    warm_up = [
        f"UPDATE session_rollup SET engineer = 'g@x', merged_prs = 1 WHERE session_id = 'p{i}'" for i in range(8)
    ]
    plans = _plans(pg_url, warm_up, "UPDATE session_rollup SET engineer = 'f@x', merged_prs = 1")
    over_transition_tables = [p for p in plans if "Named Tuplestore Scan" in p]
    assert over_transition_tables, plans  # the triggers' statements were seen
    for plan in over_transition_tables:
        lines = plan.splitlines()
        for i, line in enumerate(lines):
            if "Nested Loop" in line:
                inner = "\n".join(lines[i : i + 6])
                assert inner.count("Named Tuplestore Scan") < 2, plan
    with engine.connect() as conn:
        weeks = conn.execute(text("SELECT engineer, sessions FROM session_week WHERE sessions <> 0")).all()
    assert sorted((e, int(n)) for e, n in weeks) == [("f@x", 300)]  # moved by the changed-rows path


def test_0012_down_restores_0011s_change_test_and_up_replaces_it(pg_url: str) -> None:
    engine = open_engine(pg_url)

    def body() -> str:
        sql = "SELECT prosrc FROM pg_proc WHERE proname = 'at_rollup_weeks_upd'"
        sql += " AND pronamespace = current_schema()::regnamespace"  # this store's, not another schema's
        with engine.connect() as conn:
            return str(conn.execute(text(sql)).scalar())

    assert "EXCEPT" in body() and "JOIN new_rows" not in body()
    with engine.connect() as conn:
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0011")
        conn.commit()
        assert "JOIN new_rows" in body() and "EXCEPT" not in body()
        command.upgrade(cfg, "head")
        conn.commit()
    assert "EXCEPT" in body()
