"""The agents' own OTLP exporters, offline, pointed at agenttrail's receiver (the server app in a thread):
Claude Code over http/json and http/protobuf, Codex over otlp-http (binary). Needs the real CLIs (see
tests/importers/agent_clis.py); skips without them, fails under AGENTTRAIL_TEST_STRICT=1."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from agenttrail.importers.to_events import imported_session_id
from agenttrail.store.database import open_engine
from agenttrail.store.keys import create_key
from agenttrail.store.org import add_team

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared helpers live in tests/importers

from importers.agent_clis import (
    claude_env,
    codex_env,
    git_project,
    require_agent_clis,
    require_mock_llm,
    run_claude,
    run_codex,
    write_codex_config,
)
from importers.test_join_real_clis import server
from importers.test_real_agent_clis import CLAUDE_USAGE, CODEX_USAGE, _claude_mock, _codex_mock

pytestmark = pytest.mark.slow


def rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def wait_rows(engine: Engine, sql: str, want: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        got = rows(engine, sql)
        if len(got) >= want:
            break
        time.sleep(0.2)
    return got


def key_for(engine: Engine) -> str:
    add_team(engine, "core")
    return create_key(engine, team_name="core", now=datetime.now(UTC).replace(tzinfo=None))[0]


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_claude_code_exporter(db_url: str, tmp_path: Path, protocol: str) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    engine = open_engine(db_url)
    key = key_for(engine)
    home = tmp_path / "home"
    project = git_project(tmp_path / "widgets", "https://github.com/acme/widgets.git")
    with mock_llm.run_in_thread(_claude_mock(mock_llm)) as mock_url, server(db_url, mock_url, tmp_path) as url:
        env = claude_env(
            home,
            mock_url,  # the calls go straight to the provider: only the telemetry reaches agenttrail
            tmp_path / "tmp",
            CLAUDE_CODE_ENABLE_TELEMETRY="1",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"{url}/otlp",
            OTEL_EXPORTER_OTLP_HEADERS=f"x-api-key={key}",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_LOGS_EXPORT_INTERVAL="500",
            OTEL_RESOURCE_ATTRIBUTES="agenttrail.session_id=at-otel-1",
        )
        result = run_claude(clis, project, env, "Say hi with a shell command")
        calls = wait_rows(engine, "SELECT * FROM llm_calls WHERE status = 'ok'", 2)
        metrics = wait_rows(engine, "SELECT * FROM agent_metric WHERE name = 'claude_code.token.usage'", 4)

    n = len(calls)
    assert n >= 2 and {(c["source"], c["session_id"], c["team"]) for c in calls} == {("otlp", "at-otel-1", "core")}
    assert {c["agent_session_id"] for c in calls} == {result["session_id"]}
    assert all(
        (c["input_tokens"], c["cache_read_tokens"], c["cache_write_tokens"], c["output_tokens"])
        == (CLAUDE_USAGE.input_tokens, CLAUDE_USAGE.cache_read_tokens, 500, CLAUDE_USAGE.output_tokens)
        for c in calls
    )
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(result["total_cost_usd"])
    kinds = {r["kind"] for r in rows(engine, "SELECT kind FROM events WHERE session_id = 'at-otel-1'")}
    assert {"prompt", "tool_call", "tool_result", "llm_call"} <= kinds
    tokens: dict[str, float] = {}
    for m in metrics:
        assert m["session_id"] == "at-otel-1"
        typ = orjson.loads(m["attributes"])["type"]
        tokens[typ] = tokens.get(typ, 0.0) + m["value"]
    assert tokens["input"] == n * CLAUDE_USAGE.input_tokens
    assert tokens["cacheCreation"] == n * CLAUDE_USAGE.cache_write_tokens
    cost = sum(r["value"] for r in rows(engine, "SELECT value FROM agent_metric WHERE name = 'claude_code.cost.usage'"))
    assert cost == pytest.approx(result["total_cost_usd"])


def test_codex_exporter(db_url: str, tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    engine = open_engine(db_url)
    key = key_for(engine)
    codex_home = tmp_path / "codex-home"
    project = git_project(tmp_path / "gadgets", "https://github.com/acme/gadgets.git")
    with mock_llm.run_in_thread(_codex_mock(mock_llm)) as mock_url, server(db_url, mock_url, tmp_path) as url:
        endpoint = f'endpoint = "{url}/otlp/v1/logs"'
        headers = f'headers = {{ "x-api-key" = "{key}" }}'
        otel = (
            '[otel]\nenvironment = "test"\nlog_user_prompt = true\n'
            f'exporter = {{ otlp-http = {{ {endpoint}, protocol = "binary", {headers} }} }}\n'
        )
        write_codex_config(codex_home, mock_url, "gpt-5", otel)
        events = run_codex(clis, project, codex_env(tmp_path / "home", codex_home, tmp_path / "tmp"), "Add hello.txt")
        calls = wait_rows(engine, "SELECT * FROM llm_calls WHERE status = 'ok'", 3)

    thread = next(e for e in events if e.get("type") == "thread.started")["thread_id"]
    assert len(calls) == 3
    assert {(c["source"], c["session_id"], c["provider"]) for c in calls} == {
        ("otlp", imported_session_id("codex", thread), "openai")
    }
    assert all(
        (c["input_tokens"], c["cache_read_tokens"], c["output_tokens"])
        == (CODEX_USAGE.input_tokens, CODEX_USAGE.cache_read_tokens, CODEX_USAGE.output_tokens)
        for c in calls
    )
    prompts = rows(engine, "SELECT payload FROM events WHERE kind = 'prompt'")
    assert [orjson.loads(p["payload"])["text"] for p in prompts] == ["Add hello.txt"]
