"""The real Claude Code and Codex CLIs run as a traced session through agenttrail's gateway (mock-llm
upstream), with the environment `agenttrail run` gives them (tracer.agent_env: gateway URL, session-scoped
key, Claude Code's OTel exporter pointed at the server). Their transcripts are then imported into the same
store. Each model call must be counted once, in the traced session, and reconcile must show no
difference, since Claude Code's prices and genai-prices agree on the mock's model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from sqlalchemy import Engine, text

from agenttrail.config import load_settings
from agenttrail.events import Event
from agenttrail.pricing import Pricer
from agenttrail.reports.reconcile import reconcile
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.keys import create_key, create_session_key
from agenttrail.store.org import add_team
from agenttrail.tracer.agent_env import gateway_env, prepare_codex_home
from agenttrail.usage import Usage

from .agent_clis import claude_env, codex_env, git_project, require_agent_clis, require_mock_llm, run_claude, run_codex
from .test_real_agent_clis import CLAUDE_USAGE, CODEX_USAGE, _claude_mock, _codex_mock

pytestmark = pytest.mark.slow


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


@contextmanager
def server(db_url: str, mock_url: str, tmp: Path) -> Iterator[str]:
    settings = load_settings(
        env={
            "AGENTTRAIL_DATABASE_URL": db_url,
            "AGENTTRAIL_HOME": str(tmp / "server-home"),
            "AGENTTRAIL_ANTHROPIC_BASE_URL": mock_url,
            "AGENTTRAIL_OPENAI_BASE_URL": mock_url + "/v1",
            "ANTHROPIC_API_KEY": "sk-ant-real-upstream",
            "OPENAI_API_KEY": "sk-real-openai-upstream",
        }
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(create_server_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True  # a stopping server flushes the gateway's records
        thread.join(30)
        sock.close()


def traced_session(engine: Engine, sid: str, cwd: Path, agent: str) -> str:
    """What `agenttrail run` records first: the session, and a key scoped to it."""
    now = datetime.now(UTC)
    ingest(engine, [Event(sid, "session_start", now, {"agent": agent, "cwd": str(cwd), "source": "traced"}, sid + "s")])
    add_team(engine, "core")
    _, parent = create_key(engine, team_name="core", now=now.replace(tzinfo=None))
    key, _ = create_session_key(engine, parent, sid, now.replace(tzinfo=None))
    return key


def end_session(engine: Engine, sid: str) -> None:
    ingest(engine, [Event(sid, "session_end", datetime.now(UTC), {"exit_code": 0}, sid + "e")])


def answered(mock_url: str, endpoint: str) -> int:
    recorded = httpx.get(f"{mock_url}/_mock/requests", params={"endpoint": endpoint}).json()
    items = recorded.get("requests") if isinstance(recorded, dict) else recorded
    return len([r for r in items if r.get("method") == "POST" and "count_tokens" not in r.get("path", "")])


def import_cli(agent: str, db_url: str, env: dict[str, str]) -> dict[str, Any]:
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", "import", agent, "--db", db_url, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    return dict(json.loads(p.stdout))


def wait_for(engine: Engine, sql: str, want: int, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n = int(rows(engine, sql)[0]["n"])
        if n >= want:
            return n
        time.sleep(0.2)
    return n


def test_claude_code_through_the_gateway_and_its_transcript_count_once(db_url: str, tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    engine = open_engine(db_url)
    home = tmp_path / "home"
    project = git_project(tmp_path / "widgets", "https://github.com/acme/widgets.git")
    sid = "at-run-claude"
    key = traced_session(engine, sid, project, "claude-code")

    with mock_llm.run_in_thread(_claude_mock(mock_llm)) as mock_url, server(db_url, mock_url, tmp_path) as url:
        genv = gateway_env(
            server_url=url, key=key, session_id=sid, private_dir=tmp_path / "priv", env={}, home=str(home),
            otel_interval_ms=500,
        )  # fmt: skip
        env = genv.apply(claude_env(home, url, tmp_path / "tmp"))
        result = run_claude(clis, project, env, "Say hi with a shell command")
        n = answered(mock_url, "messages")
        # Claude Code's exporter sends its last records as it exits; the gateway writes its own in batches.
        wait_for(engine, "SELECT COUNT(*) AS n FROM llm_call WHERE source = 'gateway' AND status = 'ok'", n)
        wait_for(engine, "SELECT COUNT(*) AS n FROM event WHERE kind = 'llm_call'", n)
    end_session(engine, sid)

    summary = import_cli("claude-code", db_url, {**os.environ, "HOME": str(home), "AGENTTRAIL_HOME": str(tmp_path)})
    assert summary["calls"] == n and summary["unreadable_lines"] == 0

    calls = rows(engine, "SELECT * FROM llm_calls WHERE status = 'ok'")
    assert n >= 2 and len(calls) == n  # once each, though the gateway, OTLP and the transcript all saw them
    assert {(c["source"], c["session_id"], c["agent_session_id"]) for c in calls} == {
        ("gateway", sid, result["session_id"])
    }
    for c in calls:
        got = Usage(
            input_tokens=c["input_tokens"],
            cache_read_tokens=c["cache_read_tokens"],
            cache_write_5m_tokens=c["cache_write_tokens"] - c["cache_write_1h_tokens"],
            cache_write_1h_tokens=c["cache_write_1h_tokens"],
            output_tokens=c["output_tokens"],
        )
        assert got == CLAUDE_USAGE
    model = calls[0]["model"]
    one_call = float(Pricer().price("anthropic", model, CLAUDE_USAGE).cost_usd)
    (s,) = rows(engine, "SELECT * FROM sessions")
    assert (s["session_id"], s["calls"], s["source"]) == (sid, n, "traced")
    assert s["cost_usd"] == pytest.approx(n * one_call)
    assert s["prompts"] >= 1 and s["tool_calls"] >= 1
    # The dialogue from the transcript and from OTLP is in the traced session, nowhere else.
    assert rows(engine, "SELECT COUNT(*) AS n FROM events WHERE session_id <> :s", s=sid) == [{"n": 0}]
    sources = {json.loads(r["payload"]).get("source") for r in rows(engine, "SELECT payload FROM events")}
    assert {"otlp", "imported"} <= sources
    # Claude Code's own cost equals the gateway's: reconcile shows no difference.
    (r,) = reconcile(engine).as_dicts()
    assert (r["session_id"], r["gateway_calls"], r["imported_calls"], r["agent_cost_source"]) == (
        sid,
        n,
        0,
        "transcript",
    )
    assert r["agent_cost_usd"] == pytest.approx(result["total_cost_usd"])
    assert r["gateway_cost_usd"] == pytest.approx(n * one_call)
    assert r["difference_usd"] == pytest.approx(0.0, abs=1e-9)
    # Its telemetry's token counts, under the same session, add up to the same usage.
    tokens: dict[str, float] = {}
    for m in rows(
        engine, "SELECT session_id, attributes, value FROM agent_metric WHERE name = 'claude_code.token.usage'"
    ):
        assert m["session_id"] == sid
        typ = orjson.loads(m["attributes"])["type"]
        tokens[typ] = tokens.get(typ, 0.0) + m["value"]
    u = CLAUDE_USAGE
    assert tokens == {
        "input": n * u.input_tokens,
        "output": n * u.output_tokens,
        "cacheRead": n * u.cache_read_tokens,
        "cacheCreation": n * u.cache_write_tokens,
    }

    again = import_cli("claude-code", db_url, {**os.environ, "HOME": str(home), "AGENTTRAIL_HOME": str(tmp_path)})
    assert (again["files_read"], again["stored_new"]) == (0, 0)
    assert len(rows(engine, "SELECT call_id FROM llm_calls WHERE status = 'ok'")) == n


def test_codex_through_the_gateway_and_its_rollout_count_once(db_url: str, tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    engine = open_engine(db_url)
    project = git_project(tmp_path / "gadgets", "https://github.com/acme/gadgets.git")
    sid = "at-run-codex"
    key = traced_session(engine, sid, project, "codex")

    with mock_llm.run_in_thread(_codex_mock(mock_llm)) as mock_url, server(db_url, mock_url, tmp_path) as url:
        codex_home, _ = prepare_codex_home(tmp_path / "priv", f"{url}/v1", str(tmp_path / "no-user-codex"))
        config = Path(codex_home, "config.toml").read_text()
        Path(codex_home, "config.toml").write_text('model = "gpt-5"\n' + config)
        env = codex_env(tmp_path / "home", Path(codex_home), tmp_path / "tmp")
        env["CODEX_API_KEY"] = key
        events = run_codex(clis, project, env, "Say hi, then add hello.txt")
        n = answered(mock_url, "responses")
        wait_for(engine, "SELECT COUNT(*) AS n FROM llm_call WHERE source = 'gateway' AND status = 'ok'", n)
    end_session(engine, sid)

    summary = import_cli("codex", db_url, {**os.environ, "CODEX_HOME": codex_home, "AGENTTRAIL_HOME": str(tmp_path)})
    assert summary["calls"] == n == 3

    calls = rows(engine, "SELECT * FROM llm_calls WHERE status = 'ok'")
    assert len(calls) == n and {(c["source"], c["session_id"]) for c in calls} == {("gateway", sid)}
    thread = next(e for e in events if e.get("type") == "thread.started")["thread_id"]
    assert {c["agent_session_id"] for c in calls} == {thread}
    assert all(
        (c["input_tokens"], c["cache_read_tokens"], c["output_tokens"])
        == (CODEX_USAGE.input_tokens, CODEX_USAGE.cache_read_tokens, CODEX_USAGE.output_tokens)
        for c in calls
    )
    (s,) = rows(engine, "SELECT session_id, calls, tool_calls FROM sessions")
    assert (s["session_id"], s["calls"]) == (sid, n) and s["tool_calls"] == 2
    again = import_cli("codex", db_url, {**os.environ, "CODEX_HOME": codex_home, "AGENTTRAIL_HOME": str(tmp_path)})
    assert (again["files_read"], again["stored_new"]) == (0, 0)
