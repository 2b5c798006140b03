"""The migration chain is linear, and the latest migration goes down and up again on both databases."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from agenttrail.store.database import open_engine
from agenttrail.store.migrate import alembic_config


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
