"""Ingest rate of `store.ingest.ingest` on seed-demo's organisation, with CPU time and where it goes.

    python3 bench/ingest.py [--db sqlite|postgresql|URL] [--engineers 60] [--days 20] [--runs 3] [--stages]

Each run: a fresh database, seed-demo's events for the sample made first (not timed), then ingested in
batches of 20,000 events as `seed-demo` does. Reported per run: events per second of wall time, and CPU
µs per event, the client's (this process) and, on PostgreSQL, the server backend's (from /proc). With
`--stages`, each stage of ingest is wrapped with a CPU clock (cProfile's own overhead misplaces the
time of many small calls): redaction, the join's lookups, the inserts per table (their triggers
included), the materialising steps; "rest" is what no stage covers (row building, JSON).

To compare with another checkout in the same run: `PYTHONPATH=/tmp/at-base/src python3 bench/ingest.py`.
Prints JSON. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

import agenttrail
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.store.database import forget_engine, open_engine

END = date(2026, 5, 29)
PG_BASE = os.environ.get("AGENTTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def _url(kind: str, folder: Path, run: int) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'ingest-{run}.db'}", lambda: None
    if kind != "postgresql":
        return kind, lambda: None
    import psycopg

    schema = f"bench_ingest_{os.getpid()}_{run}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


class Backends:
    """The PostgreSQL backends serving an engine, so their CPU counts beside the client's."""

    def __init__(self, engine: Engine) -> None:
        self.pids: set[int] = set()
        if engine.dialect.name == "postgresql":
            event.listen(engine, "connect", self._connected)
            engine.dispose()  # so every connection used from now on is seen

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        self.pids.add(cur.fetchone()[0])

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / TICK
        return total


class Stages:
    """Exclusive CPU (and wall) seconds per stage: a stage's time excludes the stages it calls."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        frame = [0.0, 0.0]  # child cpu, child wall
        self._stack.append(frame)
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            dc, dw = time.process_time() - c0, time.perf_counter() - w0
            self._stack.pop()
            self.cpu[name] += dc - frame[0]
            self.wall[name] += dw - frame[1]
            if self._stack:
                self._stack[-1][0] += dc
                self._stack[-1][1] += dw

    def wrap(self, module: Any, attr: str, name: Callable[..., str] | str) -> None:
        fn = getattr(module, attr, None)
        if fn is None:
            return

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        setattr(module, attr, wrapped)


def install_stages() -> Stages:
    from agenttrail.importers import join
    from agenttrail.store import bulk, ingest

    s = Stages()
    s.wrap(ingest, "redact_obj", "redact")
    s.wrap(join, "resolve_events", "join.resolve_events")
    s.wrap(join, "materialise", "join.materialise")
    s.wrap(join, "after", "join.after")
    for mod in (ingest, join, bulk):
        s.wrap(mod, "insert_rows", lambda conn, table, *a, **k: f"insert {table.name}")
    for attr in ("_sessions", "_llm_calls", "_link_agent_sessions", "_materialise"):
        s.wrap(ingest, attr, f"ingest.{attr.lstrip('_')}")
    return s


def one_run(kind: str, folder: Path, run: int, engineers: int, days: int, stages: Stages | None) -> dict[str, Any]:
    from agenttrail.store import ingest as ingest_module

    url, drop = _url(kind, folder, run)
    try:
        engine = open_engine(url)
        batches = list(DemoOrg(engine, engineers, days, seed=1, end=END, batch_events=20_000).events())
        kinds = Counter(e.kind for b in batches for e in b)
        backends = Backends(engine)
        wall = cpu = server = 0.0
        for batch in batches:
            s0, c0, w0 = backends.cpu(), time.process_time(), time.perf_counter()
            if stages:
                with stages.stage("ingest (other)"):
                    ingest_module.ingest(engine, batch, ingest_module.Attribution())
            else:
                ingest_module.ingest(engine, batch, ingest_module.Attribution())
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
            server += backends.cpu() - s0
        n = sum(kinds.values())
        with engine.connect() as conn:
            calls = conn.execute(text("SELECT COUNT(*) FROM llm_call")).scalar()
        forget_engine(url)
        engine.dispose()
        return {
            "events": n,
            "llm_call_rows": calls,
            "kinds": dict(kinds.most_common()),
            "wall_s": round(wall, 2),
            "events_per_s": round(n / wall),
            "client_cpu_us_per_event": round(cpu / n * 1e6, 1),
            "server_cpu_us_per_event": round(server / n * 1e6, 1) if kind != "sqlite" else None,
        }
    finally:
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a URL")
    ap.add_argument("--engineers", type=int, default=60)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="CPU per stage of ingest (adds a little overhead)")
    args = ap.parse_args()
    stages = install_stages() if args.stages else None
    runs = []
    with tempfile.TemporaryDirectory(prefix="agenttrail-bench-ingest-") as tmp:
        for run in range(args.runs):
            runs.append(one_run(args.db, Path(tmp), run, args.engineers, args.days, stages))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "kinds"}), file=sys.stderr, flush=True)
    out: dict[str, Any] = {
        "code": str(Path(agenttrail.__file__).parent),
        "db": args.db,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "events": runs[0]["events"],
        "kinds": runs[0]["kinds"],
        "events_per_s": statistics.median(r["events_per_s"] for r in runs),
        "client_cpu_us_per_event": statistics.median(r["client_cpu_us_per_event"] for r in runs),
        "runs": runs,
    }
    if args.db != "sqlite":
        out["server_cpu_us_per_event"] = statistics.median(r["server_cpu_us_per_event"] for r in runs)
    if stages:
        events = sum(r["events"] for r in runs)
        out["stages_cpu_us_per_event"] = {
            k: round(v / events * 1e6, 1) for k, v in sorted(stages.cpu.items(), key=lambda kv: -kv[1])
        }
        # Wall time per stage: on PostgreSQL it holds the server's work for the stage's statements.
        out["stages_wall_us_per_event"] = {
            k: round(v / events * 1e6, 1) for k, v in sorted(stages.wall.items(), key=lambda kv: -kv[1])
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
