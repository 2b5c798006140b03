"""the organisation's record: the session's duration stored, and wider covering indexes on SQLite

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 21:00:00

Measured on 600,000 sessions: computing each session's duration from its two timestamps
(`julianday` twice a row) was a third of the adoption report's time; the duration now is written
once, when the session's times are. The spend report by repo read every session's row for its calls
and tokens; the (repo, model) covering index now carries them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "started_at",
    "ended_at",
    "week",
    "team_id",
    "project_id",
    "engineer_id",
    "engineer",
    "repo",
    "agent",
    "branch",
    "agent_version",
    "agent_session_id",
    "head_before",
    "head_after",
    "exit_code",
    "status",
    "source",
    "cwd",
)
TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
INDEXES_0004 = {
    "ix_session_rollup_adoption": ("week", "agent", "engineer", "repo", "started_at", "ended_at", "cost_usd"),
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
}
INDEXES = {
    "ix_session_rollup_adoption": ("week", "agent", "engineer", "repo", "duration_s", "cost_usd", "started_at"),
    "ix_session_rollup_models": (
        "repo",
        "model",
        "merged_prs",
        "cost_usd",
        "lines_added",
        "lines_removed",
        "files_changed",
        "calls",
        *TOKENS,
        "started_at",
    ),
}


def _duration(dialect: str, r: str) -> str:
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({r}.ended_at - {r}.started_at))"
    return f"((julianday({r}.ended_at) - julianday({r}.started_at)) * 86400.0)"


def _set_triggers(dialect: str, with_duration: bool) -> None:
    cols = list(COLUMNS) + (["duration_s"] if with_duration else [])
    sets = ", ".join(f"{c} = excluded.{c}" for c in cols)
    if dialect == "postgresql":
        values = ", ".join([*COLUMNS, *([_duration(dialect, "x")] if with_duration else [])])
        body = (
            f"INSERT INTO session_rollup (session_id, {', '.join(cols)}) SELECT session_id, {values} "
            f"FROM new_rows x WHERE true ORDER BY session_id ON CONFLICT (session_id) DO UPDATE SET {sets}"
        )
        for name in ("at_rollup_session_ins", "at_rollup_session_upd"):
            op.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  {body};\n  RETURN NULL;\nEND\n$$"
            )
        return
    values = ", ".join([*(f"NEW.{c}" for c in COLUMNS), *([_duration(dialect, "NEW")] if with_duration else [])])
    body = (
        f"INSERT INTO session_rollup (session_id, {', '.join(cols)}) VALUES (NEW.session_id, {values}) "
        f"ON CONFLICT (session_id) DO UPDATE SET {sets};"
    )
    for name, when in (("at_rollup_session_ins", "INSERT"), ("at_rollup_session_upd", "UPDATE")):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(f"CREATE TRIGGER {name} AFTER {when} ON agent_session BEGIN {body} END")


def _indexes(which: dict[str, tuple[str, ...]]) -> None:
    for name, cols in which.items():
        op.drop_index(name, table_name="session_rollup")
        op.create_index(name, "session_rollup", list(cols))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("session_rollup", sa.Column("duration_s", sa.Float(), nullable=True))
    op.execute(f"UPDATE session_rollup SET duration_s = {_duration(dialect, 'session_rollup')}")
    _set_triggers(dialect, with_duration=True)
    if dialect == "sqlite":
        _indexes(INDEXES)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _indexes(INDEXES_0004)
    _set_triggers(dialect, with_duration=False)
    op.drop_column("session_rollup", "duration_s")
