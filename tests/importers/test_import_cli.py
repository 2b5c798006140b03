"""`agenttrail import claude-code|codex` as a user runs it: counts, damaged lines, defaults, uploads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, text

from agenttrail.config import load_settings
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine
from agenttrail.store.keys import create_key
from agenttrail.store.org import add_team

from .builders import T0, ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage


def at(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", *args], capture_output=True, text=True, timeout=180, env=env
    )
    if check and p.returncode != 0:
        raise AssertionError(f"agenttrail {' '.join(args)} failed ({p.returncode}): {p.stdout}\n{p.stderr}")
    assert "Traceback" not in p.stderr, p.stderr
    return p


def user_env(tmp: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRAIL_", "CLAUDE_", "CODEX_"))}
    env.update(HOME=str(tmp / "home"), AGENTTRAIL_HOME=str(tmp / "athome"), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def q(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql))]


def claude_history(projects: Path, sessions: int = 2) -> list[ClaudeTranscript]:
    out = []
    for i in range(sessions):
        t = ClaudeTranscript(cwd=f"/home/dev/repo{i}")
        t.prompt("fix the bug")
        t.response(
            [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": f"toolu_{i}", "name": "Bash", "input": {"command": "pytest"}},
            ],
            anthropic_usage(1000, 100, cache_read=2000, cache_5m=300, cache_1h=200),
        )
        t.tool_result(f"toolu_{i}", "1 passed")
        t.response([{"type": "text", "text": "Fixed."}], anthropic_usage(20, 30, cache_read=3000))
        t.write(projects)
        sub = ClaudeTranscript(session_id=t.session_id, cwd=t.cwd, agent_id=f"a{i}")
        sub.prompt("search the code")
        sub.response([{"type": "text", "text": "found"}], anthropic_usage(50, 5))
        sub.write(projects)
        out.append(t)
    return out


def test_claude_code_default_folder_twice(db_url: str, tmp_path: Path) -> None:
    env = user_env(tmp_path)
    claude_history(tmp_path / "home" / ".claude" / "projects")

    first = at("import", "claude-code", "--db", db_url, "--json", env=env)
    summary = json.loads(first.stdout)
    assert summary["files"] == 4 and summary["sessions"] == 2 and summary["calls"] == 6  # subagents included
    assert summary["input_tokens"] == 2 * (1000 + 20 + 50) and summary["cache_write_tokens"] == 2 * 500
    assert summary["unreadable_lines"] == 0 and summary["stored_new"] > 0
    engine = open_engine(db_url)
    calls = q(engine, "SELECT SUM(cost_usd) AS c, COUNT(*) AS n FROM llm_calls")[0]
    assert calls["n"] == 6 and calls["c"] == pytest.approx(summary["cost_usd"])
    assert {r["source"] for r in q(engine, "SELECT source FROM sessions")} == {"imported"}

    second = json.loads(at("import", "claude-code", "--db", db_url, "--json", env=env).stdout)
    assert (second["files_read"], second["files_unchanged"], second["calls"], second["stored_new"]) == (0, 4, 0, 0)
    assert q(engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 6


def test_claude_config_dir_is_honoured(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    claude_history(tmp_path / "cfg" / "projects", sessions=1)
    claude_history(tmp_path / "home" / ".claude" / "projects", sessions=1)  # not read: CLAUDE_CONFIG_DIR wins
    out = at(
        "import", "claude-code", "--db", db, "--json", env=user_env(tmp_path, CLAUDE_CONFIG_DIR=str(tmp_path / "cfg"))
    )
    assert json.loads(out.stdout)["sessions"] == 1
    assert q(open_engine(db), "SELECT cwd FROM sessions")[0]["cwd"] == "/home/dev/repo0"


def test_damaged_transcript_imports_what_is_readable_and_says_what_is_not(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    claude_history(tmp_path / "home" / ".claude" / "projects", sessions=1)
    path = next((tmp_path / "home" / ".claude" / "projects").glob("*/*.jsonl"))
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = [
        lines[0],
        lines[1][: len(lines[1]) // 2] + b"\n",  # cut short mid-file
        b"\x00\xff\xfe garbage \x80\n",  # not UTF-8
        b'{"type": "assistant", "message": 42}\n',  # JSON of the wrong shape
        *lines[2:],
        b"[1, 2,\n",  # garbled JSON
        lines[2][:40],  # a last line still being written: left for the next import
    ]
    path.write_bytes(b"".join(damaged))

    out = at("import", "claude-code", "--db", db, env=user_env(tmp_path))
    assert "4 unreadable lines skipped" in out.stdout, out.stdout
    assert f"{path}:2: not JSON" in out.stdout and f"{path}:3: invalid UTF-8" in out.stdout
    assert f"{path}:4: unexpected shape" in out.stdout
    engine = open_engine(db)
    # Line 2 was the first response's first block: the second block repeats its usage, so both calls
    # survive; the subagent's call too.
    assert q(engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 3
    detail = json.loads(at("import", "claude-code", "--db", db, "--json", env=user_env(tmp_path)).stdout)
    assert detail["files_unchanged"] == 2 and detail["unreadable_lines"] == 0


def test_codex_default_home_and_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    r = CodexRollout(model="gpt-5")
    r.meta()
    r.turn_context()
    r.user("add a test")
    r.function_call("call_1", args={"cmd": "pytest"})
    r.function_output("call_1", "Process exited with code 1\nFAILED")
    r.token_count(codex_usage(1500, 1000, 300, 120), repeat=2)
    r.assistant("done")
    r.token_count(codex_usage(2000, 1500, 100))
    r.write(tmp_path / "codexhome")
    env = user_env(tmp_path, CODEX_HOME=str(tmp_path / "codexhome"))
    summary = json.loads(at("import", "codex", "--db", db, "--json", env=env).stdout)
    assert (summary["sessions"], summary["calls"], summary["input_tokens"], summary["cache_read_tokens"]) == (
        1,
        2,
        500 + 500,
        2500,
    )
    engine = open_engine(db)
    (s,) = q(engine, "SELECT agent, repo, branch, head_before, tool_calls FROM sessions")
    assert (s["agent"], s["repo"], s["branch"], s["tool_calls"]) == ("codex", "github.com/acme/gadgets", "feature/x", 1)
    assert s["head_before"] == "962e4ff77d7b122946e6441c6fcfe5be51cf8cf3"
    assert {r["kind"] for r in q(engine, "SELECT kind FROM events")} >= {
        "prompt",
        "tool_call",
        "tool_result",
        "response",
    }


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    missing = at("import", "claude-code", str(tmp_path / "nope"), env=env, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    claude_history(tmp_path / "home" / ".claude" / "projects", sessions=1)
    nokey = at("import", "claude-code", "--server", "http://127.0.0.1:9", env=env, check=False)
    assert nokey.returncode == 1 and "--key" in nokey.stderr
    empty = at("import", "codex", env=user_env(tmp_path, CODEX_HOME=str(tmp_path / "empty")))
    assert "no codex transcripts under" in empty.stdout


@dataclass
class Server:
    url: str
    key: str
    engine: Engine


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    settings = load_settings(db=db_url, env={"AGENTTRAIL_HOME": str(tmp_path / "server-home")})
    engine = open_engine(db_url)
    add_team(engine, "core")
    key, _ = create_key(engine, team_name="core", now=T0.replace(tzinfo=None))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(create_server_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", key, engine)
    finally:
        srv.should_exit = True
        thread.join(30)
        sock.close()


def test_upload_to_a_server_through_the_idempotent_ingest(server: Server, tmp_path: Path) -> None:
    env = user_env(tmp_path, AGENTTRAIL_KEY=server.key)
    claude_history(tmp_path / "home" / ".claude" / "projects")
    local_db = f"sqlite:///{tmp_path / 'laptop.db'}"

    first = json.loads(at("import", "claude-code", "--server", server.url, "--db", local_db, "--json", env=env).stdout)
    # Every call and dialogue event, plus each session's start and end.
    assert first["calls"] == 6 and first["stored_new"] == first["calls"] + first["events"] + 2 * 2
    calls = q(server.engine, "SELECT COUNT(*) AS n, MIN(team) AS team FROM llm_calls")[0]
    assert calls == {"n": 6, "team": "core"}  # attributed by the key that uploaded them
    assert q(server.engine, "SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 2
    # Nothing went to the laptop's own store but its read positions.
    assert q(open_engine(local_db), "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 0

    second = json.loads(at("import", "claude-code", "--server", server.url, "--db", local_db, "--json", env=env).stdout)
    assert (second["files_read"], second["stored_new"]) == (0, 0)
    # Positions lost: the outbox remembers what it sent, nothing leaves again.
    with open_engine(local_db).begin() as conn:
        conn.execute(text("DELETE FROM import_state"))
    third = json.loads(at("import", "claude-code", "--server", server.url, "--db", local_db, "--json", env=env).stdout)
    assert third["stored_new"] == 0 and third["already_stored"] == first["stored_new"]
    # Another laptop with a copy of the same history: all is sent, the server stores it once.
    other = user_env(tmp_path, AGENTTRAIL_KEY=server.key, AGENTTRAIL_HOME=str(tmp_path / "other-home"))
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    fourth = json.loads(
        at("import", "claude-code", "--server", server.url, "--db", other_db, "--json", env=other).stdout
    )
    assert fourth["stored_new"] == 0 and fourth["already_stored"] == first["stored_new"]
    assert q(server.engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 6

    # A local import of the same files is a separate destination with its own positions.
    local = json.loads(at("import", "claude-code", "--db", local_db, "--json", env=env).stdout)
    assert local["files_read"] == 4


def test_refused_key_is_reported_and_events_stay_queued(server: Server, tmp_path: Path) -> None:
    env = user_env(tmp_path)
    claude_history(tmp_path / "home" / ".claude" / "projects", sessions=1)
    local_db = f"sqlite:///{tmp_path / 'laptop.db'}"
    args = ("import", "claude-code", "--server", server.url, "--db", local_db)
    bad = at(*args, "--key", "sk-at-nope", env=env, check=False)
    assert bad.returncode == 1 and "refused the key" in bad.stderr and "run the import again" in bad.stderr
    # With the right key, the queued events go out (the files themselves are already marked read).
    good = at(*args, "--key", server.key, "--json", env=env)
    assert json.loads(good.stdout)["stored_new"] > 0
    assert q(server.engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 3


def test_usage_only_first_then_the_dialogue(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    env = user_env(tmp_path)
    claude_history(tmp_path / "home" / ".claude" / "projects", sessions=1)
    fast = json.loads(at("import", "claude-code", "--usage-only", "--db", db, "--json", env=env).stdout)
    engine = open_engine(db)
    assert fast["calls"] == 3 and fast["events"] == 0
    assert q(engine, "SELECT calls, prompts FROM sessions") == [{"calls": 3, "prompts": 0}]
    (responses,) = q(engine, "SELECT started_at, ended_at FROM sessions")
    # The full import reads the same files again (its own positions) and adds only the dialogue.
    full = json.loads(at("import", "claude-code", "--db", db, "--json", env=env).stdout)
    assert full["files_read"] == 2 and full["events"] > 0
    assert q(engine, "SELECT calls, prompts FROM sessions") == [{"calls": 3, "prompts": 2}]
    # Usage only read the responses; the full import widens the span to the first prompt.
    (whole,) = q(engine, "SELECT started_at, ended_at FROM sessions")
    assert str(whole["started_at"]) < str(responses["started_at"])
    assert str(whole["ended_at"]) >= str(responses["ended_at"])
    assert q(engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 3


def test_progress_bar_in_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import agenttrail.cli.import_ as cli

    claude_history(tmp_path / "projects", sessions=2)
    out = io.StringIO()
    monkeypatch.setattr(cli, "err_console", Console(file=out, force_terminal=True, width=160))
    settings = load_settings(db=f"sqlite:///{tmp_path / 'a.db'}", env={"AGENTTRAIL_HOME": str(tmp_path / "h")})
    totals = cli.run_import("claude-code", str(tmp_path / "projects"), settings=settings, env={})
    assert totals.calls == 6
    shown = out.getvalue()
    assert "claude-code" in shown and "2 sessions · 6 calls · 0 unreadable" in shown and "kB" in shown


def _odd_request_id(projects: Path) -> None:
    t = ClaudeTranscript(cwd="/home/dev/repo")
    t.prompt("fix the bug")
    t.response([{"type": "text", "text": "Looking."}], anthropic_usage(1000, 100), request_id="req_" + "x" * 300)
    t.response([{"type": "text", "text": "Fixed."}], anthropic_usage(20, 30))
    t.write(projects)


def test_a_value_no_column_can_hold_leaves_its_event_out_not_the_import(tmp_path: Path) -> None:
    """A request id longer than any (from a damaged file) was a traceback that stopped the import."""
    db = f"sqlite:///{tmp_path / 'a.db'}"
    _odd_request_id(tmp_path / "home" / ".claude" / "projects")
    out = at("import", "claude-code", "--db", db, env=user_env(tmp_path))
    assert "left out: event" in out.stderr and "request_id is longer than 200 characters" in out.stderr, out.stderr
    engine = open_engine(db)
    assert q(engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 1  # the other call is stored
    assert q(engine, "SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 1


def test_an_upload_leaves_out_what_the_server_would_refuse(server: Server, tmp_path: Path) -> None:
    """Sent, the event made the server refuse its whole batch (a 400), and the upload stopped there."""
    _odd_request_id(tmp_path / "home" / ".claude" / "projects")
    env = user_env(tmp_path, AGENTTRAIL_KEY=server.key)
    out = at("import", "claude-code", "--server", server.url, "--db", f"sqlite:///{tmp_path / 'l.db'}", env=env)
    assert "left out: event" in out.stderr, out.stderr
    assert q(server.engine, "SELECT COUNT(*) AS n FROM llm_calls")[0]["n"] == 1
