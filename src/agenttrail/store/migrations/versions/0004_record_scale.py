"""the organisation's record at scale: the whole session row in the roll-up, covering indexes on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 19:00:00

Measured on a million sessions: SQLite 3.40 does not drop an unused LEFT JOIN, so the `sessions` view's
join to `agent_session` cost more than the rest of every query, and SQLite groups by sorting, so a
GROUP BY over all sessions is a sort of a million rows. So:

- the session's remaining columns (branch, agent version, heads, exit code, status, source, cwd) are
  copied into `session_rollup` by the same triggers that copy its dimensions, and the view reads one
  table (team and project names are looked up only when a query asks for them);
- on SQLite, covering indexes in the order the seed's query and the reports group by, so those read an
  index in order instead of sorting the table. They include cost, so a call's cost update touches
  them: microseconds per call, against hundreds for ingesting the event. PostgreSQL aggregates by
  hashing and would lose HOT updates on the cost column, so it gets none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIMS = ("started_at", "ended_at", "week", "team_id", "project_id", "engineer_id", "engineer", "repo", "agent")
EXTRA: dict[str, sa.types.TypeEngine[Any]] = {
    "branch": sa.String(300),
    "agent_version": sa.String(100),
    "agent_session_id": sa.String(200),
    "head_before": sa.String(64),
    "head_after": sa.String(64),
    "exit_code": sa.Integer(),
    "status": sa.String(40),
    "source": sa.String(20),
    "cwd": sa.Text(),
}
COLUMNS = (*DIMS, *EXTRA)

SQLITE_INDEXES = {
    # The seed's query: one week, grouped by engineer and repo, summing cost and files.
    "ix_session_rollup_week_cover": ("week", "engineer", "repo", "cost_usd", "files_changed", "started_at"),
    # adoption: by week and agent, distinct engineers and repos, hours, cost.
    "ix_session_rollup_adoption": ("week", "agent", "engineer", "repo", "started_at", "ended_at", "cost_usd"),
    # models: by repo and main model.
    "ix_session_rollup_models": (
        "repo",
        "model",
        "merged_prs",
        "cost_usd",
        "lines_added",
        "lines_removed",
        "files_changed",
        "started_at",
    ),
    # outliers: by repo and engineer, cost for lines.
    "ix_session_rollup_outliers": ("repo", "engineer", "cost_usd", "lines_added", "lines_removed", "started_at"),
    # shipped: a linked session's team, cost and PR count without reading its row.
    "ix_session_rollup_shipped": ("session_id", "team_id", "merged_prs", "cost_usd", "started_at"),
}


def _dims_pg(columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
    return (
        f"INSERT INTO session_rollup (session_id, {cols}) SELECT session_id, {cols} FROM new_rows x WHERE true "
        f"ORDER BY session_id ON CONFLICT (session_id) DO UPDATE SET {sets}"
    )


def _pg_function(name: str, body: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  {body};\n  RETURN NULL;\nEND\n$$"
    )


def _set_triggers(dialect: str, columns: Sequence[str]) -> None:
    if dialect == "postgresql":
        for name in ("at_rollup_session_ins", "at_rollup_session_upd"):
            op.execute(_pg_function(name, _dims_pg(columns)))
        return
    cols = ", ".join(columns)
    values = ", ".join(f"NEW.{c}" for c in columns)
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns)
    body = (
        f"INSERT INTO session_rollup (session_id, {cols}) VALUES (NEW.session_id, {values}) "
        f"ON CONFLICT (session_id) DO UPDATE SET {sets};"
    )
    for name, when in (("at_rollup_session_ins", "INSERT"), ("at_rollup_session_upd", "UPDATE")):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(f"CREATE TRIGGER {name} AFTER {when} ON agent_session BEGIN {body} END")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, type_ in EXTRA.items():
        op.add_column("session_rollup", sa.Column(name, type_, nullable=True))
    sets = ", ".join(f"{c} = s.{c}" for c in EXTRA)
    op.execute(f"UPDATE session_rollup SET {sets} FROM agent_session s WHERE s.session_id = session_rollup.session_id")
    _set_triggers(dialect, COLUMNS)
    if dialect == "sqlite":
        for name, cols in SQLITE_INDEXES.items():
            # session_id leads the shipped index, so it is unique; declared so, the planner (given
            # statistics) prefers it to the primary key for lookups that need only its columns.
            op.create_index(name, "session_rollup", list(cols), unique=cols[0] == "session_id")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in SQLITE_INDEXES:
            op.drop_index(name, table_name="session_rollup")
    _set_triggers(dialect, DIMS)
    for name in EXTRA:
        op.drop_column("session_rollup", name)
