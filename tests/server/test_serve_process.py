"""`agenttrail serve` as a user runs it: a real process, stopped with SIGTERM, loses no call record,
and what the calls cost adds up per team."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal

import httpx
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from agenttrail.testing.mock_llm import MockConfig, run_in_thread


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _at(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "agenttrail", *args], env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout


def test_sigterm_flushes_every_record_and_spend_adds_up(db_url: str, home: str) -> None:
    with run_in_thread(MockConfig()) as mock:
        env = dict(
            os.environ,
            AGENTTRAIL_DATABASE_URL=db_url,
            AGENTTRAIL_ANTHROPIC_BASE_URL=mock,
            AGENTTRAIL_OPENAI_BASE_URL=mock + "/v1",
            ANTHROPIC_API_KEY="real-a",
            OPENAI_API_KEY="real-o",
        )
        _at(env, "team", "add", "payments")
        _at(env, "team", "add", "search")
        keys = {t: _at(env, "key", "create", "--team", t).split()[0] for t in ("payments", "search")}
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "agenttrail", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "serve did not start"
                    time.sleep(0.1)
            body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
            calls = {"payments": 7, "search": 3}
            for team, n in calls.items():
                for _ in range(n):
                    r = httpx.post(
                        f"http://127.0.0.1:{port}/v1/messages",
                        json=body,
                        headers={"x-api-key": keys[team], "anthropic-version": "2023-06-01"},
                    )
                    assert r.status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)  # straight after the last answer: records still in memory
            _out, err = proc.communicate(timeout=60)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status tells it.
        assert proc.returncode in (0, -signal.SIGTERM), err
        assert b"Traceback" not in err
        report = json.loads(
            _at(
                env,
                "sql",
                "SELECT team, COUNT(*) AS calls, SUM(cost_usd) AS cost_usd FROM llm_calls "
                "GROUP BY team ORDER BY cost_usd DESC",
                "--format",
                "json",
            )
        )
        one = calc_price(
            GPUsage(input_tokens=4700, cache_read_tokens=3000, cache_write_tokens=500, output_tokens=250),
            "claude-sonnet-4-5",
            provider_id="anthropic",
        ).total_price
        got = {r["team"]: (r["calls"], Decimal(str(r["cost_usd"]))) for r in report}
        for team, n in calls.items():
            assert got[team][0] == n
            assert abs(got[team][1] - one * n) < Decimal("1e-9")
        assert [r["team"] for r in report] == ["payments", "search"]  # most spent first
