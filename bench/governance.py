"""Governance overhead and counter throughput.

    python3 bench/governance.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--calls 5000]
                                [--rate 1000] [--seconds 10] [--procs 4]

1. Admission overhead, in process: `policy.admit` + `policy.settle` for a realistic call (a 20 kB
   Claude Code-like body) covered by three budgets (org, team, key) and two rate limits (rpm, tpm),
   against OpenPolicy, on SQLite and PostgreSQL; far from the limits (leases) and near them (every
   admission asks the store).
2. Counter writes on PostgreSQL: `--procs` processes, each a ledger of its own, admit and settle calls
   against the same three budgets at `--rate` calls per second in total for `--seconds`, every
   admission a store round trip (leases off). Reports the rate achieved, admission latency and errors
   (a deadlock would show here).

Figures go in docs/performance.md under "Governance"; this is never a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from agenttrail.config import load_settings
from agenttrail.gateway.call import Call
from agenttrail.gateway.policy import OpenPolicy
from agenttrail.gateway.providers.base import Endpoint
from agenttrail.governance.budgets import set_budget
from agenttrail.governance.install import build
from agenttrail.server.app import build_services
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.usage import Usage

ENDPOINT = Endpoint("anthropic", "messages", "/v1/messages")
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8192,
    "system": "You are Claude Code. " * 200,
    "messages": [{"role": "user", "content": "Refactor this function. " + "x = 1\n" * 2000}],
}
USAGE = Usage(input_tokens=1200, cache_read_tokens=3000, cache_write_5m_tokens=500, output_tokens=250)


def pg_schema(base: str) -> str:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def setup(url: str, raw: dict[str, Any], budget_usd: float) -> tuple[Any, Any, Any]:
    home = tempfile.mkdtemp()
    settings = load_settings(env={"AGENTTRAIL_HOME": home, "AGENTTRAIL_DATABASE_URL": url})
    settings = replace(settings, raw=raw)
    engine = open_engine(url)
    with contextlib.suppress(org.DirectoryError):
        org.add_team(engine, "payments")
    _, key = keys.create_key(engine, team_name="payments", name="bench", now=datetime.utcnow())
    now = datetime.utcnow()
    limit = int(budget_usd * 1e9)
    for scope, target in (("org", None), ("team", "payments"), ("key", key.prefix)):
        set_budget(engine, scope=scope, target=target, limit_nanos=limit, period="month", now=now)
    svc = build_services(settings, engine=engine)
    return svc, build(svc), key


def new_call(key: Any) -> Call:
    call = Call(endpoint=ENDPOINT, started_at=datetime.now(UTC), t0=time.monotonic())
    call.key = key
    call.body = BODY
    call.model_requested = call.model = "claude-sonnet-4-5"
    return call


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def overhead(url: str, calls: int, near_limit: bool) -> dict[str, float]:
    raw = {"limits": {"key": {"rpm": 10_000_000, "tpm": 10_000_000_000}}}
    # Near the limit: a budget whose headroom is inside exact_within_pct from the start.
    svc, gov, key = setup(url, raw, 0.000_001 * calls * 1000 if near_limit else 1_000_000.0)
    if near_limit:
        gov.policy.budget_settings = replace(gov.policy.budget_settings, exact_within_pct=100.0)
    await gov.ledger.start()
    open_policy = OpenPolicy()
    times: dict[str, list[float]] = {"open": [], "governed": []}
    for i in range(calls):
        for name, policy in (("open", open_policy), ("governed", gov.policy)):
            call = new_call(key)
            t = time.perf_counter()
            await policy.admit(call)
            call.usage, call.cost_usd, call.status = USAGE, Decimal("0.000001"), "ok"
            await policy.settle(call)
            if i >= calls // 10:  # after warm-up
                times[name].append(time.perf_counter() - t)
    await gov.ledger.stop()
    statements = gov.ledger.statements
    svc.engine.dispose()
    return {
        "open_p50_us": pct(times["open"], 0.5) * 1e6,
        "p50_us": pct(times["governed"], 0.5) * 1e6,
        "p99_us": pct(times["governed"], 0.99) * 1e6,
        "added_p50_us": (pct(times["governed"], 0.5) - pct(times["open"], 0.5)) * 1e6,
        "store_trips_per_call": statements / calls,
    }


def worker(url: str, rate: float, seconds: float, raw: dict[str, Any], out: Any) -> None:
    asyncio.run(_worker(url, rate, seconds, raw, out))


async def _worker(url: str, rate: float, seconds: float, raw: dict[str, Any], out: Any) -> None:
    svc, gov, _ = setup(url, raw, 1_000_000.0)
    from agenttrail.store.keys import list_keys

    key = next(k for k in list_keys(svc.engine) if k.name == "bench")  # the first worker's key: one key row
    await gov.ledger.start()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    inflight: set[asyncio.Task[None]] = set()

    async def one() -> None:
        call = new_call(key)
        t = time.perf_counter()
        try:
            await gov.policy.admit(call)
        except Exception as e:
            errors[type(e).__name__ + ": " + str(e)[:80]] = errors.get(type(e).__name__, 0) + 1
            return
        latencies.append(time.perf_counter() - t)
        call.usage, call.cost_usd, call.status = USAGE, Decimal("0.0101"), "ok"
        await gov.policy.settle(call)

    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        while n < due:
            task = asyncio.create_task(one())
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            n += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*inflight)
    took = time.perf_counter() - start
    await gov.ledger.stop()
    out.put({"calls": len(latencies), "seconds": took, "latencies": latencies, "errors": errors})


def counters(url: str, rate: float, seconds: float, procs: int, raw: dict[str, Any]) -> dict[str, Any]:
    setup(url, {}, 1_000_000.0)  # budgets and the shared key, once
    q: Any = multiprocessing.get_context("spawn").Queue()
    ps = [
        multiprocessing.get_context("spawn").Process(target=worker, args=(url, rate / procs, seconds, raw, q))
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    results = [q.get(timeout=seconds * 10 + 120) for _ in ps]
    for p in ps:
        p.join()
    lat = [x for r in results for x in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "calls_per_s": sum(r["calls"] for r in results) / max(r["seconds"] for r in results),
        "admit_p50_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
        "admit_p99_ms": pct(lat, 0.99) * 1e3 if lat else float("nan"),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-counters", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    print("admission overhead (admit + settle), microseconds")
    print(f"{'store':<12} {'regime':<16} {'open p50':>9} {'p50':>8} {'p99':>8} {'added p50':>10} {'trips/call':>10}")
    for store in ("sqlite", "postgresql") if not args.skip_overhead else ():
        for near in (False, True):
            url = f"sqlite:///{tmp / uuid.uuid4().hex}.db" if store == "sqlite" else pg_schema(args.pg)
            r = asyncio.run(overhead(url, args.calls, near))
            regime = "near the limit" if near else "far (leases)"
            print(
                f"{store:<12} {regime:<16} {r['open_p50_us']:>9.1f} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} "
                f"{r['added_p50_us']:>10.1f} {r['store_trips_per_call']:>10.3f}"
            )
    print(f"\ncounter writes on PostgreSQL: {args.procs} processes, {args.rate:.0f} calls/s asked")
    modes = {
        "leases (default)": {},
        "every admission a trip": {"budgets": {"lease_pct": 0}},
        "every admission a trip, synchronous_commit off": {"budgets": {"lease_pct": 0, "synchronous_commit": False}},
    }
    for name, raw in modes.items() if not args.skip_counters else ():
        r = counters(pg_schema(args.pg), args.rate, args.seconds, args.procs, raw)
        print(
            f"{name:<48} achieved {r['calls_per_s']:.0f} calls/s; admission p50 {r['admit_p50_ms']:.2f} ms, "
            f"p99 {r['admit_p99_ms']:.2f} ms; errors: {r['errors'] or 'none'}"
        )


if __name__ == "__main__":
    sys.exit(main())
