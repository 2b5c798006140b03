"""The session's own parts, without processes: sinks, live filters, finalising, login defaults, the timeline."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from agenttrail.events import Event, stable_id
from agenttrail.outbox import Outbox
from agenttrail.store.database import open_engine
from agenttrail.tracer.environment import agent_environment, hidden_paths, sqlite_file
from agenttrail.tracer.finalise import session_commit_events, session_status, snapshot_events
from agenttrail.tracer.git_identity import CommitInfo
from agenttrail.tracer.live import AgentSessionWatch, OwnHooks
from agenttrail.tracer.remote import (
    ClientConfig,
    RemoteError,
    load_client_config,
    resolve_client_config,
    save_client_config,
)
from agenttrail.tracer.sinks import BatchingSink, OutboxSink, StoreSink
from agenttrail.tracer.snapshot import FileChange
from agenttrail.tracer.timeline import list_sessions, render_timeline, session_record

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


def ev(kind: str, n: int = 0, sid: str = "s1", **payload: Any) -> Event:
    return Event(sid, kind, T0 + timedelta(seconds=n), payload, stable_id(sid, kind, n, sorted(payload.items())))


# ---- sinks --------------------------------------------------------------------------------------


def test_batching_sink_writes_everything_in_order_in_batches() -> None:
    batches: list[list[str]] = []
    sink = BatchingSink(lambda b: batches.append([e.event_id for e in b]), interval_s=60, max_batch=3)
    sent = [ev("exec", i) for i in range(7)]
    sink.add(sent[:2])
    sink.write_now([sent[2]])  # with what was queued before it, at once
    sink.add(sent[3:])
    assert sink.close() == 0
    assert [i for b in batches for i in b] == [e.event_id for e in sent]
    assert all(len(b) <= 3 for b in batches) and batches[0] == [e.event_id for e in sent[:3]]


def test_batching_sink_keeps_a_batch_that_failed_and_writes_it_later() -> None:
    written: list[str] = []
    failures = iter([True, False, False, False])
    errors: list[BaseException] = []
    retried = threading.Event()

    def write(batch: list[Event]) -> None:
        if next(failures, False):
            raise OSError("database is locked")
        written.extend(e.event_id for e in batch)
        retried.set()

    sink = BatchingSink(write, interval_s=0.01, on_error=errors.append)
    events = [ev("exec", i) for i in range(4)]
    sink.add(events)
    assert retried.wait(10)
    assert sink.close() == 0
    assert written == [e.event_id for e in events] and isinstance(errors[0], OSError)


def test_batching_sink_reports_what_it_could_not_write() -> None:
    def write(batch: list[Event]) -> None:
        raise OSError("disk full")

    sink = BatchingSink(write, interval_s=60, on_error=lambda e: None)
    sink.add([ev("exec", 1), ev("exec", 2)])
    assert sink.close(attempts=2) == 2
    with pytest.raises(OSError):
        BatchingSink(write, interval_s=60, on_error=lambda e: None).write_now([ev("exec", 3)])


def test_store_sink_leaves_out_an_event_the_store_cannot_hold_and_writes_the_rest(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    sink = StoreSink(engine, interval_s=60)
    bad = ev("file_create", 1, path="\udcff.bin")  # a lone surrogate: no payload column can hold it
    sink.add([ev("session_start", 0, agent="x"), bad, ev("session_end", 2, exit_code=0)])
    report = sink.close()
    assert (report.written, report.unwritten) == (2, 1)  # was (0, 3): the whole batch, the end with it
    assert len(sink.left_out) == 1 and bad.event_id in sink.left_out[0]
    with engine.connect() as conn:
        kinds = {k for (k,) in conn.execute(text("SELECT kind FROM events WHERE session_id = 's1'"))}
    assert kinds == {"session_start", "session_end"}


def test_outbox_sink_without_uploader_queues_durably(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    sink = OutboxSink(outbox, None, interval_s=0.01)
    sink.write_now([ev("session_start")])
    sink.add([ev("exec", 1), ev("exec", 1)])  # the same event twice is queued once
    report = sink.close()
    assert report.written == 3 and report.unwritten == 0 and report.left_to_upload == 2
    assert [e.kind for e in Outbox(tmp_path / "outbox.db").pending()] == ["session_start", "exec"]


def test_store_sink_ingests_with_attribution(tmp_path: Path) -> None:
    from agenttrail.store.ingest import Attribution

    engine = open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    sink = StoreSink(engine, Attribution(engineer="dev@example.com"), interval_s=0.01)
    sink.write_now([ev("session_start", 0, agent="bash", command=["bash"])])
    sink.add([ev("exec", 1, argv=["ls"], cwd="/p", pid=3), ev("session_end", 2, exit_code=0, status="ok")])
    assert sink.close().unwritten == 0
    (row,) = list_sessions(engine)
    assert (row["session_id"], row["engineer"], row["exit_code"], row["commands"]) == ("s1", "dev@example.com", 0, 1)


# ---- live filters ---------------------------------------------------------------------------------


def test_own_hooks_drop_the_trailer_hooks_work_but_not_the_repos_hook(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    own = OwnHooks(str(hooks))
    seen = [
        ev("exec", 1, argv=["git", "commit", "-m", "x"], path="/usr/bin/git", pid=10, ppid=1),
        ev("exec", 2, argv=[f"{hooks}/commit-msg", ".git/COMMIT_EDITMSG"], path=f"{hooks}/commit-msg", pid=11, ppid=10),
        ev("exec", 3, argv=["git", "interpret-trailers"], path="/usr/bin/git", pid=12, ppid=11),
        ev("file_create", 4, path="/p/.git/git-interpret-trailers-x", pid=12),
        # The hook hands over to the repository's own hook: same pid, the repository's work from here.
        ev(
            "exec", 5, argv=["/p/.git/hooks/commit-msg", ".git/COMMIT_EDITMSG"], path="/p/.git/hooks/commit-msg", pid=11
        ),
        ev("file_write", 6, path="/p/lint.log", pid=11),
        ev("exec", 7, argv=["git", "status"], path="/usr/bin/git", pid=13, ppid=1),
    ]
    kept = [e.payload.get("argv", [e.payload.get("path")])[0] for e in seen if own.keep(e)]
    assert kept == ["git", "/p/.git/hooks/commit-msg", "/p/lint.log", "git"]
    assert own.dropped == 3


def test_agent_session_watch_learns_the_agents_own_id(tmp_path: Path) -> None:
    cwd = "/work/proj"
    claude = AgentSessionWatch("claude-code", {}, str(tmp_path), cwd)
    folder = tmp_path / ".claude" / "projects" / "-work-proj"
    uuid = "938fbe9e-973b-4813-a571-d2efd260dcdc"
    claude.see(ev("file_create", 1, path=f"{folder}/{uuid}/subagents/agent-1.jsonl"))
    claude.see(ev("file_read", 2, path=f"{folder}/{uuid}.jsonl"))
    assert claude.found is None  # a subagent's file and a read say nothing
    claude.see(ev("file_write", 3, path=f"{folder}/{uuid}.jsonl"))
    assert claude.found == uuid
    codex = AgentSessionWatch("codex", {"CODEX_HOME": "/h/codex"}, str(tmp_path), cwd)
    thread = "01a20437-ffd3-7591-91ca-8ed76ea55349"
    codex.see(ev("file_create", 1, path=f"/h/codex/sessions/2026/05/12/rollout-2026-05-12T09-00-00-{thread}.jsonl"))
    assert codex.found == thread
    assert AgentSessionWatch("aider", {}, str(tmp_path), cwd).found is None


# ---- finalising ---------------------------------------------------------------------------------


def test_session_status() -> None:
    assert session_status(0, [], None) == "ok"
    assert session_status(3, [], None) == "failed"
    assert session_status(143, [15], None) == "interrupted"
    assert session_status(137, [15], None) == "killed"
    assert session_status(None, [], "RuntimeError: x") == "error"


def test_snapshot_events_become_file_changes_once(tmp_path: Path) -> None:
    changes = [
        FileChange("a.txt", "created", lines_added=1, diff="--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+a\n"),
        FileChange("b.txt", "renamed", old_path="old.txt"),
    ]
    events = snapshot_events("s1", changes, T0, "/p")
    assert [e.kind for e in events] == ["file_create", "file_rename"]
    assert events[0].payload["source"] == "snapshot" and events[0].payload["abs_path"] == "/p/a.txt"
    assert [e.event_id for e in snapshot_events("s1", changes, T0, "/p")] == [e.event_id for e in events]
    engine = open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    from agenttrail.store.ingest import ingest

    ingest(engine, [ev("session_start"), *events])
    ingest(engine, events)  # sent again: stored once
    rec = session_record(engine, "s1")
    assert rec is not None
    assert [(f["path"], f["change"], f["old_path"]) for f in rec["file_changes"]] == [
        ("a.txt", "created", None),
        ("b.txt", "renamed", "old.txt"),
    ]


def test_commit_events_carry_what_the_store_keeps() -> None:
    c = CommitInfo("abc123", "x\n\nAgent-Session: s1", "Dev", "dev@example.com", T0.isoformat(), T0.isoformat())
    (e,) = session_commit_events("s1", [c], "github.com/acme/widgets")
    assert e.payload["author"] == "Dev <dev@example.com>" and e.payload["repo"] == "github.com/acme/widgets"
    assert e.payload["agent_session"] == "s1"


# ---- environment ----------------------------------------------------------------------------------


def test_agent_environment_without_a_server_has_no_credentials(tmp_path: Path) -> None:
    env = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-real", "AGENTTRAIL_KEY": "sk-at-mine", "GH_TOKEN": "t"}
    out = agent_environment(
        env,
        session_id="s1",
        hooks_dir=tmp_path,
        private_dir=tmp_path,
        home=str(tmp_path),
        server=None,
        session_key=None,
        sandbox=True,
    )
    assert "ANTHROPIC_API_KEY" not in out and "AGENTTRAIL_KEY" not in out and "GH_TOKEN" not in out
    assert out["AGENTTRAIL_SESSION_ID"] == "s1" and out["TMPDIR"] == "/tmp"
    assert out["GIT_CONFIG_KEY_0"] == "core.hooksPath"


def test_agent_environment_with_a_server_down_never_falls_back_to_a_real_key(tmp_path: Path) -> None:
    env = {"PATH": "/bin", "ANTHROPIC_API_KEY": "sk-ant-real", "ANTHROPIC_AUTH_TOKEN": "real-bearer"}
    out = agent_environment(
        env,
        session_id="s1",
        hooks_dir=tmp_path,
        private_dir=tmp_path,
        home=str(tmp_path),
        server="http://gw:4100",
        session_key=None,
        sandbox=False,
    )
    assert out["ANTHROPIC_API_KEY"].startswith("sk-at-offline") and "ANTHROPIC_AUTH_TOKEN" not in out
    assert out["ANTHROPIC_BASE_URL"] == "http://gw:4100" and "TMPDIR" not in out


def test_hidden_paths_cover_agenttrails_own_state() -> None:
    assert sqlite_file("sqlite:////var/x/at.db") == "/var/x/at.db"
    assert sqlite_file("postgresql://h/db") is None
    assert hidden_paths("/h/.agenttrail", "/var/x/at.db", "/p") == (
        "/h/.agenttrail",
        "/var/x/at.db",
        "/var/x/at.db-wal",
        "/var/x/at.db-shm",
        "/var/x/at.db-journal",
    )
    assert hidden_paths("/h/.agenttrail", "/p/at.db", "/p") == ("/h/.agenttrail",)


# ---- login defaults --------------------------------------------------------------------------------


def test_login_defaults_are_private_and_resolved_flag_env_file(tmp_path: Path) -> None:
    home = tmp_path / "at-home"
    save_client_config(home, ClientConfig("https://gw.example.com", "sk-at-file", "checkout"))
    path = home / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_client_config(home) == ClientConfig("https://gw.example.com", "sk-at-file", "checkout")
    assert resolve_client_config(home, {}).key == "sk-at-file"
    env = {"AGENTTRAIL_SERVER": "http://env:1/", "AGENTTRAIL_KEY": "sk-at-env"}
    resolved = resolve_client_config(home, env)
    assert (resolved.server, resolved.key, resolved.project) == ("http://env:1", "sk-at-env", "checkout")
    flagged = resolve_client_config(home, env, server="http://flag:2", key="sk-at-flag", project="p2")
    assert (flagged.server, flagged.key, flagged.project) == ("http://flag:2", "sk-at-flag", "p2")
    with pytest.raises(RemoteError):
        resolve_client_config(home, {}, server="gw.example.com")
    path.write_text("server = [")
    with pytest.raises(RemoteError, match="agenttrail login"):
        load_client_config(home)
    assert load_client_config(tmp_path / "nowhere") == ClientConfig()
    assert not [p for p in os.listdir(home) if p.startswith(".config")]  # no temporary file left


# ---- timeline ---------------------------------------------------------------------------------------


def test_the_text_timeline_reads_as_a_session(tmp_path: Path) -> None:
    from agenttrail.store.ingest import ingest

    engine = open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    sid = "sess-text"
    events = [
        Event(
            sid,
            "session_start",
            T0,
            {"agent": "claude-code", "command": ["claude"], "repo_path": "/p", "cwd": "/p", "sandboxed": True},
            stable_id(sid, "session_start"),
        ),
        Event(sid, "exec", T0 + timedelta(seconds=1), {"argv": ["npm", "install", "left-pad"], "cwd": "/p", "pid": 2}),
        Event(
            sid,
            "package_install",
            T0 + timedelta(seconds=1),
            {"ecosystem": "npm", "name": "left-pad", "version_spec": None, "manager": "npm", "argv": ["npm"]},
        ),
        Event(sid, "file_read", T0 + timedelta(seconds=2), {"path": "/etc/hostname", "in_project": False}),
        Event(sid, "file_create", T0 + timedelta(seconds=2), {"path": "/p/.git/index.lock", "in_project": True}),
        Event(
            sid,
            "file_rename",
            T0 + timedelta(seconds=3),
            {"path": "/p/b.txt", "old_path": "/p/a.txt", "in_project": True, "rel_path": "b.txt"},
        ),
        Event(
            sid,
            "net_connect",
            T0 + timedelta(seconds=4),
            {"family": "inet", "address": "127.0.0.1", "port": 4100, "protocol": "tcp"},
        ),
        Event(
            sid,
            "file_create",
            T0 + timedelta(seconds=5),
            {"source": "snapshot", "path": "new.txt", "change": "created", "lines_added": 1, "diff": "+x\n"},
        ),
        Event(
            sid,
            "session_end",
            T0 + timedelta(seconds=6),
            {"exit_code": 0, "status": "ok"},
            stable_id(sid, "session_end"),
        ),
        # Another source's end for the same session (an importer): the tracer's wins.
        Event(sid, "session_end", T0 + timedelta(seconds=7), {"source": "imported"}),
    ]
    ingest(engine, events)
    rec = session_record(engine, "sess-te")
    assert rec is not None and rec["end"] == {"exit_code": 0, "status": "ok"}
    out = render_timeline(rec)
    assert "exec     npm install left-pad" in out
    assert "package  npm left-pad (npm)" in out
    assert "rename   a.txt -> b.txt" in out and "connect  tcp 127.0.0.1:4100" in out
    assert "index.lock" not in out and "/etc/hostname" not in out
    assert "not shown: 1 file reads (1 outside the project); 1 inside .git" in out
    assert "created  new.txt  +1 -0\n    +x" in out and "sandboxed" in out
    everything = render_timeline(rec, everything=True, diffs=False)
    assert "read     /etc/hostname" in everything and ".git/index.lock" in everything and "    +x" not in everything
    assert session_record(engine, "nope") is None and session_record(engine, "se%") is None


def test_only_the_hooks_that_do_something_are_kept(tmp_path: Path) -> None:
    import subprocess

    from agenttrail.tracer.commit_hook import install_hooks
    from agenttrail.tracer.environment import prune_hooks

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    own = repo / ".git" / "hooks" / "pre-push"
    own.write_text("#!/bin/sh\nexit 0\n")
    own.chmod(0o755)
    (repo / ".git" / "hooks" / "post-commit.sample").write_text("#!/bin/sh\n")  # not executable: git skips it
    hooks = install_hooks(tmp_path / "session-hooks", "s1")
    assert prune_hooks(hooks, str(repo)) == ["commit-msg", "pre-push", "prepare-commit-msg"]
    assert sorted(os.listdir(hooks)) == ["commit-msg", "pre-push", "prepare-commit-msg"]
    # A repository that keeps its hooks elsewhere (husky): those are the ones forwarded.
    husky = repo / ".husky"
    husky.mkdir()
    (husky / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    (husky / "pre-commit").chmod(0o755)
    subprocess.run(["git", "config", "core.hooksPath", ".husky"], cwd=repo, check=True)
    hooks = install_hooks(tmp_path / "session-hooks-2", "s1")
    assert prune_hooks(hooks, str(repo)) == ["commit-msg", "pre-commit", "prepare-commit-msg"]
    assert prune_hooks(install_hooks(tmp_path / "h3", "s1"), None) == ["commit-msg", "prepare-commit-msg"]


def test_a_prefix_names_one_session_or_says_why_not(tmp_path: Path) -> None:
    from agenttrail.store.ingest import ingest
    from agenttrail.tracer.timeline import SessionIdError, resolve_session_id

    engine = open_engine(f"sqlite:///{tmp_path / 'local.db'}")
    for sid in ("44f8e7f3aa", "44f8e7f3bb", "980a9d46cc"):
        ingest(engine, [Event(sid, "session_start", T0, {"agent": "codex"}, stable_id(sid, "session_start"))])
    assert resolve_session_id(engine, "980a") == "980a9d46cc"
    assert resolve_session_id(engine, "44f8e7f3a") == "44f8e7f3aa"
    assert resolve_session_id(engine, "ffff") is None
    with pytest.raises(SessionIdError, match="more than one session"):
        resolve_session_id(engine, "44f8")  # was "no session '44f8'", as if there were none
    with pytest.raises(SessionIdError, match="too short"):
        resolve_session_id(engine, "9")
