"""`agenttrail import` on what the real Claude Code and Codex CLIs wrote (against mock-llm, known usage,
cache tokens included, in a private HOME / CODEX_HOME): tokens and cost equal the known usage counted
once per API response, and a second import adds nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agenttrail.pricing import Pricer
from agenttrail.store.database import open_engine

from .agent_clis import (
    claude_env,
    codex_env,
    git_project,
    require_agent_clis,
    require_mock_llm,
    run_claude,
    run_codex,
    write_codex_config,
)
from .test_join_real_clis import answered, import_cli, rows
from .test_real_agent_clis import CLAUDE_USAGE, CODEX_USAGE, _claude_mock, _codex_mock

pytestmark = pytest.mark.slow


def test_import_claude_code_written_by_the_real_cli(db_url: str, tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    home = tmp_path / "home"
    project = git_project(tmp_path / "widgets", "https://github.com/acme/widgets.git")
    with mock_llm.run_in_thread(_claude_mock(mock_llm)) as url:
        result = run_claude(clis, project, claude_env(home, url, tmp_path / "tmp"), "Say hi with a shell command")
        n = answered(url, "messages")
    env = {**os.environ, "HOME": str(home), "AGENTTRAIL_HOME": str(tmp_path / "at")}
    env.pop("CLAUDE_CONFIG_DIR", None)

    summary = import_cli("claude-code", db_url, env)

    u = CLAUDE_USAGE
    assert n >= 2 and summary["calls"] == n and summary["sessions"] == 1 and summary["unreadable_lines"] == 0
    assert (summary["input_tokens"], summary["cache_read_tokens"], summary["cache_write_tokens"]) == (
        n * u.input_tokens,
        n * u.cache_read_tokens,
        n * u.cache_write_tokens,
    )
    assert summary["output_tokens"] == n * u.output_tokens
    engine = open_engine(db_url)
    calls = rows(engine, "SELECT * FROM llm_calls")
    assert len(calls) == n
    assert {(c["cache_write_tokens"], c["cache_write_1h_tokens"]) for c in calls} == {(u.cache_write_tokens, 100)}
    one = float(Pricer().price("anthropic", calls[0]["model"], u).cost_usd)
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(n * one)
    # Priced as Claude Code priced them (its 1-hour cache writes at the 1-hour rate).
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(result["total_cost_usd"])
    (s,) = rows(engine, "SELECT * FROM sessions")
    assert (s["agent"], s["agent_session_id"], s["cwd"], s["calls"]) == (
        "claude-code",
        result["session_id"],
        str(project),
        n,
    )
    assert s["prompts"] == 1 and s["tool_calls"] >= 1

    again = import_cli("claude-code", db_url, env)
    assert (again["files_read"], again["calls"], again["stored_new"]) == (0, 0, 0)
    assert len(rows(engine, "SELECT call_id FROM llm_calls")) == n


def test_import_codex_written_by_the_real_cli(db_url: str, tmp_path: Path) -> None:
    clis = require_agent_clis()
    mock_llm = require_mock_llm()
    codex_home = tmp_path / "codex-home"
    project = git_project(tmp_path / "gadgets", "https://github.com/acme/gadgets.git")
    with mock_llm.run_in_thread(_codex_mock(mock_llm)) as url:
        write_codex_config(codex_home, url, "gpt-5")
        events = run_codex(clis, project, codex_env(tmp_path / "home", codex_home, tmp_path / "tmp"), "Add hello.txt")
        n = answered(url, "responses")
    env = {**os.environ, "CODEX_HOME": str(codex_home), "AGENTTRAIL_HOME": str(tmp_path / "at")}

    summary = import_cli("codex", db_url, env)

    u = CODEX_USAGE
    assert n == 3 and summary["calls"] == n and summary["sessions"] == 1
    assert (summary["input_tokens"], summary["cache_read_tokens"], summary["output_tokens"]) == (
        n * u.input_tokens,
        n * u.cache_read_tokens,
        n * u.output_tokens,
    )
    (done,) = [e for e in events if e.get("type") == "turn.completed"]
    assert done["usage"]["input_tokens"] == summary["input_tokens"] + summary["cache_read_tokens"]
    engine = open_engine(db_url)
    calls = rows(engine, "SELECT * FROM llm_calls")
    assert len(calls) == n and all(c["request_id"].startswith("resp_") for c in calls)
    one = float(Pricer().price("openai", "gpt-5", u).cost_usd)
    assert sum(c["cost_usd"] for c in calls) == pytest.approx(n * one)
    (s,) = rows(engine, "SELECT * FROM sessions")
    assert (s["agent"], s["repo"], s["branch"], s["calls"], s["tool_calls"]) == (
        "codex",
        "github.com/acme/gadgets",
        "main",
        n,
        2,
    )

    again = import_cli("codex", db_url, env)
    assert (again["files_read"], again["calls"], again["stored_new"]) == (0, 0, 0)
