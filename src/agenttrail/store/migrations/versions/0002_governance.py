"""governance: rate-limit counters and per-process holdings

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gov_counter",
        sa.Column("counter", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("spent", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("counter", "window_start", name=op.f("pk_gov_counter")),
    )
    op.create_table(
        "gov_owner",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=300), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_gov_owner")),
    )
    op.create_table(
        "gov_hold",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("tbl", sa.String(length=10), nullable=False),
        sa.Column("ckey", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("held", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("owner", "tbl", "ckey", "window_start", name=op.f("pk_gov_hold")),
    )


def downgrade() -> None:
    op.drop_table("gov_hold")
    op.drop_table("gov_owner")
    op.drop_table("gov_counter")
