"""The migration chain is linear, and the latest migrations go down and up again on both databases."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.migrate import alembic_config

from .test_rollup_pause import _calls, _events, _link, assert_rollups_exact, rollups


def test_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())  # head first
    assert [r.down_revision for r in revisions[:-1]] == [r.revision for r in revisions[1:]]
    assert revisions[-1].down_revision is None


def _pr_session_indexes(conn: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(conn).get_indexes("pr_session")}


def test_0007_down_and_up(db_url: str) -> None:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        cfg = alembic_config(conn)
        assert "ix_pr_session_session_pr" in _pr_session_indexes(conn)
        command.downgrade(cfg, "0006")
        conn.commit()
        assert "ix_pr_session_session_id" in _pr_session_indexes(conn)
        assert "ix_pr_session_session_pr" not in _pr_session_indexes(conn)
        command.upgrade(cfg, "head")
        conn.commit()
        indexes = _pr_session_indexes(conn)
        assert "ix_pr_session_session_pr" in indexes and "ix_pr_session_session_id" not in indexes


def test_0011_backfills_what_its_triggers_keep(db_url: str) -> None:
    """Down to 0010 and up again: the backfill's session_week and pr_team (INSERT … SELECT … GROUP BY)
    equal what the triggers kept row by row and batch by batch, and the triggers work again after."""
    engine = open_engine(db_url)
    ingest(engine, _events(21, "A", 30))
    _link(engine, [(1 + i % 7, f"A{i % 25}") for i in range(40)])
    ingest(engine, _calls(22, [f"A{i}" for i in range(30)], 20))
    kept = rollups(engine)
    with engine.connect() as conn:
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0010")
        conn.commit()
        assert not inspect(conn).has_table("session_week") and not inspect(conn).has_table("pr_team")
        command.upgrade(cfg, "head")
        conn.commit()
    backfilled = rollups(engine)
    assert backfilled["pr_team"] and backfilled["session_week"]
    # Rows a trigger emptied (sessions 0) are not made by the backfill.
    for name in ("session_week", "pr_team"):
        assert backfilled[name] == [r for r in kept[name] if r["sessions"]]
    _link(engine, [(9, "A3"), (9, "A4")])
    ingest(engine, _calls(23, ["A3", "A5"], 3))
    assert_rollups_exact(engine)


def test_0013_down_and_up(pg_url: str) -> None:
    """0013's guards and at_calls_lock() go on downgrade (0011's triggers take the lock themselves again)
    and come back on upgrade; an ingest under a key works on both sides."""
    from sqlalchemy import text

    from agenttrail.store import org
    from agenttrail.store.ingest import Attribution

    engine = open_engine(pg_url)
    team = org.add_team(engine, "t").id
    here = "relnamespace = current_schema()::regnamespace"  # other stores share the database
    guards = (
        "SELECT COUNT(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        f"WHERE c.{here} AND tgname LIKE 'at_guard_%'"
    )
    lock_fn = (
        "SELECT COUNT(*) FROM pg_proc WHERE proname = 'at_calls_lock' AND pronamespace = current_schema()::regnamespace"
    )
    with engine.connect() as conn:
        assert conn.execute(text(guards)).scalar() == 6 and conn.execute(text(lock_fn)).scalar() == 1
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0012")
        conn.commit()
        assert conn.execute(text(guards)).scalar() == 0 and conn.execute(text(lock_fn)).scalar() == 0
    ingest(engine, _events(3, "D", 4), Attribution(team_id=team))
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        assert conn.execute(text(guards)).scalar() == 6
    ingest(engine, _calls(4, [f"D{i}" for i in range(4)], 3), Attribution(team_id=team))
    assert_rollups_exact(engine)
