from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agenttrail.events import Event
from agenttrail.tracer.sandbox import SandboxConfig, build_argv
from agenttrail.tracer.strace_parser import PreexistingFiles, TraceConfig
from agenttrail.tracer.supervisor import (
    TRACED_SYSCALLS,
    Supervisor,
    run_traced,
    strace_argv,
    strace_problem,
)


def _wait_for(q: queue.Queue[Event], pred, deadline_s: float = 20.0) -> Event:
    """The first queued event matching `pred`, waiting at most `deadline_s` (never a fixed sleep)."""
    end = time.monotonic() + deadline_s
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching event before the deadline")
        try:
            e = q.get(timeout=remaining)
        except queue.Empty as exc:
            raise AssertionError("no matching event before the deadline") from exc
        if pred(e):
            return e


def test_argv_is_the_documented_one() -> None:
    argv = strace_argv(["claude", "-p", "x"], "/run/t/fifo")
    assert argv[:8] == ["strace", "-f", "-qq", "--seccomp-bpf", "-ttt", "-s", "4096", "-yy"]
    assert argv[argv.index("-o") + 1] == "/run/t/fifo"
    assert argv[-4:] == ["--", "claude", "-p", "x"]
    traced = argv[argv.index("-e", argv.index("signal=none")) + 1]
    assert traced == "trace=" + ",".join(TRACED_SYSCALLS)
    assert {"execve", "openat2", "renameat2", "connect", "clone3", "exit_group"} <= set(TRACED_SYSCALLS)


def test_events_stream_while_the_command_runs(strace: str, tmp_path: Path) -> None:
    q: queue.Queue[Event] = queue.Queue()
    before = PreexistingFiles((str(tmp_path),), frozenset())
    sup = Supervisor(
        ["bash", "-c", "echo one > first.txt; read line; echo two > second.txt"],
        session_id="s1",
        config=TraceConfig(str(tmp_path)),
        on_event=q.put,
        existed_before=before,
        stdin=subprocess.PIPE,
    )
    sup.start()
    first = _wait_for(q, lambda e: e.kind == "file_create")
    # The command is still blocked on `read`: the event came from the live stream, not afterwards.
    assert sup.process is not None and sup.process.poll() is None
    assert first.payload["rel_path"] == "first.txt"
    assert first.session_id == "s1"
    assert sup.process.stdin is not None
    sup.process.stdin.write(b"go\n")
    sup.process.stdin.close()
    assert sup.wait(timeout=30) == 0
    second = _wait_for(q, lambda e: e.kind == "file_create", deadline_s=1)
    assert second.payload["rel_path"] == "second.txt"
    assert not os.path.exists(os.path.dirname(sup.fifo))  # the tracer's own files are gone


def test_exit_code_passes_through(strace: str, tmp_path: Path) -> None:
    result = run_traced(["bash", "-c", "exit 3"], session_id="s", config=TraceConfig(str(tmp_path)))
    assert result.exit_code == 3
    assert [e.kind for e in result.events] == ["exec"]
    assert result.lines > 0


def test_signal_reaches_the_agent_and_becomes_128_plus_n(strace: str, tmp_path: Path) -> None:
    q: queue.Queue[Event] = queue.Queue()
    sup = Supervisor(["sleep", "30"], session_id="s", config=TraceConfig(str(tmp_path)), on_event=q.put)
    sup.start()
    _wait_for(q, lambda e: e.kind == "exec")
    started = time.monotonic()
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(timeout=20) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10


def test_a_failing_callback_does_not_stall_the_trace(strace: str, tmp_path: Path) -> None:
    seen: list[Event] = []

    def flaky(e: Event) -> None:
        seen.append(e)
        if len(seen) == 1:
            raise ValueError("outbox full")

    sup = Supervisor(
        ["bash", "-c", "echo a > a; echo b > b"], session_id="s", config=TraceConfig(str(tmp_path)), on_event=flaky
    )
    sup.start()
    with pytest.raises(RuntimeError, match="on_event failed"):
        sup.wait(timeout=30)
    assert len(seen) == 3  # exec, then both writes, despite the first failure


def test_a_command_that_cannot_start_ends_cleanly(strace: str, tmp_path: Path) -> None:
    result = run_traced(
        ["/nonexistent/agent"], session_id="s", config=TraceConfig(str(tmp_path)), stderr=subprocess.DEVNULL
    )
    assert result.exit_code != 0
    assert result.events == []


