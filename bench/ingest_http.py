"""Ingest as the product runs it: `agenttrail serve [--workers W]` taking `POST /api/v1/ingest` batches
from N sender processes, with the server's events per second and CPU.

    python3 bench/ingest_http.py [--db postgresql|sqlite|URL] [--workers 1,2,3] [--senders 4]
                                 [--batch 2000] [--engineers 60] [--days 20] [--runs 3]
                                 [--server-pythonpath /tmp/at-base/src]

Each run: a fresh database (PostgreSQL: a schema `h2_ingest_http_…`), seed-demo's organisation and
events made in it (not timed), one team key; the events dealt to the senders by engineer (each
engineer's sessions from one sender, as laptops send) and cut into batches of `--batch` events, each
batch's body encoded once beforehand (`{"events": [...]}`, as an outbox uploads). Then `agenttrail
serve` starts (`--workers W`; W = 1 without the flag, so an older checkout given by
`--server-pythonpath` can serve too), a few small batches warm each worker up, and the senders, each a
process with one keep-alive connection, are released together by a barrier and post their batches one
after another. Reported per run: events per second over the wall time from release to the last answer;
CPU µs per event of the server (the serve processes, read from /proc, plus on PostgreSQL their database
backends, found by application_name) and of the senders (who in real use are other machines); the load
average; errors by message. The first run of each server also checks the store: the `sessions` view,
`call_daily`, `call_monthly` and `session_model` equal those of the same events ingested in-process in
one stream (costs to 9 decimals). Prints JSON. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from agenttrail.reports.demo_org import DemoOrg
from agenttrail.store.database import forget_engine, open_engine
from agenttrail.store.ingest import Attribution, ingest
from agenttrail.store.keys import create_key
from agenttrail.store.org import add_team

sys.path.insert(0, str(Path(__file__).parent))
from ingest import _deal, _proc_cpu, _url, rollup_rows  # bench/ingest.py, beside this file

END = date(2026, 5, 29)
PG_BASE = os.environ.get("AGENTTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def _tree_cpu(root: int) -> float:
    """CPU seconds of a process and its children (uvicorn's workers), as /proc has them now."""
    pids = [root]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == root:
                pids.append(int(d.name))
    return sum(map(_proc_cpu, pids))


def _backend_cpu(url: str) -> float:
    if not url.startswith("postgresql"):
        return 0.0
    name = url.rsplit("application_name=", 1)[1]
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,))]
    return sum(map(_proc_cpu, pids))


def _sender(base: str, key: str, bodies: list[bytes], barrier: Any, out: Any) -> None:
    errors: Counter[str] = Counter()
    accepted = 0
    with httpx.Client(base_url=base, headers={"x-api-key": key, "content-type": "application/json"}, timeout=600) as c:
        c.get("/healthz")  # the connection, before the start
        barrier.wait()
        c0, w0 = time.process_time(), time.perf_counter()
        for body in bodies:
            r = c.post("/api/v1/ingest", content=body)
            if r.status_code == 200:
                accepted += r.json()["accepted"]
            else:
                errors[f"{r.status_code}: {r.text[:160]}"] += 1
        w1, c1 = time.perf_counter(), time.process_time()
    out.put({"start": w0, "end": w1, "cpu_s": c1 - c0, "accepted": accepted, "errors": dict(errors)})


def _serve(url: str, workers: int, pythonpath: str | None, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = dict(os.environ, AGENTTRAIL_DATABASE_URL=url, AGENTTRAIL_HOME=str(folder))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "agenttrail", "serve", "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    # The server's log goes to a file: a pipe nobody reads during the run would stop it once full.
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=out)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(base + "/healthz", timeout=5)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.2)  # waiting for the port to answer, which it will or the process ends


def _warm_up(base: str, key: str, workers: int) -> None:
    """Small batches on connections of their own until every worker has ingested (first imports)."""
    seen: set[int] = set()
    for i in range(50 * workers):
        sid = f"warm-{i}"
        body = {"events": [{"event_id": f"{sid}-0", "session_id": sid, "kind": "exec", "ts": "2026-05-01T00:00:00Z"}]}
        with httpx.Client(base_url=base, headers={"x-api-key": key}, timeout=60) as c:
            c.post("/api/v1/ingest", json=body).raise_for_status()
            worker = c.get("/healthz").json().get("worker")
        seen.add(worker)
        if len(seen) >= workers or worker is None:
            return


