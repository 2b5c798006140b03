"""`agenttrail run` against a real `agenttrail serve`: the credential broker, the sandbox, and delivery.

- Inside a sandboxed session the agent gets a session-scoped key and the gateway URL; it cannot read
  ~/.ssh, cannot write outside the project, and finds neither the server's provider key nor the
  engineer's key in its environment, in /proc or on disk. Its model call is recorded under the
  session, and its key stops working when the session ends.
- `agenttrail run` killed with -9 mid-session: what it had emitted is in the outbox, and the next
  `agenttrail sync` delivers it.
- The server down for a whole session: everything arrives later, exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from agenttrail.outbox import Outbox
from agenttrail.testing import MockConfig, run_in_thread
from agenttrail.tracer.sandbox import probe

from .test_run_harness import (
    AGENTTRAIL,
    REAL_ANTHROPIC,
    REAL_OPENAI,
    agenttrail,
    base_env,
    make_repo,
    need,
    outside_tmp,
    running_server,
    session_id_from,
    wait_for,
)

pytestmark = pytest.mark.slow

PROBE = r"""
cat "$HOME/.ssh/id_rsa" > ssh.out 2>&1; echo "rc=$?" >> ssh.out
cat "$HOME/.aws/credentials" > aws.out 2>&1; echo "rc=$?" >> aws.out
touch "$HOME/written-by-agent" 2> /dev/null; echo $? > home-write.rc
touch "$BASE/written-by-agent" 2> /dev/null; echo $? > base-write.rc
env > env.out
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < "$f"; done > proc.out 2>/dev/null
# Every readable file outside the project that the agent can reach in the likely places.
find "$HOME" "$AGENTTRAIL_HOME" "$BASE" -path "$PWD" -prune -o -type f -readable -print 2>/dev/null \
  | while read -r f; do cat "$f"; done > disk.out 2>/dev/null
