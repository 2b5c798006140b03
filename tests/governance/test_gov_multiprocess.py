"""Two real `agenttrail serve` processes on one PostgreSQL schema enforce one budget together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from agenttrail.governance.budgets import NANOS, set_budget, worst_case
from agenttrail.pricing import Pricer
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.testing.mock_llm import MockConfig, run_in_thread
from conftest import A_HEADERS

CALL_COST = Decimal("0.010125")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"serve exited with {proc.returncode}: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a real process's start-up, with a deadline
    raise RuntimeError(f"serve at {url} did not become healthy in {deadline_s} s")


@pytest.fixture
def two_servers(pg_url: str, tmp_path: Path) -> Iterator[tuple[list[str], str, int, Callable[[], None]]]:
    engine = open_engine(pg_url)
    org.add_team(engine, "payments")
    key, _ = keys.create_key(engine, team_name="payments", now=datetime.utcnow())
    b = set_budget(
        engine,
        scope="team",
        target="payments",
        limit_nanos=int(Decimal("0.3") * NANOS),
        period="month",
        now=datetime.utcnow(),
    )
    with run_in_thread(MockConfig(chunk_ms=1)) as mock:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENTTRAIL_")},
            "AGENTTRAIL_HOME": str(tmp_path / "home"),
            "AGENTTRAIL_ANTHROPIC_BASE_URL": mock,
            "AGENTTRAIL_OPENAI_BASE_URL": mock + "/v1",
            "ANTHROPIC_API_KEY": "sk-ant-real",
            "OPENAI_API_KEY": "sk-real",
        }
        procs: list[subprocess.Popen[bytes]] = []
        urls: list[str] = []

        def stop() -> None:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)  # a graceful stop: settle, write, give back
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()

        try:
            for _ in range(2):
                port = _free_port()
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "agenttrail",
                            "serve",
                            "--port",
                            str(port),
                            "--db",
                            pg_url,
                            "--log-level",
                            "warning",
                        ],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                    )
                )
                urls.append(f"http://127.0.0.1:{port}")
            for url, proc in zip(urls, procs, strict=True):
                _wait_healthy(url, proc)
            yield urls, key, b.id, stop
        finally:
            stop()


def test_two_serve_processes_hold_one_budget(two_servers, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    urls, key, budget_id, stop = two_servers
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reservation = worst_case(Pricer(), "anthropic", "claude-sonnet-4-5", "messages", body, 16_384)[0]
    admitted: dict[str, int] = dict.fromkeys(urls, 0)
    refusals: list[bytes] = []
    lock = threading.Lock()

    def client(url: str) -> None:
        with httpx.Client(timeout=60) as c:
            while True:
                with c.stream("POST", url + "/v1/messages", json=body, headers={**A_HEADERS, "x-api-key": key}) as r:
                    data = r.read()
                    with lock:
                        if r.status_code != 200:
                            refusals.append(data)
                            return
                        admitted[url] += 1

    threads = [threading.Thread(target=client, args=(urls[i % 2],)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(refusals) == 50 and all(b"budget is spent" in r for r in refusals)
    assert all(n > 0 for n in admitted.values()), admitted  # both processes admitted calls
    stop()
    engine = open_engine(pg_url)
    with engine.connect() as conn:
        spent, reserved = conn.execute(
            text("SELECT spent_nanos, reserved_nanos FROM budget_spend WHERE budget_id = :b"), {"b": budget_id}
        ).one()
        holds = conn.execute(text("SELECT COUNT(*) FROM gov_hold WHERE held <> 0")).scalar()
        recorded = conn.execute(text("SELECT SUM(cost_nanos) FROM llm_call WHERE status = 'ok'")).scalar()
    limit = int(Decimal("0.3") * NANOS)
    assert spent == int(CALL_COST * NANOS) * sum(admitted.values()) == recorded
    assert spent <= limit + reservation, f"overshoot {(spent - limit) / 1e9} past one reservation"
    assert spent >= limit // 2
    assert reserved == 0 and holds == 0  # both stopped cleanly and gave back what they held