def one_run(args: argparse.Namespace, folder: Path, workers: int, run: int, check: bool) -> dict[str, Any]:
    url, drop = _url(args.db, folder, f"w{workers}_{run}", prefix="h2_ingest_http")
    proc = None
    try:
        engine = open_engine(url)
        batches = list(DemoOrg(engine, args.engineers, args.days, seed=1, end=END, batch_events=20_000).events())
        add_team(engine, "bench-senders")
        key, _ = create_key(engine, team_name="bench-senders", name="bench", now=datetime.now(UTC))
        parts = _deal(batches, args.senders, args.batch, "engineer")
        bodies = [[orjson.dumps({"events": [e.to_dict() for e in b]}) for b in part] for part in parts]
        n = sum(len(b) for part in parts for b in part)
        forget_engine(url)
        engine.dispose()
        proc, base = _serve(url, workers, args.server_pythonpath, folder)
        _warm_up(base, key, workers)
        ctx = mp.get_context("fork")
        barrier, out = ctx.Barrier(args.senders + 1), ctx.Queue()
        senders = [ctx.Process(target=_sender, args=(base, key, b, barrier, out)) for b in bodies]
        for s in senders:
            s.start()
        load0 = os.getloadavg()[0]
        server0, backends0 = _tree_cpu(proc.pid), _backend_cpu(url)
        barrier.wait()
        results = [out.get() for _ in senders]
        server1, backends1 = _tree_cpu(proc.pid), _backend_cpu(url)
        for s in senders:
            s.join()
        wall = max(r["end"] for r in results) - min(r["start"] for r in results)
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r["errors"])
        row: dict[str, Any] = {
            "workers": workers,
            "senders": args.senders,
            "batch": args.batch,
            "events": n,
            "accepted": sum(r["accepted"] for r in results),
            "wall_s": round(wall, 2),
            "events_per_s": round(n / wall),
            "server_cpu_us_per_event": round((server1 - server0) / n * 1e6, 1),
            "db_backend_cpu_us_per_event": round((backends1 - backends0) / n * 1e6, 1) if args.db != "sqlite" else None,
            "sender_cpu_us_per_event": round(sum(r["cpu_s"] for r in results) / n * 1e6, 1),
            "load_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "errors": dict(errors),
        }
        if check:
            row["rollups_equal_single_stream"] = _same_as_single_stream(args, folder, url, batches, workers)
        return row
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        forget_engine(url)
        drop()


def _same_as_single_stream(args: argparse.Namespace, folder: Path, url: str, batches: Any, workers: int) -> bool:
    """The served store's roll-ups against the same events ingested in-process in one stream."""
    served = open_engine(url, migrate=False)
    with served.connect() as conn:
        conn.execute(text("DELETE FROM event WHERE session_id LIKE 'warm-%'"))
        conn.execute(text("DELETE FROM session_rollup WHERE session_id LIKE 'warm-%'"))
        conn.commit()
    got = rollup_rows(served)
    forget_engine(url)
    ref_url, drop = _url(args.db, folder, f"ref{workers}", prefix="h2_ingest_http")
    try:
        ref = open_engine(ref_url)
        same = list(DemoOrg(ref, args.engineers, args.days, seed=1, end=END, batch_events=20_000).events())
        assert [e.event_id for b in same for e in b] == [e.event_id for b in batches for e in b]
        who = Attribution(team_id=add_team(ref, "bench-senders").id)  # what the senders' key gives
        for b in same:
            ingest(ref, b, who)
        return rollup_rows(ref) == got
    finally:
        forget_engine(ref_url)
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="postgresql", help="postgresql, sqlite, or a PostgreSQL URL")
    ap.add_argument("--workers", default="1,2", help="comma-separated: serve --workers W for each")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2000, help="events per POST")
    ap.add_argument("--engineers", type=int, default=60)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-check", action="store_true", help="skip the roll-up check against one stream")
    ap.add_argument("--server-pythonpath", default=None, help="serve from another checkout's src (a before)")
    args = ap.parse_args()
    out: dict[str, Any] = {"db": args.db, "server_pythonpath": args.server_pythonpath, "runs": []}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        for run in range(args.runs):
            for workers in (int(w) for w in args.workers.split(",")):
                row = one_run(args, Path(tmp), workers, run, check=run == 0 and not args.no_check)
                out["runs"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    by: dict[int, list[int]] = {}
    for r in out["runs"]:
        by.setdefault(r["workers"], []).append(r["events_per_s"])
    out["median_events_per_s"] = {w: statistics.median(v) for w, v in by.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
