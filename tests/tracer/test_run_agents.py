"""The real Claude Code and Codex CLIs under `agenttrail run`, sandboxed, through a real `agenttrail serve`
in front of mock-llm, offline.

mock-llm's scripted tool calls (history cursor) make each agent create a file and run a shell command.
The session must show the file's creation with its diff, the command's exec, and the model calls with
tokens and cost, all under the one session id, with the agent's own session id learnt on the way.

The CLIs come from npm at the versions pinned in tests/agent_clis.json (`.ci/run` installs them and
sets AGENTTRAIL_AGENT_CLIS); without them these tests skip, and fail under AGENTTRAIL_TEST_STRICT=1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agenttrail.testing import MockConfig, Scenario, run_in_thread
from agenttrail.tracer.sandbox import probe

from .test_run_harness import (
    agenttrail,
    base_env,
    make_repo,
    need,
    outside_tmp,
    running_server,
    session_id_from,
)

pytestmark = pytest.mark.slow
PINS = Path(__file__).resolve().parents[1] / "agent_clis.json"


def _agent(name: str) -> Path:
    """The installed CLI at its pinned version, or a skip (a failure in CI) saying how to install it."""
    need(shutil.which("strace") is not None, "strace is not installed")
    need(shutil.which("node") is not None, "node is not on PATH (the agent CLIs need it)")
    result = probe()
    need(result.ok, f"bubblewrap cannot make a sandbox here: {result.reason}")
    pins: dict[str, str] = json.loads(PINS.read_text())
    root = Path(os.environ.get("AGENTTRAIL_AGENT_CLIS") or "/work/agent-clis")
    install = f"npm install --prefix {root} " + " ".join(f"{p}@{v}" for p, v in pins.items())
    exe = root / "node_modules" / ".bin" / name
    need(exe.exists(), f"{exe} not found (set AGENTTRAIL_AGENT_CLIS, or run: {install})")
    package = "@anthropic-ai/claude-code" if name == "claude" else "@openai/codex"
    try:
        version = json.loads((root / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = None
    need(version == pins[package], f"{package} {version} is installed, the pin is {pins[package]} (run: {install})")
    return exe


def _show(repo: Path, env: dict[str, str], sid: str) -> dict[str, Any]:
    return dict(json.loads(agenttrail(["session", "show", sid, "--json"], cwd=repo, env=env).stdout))


def _execs(rec: dict[str, Any]) -> list[str]:
    return [" ".join(e["payload"]["argv"]) for e in rec["events"] if e["kind"] == "exec"]


def test_claude_code_writes_a_file_and_runs_a_command(tmp_path: Path) -> None:
    claude = _agent("claude")
    scenario = Scenario.parse(
        {
            "cursor": "history",
            "turns": [
                {"text": "Writing.", "tool": "Write", "input": {"file_path": "hello.py", "content": "print('hi')\n"}},
                {"text": "Running.", "tool": "Bash", "input": {"command": "echo ran-by-claude > ran.txt"}},
                {"text": "Done."},
            ],
        }
    )
    with outside_tmp("at-claude-") as base, run_in_thread(MockConfig(scenario=scenario)) as mock_url:
        repo = make_repo(base / "repo", {"README.md": "widgets\n"}, remote="https://github.com/acme/widgets.git")
        (base / "home").mkdir()
        with running_server(tmp_path, mock_url) as server:
            env = base_env(
                base / "home",
                base / "at-home",
                IS_SANDBOX="1",  # lets --dangerously-skip-permissions run as root
                CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                DISABLE_AUTOUPDATER="1",
            )
            agenttrail(["login", "--server", server.url, "--key", server.key], cwd=repo, env=env)
            prompt = "Create hello.py, then run a command"
            done = agenttrail(
                ["run", "--", str(claude), "-p", prompt, "--dangerously-skip-permissions", "--output-format", "json"],
                cwd=repo,
                env=env,
            )
            sid = session_id_from(done.stderr)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            assert result["is_error"] is False and result["result"] == "Done."
            assert (repo / "hello.py").read_text() == "print('hi')\n"

            calls = server.calls(sid, expect=3)
            rec = _show(repo, env, sid)

    assert rec["start"]["agent"] == "claude-code" and rec["start"]["agent_version"] == "2.1.330"
    assert rec["start"]["repo"] == "github.com/acme/widgets" and rec["start"]["sandboxed"] is True
    files = {f["path"]: f for f in rec["file_changes"]}
    assert files["hello.py"]["change"] == "created"
    assert files["hello.py"]["diff"] == "--- /dev/null\n+++ b/hello.py\n@@ -0,0 +1 @@\n+print('hi')\n"
    assert files["ran.txt"]["change"] == "created"
    creates = [
        e["payload"] for e in rec["events"] if e["kind"] == "file_create" and e["payload"].get("source") == "snapshot"
    ]
    assert {"hello.py", "ran.txt"} <= {p["path"] for p in creates}
    assert any("echo ran-by-claude > ran.txt" in argv for argv in _execs(rec))
    # The model calls: through the gateway, under this session, with tokens and cost.
    assert len(rec["llm_calls"]) == len(calls) >= 3
    for call in rec["llm_calls"]:
        assert call["session_id"] == sid and call["provider"] == "anthropic"
        assert (call["input_tokens"], call["cache_read_tokens"], call["output_tokens"]) == (1200, 3000, 250)
        assert call["cost_usd"] > 0 and call["agent_session_id"] == result["session_id"]
    # Claude Code's own session id, learnt from the transcript it wrote.
    assert rec["end"]["agent_session_id"] == result["session_id"]
    assert rec["end"]["exit_code"] == 0 and rec["end"]["status"] == "ok"


def test_codex_runs_a_command_and_applies_a_patch(tmp_path: Path) -> None:
    codex = _agent("codex")
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
    scenario = Scenario.parse(
        {
            "cursor": "history",
            "turns": [
                {"text": "Running.", "tool": "exec_command", "input": {"cmd": "echo ran-by-codex > ran.txt"}},
                {"custom_tool": "apply_patch", "input": patch},
                {"text": "Done."},
            ],
        }
    )
    with outside_tmp("at-codex-") as base, run_in_thread(MockConfig(scenario=scenario)) as mock_url:
        repo = make_repo(base / "repo", {"README.md": "gadgets\n"}, remote="git@github.com:acme/gadgets.git")
        # The user's own Codex settings are kept (the model), only the provider becomes the gateway. A model
        # Codex knows gets its freeform apply_patch tool.
        (base / "home" / ".codex").mkdir(parents=True)
        (base / "home" / ".codex" / "config.toml").write_text('model = "gpt-5.5"\n')
        with running_server(tmp_path, mock_url) as server:
            env = base_env(base / "home", base / "at-home")
            agenttrail(["login", "--server", server.url, "--key", server.key], cwd=repo, env=env)
            done = agenttrail(
                [
                    "run",
                    "--",
                    str(codex),
                    "exec",
                    "-s",
                    "workspace-write",
                    "--skip-git-repo-check",
                    "--json",
                    "Run a command, then add hello.txt",
                ],
                cwd=repo,
                env=env,
            )
            sid = session_id_from(done.stderr)
            out = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            thread = next(e["thread_id"] for e in out if e.get("type") == "thread.started")
            commands = [e["item"] for e in out if e.get("item", {}).get("type") == "command_execution"]
            assert commands and all(c["exit_code"] == 0 for c in commands if c.get("status") == "completed")
            assert (repo / "hello.txt").read_text() == "hello\n"
            assert (repo / "ran.txt").read_text() == "ran-by-codex\n"

            calls = server.calls(sid, expect=3)
            rec = _show(repo, env, sid)

    assert rec["start"]["agent"] == "codex" and rec["start"]["agent_version"] == "0.169.0"
    assert rec["start"]["repo"] == "github.com/acme/gadgets"
    files = {f["path"]: f for f in rec["file_changes"]}
    assert files["hello.txt"]["change"] == "created"
    assert files["hello.txt"]["diff"] == "--- /dev/null\n+++ b/hello.txt\n@@ -0,0 +1 @@\n+hello\n"
    assert files["ran.txt"]["diff"] == "--- /dev/null\n+++ b/ran.txt\n@@ -0,0 +1 @@\n+ran-by-codex\n"
    assert any("echo ran-by-codex > ran.txt" in argv for argv in _execs(rec))
    assert len(rec["llm_calls"]) == len(calls) == 3
    for call in rec["llm_calls"]:
        assert call["session_id"] == sid and call["provider"] == "openai" and call["model"] == "gpt-5.5"
        assert call["input_tokens"] + call["cache_read_tokens"] == 1500 and call["output_tokens"] == 300
        assert call["cost_usd"] > 0
    assert rec["end"]["agent_session_id"] == thread
    # Codex's rollout stays in the session's private CODEX_HOME, for import.
    assert rec["end"]["transcript"].startswith(str(base / "at-home" / "sessions" / sid))
