"""the organisation's record: a bulk insert on SQLite rolls its rows up once per batch, not once per row

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 00:30:00

Measured on seed-demo's organisation (SQLite): the row triggers of 0003/0005 on `event`, `file_change`
and `llm_call` were a third of ingest's CPU (~80 µs per call row: four roll-up tables, each an UPDATE
then an INSERT-if-missing). PostgreSQL already rolls up per statement (transition tables); SQLite has
no statement triggers, so:

- `rollup_pause` holds a row per table whose row triggers are paused, with the table's largest rowid
  when the pause began. Each insert trigger of those tables now fires only when its table is not
  paused (main-schema triggers cannot read a temp table, so the pause is a main table; it is empty
  outside a bulk insert, and its check costs a lookup).
- Deleting the pause row rolls up every row inserted since (rowid above the one recorded), one
  aggregated INSERT … ON CONFLICT per roll-up table: the same expressions as the row triggers and
  0003's backfill, so the figures are the same (float sums may differ in the last bit: they add
  in another order, as PostgreSQL's statement triggers do).

`store/bulk.py` pauses, inserts and deletes the pause row inside one write transaction (SQLite has
one writer at a time, so the rows above the recorded rowid are the batch's; a failed batch rolls
back with its pause row). Every other writer (the gateway's recorder, SQL by hand) is unchanged:
the row triggers still fire for it.

The row triggers' bodies are taken from 0003 and 0005 as they ran (those files never change), so the
guarded triggers here are those, word for word, plus the guard.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sibling(filename: str) -> ModuleType:
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"agenttrail_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


R3 = _sibling("0003_record.py")
R5 = _sibling("0005_record_monthly.py")


def _paused(table: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM rollup_pause WHERE tbl = '{table}')"


def _rows_since(table: str) -> str:
    """The rows the paused insert added: SQLite gives a new row the largest rowid plus one. NOT INDEXED
    keeps the planner on the rowid range: without statistics it read `session_id IS NOT NULL` or
    `kind IN (…)` from their indexes, i.e. every such row of the table, not the batch's."""
    return f"(SELECT * FROM {table} NOT INDEXED WHERE rowid > OLD.after_rowid)"


def _row_triggers(guard: bool) -> list[str]:
    """The insert triggers of 0003 and 0005 (name, then the statement), with the pause guard or without."""

    def when(table: str, cond: str | None = None) -> str:
        parts = [p for p in (cond, _paused(table) if guard else None) if p]
        return f" WHEN {' AND '.join(parts)}" if parts else ""

    event_row = R3._upsert_row("session_rollup", R3.BY_SESSION, R3.EVENT_AGG, "NEW")
    file_row = R3._upsert_row("session_rollup", R3.BY_SESSION, R3.FILE_AGG, "NEW")
    daily, session, model, primary = R3._call_row("NEW", 1)
    event_when = when("event", R3._fmt(R3.EVENT_WHERE, "NEW"))
    session_when = when("llm_call", "NEW.session_id IS NOT NULL")
    monthly = R5._row("NEW", 1)
    return [
        f"CREATE TRIGGER at_rollup_event AFTER INSERT ON event{event_when} BEGIN {event_row} END",
        f"CREATE TRIGGER at_rollup_file_change AFTER INSERT ON file_change{when('file_change')} BEGIN {file_row} END",
        f"CREATE TRIGGER at_rollup_call_daily AFTER INSERT ON llm_call{when('llm_call')} BEGIN {daily} END",
        f"CREATE TRIGGER at_rollup_call_session AFTER INSERT ON llm_call{session_when} "
        f"BEGIN {session} {model} {primary} END",
        f"CREATE TRIGGER at_rollup_call_monthly AFTER INSERT ON llm_call{when('llm_call')} BEGIN {monthly} END",
    ]


ROW_TRIGGERS = (
    "at_rollup_event",
    "at_rollup_file_change",
    "at_rollup_call_daily",
    "at_rollup_call_session",
    "at_rollup_call_monthly",
)


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
        "llm_call": [*R3._calls_set("sqlite", calls, 1), R5._set("sqlite", calls, 1)],
    }
    return [
        f"CREATE TRIGGER at_rollup_batch_{table} AFTER DELETE ON rollup_pause WHEN OLD.tbl = '{table}' "
        f"BEGIN {'; '.join(statements)}; END"
        for table, statements in bodies.items()
    ]


BATCH_TRIGGERS = ("at_rollup_batch_event", "at_rollup_batch_file_change", "at_rollup_batch_llm_call")


def upgrade() -> None:
    op.create_table(
        "rollup_pause",
        sa.Column("tbl", sa.String(length=40), nullable=False),
        sa.Column("after_rowid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tbl", name=op.f("pk_rollup_pause")),
    )
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's statement triggers see a whole statement already
    for name in ROW_TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    for stmt in _row_triggers(guard=True) + _batch_triggers():
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ROW_TRIGGERS + BATCH_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        for stmt in _row_triggers(guard=False):
            op.execute(stmt)
    op.drop_table("rollup_pause")