python3 - <<'EOF' > call.out
import json, os, urllib.request
req = urllib.request.Request(
    os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
    data=json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8,
                     "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01",
             "content-type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).status)
EOF
"""


def test_the_sandbox_holds_and_the_agent_only_ever_has_a_session_key(tmp_path: Path) -> None:
    need(__import__("shutil").which("strace") is not None, "strace is not installed")
    result = probe()
    need(result.ok, f"bubblewrap cannot make a sandbox here: {result.reason}")
    with outside_tmp("at-sandbox-") as base, run_in_thread(MockConfig()) as mock_url:
        home = base / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "id_rsa").write_text("PRIVATE-KEY-MATERIAL\n")
        (home / ".aws").mkdir()
        (home / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=AWS-SECRET-MATERIAL\n")
        repo = make_repo(base / "repo", {"README.md": "hi\n"}, remote="git@github.com:acme/widgets.git")
        (base / "server").mkdir()
        with running_server(base / "server", mock_url) as server:
            at_home = base / "at-home"
            # The engineer's shell holds a real provider key and a GitHub token: the agent must get neither.
            env = base_env(
                home, at_home, ANTHROPIC_API_KEY=REAL_ANTHROPIC, GITHUB_TOKEN="ghp_" + "x" * 36, BASE=str(base)
            )
            login = agenttrail(["login", "--server", server.url, "--key", server.key], cwd=repo, env=env)
            assert "dev@example.com" in login.stdout and server.key not in login.stdout
            done = agenttrail(["run", "--", "bash", "-c", PROBE], cwd=repo, env=env)
            sid = session_id_from(done.stderr)

            out = {p.name: p.read_text(errors="replace") for p in repo.glob("*.out")}
            out |= {p.name: p.read_text().strip() for p in repo.glob("*.rc")}
            # Hidden and read-only.
            assert "PRIVATE-KEY-MATERIAL" not in out["ssh.out"] and "AWS-SECRET-MATERIAL" not in out["aws.out"]
            assert out["home-write.rc"] != "0" and out["base-write.rc"] != "0"
            assert not (home / "written-by-agent").exists() and not (base / "written-by-agent").exists()
            # Only the session key, where every agent looks for one.
            agent_env = dict(line.split("=", 1) for line in out["env.out"].splitlines() if "=" in line)
            session_key = agent_env["ANTHROPIC_API_KEY"]
            assert session_key.startswith("sk-at-") and session_key != server.key
            assert agent_env["OPENAI_API_KEY"] == agent_env["CODEX_API_KEY"] == session_key
            assert agent_env["ANTHROPIC_BASE_URL"] == server.url
            assert agent_env["OPENAI_BASE_URL"] == server.url + "/v1"
            assert agent_env["AGENTTRAIL_SESSION_ID"] == sid and "GITHUB_TOKEN" not in agent_env
            for secret in (REAL_ANTHROPIC, REAL_OPENAI, server.key, "PRIVATE-KEY-MATERIAL"):
                for name in ("env.out", "proc.out", "disk.out"):
                    assert secret not in out[name], f"{secret[:12]}… found in the agent's {name}"
            assert len(out["disk.out"]) > 0  # the scan did read files (the home's other files)
            # The agent's call went through the gateway, under this session, as this engineer.
            assert out["call.out"].strip() == "200"
            (call,) = server.calls(sid)
            assert call["engineer"] == "dev@example.com" and call["team"] == "payments" and call["cost_usd"] > 0
            # The upstream got the server's credential, never the agent's key.
            seen = httpx.get(f"{mock_url}/_mock/requests", params={"endpoint": "messages"}).json()
            seen = seen.get("requests", seen) if isinstance(seen, dict) else seen
            assert [r["headers"].get("x-api-key") for r in seen] == [REAL_ANTHROPIC]
            # The session is over: its key no longer works.
            refused = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {session_key}"})
            assert refused.status_code == 401

            # Read back through the server's sessions API (logged in), with the model call in it.
            listed = json.loads(agenttrail(["sessions", "--json"], cwd=repo, env=env).stdout)
            assert listed[0]["session_id"] == sid and listed[0]["repo"] == "github.com/acme/widgets"
            shown = json.loads(agenttrail(["session", "show", sid[:10], "--json"], cwd=repo, env=env).stdout)
            assert shown["session_id"] == sid and shown["start"]["sandboxed"] is True
            assert [c["session_id"] for c in shown["llm_calls"]] == [sid]
            assert {"env.out", "ssh.out"} <= {f["path"] for f in shown["file_changes"]}
            text_view = agenttrail(["session", "show", sid], cwd=repo, env=env).stdout
            assert "model    anthropic claude-sonnet-4-5" in text_view and "exec     python3 -" in text_view


def _outbox_events(at_home: Path) -> list[dict[str, object]]:
    path = at_home / "outbox.db"
    if not path.exists():
        return []
    with Outbox(path) as outbox:
        return [e.to_dict() for e in outbox.pending(10_000)]


def _server_event_ids(server_engine: object, sid: str) -> list[str]:
    with server_engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(text("SELECT event_id FROM event WHERE session_id = :s"), {"s": sid})
        return [r[0] for r in rows]


def test_killed_with_9_mid_session_the_next_sync_delivers_what_was_emitted(tmp_path: Path) -> None:
    need(__import__("shutil").which("strace") is not None, "strace is not installed")
    with outside_tmp("at-kill9-") as base, run_in_thread(MockConfig()) as mock_url:
        repo = make_repo(base / "repo", {"a.txt": "a\n"})
        with running_server(tmp_path, mock_url, start=False) as server:
            at_home = base / "at-home"
            env = base_env(base / "home", at_home)
            (base / "home").mkdir()
            agenttrail(["login", "--server", server.url, "--key", server.key, "--no-verify"], cwd=repo, env=env)
            script = "echo one > one.txt; rm a.txt; while [ ! -e release ]; do sleep 0.05; done"
            proc = subprocess.Popen(
                [*AGENTTRAIL, "run", "--no-sandbox", "--", "bash", "-c", script],
                cwd=repo,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its strace and agent outlive it: end them as a group
            )
            try:

                def emitted() -> list[dict[str, object]]:
                    evs = _outbox_events(at_home)
                    kinds = {(e["kind"], e["payload"].get("rel_path")) for e in evs}  # type: ignore[union-attr]
                    return evs if {("file_create", "one.txt"), ("file_delete", "a.txt")} <= kinds else []

                before = wait_for(emitted, "the session's events in the outbox")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            finally:
                (repo / "release").touch()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            sid = str(before[0]["session_id"])
            queued = {str(e["event_id"]) for e in _outbox_events(at_home)}
            assert {str(e["event_id"]) for e in before} <= queued
            assert "session_start" in {e["kind"] for e in before}

            server.start()
            done = agenttrail(["sync"], cwd=repo, env=env)
            assert f"sent {len(queued)} events" in done.stdout
            stored = _server_event_ids(server.engine, sid)
            assert sorted(stored) == sorted(queued)  # all of them, once
            assert _outbox_events(at_home) == []
            assert "nothing to send" in agenttrail(["sync"], cwd=repo, env=env).stdout
            with server.engine.connect() as conn:
                row = conn.execute(
                    text("SELECT engineer, ended_at FROM sessions WHERE session_id = :s"), {"s": sid}
                ).one()
            assert row.engineer == "dev@example.com" and row.ended_at is None  # it never ended


def test_a_session_with_the_server_down_arrives_later_exactly_once(tmp_path: Path) -> None:
    need(__import__("shutil").which("strace") is not None, "strace is not installed")
    with outside_tmp("at-offline-") as base, run_in_thread(MockConfig()) as mock_url:
        repo = make_repo(base / "repo", {"keep.txt": "one\ntwo\n"})
        with running_server(tmp_path, mock_url, start=False) as server:
            at_home = base / "at-home"
            (base / "home").mkdir()
            env = base_env(base / "home", at_home)
            script = "printf 'one\\nTWO\\n' > keep.txt; echo new > new.txt; git add -A; git commit -qm offline"
            done = agenttrail(
                ["run", "--no-sandbox", "--server", server.url, "--key", server.key, "--", "bash", "-c", script],
                cwd=repo,
                env=env,
            )
            sid = session_id_from(done.stderr)
            assert "cannot reach" in done.stderr and "agenttrail sync" in done.stderr
            assert f"`agenttrail session show {sid}` once `agenttrail sync` has sent it" in done.stderr
            queued = _outbox_events(at_home)
            kinds = [e["kind"] for e in queued]
            assert kinds.count("session_start") == 1 and kinds.count("session_end") == 1
            assert "commit" in kinds and "exec" in kinds

            server.start()
            # Twice, as a person would after a flaky network: the second finds nothing to send.
            synced = agenttrail(["sync", "--server", server.url, "--key", server.key], cwd=repo, env=env)
            assert f"sent {len(queued)} events" in synced.stdout
            again = agenttrail(["sync", "--server", server.url, "--key", server.key], cwd=repo, env=env)
            assert "nothing to send" in again.stdout

            stored = _server_event_ids(server.engine, sid)
            assert sorted(stored) == sorted(str(e["event_id"]) for e in queued)
            with server.engine.connect() as conn:
                files = conn.execute(
                    text("SELECT path, change FROM file_changes WHERE session_id = :s ORDER BY path"), {"s": sid}
                ).all()
                commits = conn.execute(text("SELECT message FROM commits WHERE session_id = :s"), {"s": sid}).all()
                session = conn.execute(
                    text("SELECT exit_code, status, engineer FROM sessions WHERE session_id = :s"), {"s": sid}
                ).one()
            assert [(f.path, f.change) for f in files] == [("keep.txt", "modified"), ("new.txt", "created")]
            assert len(commits) == 1 and f"Agent-Session: {sid}" in commits[0].message
            assert (session.exit_code, session.status, session.engineer) == (0, "ok", "dev@example.com")
