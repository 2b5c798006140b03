"""The reports' covering indexes (migrations 0008 SQLite, 0009 PostgreSQL) go down to 0007 and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, inspect

from agenttrail.store.database import open_engine
from agenttrail.store.migrate import alembic_config


def _indexes(conn: Connection) -> dict[str, list[str]]:
    return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in inspect(conn).get_indexes("session_rollup")}


def test_report_indexes_down_and_up(db_url: str) -> None:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        head = _indexes(conn)
        sqlite = conn.dialect.name == "sqlite"
        for name in ("ix_session_rollup_adoption", "ix_session_rollup_outliers"):
            keys = head[name]
            # SQLite carries the team id as a key column; PostgreSQL INCLUDEs it (not listed as a key).
            assert ("team_id" in keys) == sqlite, (name, keys)
        if sqlite:
            assert head["ix_session_rollup_models"][-1] == "team_id"
            assert "ix_session_rollup_repo_started" not in head
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0007")
        conn.commit()
        before = _indexes(conn)
        assert "ix_session_rollup_repo_started" in before
        if sqlite:
            assert "team_id" not in before["ix_session_rollup_adoption"] + before["ix_session_rollup_models"]
        else:
            assert "ix_session_rollup_adoption" not in before and "ix_session_rollup_shipped" not in before
        command.upgrade(cfg, "head")
        conn.commit()
        assert _indexes(conn) == head
