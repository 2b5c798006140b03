"""PostgreSQL: 0011's update trigger on session_rollup finds its changed rows without a nested loop

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 02:30:00

`at_rollup_weeks_upd` (0011) asks first whether an UPDATE changed a column its roll-ups read, with
`IF EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.session_id = o.session_id WHERE …)`, then
writes from the same join (`_signed`). PL/pgSQL plans a statement for the rows at hand its first five
times, then keeps a generic plan, where a transition table is estimated at one row: the join becomes a
nested loop, every old row against every new row. Measured with auto_explain on seed-demo's second
batch of 20,000 events: 1,065 rows each side, 470-930 ms per statement, on the sessions' insert, the
file changes' and the calls', which doubled the database's CPU per event of a 20,000-event ingest
(~35 → ~85 µs).

The same rows, found as a set difference: the rows of `old_rows` that `new_rows` does not hold
identically (`EXCEPT`, which compares as IS NOT DISTINCT FROM does) are the old versions of the changed
rows, and the other way round their new versions; an UPDATE changes each row at most once and never its
session_id, so a row is in the difference exactly when the join found it changed. `EXCEPT` is planned as
a hashed or sorted set operation, whatever the estimate. The rows written are the same (in the columns
0011 lists as those its roll-ups read), so the roll-ups are too. Downgrade restores 0011's function.
SQLite has row triggers and no such join.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from agenttrail.store.migrations.siblings import load as load_migration

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


R11 = load_migration("0011_record_week_pr_rollups.py")
FUNCTION = "at_rollup_weeks_upd"


def _difference(cols: Sequence[str], side: str) -> str:
    """The rows of `side` (old_rows or new_rows) whose `cols` differ from their other version's."""
    other = "new_rows" if side == "old_rows" else "old_rows"
    names = ", ".join(("session_id", *cols))
    return f"(SELECT {names} FROM {side} EXCEPT SELECT {names} FROM {other})"


def _changed(cols: Sequence[str], side: str, where: str = "true") -> str:
    return f"EXISTS (SELECT 1 FROM {_difference(cols, side)} d WHERE {where})"


def _signed(cols: Sequence[str]) -> str:
    """0011's `_signed`: the changed rows' old versions with sign -1 and new ones with +1, in `cols`."""
    old, new = _difference(cols, "old_rows"), _difference(cols, "new_rows")
    return f"(SELECT d.*, -1 AS sign FROM {old} d UNION ALL SELECT d.*, 1 AS sign FROM {new} d)"


def _update_body() -> str:
    lock = R11._calls_lock()
    # The columns each roll-up reads (keys, sums, filters), as 0011 lists them for its change test.
    week = R11._week_set(_signed(R11.WEEK_COLS), signed=True)
    team = R11._team_set(_signed(R11.TEAM_COLS), signed=True)
    # 0011: a row whose team columns changed counts when it reaches a merged PR before or after.
    team_changed = " OR ".join(_changed(R11.TEAM_COLS, side, "d.merged_prs > 0") for side in ("old_rows", "new_rows"))
    return "\n".join(
        [
            R11._pg_if(_changed(R11.WEEK_COLS, "old_rows"), [lock, week]),
            R11._pg_if(f"({team_changed})", [lock, team]),
        ]
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(R11._pg_function(FUNCTION, _update_body()))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(R11._pg_function(FUNCTION, R11._pg_functions()[FUNCTION]))
