"""the organisation's record: a monthly spend roll-up, kept by triggers like the daily one

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 20:00:00

Measured: with thousands of engineers and repos, `call_daily` has about as many rows as there are
sessions (one per day, project, engineer and model), so spend over a quarter grouped from it is a
sort of a million rows on SQLite. A month holds a fifth as many; the spend report reads whole months
here and only the partial months at either end of a period from `call_daily`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
AGG = {"calls": "1", **{t: f"{{r}}.{t}" for t in TOKENS}, "cost_usd": "{r}.cost_usd"}
KEY_COLS = ("month", "team_id", "project_id", "engineer_id", "provider", "model", "in_session")
CALL_FIELDS = (
    "session_id",
    "started_at",
    "team_id",
    "project_id",
    "engineer_id",
    "provider",
    "model",
    *TOKENS,
    "cost_usd",
)


def _key(dialect: str) -> dict[str, str]:
    month = "strftime('%Y-%m', {r}.started_at)" if dialect == "sqlite" else "to_char({r}.started_at, 'YYYY-MM')"
    return {
        "month": month,
        "team_id": "COALESCE({r}.team_id, 0)",
        "project_id": "COALESCE({r}.project_id, 0)",
        "engineer_id": "COALESCE({r}.engineer_id, 0)",
        "provider": "{r}.provider",
        "model": "COALESCE({r}.model, '')",
        "in_session": "CASE WHEN {r}.session_id IS NOT NULL THEN 1 ELSE 0 END",
    }


def _fmt(expr: str, r: str) -> str:
    return expr.replace("{r}", r)


def _row(r: str, sign: int) -> str:
    """SQLite: UPDATE the month's row, INSERT it only when missing (see 0003 for why not UPSERT)."""
    key = _key("sqlite")
    key_vals = [_fmt(e, r) for e in key.values()]
    add = [_fmt(e, r) if sign == 1 else f"-({_fmt(e, r)})" for e in AGG.values()]
    match = " AND ".join(f"{k} = {v}" for k, v in zip(key, key_vals, strict=True))
    sets = ", ".join(f"{c} = {c} + ({v})" for c, v in zip(AGG, add, strict=True))
    return (
        f"UPDATE call_monthly SET {sets} WHERE {match}; "
        f"INSERT INTO call_monthly ({', '.join(key)}, {', '.join(AGG)}) SELECT {', '.join(key_vals + add)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM call_monthly WHERE {match});"
    )


def _set(dialect: str, src: str, sign: int) -> str:
    key = _key(dialect)
    key_exprs = [_fmt(e, "x") for e in key.values()]
    sums = [f"SUM({_fmt(e, 'x')})" + (f" * {sign}" if sign != 1 else "") for e in AGG.values()]
    sets = ", ".join(f"{c} = call_monthly.{c} + excluded.{c}" for c in AGG)
    return (
        f"INSERT INTO call_monthly ({', '.join(key)}, {', '.join(AGG)}) "
        f"SELECT {', '.join(key_exprs)}, {', '.join(sums)} FROM {src} x WHERE true "
        f"GROUP BY {', '.join(key_exprs)} ORDER BY {', '.join(key_exprs)} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    )


def _pg_changed(side: str) -> str:
    diff = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in CALL_FIELDS)
    return f"(SELECT {side}.* FROM old_rows o JOIN new_rows n ON n.call_id = o.call_id WHERE {diff})"


def _pg_function(name: str, statements: list[str]) -> str:
    body = ";\n  ".join(statements)
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  {body};\n  RETURN NULL;\nEND\n$$"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "call_monthly",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("engineer_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("in_session", sa.Integer(), nullable=False),
        sa.Column("calls", sa.BigInteger(), server_default="0", nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in TOKENS),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(*KEY_COLS, name=op.f("pk_call_monthly")),
    )
    # The months so far, from the daily roll-up (already exact, and far smaller than llm_call).
    month = "substr(day, 1, 7)"
    cols = ", ".join(KEY_COLS[1:])
    sums = ", ".join(f"SUM({c})" for c in AGG)
    op.execute(
        f"INSERT INTO call_monthly ({', '.join(KEY_COLS)}, {', '.join(AGG)}) "
        f"SELECT {month}, {cols}, {sums} FROM call_daily GROUP BY {month}, {cols}"
    )
    if dialect == "postgresql":
        op.execute(_pg_function("at_rollup_call_monthly_ins", [_set(dialect, "new_rows", 1)]))
        op.execute(
            "CREATE TRIGGER at_rollup_call_monthly_ins AFTER INSERT ON llm_call REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION at_rollup_call_monthly_ins()"
        )
        upd = [_set(dialect, _pg_changed("o"), -1), _set(dialect, _pg_changed("n"), 1)]
        op.execute(_pg_function("at_rollup_call_monthly_upd", upd))
        op.execute(
            "CREATE TRIGGER at_rollup_call_monthly_upd AFTER UPDATE ON llm_call "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION at_rollup_call_monthly_upd()"
        )
    else:
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in CALL_FIELDS)
        op.execute(f"CREATE TRIGGER at_rollup_call_monthly AFTER INSERT ON llm_call BEGIN {_row('NEW', 1)} END")
        op.execute(
            f"CREATE TRIGGER at_rollup_call_upd_monthly AFTER UPDATE ON llm_call WHEN {changed} "
            f"BEGIN {_row('OLD', -1)} {_row('NEW', 1)} END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in ("at_rollup_call_monthly_ins", "at_rollup_call_monthly_upd"):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON llm_call")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in ("at_rollup_call_monthly", "at_rollup_call_upd_monthly"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("call_monthly")
