"""Gateway overhead: the same load through the gateway and straight at mock-llm, in one run.

    python3 bench/gateway.py [--concurrency 32] [--requests 2000] [--ttft-ms 50] [--chunk-ms 5]
                             [--memory-calls 100000]

Starts mock-llm and `agenttrail serve` (SQLite in a temporary folder) as subprocesses, then drives
N concurrent clients, streaming and not, first directly at mock-llm (the baseline), then through the
gateway. Prints time-to-first-token and total latency percentiles for both, the added latency, and
throughput with the ratio. With --memory-calls it also reports the gateway's RSS before and after that
many calls. Figures go in docs/performance.md; this is never a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BODY_A = {"model": "claude-sonnet-4-5", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]}
BODY_O = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


@dataclass
class Sample:
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0


async def one(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict, stream: bool, s: Sample
) -> None:
    t0 = time.perf_counter()
    try:
        if stream:
            async with client.stream("POST", url, json=dict(body, stream=True), headers=headers) as r:
                first = None
                async for _ in r.aiter_raw():
                    if first is None:
                        first = time.perf_counter()
                if r.status_code != 200:
                    s.errors += 1
                    return
        else:
            r = await client.post(url, json=body, headers=headers)
            first = time.perf_counter()
            if r.status_code != 200:
                s.errors += 1
                return
    except httpx.HTTPError:
        s.errors += 1
        return
    end = time.perf_counter()
    s.ttft.append(((first or end) - t0) * 1000)
    s.total.append((end - t0) * 1000)


async def drive(base: str, key: str, concurrency: int, requests: int, stream: bool, provider: str) -> Sample:
    s = Sample()
    if provider == "anthropic":
        url, body = f"{base}/v1/messages", BODY_A
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        url, body = f"{base}/v1/chat/completions", BODY_O
        headers = {"authorization": f"Bearer {key}"}
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            for _ in queue:
                await one(client, url, headers, body, stream, s)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        s.wall = time.perf_counter() - t0
    return s


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process: the gateway's own cost, whatever else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--ttft-ms", type=float, default=50)
    ap.add_argument("--chunk-ms", type=float, default=5)
    ap.add_argument("--memory-calls", type=int, default=0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="at-bench-"))
    mp, gp = free_port(), free_port()
    env = dict(
        os.environ,
        AGENTTRAIL_HOME=str(work),
        AGENTTRAIL_DATABASE_URL=f"sqlite:///{work}/at.db",
        AGENTTRAIL_ANTHROPIC_BASE_URL=f"http://127.0.0.1:{mp}",
        AGENTTRAIL_OPENAI_BASE_URL=f"http://127.0.0.1:{mp}/v1",
        ANTHROPIC_API_KEY="bench-real-a",
        OPENAI_API_KEY="bench-real-o",
    )
    at = [sys.executable, "-m", "agenttrail"]
    procs = [
        subprocess.Popen(
            [*at, "mock-llm", "--port", str(mp), "--ttft-ms", str(args.ttft_ms), "--chunk-ms", str(args.chunk_ms)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
    ]
    try:
        subprocess.run([*at, "team", "add", "bench"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [*at, "key", "create", "--team", "bench"], env=env, check=True, capture_output=True, text=True
        ).stdout.split()[0]
        gw = subprocess.Popen(
            [*at, "serve", "--port", str(gp), "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL
        )
        procs.append(gw)
        wait_http(f"http://127.0.0.1:{mp}/")
        wait_http(f"http://127.0.0.1:{gp}/healthz")
        print(f"machine: {os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}")
        print(
            f"mock-llm ttft {args.ttft_ms} ms, {args.chunk_ms} ms per chunk; "
            f"{args.requests} requests at concurrency {args.concurrency}\n"
        )
        hdr = f"{'mode':28} {'ttft p50':>9} {'p99':>8} {'total p50':>10} {'p99':>8} {'req/s':>8} {'errors':>6}"
        for provider in ("anthropic", "openai"):
            for stream in (True, False):
                asyncio.run(drive(f"http://127.0.0.1:{mp}", key, 4, 50, stream, provider))  # warm up
                asyncio.run(drive(f"http://127.0.0.1:{gp}", key, 4, 50, stream, provider))
                direct = asyncio.run(
                    drive(f"http://127.0.0.1:{mp}", key, args.concurrency, args.requests, stream, provider)
                )
                cpu0 = cpu_s(gw.pid)
                via = asyncio.run(
                    drive(f"http://127.0.0.1:{gp}", key, args.concurrency, args.requests, stream, provider)
                )
                gw_cpu_ms = (cpu_s(gw.pid) - cpu0) / max(len(via.total), 1) * 1000
                print(hdr)
                for name, s in (("direct", direct), ("gateway", via)):
                    print(
                        f"{provider + (' stream ' if stream else ' plain ') + name:28} "
                        f"{pct(s.ttft, 50):9.2f} {pct(s.ttft, 99):8.2f} {pct(s.total, 50):10.2f} "
                        f"{pct(s.total, 99):8.2f} {len(s.total) / s.wall:8.0f} {s.errors:6d}"
                    )
                print(
                    f"{'added by the gateway':28} {pct(via.ttft, 50) - pct(direct.ttft, 50):9.2f} "
                    f"{pct(via.ttft, 99) - pct(direct.ttft, 99):8.2f} "
                    f"{pct(via.total, 50) - pct(direct.total, 50):10.2f} "
                    f"{pct(via.total, 99) - pct(direct.total, 99):8.2f} "
                    f"{(len(via.total) / via.wall) / (len(direct.total) / direct.wall):7.2f}x"
                )
                print(f"{'gateway CPU per call (ms)':28} {gw_cpu_ms:9.3f}\n")
        if args.memory_calls:
            httpx.post(f"http://127.0.0.1:{mp}/_mock/config", json={"ttft_ms": 0, "chunk_ms": 0})
            before = rss_kb(gw.pid)
            marks = []
            step = max(args.memory_calls // 5, 1)
            for done in range(0, args.memory_calls, step):
                asyncio.run(drive(f"http://127.0.0.1:{gp}", key, args.concurrency, step, done % 2 == 0, "anthropic"))
                marks.append(rss_kb(gw.pid))
            print(
                f"gateway RSS: {before / 1024:.1f} MB before, after each {step} calls: "
                + ", ".join(f"{m / 1024:.1f}" for m in marks)
                + " MB"
            )
        print("median ratio of means is not used: percentiles above are per request, same run, same machine")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


if __name__ == "__main__":
    main()
