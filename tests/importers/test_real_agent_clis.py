"""The real Claude Code and Codex CLIs write transcripts (and telemetry) against mock-llm; the importers
read them back with the mock's usage, each API response counted once. See agent_clis.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from agenttrail.events import PROMPT, TOOL_CALL, TOOL_RESULT
from agenttrail.importers import (
    MemoryStateStore,
    import_claude_code,
    import_codex,
    parse_otlp_logs,
    parse_otlp_metrics,
)
from agenttrail.usage import Usage

from .agent_clis import (
    claude_env,
    codex_env,
    git_project,
    otlp_sink,
    require_agent_clis,
    require_mock_llm,
    run_claude,
    run_codex,
    write_codex_config,
)

pytestmark = pytest.mark.slow

CLAUDE_USAGE = Usage(
    input_tokens=1200, cache_read_tokens=3000, cache_write_5m_tokens=400, cache_write_1h_tokens=100, output_tokens=250
)
CODEX_USAGE = Usage(input_tokens=500, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=120)
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"


def _claude_mock(mock_llm: Any) -> Any:
    scenario = mock_llm.Scenario.parse(
        {
            "cursor": "history",
            "turns": [
                {"text": "I'll run it.", "tool": "Bash", "input": {"command": "echo hi", "description": "Say hi"}},
                {"text": "Done."},
            ],
        }
    )
    return mock_llm.MockConfig(anthropic_usage=CLAUDE_USAGE, scenario=scenario)


def _codex_mock(mock_llm: Any) -> Any:
    scenario = mock_llm.Scenario.parse(
        {
            "cursor": "history",
            "turns": [
                {"text": "Listing.", "tool": "exec_command", "input": {"cmd": "echo hi"}},
                {"custom_tool": "apply_patch", "input": PATCH},
                {"text": "Done."},
            ],
        }
    )
    return mock_llm.MockConfig(responses_usage=CODEX_USAGE, scenario=scenario)


def _times(u: Usage, n: int) -> Usage:
    total = Usage()
    for _ in range(n):
        total = total + u
    return total


def _assistant_lines(home: Path) -> tuple[int, set[str]]:
    lines, requests = 0, set()
    for f in (home / ".claude" / "projects").rglob("*.jsonl"):
        for raw in f.read_bytes().splitlines():
            obj = orjson.loads(raw)
            if obj.get("type") == "assistant" and obj.get("message", {}).get("model") != "<synthetic>":
                lines += 1
                requests.add(obj.get("requestId"))
    return lines, requests


def test_claude_code_transcript(tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    home = tmp_path / "home"
    project = git_project(tmp_path / "widgets", "https://github.com/acme/widgets.git")
    with mock_llm.run_in_thread(_claude_mock(mock_llm)) as url:
        result = run_claude(clis, project, claude_env(home, url, tmp_path / "tmp"), "Say hi with a shell command")
        recorded = httpx.get(f"{url}/_mock/requests", params={"endpoint": "messages"}).json()

    store = MemoryStateStore()
    batch = import_claude_code(env={"HOME": str(home)}, state=store)
    batch.commit(store)

    assert batch.errors == []
    n = len(batch.calls)
    assistant_lines, request_ids = _assistant_lines(home)
    assert n >= 2 and n == len(request_ids)
    assert assistant_lines > n  # responses were written as several lines, each repeating the usage
    assert all(c.usage == CLAUDE_USAGE for c in batch.calls)
    assert batch.total_usage() == _times(CLAUDE_USAGE, n)
    # Every model request the mock answered with usage is a call, once.
    answered = [
        r
        for r in (recorded.get("requests") if isinstance(recorded, dict) else recorded)
        if r.get("method") == "POST" and "count_tokens" not in r.get("path", "")
    ]
    assert n == len(answered)
    # Claude Code's own account of the run agrees.
    own = result["modelUsage"]
    assert sum(m["inputTokens"] for m in own.values()) == batch.total_usage().input_tokens
    assert sum(m["outputTokens"] for m in own.values()) == batch.total_usage().output_tokens
    assert sum(m["cacheReadInputTokens"] for m in own.values()) == batch.total_usage().cache_read_tokens
    assert sum(m["cacheCreationInputTokens"] for m in own.values()) == batch.total_usage().cache_write_tokens

    (session,) = batch.sessions
    assert session.agent_session_id == result["session_id"]
    assert session.cwd == str(project) and session.branch == "main"
    assert {c.request_id for c in batch.calls} == request_ids
    kinds = [e.kind for e in batch.events]
    assert PROMPT in kinds and TOOL_CALL in kinds and TOOL_RESULT in kinds
    call = next(e for e in batch.events if e.kind == TOOL_CALL)
    assert call.payload["name"] == "Bash" and call.payload["input"]["command"] == "echo hi"
    out = next(e for e in batch.events if e.kind == TOOL_RESULT)
    assert out.payload["tool_use_id"] == call.payload["tool_use_id"] and "hi" in out.payload["text"]

    again = import_claude_code(env={"HOME": str(home)}, state=store)
    assert again.calls == [] and again.events == [] and again.errors == []


def test_codex_rollout(tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    codex_home = tmp_path / "codex-home"
    project = git_project(tmp_path / "gadgets", "https://github.com/acme/gadgets.git")
    with mock_llm.run_in_thread(_codex_mock(mock_llm)) as url:
        write_codex_config(codex_home, url, "gpt-5")
        events = run_codex(
            clis, project, codex_env(tmp_path / "home", codex_home, tmp_path / "tmp"), "Say hi, then add hello.txt"
        )

    store = MemoryStateStore()
    batch = import_codex(env={"CODEX_HOME": str(codex_home)}, state=store)
    batch.commit(store)

    assert batch.errors == []
    n = len(batch.calls)
    assert n == 3
    assert all(c.usage == CODEX_USAGE for c in batch.calls)
    assert batch.total_usage() == _times(CODEX_USAGE, n)
    # Codex's own account of the turn (input includes cached; output includes reasoning).
    (done,) = [e for e in events if e.get("type") == "turn.completed"]
    total = batch.total_usage()
    assert done["usage"]["input_tokens"] == total.input_tokens + total.cache_read_tokens + total.cache_write_tokens
    assert done["usage"]["cached_input_tokens"] == total.cache_read_tokens
    assert done["usage"]["output_tokens"] == total.output_tokens

    (session,) = batch.sessions
    thread = next(e for e in events if e.get("type") == "thread.started")
    assert session.agent_session_id == thread["thread_id"]
    assert session.repo_url == "https://github.com/acme/gadgets.git"
    assert session.branch == "main" and session.git_commit and session.cwd == str(project)
    assert session.models == ["gpt-5"]
    names = [e.payload.get("name") for e in batch.events if e.kind == TOOL_CALL]
    assert names == ["exec_command", "apply_patch"]
    results = [e for e in batch.events if e.kind == TOOL_RESULT]
    assert len(results) == 2 and not any(e.payload["is_error"] for e in results)

    again = import_codex(env={"CODEX_HOME": str(codex_home)}, state=store)
    assert again.calls == [] and again.events == [] and again.errors == []


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_claude_code_otlp_exporter(tmp_path: Path, protocol: str) -> None:
    """Claude Code's own exporter, offline: its api_request records are the transcript's calls (same
    ids), and its token.usage metrics add up to the same totals."""
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    home = tmp_path / "home"
    project = git_project(tmp_path / "widgets", "https://github.com/acme/widgets.git")
    with mock_llm.run_in_thread(_claude_mock(mock_llm)) as url, otlp_sink() as sink:
        env = claude_env(
            home,
            url,
            tmp_path / "tmp",
            CLAUDE_CODE_ENABLE_TELEMETRY="1",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.url,
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_LOGS_EXPORT_INTERVAL="500",
            OTEL_EXPORTER_OTLP_HEADERS="x-agenttrail-key=sk-at-test",
            OTEL_RESOURCE_ATTRIBUTES="agenttrail.session_id=at-session-1",
        )
        run_claude(clis, project, env, "Say hi with a shell command")

    transcript = import_claude_code(env={"HOME": str(home)})
    logs = [parse_otlp_logs(r.body, r.content_type, r.headers.get("content-encoding")) for r in sink.bodies("logs")]
    points = [
        p
        for r in sink.bodies("metrics")
        for p in parse_otlp_metrics(r.body, r.content_type, r.headers.get("content-encoding"))
    ]

    assert logs and points
    assert all(r.headers.get("x-agenttrail-key") == "sk-at-test" for r in sink.requests)
    expected_type = "application/json" if protocol == "http/json" else "application/x-protobuf"
    assert all(r.content_type.startswith(expected_type) for r in sink.requests)
    otlp_calls = [c for b in logs for c in b.calls if c.status == "ok"]
    assert sorted(c.call_id for c in otlp_calls) == sorted(c.call_id for c in transcript.calls)
    assert all(c.usage == CLAUDE_USAGE and c.agenttrail_session_id == "at-session-1" for c in otlp_calls)
    assert all(c.agent_cost_usd is not None for c in otlp_calls)
    (session,) = transcript.sessions
    assert {c.session_id for c in otlp_calls} == {session.agent_session_id}
    assert any(e.kind == TOOL_RESULT for b in logs for e in b.events)

    tokens: dict[str, float] = {}
    for p in points:
        if p.name == "claude_code.token.usage" and p.type:
            assert p.temporality == "delta" and p.session_id == session.agent_session_id
            tokens[p.type] = tokens.get(p.type, 0) + p.value
    total = transcript.total_usage()
    assert tokens == {
        "input": total.input_tokens,
        "output": total.output_tokens,
        "cacheRead": total.cache_read_tokens,
        "cacheCreation": total.cache_write_tokens,
    }


def test_codex_otlp_exporter(tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    codex_home = tmp_path / "codex-home"
    project = git_project(tmp_path / "gadgets", "https://github.com/acme/gadgets.git")
    with mock_llm.run_in_thread(_codex_mock(mock_llm)) as url, otlp_sink() as sink:
        endpoint = f'endpoint = "{sink.url}/v1/logs"'
        headers = 'headers = { "x-agenttrail-key" = "sk-at-test" }'
        otel = (
            '[otel]\nenvironment = "test"\nlog_user_prompt = true\n'
            f'exporter = {{ otlp-http = {{ {endpoint}, protocol = "binary", {headers} }} }}\n'
        )
        write_codex_config(codex_home, url, "gpt-5", otel)
        run_codex(
            clis, project, codex_env(tmp_path / "home", codex_home, tmp_path / "tmp"), "Say hi, then add hello.txt"
        )

    rollout = import_codex(env={"CODEX_HOME": str(codex_home)})
    logs = [parse_otlp_logs(r.body, r.content_type, r.headers.get("content-encoding")) for r in sink.bodies("logs")]

    assert logs
    assert all(r.headers.get("x-agenttrail-key") == "sk-at-test" for r in sink.bodies("logs"))
    calls = [c for b in logs for c in b.calls if c.status == "ok"]
    assert len(calls) == len(rollout.calls) == 3
    assert all(c.usage == CODEX_USAGE and c.model == "gpt-5" for c in calls)
    (session,) = rollout.sessions
    assert {c.session_id for c in calls} == {session.agent_session_id}
    prompts = [e for b in logs for e in b.events if e.kind == PROMPT]
    assert [e.payload["text"] for e in prompts] == ["Say hi, then add hello.txt"]
    assert len([e for b in logs for e in b.events if e.kind == TOOL_RESULT]) == 2
