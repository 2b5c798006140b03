"""the organisation's record: the outliers report's second pass from its covering index on SQLite

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 23:30:00

Measured on a million sessions (SQLite): the outliers report's second pass (the sessions of each repo
with an outlier, 700 repos) read every one of their sessions' rows through the (repo, started_at)
index, 370,000 random row reads. The (repo, engineer, cost, lines) covering index now also carries
the team and the session id, so that pass reads the index alone; and the (repo, started_at) index,
which every report's query is served better by a covering index for, is dropped on SQLite (it made the
planner prefer it: `sessions` filters on `started_at IS NOT NULL`). PostgreSQL keeps it.

The adoption and models covering indexes (0006) carry the team id too, so `--team` reads them alone:
without it SQLite read every session's row through the index to test its team (a synthetic million
sessions: models --team 6.7 s, adoption --team 3.5 s, at load 4-5). PostgreSQL's (0009) include it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTLIERS_0004 = ("repo", "engineer", "cost_usd", "lines_added", "lines_removed", "started_at")
OUTLIERS = (*OUTLIERS_0004, "team_id", "session_id")
# 0006's adoption and models indexes, which gain the team id as their last column.
WITH_TEAM = ("ix_session_rollup_adoption", "ix_session_rollup_models")


def _columns(name: str) -> list[str]:
    """An index's columns as the database has them (0006 wrote these; this file does not restate them)."""
    for ix in sa.inspect(op.get_bind()).get_indexes("session_rollup"):
        if ix["name"] == name:
            return [str(c) for c in ix["column_names"]]
    raise LookupError(name)


def _index(name: str, columns: Sequence[str]) -> None:
    op.drop_index(name, table_name="session_rollup")
    op.create_index(name, "session_rollup", list(columns))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _index("ix_session_rollup_outliers", OUTLIERS)
    op.drop_index("ix_session_rollup_repo_started", table_name="session_rollup")
    for name in WITH_TEAM:
        _index(name, [*_columns(name), "team_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in WITH_TEAM:
        columns = _columns(name)
        assert columns[-1] == "team_id", (name, columns)
        _index(name, columns[:-1])
    op.create_index("ix_session_rollup_repo_started", "session_rollup", ["repo", "started_at"])
    _index("ix_session_rollup_outliers", OUTLIERS_0004)
