"""The SQL behind shared counters: conditional, atomic updates of `budget_spend` and `gov_counter` rows,
plus the per-process holdings (`gov_hold`) that let live processes return a dead one's reservations.

Every change is a row delta `(spent += ds, reserved += dr)`, optionally guarded by
`spent + reserved + pre + need <= limit`. One statement applies any number of deltas:

- PostgreSQL: a single autocommit statement. The target rows are locked first in key order
  (`SELECT … ORDER BY … FOR UPDATE` in a materialised CTE), so two statements touching the same rows can
  never deadlock; the holdings are upserted by a data-modifying CTE in the same statement, so a counter
  and its holding never disagree.
- SQLite: one transaction (SQLite has one writer at a time, so there is no lock order to get wrong).

All methods are synchronous and run in a worker thread; they take and return plain values.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import IntegrityError

BUDGET = "budget"
COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class CounterId:
    table: str  # BUDGET (a budget_spend row) or COUNTER (a gov_counter row)
    key: str  # the budget id as text, or the counter's name
    window: datetime  # naive UTC start of the period or window


@dataclass(frozen=True, slots=True)
class Delta:
    cid: CounterId
    spent: int = 0
    reserved: int = 0
    # Guard: apply only if spent + reserved + pre + need <= limit (None: apply unconditionally).
    pre: int = 0
    need: int | None = None
    limit: int = 0


@dataclass(frozen=True, slots=True)
class _Shape:
    table: str
    key: str
    window: str
    spent: str
    reserved: str
    key_type: str


_SHAPES = {
    BUDGET: _Shape("budget_spend", "budget_id", "period_start", "spent_nanos", "reserved_nanos", "BIGINT"),
    COUNTER: _Shape("gov_counter", "counter", "window_start", "spent", "reserved", "VARCHAR"),
}


class CounterStore:
    def __init__(self, engine: Engine, *, synchronous_commit: bool = True) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        auto = engine
        if self._pg and not synchronous_commit:
            # A counter row is locked from its UPDATE to its commit; a durable commit waits for the WAL
            # to reach disk, which caps updates of one hot row at the disk's flush rate (about 190/s
            # on this project's machines, docs/performance.md). Without that wait the cap is the
            # CPU's. What it risks: a PostgreSQL crash loses the last few hundred milliseconds of
            # counter changes (docs/governance.md).
            options = (str(engine.url.query.get("options", "")) + " -c synchronous_commit=off").strip()
            auto = create_engine(engine.url.update_query_dict({"options": options}), pool_size=10, max_overflow=20)
            self._owned: Engine | None = auto
        else:
            self._owned = None
        # One statement, one commit: no explicit transaction round trips on PostgreSQL.
        self._auto = auto.execution_options(isolation_level="AUTOCOMMIT") if self._pg else auto

    def close(self) -> None:
        if self._owned is not None:
            self._owned.dispose()

    # -- rows -------------------------------------------------------------------------------

    def ensure(self, cids: Sequence[CounterId]) -> set[CounterId]:
        """Create missing rows. Returns the ids that cannot exist (their budget was deleted)."""
        gone: set[CounterId] = set()
        with self._engine.begin() as conn:
            try:
                self._insert_rows(conn, cids)
                return gone
            except IntegrityError:
                pass
        for cid in cids:  # rare: some budget was removed; find which, one row at a time
            try:
                with self._engine.begin() as conn:
                    self._insert_rows(conn, [cid])
            except IntegrityError:
                gone.add(cid)
        return gone

    def _insert_rows(self, conn: Connection, cids: Sequence[CounterId]) -> None:
        for table, group in _by_table(cids):
            s = _SHAPES[table]
            sql = (
                f"INSERT INTO {s.table} ({s.key}, {s.window}, {s.spent}, {s.reserved}) "
                f"VALUES ({self._p('k')}, {self._p('w')}, 0, 0) ON CONFLICT ({s.key}, {s.window}) DO NOTHING"
            )
            params = [{"k": self._key(c), "w": self._dt(c.window)} for c in group]
            conn.exec_driver_sql(sql, params)

    def apply(self, owner: str, deltas: Sequence[Delta]) -> dict[CounterId, tuple[int, int]]:
        """Apply deltas; returns (spent, reserved) after the change for each row that was changed.
        A row left out failed its guard, or does not exist."""
        if not deltas:
            return {}
        if self._pg:
            with self._auto.connect() as conn:
                return self._apply_pg(conn, owner, deltas)
        with self._engine.begin() as conn:
            return self._apply_sqlite(conn, owner, deltas)

    def _apply_pg(self, conn: Connection, owner: str, deltas: Sequence[Delta]) -> dict[CounterId, tuple[int, int]]:
        params: dict[str, Any] = {"owner": owner}
        ctes: list[str] = []
        holds: list[str] = []
        outs: list[str] = []
        for g, (table, group) in enumerate(_by_table(deltas)):
            s = _SHAPES[table]
            values = []
            for i, d in enumerate(group):
                n = f"{g}_{i}"
                params.update(
                    {
                        f"k{n}": self._key(d.cid),
                        f"w{n}": d.cid.window,
                        f"ds{n}": d.spent,
                        f"dr{n}": d.reserved,
                        f"pre{n}": d.pre,
                        f"need{n}": d.need,
                        f"lim{n}": d.limit,
                    }
                )
                values.append(
                    f"(CAST(%(k{n})s AS {s.key_type}), CAST(%(w{n})s AS TIMESTAMP), CAST(%(ds{n})s AS BIGINT), "
                    f"CAST(%(dr{n})s AS BIGINT), CAST(%(pre{n})s AS BIGINT), CAST(%(need{n})s AS BIGINT), "
                    f"CAST(%(lim{n})s AS BIGINT))"
                )
            ctes.append(f"v{g}(k, w, ds, dr, pre, need, lim) AS (VALUES {', '.join(values)})")
            # Lock in key order first: concurrent statements over overlapping rows queue, never deadlock.
            ctes.append(
                f"l{g} AS MATERIALIZED (SELECT t.{s.key} AS k, t.{s.window} AS w FROM {s.table} t "
                f"JOIN v{g} ON t.{s.key} = v{g}.k AND t.{s.window} = v{g}.w "
                f"ORDER BY t.{s.key}, t.{s.window} FOR UPDATE OF t)"
            )
            ctes.append(
                f"u{g} AS (UPDATE {s.table} t SET {s.spent} = t.{s.spent} + v{g}.ds, "
                f"{s.reserved} = t.{s.reserved} + v{g}.dr FROM v{g}, l{g} "
                f"WHERE t.{s.key} = v{g}.k AND t.{s.window} = v{g}.w AND l{g}.k = t.{s.key} AND l{g}.w = t.{s.window} "
                f"AND (v{g}.need IS NULL OR t.{s.spent} + t.{s.reserved} + v{g}.pre + v{g}.need <= v{g}.lim) "
                f"RETURNING CAST(t.{s.key} AS VARCHAR) AS k, t.{s.window} AS w, t.{s.spent} AS s, "
                f"t.{s.reserved} AS r, v{g}.dr AS dr)"
            )
            holds.append(f"SELECT %(owner)s, '{table}', k, w, dr FROM u{g} WHERE dr <> 0")
            outs.append(f"SELECT '{table}' AS tbl, k, w, s, r FROM u{g}")
        ctes.append(
            "h AS (INSERT INTO gov_hold (owner, tbl, ckey, window_start, held) "
            + " UNION ALL ".join(holds)
            + " ON CONFLICT (owner, tbl, ckey, window_start) DO UPDATE SET held = gov_hold.held + EXCLUDED.held)"
        )
        sql = "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(outs)
        rows = conn.exec_driver_sql(sql, params).all()
        return {CounterId(r[0], r[1], r[2]): (int(r[3]), int(r[4])) for r in rows}

    def _apply_sqlite(self, conn: Connection, owner: str, deltas: Sequence[Delta]) -> dict[CounterId, tuple[int, int]]:
        out: dict[CounterId, tuple[int, int]] = {}
        by_cid = {d.cid: d for d in deltas}
        for table, group in _by_table(deltas):
            s = _SHAPES[table]
            params: dict[str, Any] = {}
            values = []
            for i, d in enumerate(group):
                params.update(
                    {
                        f"k{i}": self._key(d.cid),
                        f"w{i}": self._dt(d.cid.window),
                        f"ds{i}": d.spent,
                        f"dr{i}": d.reserved,
                        f"pre{i}": d.pre,
                        f"need{i}": d.need,
                        f"lim{i}": d.limit,
                    }
                )
                values.append(f"(:k{i}, :w{i}, :ds{i}, :dr{i}, :pre{i}, :need{i}, :lim{i})")
            sql = (
                f"WITH v(k, w, ds, dr, pre, need, lim) AS (VALUES {', '.join(values)}) "
                f"UPDATE {s.table} SET {s.spent} = {s.spent} + v.ds, {s.reserved} = {s.reserved} + v.dr "
                f"FROM v WHERE {s.table}.{s.key} = v.k AND {s.table}.{s.window} = v.w "
                f"AND (v.need IS NULL OR {s.table}.{s.spent} + {s.table}.{s.reserved} + v.pre + v.need <= v.lim) "
                f"RETURNING {s.key}, {s.window}, {s.spent}, {s.reserved}"
            )
            for r in conn.exec_driver_sql(sql, params).all():
                cid = CounterId(table, str(r[0]), _parse_dt(r[1]))
                out[cid] = (int(r[2]), int(r[3]))
        holds = [
            {"o": owner, "t": cid.table, "k": cid.key, "w": self._dt(cid.window), "h": by_cid[cid].reserved}
            for cid in out
            if by_cid[cid].reserved
        ]
        if holds:
            conn.exec_driver_sql(
                "INSERT INTO gov_hold (owner, tbl, ckey, window_start, held) VALUES (:o, :t, :k, :w, :h) "
                "ON CONFLICT (owner, tbl, ckey, window_start) DO UPDATE SET held = gov_hold.held + excluded.held",
                holds,
            )
        return out

    def read(self, cids: Sequence[CounterId]) -> dict[CounterId, tuple[int, int]]:
        out: dict[CounterId, tuple[int, int]] = {}
        with self._engine.connect() as conn:
            for table, group in _by_table(cids):
                s = _SHAPES[table]
                for c in group:
                    row = conn.exec_driver_sql(
                        f"SELECT {s.spent}, {s.reserved} FROM {s.table} WHERE {s.key} = {self._p('k')} "
                        f"AND {s.window} = {self._p('w')}",
                        {"k": self._key(c), "w": self._dt(c.window)},
                    ).first()
                    if row is not None:
                        out[c] = (int(row[0]), int(row[1]))
        return out

    # -- owners: which process holds what ------------------------------------------------------

    def register(self, owner: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO gov_owner (owner, host, pid, started_at, heartbeat_at) VALUES "
                f"({self._p('o')}, {self._p('h')}, {self._p('p')}, {self._p('n')}, {self._p('n')}) "
                "ON CONFLICT (owner) DO NOTHING",
                {"o": owner, "h": socket.gethostname()[:300], "p": os.getpid(), "n": self._dt(now)},
            )

    def heartbeat(self, owner: str, now: datetime) -> bool:
        """False when this process's registration is gone: another process judged it dead."""
        with self._engine.begin() as conn:
            res = conn.exec_driver_sql(
                f"UPDATE gov_owner SET heartbeat_at = {self._p('n')} WHERE owner = {self._p('o')}",
                {"n": self._dt(now), "o": owner},
            )
            return bool(res.rowcount)

    def holdings(self, owner: str) -> dict[CounterId, int]:
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT tbl, ckey, window_start, held FROM gov_hold WHERE owner = {self._p('o')}", {"o": owner}
            ).all()
        return {CounterId(r[0], r[1], _parse_dt(r[2])): int(r[3]) for r in rows}

    def dead_owners(self, me: str, cutoff: datetime) -> list[str]:
        """Owners whose heartbeat stopped before `cutoff`, and holdings left without any owner."""
        with self._engine.connect() as conn:
            stale = conn.exec_driver_sql(
                f"SELECT owner FROM gov_owner WHERE heartbeat_at < {self._p('c')} AND owner <> {self._p('me')}",
                {"c": self._dt(cutoff), "me": me},
            ).all()
            orphans = conn.exec_driver_sql(
                "SELECT DISTINCT owner FROM gov_hold WHERE owner NOT IN (SELECT owner FROM gov_owner)"
            ).all()
        return sorted({r[0] for r in stale} | {r[0] for r in orphans if r[0] != me})

    def release_owner(self, owner: str, cutoff: datetime | None) -> int:
        """Return everything `owner` holds to the counters, in one transaction. Deleting the holdings
        first claims them: a second process sweeping the same owner finds nothing left to return.
        With `cutoff`, only if the owner is still stale (it may have come back)."""
        with self._engine.begin() as conn:
            if cutoff is not None:
                alive = conn.exec_driver_sql(
                    f"SELECT 1 FROM gov_owner WHERE owner = {self._p('o')} AND heartbeat_at >= {self._p('c')}",
                    {"o": owner, "c": self._dt(cutoff)},
                ).first()
                if alive is not None:
                    return 0
            conn.exec_driver_sql(f"DELETE FROM gov_owner WHERE owner = {self._p('o')}", {"o": owner})
            rows = conn.exec_driver_sql(
                f"DELETE FROM gov_hold WHERE owner = {self._p('o')} RETURNING tbl, ckey, window_start, held",
                {"o": owner},
            ).all()
            ordered = sorted(rows, key=lambda r: (r[0], r[1], str(r[2])))
            for tbl, ckey, window, held in ordered:
                s = _SHAPES[tbl]
                conn.exec_driver_sql(
                    f"UPDATE {s.table} SET {s.reserved} = {s.reserved} - {self._p('h')} "
                    f"WHERE {s.key} = {self._p('k')} AND {s.window} = {self._p('w')}",
                    {"h": int(held), "k": int(ckey) if tbl == BUDGET else ckey, "w": window},
                )
            return len(rows)

    def prune(self, before: datetime) -> None:
        """Drop rate-limit windows nobody can use any more (budgets keep their history)."""
        with self._engine.begin() as conn:
            conn.exec_driver_sql(
                f"DELETE FROM gov_counter WHERE window_start < {self._p('b')} AND window_start > {self._p('e')} "
                "AND reserved = 0",
                {"b": self._dt(before), "e": self._dt(datetime(1970, 1, 1))},
            )

    # -- dialect details ------------------------------------------------------------------------

    def _p(self, name: str) -> str:
        return f"%({name})s" if self._pg else f":{name}"

    def _key(self, cid: CounterId) -> int | str:
        return int(cid.key) if cid.table == BUDGET else cid.key

    def _dt(self, when: datetime) -> Any:
        # SQLAlchemy stores SQLite DateTime as this exact text; comparisons are textual there.
        return when if self._pg else f"{when:%Y-%m-%d %H:%M:%S.%f}"


def _parse_dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _by_table(items: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    """Group by table, each group sorted by key and window: the lock order on PostgreSQL."""
    groups: dict[str, list[Any]] = {}
    for item in items:
        cid = item.cid if isinstance(item, Delta) else item
        groups.setdefault(cid.table, []).append(item)

    def order(item: Any) -> tuple[Any, datetime]:
        cid = item.cid if isinstance(item, Delta) else item
        return (int(cid.key) if cid.table == BUDGET else cid.key, cid.window)

    return [(t, sorted(g, key=order)) for t, g in sorted(groups.items())]