def test_problem_reports() -> None:
    assert "not installed" in (strace_problem("agenttrail-no-such-strace") or "")
    with pytest.raises(ValueError):
        Supervisor([], session_id="s", config=TraceConfig("/tmp"))


def test_strace_problem_is_none_where_strace_works(strace: str) -> None:
    assert strace_problem(strace) is None


def test_traced_inside_the_sandbox(strace: str, bwrap: str, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    q: queue.Queue[Event] = queue.Queue()
    seen: list[Event] = []

    def on_event(e: Event) -> None:
        seen.append(e)
        q.put(e)

    command = build_argv(
        SandboxConfig(str(proj), home=str(tmp_path / "home")),
        ["bash", "-c", "echo hi > made.txt; cat made.txt >/dev/null; exec sleep 30"],
        bwrap=bwrap,
    )
    sup = Supervisor(
        command,
        session_id="s",
        config=TraceConfig(str(proj), ignored_programs=("bwrap",)),
        on_event=on_event,
        existed_before=PreexistingFiles((str(proj),), frozenset()),
    )
    sup.start()
    agent = _wait_for(q, lambda e: e.kind == "exec")
    assert agent.payload["argv"][0] == "bash"  # bwrap's own exec and setup are not events
    _wait_for(q, lambda e: e.kind == "exec" and e.payload["argv"][0] == "sleep")
    assert sup.parser.agent_pid == agent.payload["pid"] != sup.parser.root_pid
    sup.send_signal(signal.SIGTERM)  # reaches the agent inside the pid namespace
    assert sup.wait(timeout=20) == 128 + signal.SIGTERM
    files = [(e.kind, e.payload.get("rel_path")) for e in seen if e.kind.startswith("file_")]
    assert sorted(files) == [("file_create", "made.txt"), ("file_read", "made.txt")]
    assert not any("/newroot" in str(e.payload.get("path")) for e in seen)
    execs = [e.payload for e in seen if e.kind == "exec"]
    assert [p["argv"][0] for p in execs] == ["bash", "cat", "sleep"]
    assert execs[1]["ppid"] == execs[0]["pid"]  # clone's namespace-local return was translated


def test_parents_and_cwds_inside_the_sandbox_without_pid_translation(strace: str, bwrap: str, tmp_path: Path) -> None:
    """Three shells in their own directories start 15 children each, all at once, inside the sandbox's
    pid namespace: every child's exec names its own shell as parent and that shell's directory as
    cwd, and a thread's file events carry its process's pid."""
    proj = tmp_path / "proj"
    for k in (1, 2, 3):
        (proj / f"d{k}").mkdir(parents=True)
    # Each child lives a second (env execs sleep in the same pid), so the supervisor's /proc lookup of
    # its parent always finds it: that lookup is what this test is about. A child gone before the
    # lookup falls back to order, a documented limit (docs/tracer.md) a loaded CI machine can hit.
    shell = "cd d$0; for i in $(seq 1 15); do /usr/bin/env c-$0-$i=1 sleep 1 & done; wait"
    shells = f"for k in 1 2 3; do bash -c '{shell}' $k & done; wait"
    threaded = "import threading as t; w = t.Thread(target=lambda: open('by-thread', 'w').close()); w.start(); w.join()"
    command = build_argv(
        SandboxConfig(str(proj), home=str(tmp_path / "home")),
        ["bash", "-c", f'{shells}; cd d1 && {sys.executable} -c "{threaded}"'],
        bwrap=bwrap,
    )
    assert "--pidns-translation" not in strace_argv(command, "/x")
    result = run_traced(
        command,
        session_id="s",
        config=TraceConfig(str(proj), ignored_programs=("bwrap",)),
        existed_before=PreexistingFiles((str(proj),), frozenset()),
    )
    assert result.exit_code == 0
    execs = [e.payload for e in result.events if e.kind == "exec"]
    shell_pids = {e["argv"][-1]: e["pid"] for e in execs if e["argv"][:2] == ["bash", "-c"] and len(e["argv"]) == 4}
    assert sorted(shell_pids) == ["1", "2", "3"]
    children = [e for e in execs if e["argv"][0] == "/usr/bin/env"]
    assert len(children) == 45
    for child in children:
        k = child["argv"][1].split("-")[1]
        assert (child["ppid"], child["cwd"]) == (shell_pids[k], str(proj / f"d{k}")), child
    [python] = [e for e in execs if e["argv"][0] == sys.executable]
    [made] = [e.payload for e in result.events if e.kind == "file_create"]
    assert (made["rel_path"], made["pid"]) == ("d1/by-thread", python["pid"])
