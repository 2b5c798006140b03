"""`agenttrail serve --workers N`: requests are really served by N processes, children of `serve`, and
ingest through them stores every event once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from tests.server.test_serve_process import _at, _free_port

from agenttrail.store.database import open_engine


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _worker(base: str) -> int:
    """The pid of the worker that served a request on a connection of its own (no keep-alive)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        return int(client.get("/healthz").json()["worker"])


def _batch(n: int, t0: datetime) -> dict[str, object]:
    sid = f"w-{n}"
    events = [{"event_id": f"{sid}-start", "session_id": sid, "kind": "session_start", "ts": t0.isoformat()}]
    events += [
        {
            "event_id": f"{sid}-exec-{i}",
            "session_id": sid,
            "kind": "exec",
            "ts": (t0 + timedelta(seconds=i)).isoformat(),
        }
        | {"payload": {"argv": ["make", str(i)]}}
        for i in range(20)
    ]
    return {"events": events}


def test_workers_serve_requests_in_several_processes_and_ingest_through_them(db_url: str, home: str) -> None:
    env = dict(os.environ, AGENTTRAIL_DATABASE_URL=db_url)
    _at(env, "team", "add", "payments")
    key = _at(env, "key", "create", "--team", "payments").split()[0]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenttrail", "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # the workers start (import, engine) before the socket answers
            try:
                _worker(base)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve --workers 2 did not answer in 90 s"
                time.sleep(0.2)
        # Connections arrive on one socket that both workers accept from; many at once reach both.
        pids: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(50):  # rounds of 8 connections at once, until both have answered (or 400)
                pids.update(pool.map(lambda _: _worker(base), range(8)))
                if len(pids) == 2:
                    break
        assert len(pids) == 2, pids
        assert {_parent(pid) for pid in pids} == {proc.pid}
        t0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
        headers = {"x-api-key": key}

        def send(n: int) -> dict[str, int]:
            with httpx.Client(base_url=base, timeout=60) as client:
                r = client.post("/api/v1/ingest", json=_batch(n % 10, t0), headers=headers)
                r.raise_for_status()
                return dict(r.json())

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(send, range(20)))  # each batch twice: the second is all duplicates
        assert sum(a["accepted"] for a in answers) == 10 * 21
        assert sum(a["duplicates"] for a in answers) == 10 * 21
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM event")).scalar() == 10 * 21
        assert conn.execute(text("SELECT SUM(commands) FROM sessions")).scalar() == 10 * 20
