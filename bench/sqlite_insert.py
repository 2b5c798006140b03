"""SQLite alone, without agenttrail: what an `event`-shaped bulk insert costs a row, and what moves it.

    python3 bench/sqlite_insert.py [--rows 108000] [--turn 6000] [--rounds 3]

A table shaped like `event` (a text primary key, the `(session_id, ts)` and `(kind, ts)` indexes, a
250-byte payload) filled with pages of 100-row `INSERT … VALUES … ON CONFLICT DO NOTHING RETURNING`, one
transaction per `--turn` rows, WAL with `synchronous=NORMAL` as the store runs it, the automatic
checkpoint off (the ingest writer checkpoints beside it). Variants, alternated round by round:

- ids that are content hashes (as events' are) against ids in insertion order;
- temporary storage in a file (SQLite's default) against in memory (`store.engine.bulk_transaction`);
- without `RETURNING`.

Prints CPU and wall µs a row for each. Figures in docs/performance.md ("Ingest", SQLite over HTTP).
Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path

KINDS = ("exec", "llm_call", "tool_call", "prompt", "response", "file_write", "file_read", "commit")


def _rows(n: int, ordered: bool) -> list[tuple[str, str, str, str, str]]:
    rnd = random.Random(1)
    sessions = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(n // 20 + 1)]
    out = []
    for i in range(n):
        s = sessions[i // 20]
        eid = f"{i:032d}" if ordered else hashlib.sha256(f"{s}{i}".encode()).hexdigest()[:32]
        ts = f"2026-05-{1 + i * 20 // n:02d} 09:{(i // 60) % 60:02d}:{i % 60:02d}.000000"
        out.append((eid, s, ts, rnd.choice(KINDS), "x" * 250))
    return out


def run(
    folder: Path, rows: list[tuple[str, ...]], turn: int, *, memory_temp: bool, returning: bool
) -> tuple[float, float]:
    path = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    c = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        c.execute(f"PRAGMA {pragma}")
    if memory_temp:
        c.execute("PRAGMA temp_store=MEMORY")
    c.execute(
        "CREATE TABLE event (event_id VARCHAR(64) NOT NULL PRIMARY KEY, session_id VARCHAR(64) NOT NULL, "
        "ts DATETIME NOT NULL, kind VARCHAR(40) NOT NULL, payload TEXT NOT NULL)"
    )
    c.execute("CREATE INDEX ix_event_session_ts ON event (session_id, ts)")
    c.execute("CREATE INDEX ix_event_kind_ts ON event (kind, ts)")
    tail = " ON CONFLICT DO NOTHING" + (" RETURNING event_id" if returning else "")
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(rows), turn):
        c.execute("BEGIN")
        part = rows[start : start + turn]
        for i in range(0, len(part), 100):
            page = part[i : i + 100]
            sql = "INSERT INTO event VALUES " + ",".join(["(?,?,?,?,?)"] * len(page)) + tail
            c.execute(sql, [v for r in page for v in r]).fetchall()
        c.execute("COMMIT")
    n = len(rows)
    result = ((time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6)
    c.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=108_000)
    ap.add_argument("--turn", type=int, default=6_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    hashed, ordered = _rows(args.rows, False), _rows(args.rows, True)
    variants = {
        "hashed ids, temp in a file": (hashed, False, True),
        "hashed ids, temp in memory": (hashed, True, True),
        "ordered ids, temp in memory": (ordered, True, True),
        "hashed ids, temp in a file, no RETURNING": (hashed, False, False),
        "hashed ids, temp in memory, no RETURNING": (hashed, True, False),
    }
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for name, (rows, memory_temp, returning) in variants.items():
                cpu, wall = run(Path(d), rows, args.turn, memory_temp=memory_temp, returning=returning)
                print(f"round {r + 1}  {name:42s} cpu {cpu:5.1f} µs/row  wall {wall:5.1f} µs/row", flush=True)


if __name__ == "__main__":
    main()
