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
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTLIERS_0004 = ("repo", "engineer", "cost_usd", "lines_added", "lines_removed", "started_at")
OUTLIERS = (*OUTLIERS_0004, "team_id", "session_id")


def _outliers_index(columns: Sequence[str]) -> None:
    op.drop_index("ix_session_rollup_outliers", table_name="session_rollup")
    op.create_index("ix_session_rollup_outliers", "session_rollup", list(columns))


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _outliers_index(OUTLIERS)
    op.drop_index("ix_session_rollup_repo_started", table_name="session_rollup")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index("ix_session_rollup_repo_started", "session_rollup", ["repo", "started_at"])
    _outliers_index(OUTLIERS_0004)
