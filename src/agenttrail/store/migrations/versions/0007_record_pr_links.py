"""the organisation's record: a PR link found from its session without reading the link's row

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 23:00:00

Measured on a million sessions and half a million PR links: the shipped report joins every linked
session to its PRs. On SQLite, looking each session up from the link (random order, 4 µs each) took
3-4 s; reading the sessions in id order and each one's links from an index in the same order takes
0.7 s, when that index carries the PR id (the single-column index needed the link's row for it).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_pr_session_session_pr", "pr_session", ["session_id", "pr_id"])
    op.drop_index("ix_pr_session_session_id", table_name="pr_session")


def downgrade() -> None:
    op.create_index("ix_pr_session_session_id", "pr_session", ["session_id"])
    op.drop_index("ix_pr_session_session_pr", table_name="pr_session")
