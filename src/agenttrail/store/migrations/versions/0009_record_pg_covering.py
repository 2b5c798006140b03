"""the organisation's record: covering indexes for the reports on PostgreSQL too

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 00:00:00

Measured on a million sessions (PostgreSQL 15): adoption, shipped and outliers each read the whole
`session_rollup` heap and hashed a million rows by text keys (adoption 2 s, shipped 2.3 s, outliers
1.8 s). With these indexes they read a narrow index in the order they group by and aggregate as the
rows stream (adoption 1 s). 0004 left PostgreSQL without them to keep cost updates HOT; measured,
4% of the roll-up's updates were HOT anyway (a batch updates each new session several times in one
transaction, and its page has no room), so the indexes cost little more at ingest. Index-only
scans need the visibility map, which (auto)vacuum keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (key columns, included columns); the SQLite indexes of the same names (0004, 0006, 0008)
# carry the same columns as keys.
INDEXES = {
    "ix_session_rollup_adoption": (
        ("week", "agent", "engineer", "repo"),
        ("duration_s", "cost_usd", "started_at", "team_id"),
    ),
    "ix_session_rollup_shipped": (("session_id",), ("team_id", "merged_prs", "cost_usd", "started_at")),
    "ix_session_rollup_outliers": (
        ("repo", "engineer"),
        ("cost_usd", "lines_added", "lines_removed", "started_at", "team_id"),
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (keys, include) in INDEXES.items():
        op.create_index(name, "session_rollup", list(keys), postgresql_include=list(include))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.drop_index(name, table_name="session_rollup")
