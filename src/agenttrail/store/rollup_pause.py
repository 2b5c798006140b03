"""A bulk insert on SQLite rolls its rows up once for the batch, not once per row (migration 0010).

SQLite has only row triggers: each call row inserted updated four roll-up tables, each an UPDATE then
an INSERT-if-missing (~80 µs a call row, a third of ingest's CPU). Inside the bulk insert's
transaction, a row in `rollup_pause` records the table's largest rowid, the table's roll-up insert
triggers are set aside (dropped, and created again from their own text afterwards), and deleting the
pause row rolls up every row inserted since with one aggregated statement per roll-up table, the same
sums the row triggers add.

Why this is safe: SQLite has one writer at a time and the pause row is written first (which takes the
write lock), so the rows above the recorded rowid are the batch's; schema changes are transactional,
so no other connection ever sees the triggers missing (readers keep their snapshot, writers wait for
the lock); the triggers come back and the pause row goes on the way out, failure or not, and a
rollback undoes all of it. Any other writer (the gateway's recorder, SQL by hand) gets the row
triggers as before. PostgreSQL needs none of this: its roll-up triggers are statement triggers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Integer, Table

PAUSABLE = frozenset({"event", "file_change", "llm_call"})  # tables with batch roll-ups in migration 0010
# Below this many rows setting the triggers aside and the batch's statements cost more than the row
# triggers they replace (measured on llm_call, commit included: a batch costs ~3.5 ms more, even at
# about 100 rows).
MIN_ROWS = 100
_INSERT_TRIGGER = re.compile(r"\bINSERT\s+ON\b", re.IGNORECASE)


@contextmanager
def rollups_paused(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> Iterator[None]:
    if table.name not in PAUSABLE or len(rows) < MIN_ROWS or _names_rowid(table, rows):
        yield
        return
    name = conn.dialect.identifier_preparer.quote(table.name)
    conn.exec_driver_sql(
        f"INSERT INTO rollup_pause (tbl, after_rowid) SELECT ?, COALESCE(MAX(rowid), 0) FROM {name}", (table.name,)
    )
    triggers = row_triggers(conn, table.name)
    for trigger, _sql in triggers:
        conn.exec_driver_sql(f'DROP TRIGGER "{trigger}"')
    try:
        yield
    finally:
        # Also after a failure: the pages before a failing one are still in the transaction until the
        # caller rolls it back, so they are rolled up; and the triggers are back in any case.
        for _trigger, sql in triggers:
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql("DELETE FROM rollup_pause WHERE tbl = ?", (table.name,))


def row_triggers(conn: Connection, table: str) -> list[tuple[str, str]]:
    """The table's roll-up insert triggers (name, CREATE statement): those the batch roll-up replaces."""
    found = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name LIKE 'at_rollup_%'",
        (table,),
    )
    return [(n, sql) for n, sql in found if _INSERT_TRIGGER.search(sql.split(" BEGIN ", 1)[0])]


def _names_rowid(table: Table, rows: list[dict[str, Any]]) -> bool:
    """A row that sets the rowid itself (an INTEGER PRIMARY KEY) could land below the recorded one."""
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or not isinstance(pk[0].type, Integer):
        return False
    return any(pk[0].name in r for r in rows)
