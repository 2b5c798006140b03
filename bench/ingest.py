"""Ingest rate of `store.ingest.ingest` on seed-demo's organisation, with CPU time and where it goes.

    python3 bench/ingest.py [--db sqlite|postgresql|URL] [--engineers 60] [--days 20] [--runs 3] [--stages]
    python3 bench/ingest.py --senders N [--threads] [--deal engineer|session] [--batch 20000] [--db …] [--runs 3]

Each run: a fresh database, seed-demo's events for the sample made first (not timed), then ingested in
batches of 20,000 events as `seed-demo` does. Reported per run: events per second of wall time, and CPU
µs per event, the client's (this process) and, on PostgreSQL, the server backend's (from /proc). With
`--stages`, each stage of ingest is wrapped with a CPU clock (cProfile's own overhead misplaces the
time of many small calls): redaction, the join's lookups, the inserts per table (their triggers
included), the materialising steps; "rest" is what no stage covers (row building, JSON).

With `--senders N`: the sample's sessions are dealt out to N senders (all of a session's events to one
sender; `--deal engineer`, the default, gives each engineer's sessions to one sender, as laptops send;
`--deal session` deals sessions, so senders share engineers and their daily roll-up rows), each a
process of its own (`--threads`: threads of this process) that opens its own engine and ingests its
part in batches of `--batch` events, all released together by a barrier. Reported: events per second of
the wall time from the first start to the last finish, CPU µs per event (the senders' and, on
PostgreSQL, their backends'), each sender's wall time in ingest's advisory locks and errors by message,
and whether the roll-ups (`sessions` view, `call_daily`, `call_monthly`, `session_model`) equal those
of a single-stream load of the same events into another fresh database (first run only; costs rounded
to 9 decimals: the order of addition may change the last bits).

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
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

import agenttrail
from agenttrail.events import Event
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.store.database import forget_engine, open_engine

END = date(2026, 5, 29)
PG_BASE = os.environ.get("AGENTTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def _url(kind: str, folder: Path, run: int | str, prefix: str = "bench_ingest") -> tuple[str, Callable[[], None]]:
    """A fresh database and how to drop it; on PostgreSQL a schema whose name is also the backends'
    application_name (so their CPU can be found)."""
    if kind == "sqlite":
        return f"sqlite:///{folder / f'ingest-{run}.db'}", lambda: None
    if kind != "postgresql":
        return kind, lambda: None
    import psycopg

    schema = f"{prefix}_{os.getpid()}_{run}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return f"{PG_BASE}?options=-csearch_path%3D{schema}&application_name={schema}", drop


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
    s.wrap(ingest, "redact_values", "redact")
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


ROLLUP_QUERIES = {
    "sessions": "SELECT * FROM sessions",
    "call_daily": "SELECT * FROM call_daily",
    "call_monthly": "SELECT * FROM call_monthly",
    "session_model": "SELECT * FROM session_model",
}


def rollup_rows(engine: Engine) -> dict[str, list[str]]:
    """Each roll-up as a sorted list of its rows (floats to 9 decimals, times as text)."""
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for name, sql in ROLLUP_QUERIES.items():
            rows = conn.execute(text(sql)).mappings().all()
            out[name] = sorted(
                repr(sorted((k, round(v, 9) if isinstance(v, float) else str(v)) for k, v in r.items())) for r in rows
            )
    return out


def _deal(batches: list[list[Event]], senders: int, size: int, by: str) -> list[list[list[Event]]]:
    """All of a session's events to one sender, in the sample's order, cut into batches of `size`. By
    engineer (as laptops send: each engineer's sessions from one sender) or by session; engineers or
    sessions dealt round robin in order of first event."""
    who = {e.session_id: e.payload.get("engineer") for b in batches for e in b if e.kind == "session_start"}
    owner: dict[str, int] = {}
    parts: list[list[Event]] = [[] for _ in range(senders)]
    for b in batches:
        for e in b:
            key = (who.get(e.session_id) or e.session_id) if by == "engineer" else e.session_id
            parts[owner.setdefault(key, len(owner) % senders)].append(e)
    return [[p[i : i + size] for i in range(0, len(p), size)] for p in parts]


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _send(url: str, part: list[list[Event]], barrier: Any, own_process: bool) -> dict[str, Any]:
    """One sender: its own engine (warmed: a connection made before the barrier), then its batches."""
    from agenttrail.store import ingest as ingest_module

    if own_process:
        forget_engine(url)  # the parent's engine object came along with the fork; its pool is empty
    engine = open_engine(url, migrate=False)
    pids: list[int] = []
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            pids.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    errors: Counter[str] = Counter()
    waits = _time_lock_waits(ingest_module)
    waits[threading.get_ident()] = 0.0
    barrier.wait()
    s0 = sum(map(_proc_cpu, pids))
    clock = time.process_time if own_process else time.thread_time  # a thread's own, not the process's
    c0, w0 = clock(), time.perf_counter()
    for batch in part:
        try:
            ingest_module.ingest(engine, batch, ingest_module.Attribution())
        except Exception as e:  # reported, not hidden: the roll-up check then fails too
            errors[f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"] += 1
    w1, c1 = time.perf_counter(), clock()
    server = sum(map(_proc_cpu, pids)) - s0
    return {
        "start": w0,
        "end": w1,
        "cpu_s": c1 - c0,
        "server_cpu_s": server,
        "events": sum(map(len, part)),
        "batches": len(part),
        "errors": dict(errors),
        "lock_wait_s": waits.get(threading.get_ident(), 0.0),
    }


_LOCK_WAITS: dict[int, float] = defaultdict(float)  # thread -> wall seconds in ingest's lock calls


def _time_lock_waits(ingest_module: Any) -> dict[int, float]:
    """Wall time each sender spends taking ingest's advisory locks (PostgreSQL; absent in older code)."""
    for name in ("lock_sessions", "lock_call_periods"):
        fn = getattr(ingest_module, name, None)
        if fn is None or getattr(fn, "timed", False):
            continue

        def timed(*args: Any, _fn: Callable[..., None] = fn) -> None:
            w0 = time.perf_counter()
            try:
                _fn(*args)
            finally:
                _LOCK_WAITS[threading.get_ident()] += time.perf_counter() - w0

        timed.timed = True  # type: ignore[attr-defined]
        setattr(ingest_module, name, timed)
    return _LOCK_WAITS


def _send_in_child(url: str, part: list[list[Event]], barrier: Any, out: Any) -> None:
    try:
        out.put(_send(url, part, barrier, True))
    except BaseException as e:
        out.put({"fatal": repr(e)})
        raise


def concurrent_run(
    kind: str,
    folder: Path,
    run: int,
    engineers: int,
    days: int,
    senders: int,
    size: int,
    threads: bool,
    check: bool,
    deal: str,
) -> dict[str, Any]:
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    url, drop = _url(kind, folder, f"{run}c")
    try:
        engine = open_engine(url)
        batches = list(DemoOrg(engine, engineers, days, seed=1, end=END, batch_events=20_000).events())
        parts = _deal(batches, senders, size, deal)
        engine.dispose()  # no connection of the parent's carried into the senders
        c0 = time.process_time()
        if threads:
            barrier: Any = threading.Barrier(senders)
            with ThreadPoolExecutor(senders) as pool:
                results = list(pool.map(lambda p: _send(url, p, barrier, False), parts))
            process_cpu = time.process_time() - c0  # every thread's, opening engines included
        else:
            ctx = mp.get_context("fork")
            barrier = ctx.Barrier(senders)
            queue = ctx.Queue()
            procs = [ctx.Process(target=_send_in_child, args=(url, p, barrier, queue)) for p in parts]
            for p in procs:
                p.start()
            results = [queue.get() for _ in procs]
            for p in procs:
                p.join()
            fatal = [r["fatal"] for r in results if "fatal" in r]
            if fatal:
                raise RuntimeError(f"a sender failed: {fatal}")
            process_cpu = None
        n = sum(r["events"] for r in results)
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        client = sum(r["cpu_s"] for r in results)
        server = sum(r["server_cpu_s"] for r in results)
        out: dict[str, Any] = {
            "senders": senders,
            "mode": "threads" if threads else "processes",
            "deal": deal,
            "events": n,
            "batches": sum(r["batches"] for r in results),
            "wall_s": round(wall, 2),
            "events_per_s": round(n / wall),
            "client_cpu_us_per_event": round(client / n * 1e6, 1),
            "server_cpu_us_per_event": round(server / n * 1e6, 1) if kind != "sqlite" else None,
            "sender_wall_s": [round(r["end"] - r["start"], 2) for r in results],
            "sender_lock_wait_s": [round(r["lock_wait_s"], 2) for r in results],
            "errors": [r["errors"] for r in results],
        }
        if process_cpu is not None:
            out["process_cpu_us_per_event"] = round(process_cpu / n * 1e6, 1)
        if check:
            got = rollup_rows(open_engine(url))
            ref_url, ref_drop = _url(kind, folder, f"{run}r")
            try:
                ref = open_engine(ref_url)
                from agenttrail.store.ingest import Attribution, ingest

                for batch in DemoOrg(ref, engineers, days, seed=1, end=END, batch_events=20_000).events():
                    ingest(ref, batch, Attribution())
                want = rollup_rows(ref)
                forget_engine(ref_url)
            finally:
                ref_drop()
            out["rollups_equal_single_stream"] = got == want
            out["rollup_rows"] = {k: len(v) for k, v in want.items()}
            if got != want:
                out["rollup_differences"] = {k: len(set(got[k]) ^ set(want[k])) for k in want if got[k] != want[k]}
        forget_engine(url)
        return out
    finally:
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a URL")
    ap.add_argument("--engineers", type=int, default=60)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="CPU per stage of ingest (adds a little overhead)")
    ap.add_argument("--senders", type=int, default=0, help="N concurrent senders over disjoint sessions")
    ap.add_argument("--threads", action="store_true", help="senders as threads of this process, not processes")
    ap.add_argument("--batch", type=int, default=20_000, help="events per batch of a sender (--senders)")
    ap.add_argument("--deal", choices=("engineer", "session"), default="engineer", help="how senders' parts are cut")
    args = ap.parse_args()
    if args.senders:
        concurrent_main(args)
        return
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


def concurrent_main(args: argparse.Namespace) -> None:
    runs = []
    with tempfile.TemporaryDirectory(prefix="agenttrail-bench-ingest-") as tmp:
        for run in range(args.runs):
            load = os.getloadavg()[0]
            r = concurrent_run(
                args.db,
                Path(tmp),
                run,
                args.engineers,
                args.days,
                args.senders,
                args.batch,
                args.threads,
                run == 0,
                args.deal,
            )
            r["load_average_1m_before"] = round(load, 1)
            runs.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    out = {
        "code": str(Path(agenttrail.__file__).parent),
        "db": args.db,
        "senders": args.senders,
        "mode": runs[0]["mode"],
        "batch": args.batch,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "events_per_s": statistics.median(r["events_per_s"] for r in runs),
        "client_cpu_us_per_event": statistics.median(r["client_cpu_us_per_event"] for r in runs),
        "server_cpu_us_per_event": None
        if args.db == "sqlite"
        else statistics.median(r["server_cpu_us_per_event"] for r in runs),
        "errors": sum(sum(e.values()) for r in runs for e in r["errors"]),
        "rollups_equal_single_stream": runs[0].get("rollups_equal_single_stream"),
        "runs": runs,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
