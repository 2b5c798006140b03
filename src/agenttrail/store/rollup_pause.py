"""A bulk insert on SQLite rolls its rows up once for the batch, not once per row (migration 0010).

SQLite has only row triggers: each call row inserted updated four roll-up tables, each an UPDATE then
an INSERT-if-missing (~80 µs a call row, a third of ingest's CPU). Inside the bulk insert's transaction,
a row in `rollup_pause` turns the table's insert triggers off, and deleting it rolls up every row
inserted since (rowid above the table's largest before the insert) with one aggregated statement per
roll-up table, the same expressions the row triggers add. SQLite has one writer at a time and the
pause row is written first (which takes the write lock), so those rows are the batch's; the pause row
never outlives the transaction: it is deleted on the way out, failure or not, and a rollback takes it
with everything else. Any other writer still gets the row triggers.

PostgreSQL needs none of this: its roll-up triggers are statement triggers already.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Integer, Table

PAUSABLE = frozenset({"event", "file_change", "llm_call"})  # tables with batch roll-ups in migration 0010
# Below this many rows the batch's extra statements cost more than the row triggers they replace
# (measured on llm_call, commit included: about even at 4 to 8 rows).
MIN_ROWS = 8


@contextmanager
def rollups_paused(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> Iterator[None]:
    if table.name not in PAUSABLE or len(rows) < MIN_ROWS or _names_rowid(table, rows):
        yield
        return
    name = conn.dialect.identifier_preparer.quote(table.name)
    conn.exec_driver_sql(
        f"INSERT INTO rollup_pause (tbl, after_rowid) SELECT ?, COALESCE(MAX(rowid), 0) FROM {name}", (table.name,)
    )
    try:
        yield
    finally:
        # Rolls up what the insert added, also the pages before a failing one (still in the transaction
        # until the caller rolls it back), and turns the row triggers on again in any case.
        conn.exec_driver_sql("DELETE FROM rollup_pause WHERE tbl = ?", (table.name,))


def _names_rowid(table: Table, rows: list[dict[str, Any]]) -> bool:
    """A row that sets the rowid itself (an INTEGER PRIMARY KEY) could land below the recorded one."""
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or not isinstance(pk[0].type, Integer):
        return False
    return any(pk[0].name in r for r in rows)
