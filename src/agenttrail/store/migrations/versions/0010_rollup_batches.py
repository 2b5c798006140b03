"""the organisation's record: a bulk insert on SQLite rolls its rows up once per batch, not once per row

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 00:30:00

Measured on seed-demo's organisation (SQLite): the row triggers of 0003/0005 on `event`, `file_change`
and `llm_call` were a third of ingest's CPU (~80 µs per call row: four roll-up tables, each an UPDATE
then an INSERT-if-missing). PostgreSQL already rolls up per statement (transition tables); SQLite has
no statement triggers, so a bulk insert (`store/rollup_pause.py`) records in `rollup_pause` the table's
largest rowid, sets the table's roll-up insert triggers aside for the insert, and deleting the pause
row rolls up every row inserted since (rowid above the one recorded) with one aggregated INSERT … ON
CONFLICT per roll-up table: 0003's backfill statements over the batch's rows, the same sums the row
triggers add, so the figures are the same (float sums may differ in the last bit: they add in another
order, as PostgreSQL's statement triggers do). Every other writer still gets the row triggers.

Why not a `WHEN NOT EXISTS (SELECT 1 FROM rollup_pause)` guard on the row triggers: measured, a
subquery in a trigger's WHEN costs ~7 µs per row that reaches it (an event insert 13 -> 20 µs), paid by
every writer, the gateway's recorder included; setting the triggers aside costs one DROP and one CREATE
per trigger per batch.

On both databases the inserted calls' sums and the session's main model are written in one upsert of
`session_rollup` instead of two statements (see `_calls_with_model`): PostgreSQL's statement trigger
function `at_rollup_call_ins` is replaced with that body.

The statements are 0003's and 0005's own (those files never change), loaded from them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agenttrail.store.migrations.siblings import load as load_migration

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


R3 = load_migration("0003_record.py")
R5 = load_migration("0005_record_monthly.py")


def _rows_since(table: str) -> str:
    """The rows the paused insert added: SQLite gives a new row the largest rowid plus one. NOT INDEXED
    keeps the planner on the rowid range: without statistics it read `session_id IS NOT NULL` or
    `kind IN (…)` from their indexes, i.e. every such row of the table, not the batch's."""
    return f"(SELECT * FROM {table} NOT INDEXED WHERE rowid > OLD.after_rowid)"


def _calls_with_model(src: str) -> str:
    """The calls' sums and the session's main model in one upsert of session_rollup.

    0003 wrote the sums, then the main model in a second UPDATE of the same rows. Each write of a
    session_rollup row rewrites its six indexes (PostgreSQL: a new row version, never HOT, as the
    covering indexes hold the cost), so on PostgreSQL those two statements were 200 of the 450 ms of a
    batch's 3,700-call insert. session_model is summed first, so the model read here is the new one."""
    sums = [f"SUM({R3._fmt(e, 'x')})" for e in R3.CALL_AGG.values()]
    main = (
        "(SELECT NULLIF(sm.model, '') FROM session_model sm WHERE sm.session_id = x.session_id "
        "ORDER BY sm.cost_usd DESC, sm.calls DESC, sm.model LIMIT 1)"
    )
    sets = ", ".join(f"{c} = session_rollup.{c} + excluded.{c}" for c in R3.CALL_AGG)
    return (
        f"INSERT INTO session_rollup (session_id, {', '.join(R3.CALL_AGG)}, model) "
        f"SELECT x.session_id, {', '.join(sums)}, {main} FROM {src} x WHERE x.session_id IS NOT NULL "
        f"GROUP BY x.session_id ORDER BY x.session_id "
        f"ON CONFLICT (session_id) DO UPDATE SET {sets}, model = excluded.model"
    )


def _calls(dialect: str, src: str) -> list[str]:
    """What 0003's `_calls_set` does for inserted calls, with the main model folded into the sums' upsert."""
    model = R3._upsert_sum("session_model", R3.MODEL_KEY, R3.MODEL_AGG, src, R3.IN_SESSION)
    daily = R3._upsert_sum("call_daily", R3._daily_key(dialect), R3.CALL_AGG, src)
    return [model, _calls_with_model(src), daily]


def _batch_triggers() -> list[str]:
    """On deleting a table's pause row: its rows since the pause, rolled up as 0003's backfill does.

    One INSERT … ON CONFLICT DO UPDATE per roll-up table. Measured per call row against an UPDATE of
    the rows that exist then an INSERT of the missing ones (what the row triggers do, since an upsert
    builds every index key of the would-be row first): 25 µs against 40, as the grouped sums are then
    computed twice."""
    events, files, calls = _rows_since("event"), _rows_since("file_change"), _rows_since("llm_call")
    bodies = {
        "event": [R3._upsert_sum("session_rollup", R3.BY_SESSION, R3.EVENT_AGG, events, R3.EVENT_WHERE)],
        "file_change": [R3._upsert_sum("session_rollup", R3.BY_SESSION, R3.FILE_AGG, files)],
        "llm_call": [*_calls("sqlite", calls), R5._set("sqlite", calls, 1)],
    }
    return [
        f"CREATE TRIGGER at_rollup_batch_{table} AFTER DELETE ON rollup_pause WHEN OLD.tbl = '{table}' "
        f"BEGIN {'; '.join(statements)}; END"
        for table, statements in bodies.items()
    ]


def _pg_calls_function(statements: list[str]) -> str:
    body = ";\n  ".join(statements)
    return (
        "CREATE OR REPLACE FUNCTION at_rollup_call_ins() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  {body};\n  RETURN NULL;\nEND\n$$"
    )


BATCH_TRIGGERS = ("at_rollup_batch_event", "at_rollup_batch_file_change", "at_rollup_batch_llm_call")


def upgrade() -> None:
    op.create_table(
        "rollup_pause",
        sa.Column("tbl", sa.String(length=40), nullable=False),
        sa.Column("after_rowid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tbl", name=op.f("pk_rollup_pause")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Its statement triggers see a whole statement already; the calls' one writes each session once.
        op.execute(_pg_calls_function(_calls("postgresql", "new_rows")))
        return
    for stmt in _batch_triggers():
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_calls_function(R3._calls_set("postgresql", "new_rows", 1)))
    else:
        for name in BATCH_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("rollup_pause")
