"""`agenttrail run` as a command: exit codes, signals, crashes, leftovers, refusals, login.

Each test runs the real CLI in a subprocess on a small git repository, recording into a local SQLite
store, and reads the store back. Without strace these skip (and fail under AGENTTRAIL_TEST_STRICT=1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agenttrail.store.database import open_engine
from agenttrail.tracer.timeline import session_record

pytestmark = pytest.mark.slow
AGENTTRAIL = [sys.executable, "-m", "agenttrail"]


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("AGENTTRAIL_TEST_STRICT") == "1":
        pytest.fail(f"required in CI (AGENTTRAIL_TEST_STRICT=1) but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Any]:
    _need(shutil.which("strace") is not None, "strace is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "dev@example.com"],
        ["config", "user.name", "Dev"],
        ["commit", "-q", "--allow-empty", "-m", "init"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    db_url = f"sqlite:///{tmp_path / 'local.db'}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "AGENTTRAIL_HOME": str(tmp_path / "at-home"),
        "AGENTTRAIL_DATABASE_URL": db_url,
        "LANG": "C.UTF-8",
        "COLUMNS": "400",  # rich wraps messages at the terminal width; keep each on one line
    }
    (tmp_path / "home").mkdir()
    return {"repo": repo, "env": env, "db_url": db_url, "tmp": tmp_path}


def _run(p: dict[str, Any], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTTRAIL, "run", "--no-sandbox", *args],
        cwd=p["repo"],
        env=p["env"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


def _sid(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("agenttrail: session ") and "(" in line:
            return line.split()[2]
    pytest.fail(f"no session id in:\n{stderr}")


def _record(p: dict[str, Any], sid: str) -> dict[str, Any]:
    rec = session_record(open_engine(p["db_url"]), sid)
    assert rec is not None
    return rec


def _exec_seen(p: dict[str, Any], program: str) -> bool:
    """The session has stored an exec of `program`: the tracer has seen the agent (so a signal sent now
    goes to it, not to a process the parser has not met yet)."""
    from sqlalchemy import text

    try:
        with open_engine(p["db_url"]).connect() as conn:
            rows = conn.execute(text("SELECT payload FROM event WHERE kind = 'exec'")).scalars().all()
    except Exception:
        return False
    return any(json.loads(r).get("argv", [""])[0] == program for r in rows)


def _wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_exit_code_passes_through_and_the_session_ends(project: dict[str, Any]) -> None:
    done = _run(project, "--", "bash", "-c", "echo made > made.txt; exit 7")
    assert done.returncode == 7, done.stderr
    rec = _record(project, _sid(done.stderr))
    assert rec["session"]["exit_code"] == 7 and rec["session"]["status"] == "failed"
    assert [f["path"] for f in rec["file_changes"]] == ["made.txt"]


def test_a_crashing_agent_is_still_finalised(project: dict[str, Any]) -> None:
    done = _run(project, "--", "bash", "-c", "echo half > half.txt; kill -SEGV $$")
    assert done.returncode == 128 + signal.SIGSEGV
    rec = _record(project, _sid(done.stderr))
    assert rec["session"]["exit_code"] == 139 and rec["session"]["status"] == "killed"
    assert rec["end"]["files_changed"] == 1 and rec["file_changes"][0]["path"] == "half.txt"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_reach_the_agent(project: dict[str, Any], sig: signal.Signals) -> None:
    """`agenttrail run` forwards the signal; the agent handles it; its exit code is the session's."""
    code, err = _signal_a_trapping_agent(project, ["--no-sandbox"], sig, lambda p: p.send_signal(sig))
    assert code == 42, err
    assert (project["repo"] / "caught.txt").read_text() == "caught\n"
    rec = _record(project, _sid(err))
    assert rec["session"]["exit_code"] == 42
    assert rec["end"]["signals"] == [sig.name]


def test_an_agent_killed_by_a_forwarded_signal_is_interrupted(project: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [*AGENTTRAIL, "run", "--no-sandbox", "--", "bash", "-c", "exec sleep 60"],
        cwd=project["repo"],
        env=project["env"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _exec_seen(project, "sleep"), "the agent to start sleeping")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _record(project, _sid(err))["session"]["status"] == "interrupted"


def test_background_jobs_left_behind_are_stopped(project: dict[str, Any]) -> None:
    started = time.monotonic()
    done = _run(project, "--", "bash", "-c", "sleep 300 & echo $! > bg.pid; exit 0")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    pid = int((project["repo"] / "bg.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert "left processes running" in done.stderr


def test_a_missing_command_is_127_and_records_nothing(project: dict[str, Any]) -> None:
    done = _run(project, "--", "no-such-agent-xyz", "--flag")
    assert done.returncode == 127
    assert "no-such-agent-xyz: command not found" in done.stderr
    listed = subprocess.run(
        [*AGENTTRAIL, "sessions", "--json"], cwd=project["repo"], env=project["env"], capture_output=True, text=True
    )
    assert json.loads(listed.stdout) == []


def test_options_after_the_command_belong_to_the_agent(project: dict[str, Any]) -> None:
    done = _run(project, "--", "bash", "-c", 'printf "%s\\n" "$@" > args.txt', "x", "--no-sandbox", "-q")
    assert done.returncode == 0, done.stderr
    assert (project["repo"] / "args.txt").read_text() == "--no-sandbox\n-q\n"


def test_where_no_sandbox_can_be_made_the_message_points_to_no_sandbox(project: dict[str, Any]) -> None:
    """A bwrap that cannot create namespaces (as in many containers): a clear refusal, exit 125."""
    fake_bin = project["tmp"] / "bin"
    fake_bin.mkdir()
    bwrap = fake_bin / "bwrap"
    bwrap.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n")
    bwrap.chmod(bwrap.stat().st_mode | stat.S_IXUSR)
    env = dict(project["env"], PATH=f"{fake_bin}:{project['env']['PATH']}")
    done = subprocess.run(
        [*AGENTTRAIL, "run", "--", "true"], cwd=project["repo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 125
    assert "Operation not permitted" in done.stderr and "--no-sandbox" in done.stderr


def test_a_server_without_a_key_is_refused_before_anything_runs(project: dict[str, Any]) -> None:
    done = _run(project, "--server", "http://127.0.0.1:9", "--", "touch", "x")
    assert done.returncode == 125 and "agenttrail login" in done.stderr
    assert not (project["repo"] / "x").exists()


def test_login_stores_the_defaults_for_the_owner_only(project: dict[str, Any]) -> None:
    env = project["env"]
    key = "sk-at-" + "k" * 40
    done = subprocess.run(
        [*AGENTTRAIL, "login", "--server", "http://127.0.0.1:9/", "--key", key, "--project", "checkout", "--no-verify"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert key not in done.stdout  # only its prefix is shown
    path = Path(env["AGENTTRAIL_HOME"]) / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    from agenttrail.tracer.remote import load_client_config

    cfg = load_client_config(env["AGENTTRAIL_HOME"])
    assert (cfg.server, cfg.key, cfg.project) == ("http://127.0.0.1:9", key, "checkout")
    bad = subprocess.run([*AGENTTRAIL, "login", "--server", "ftp://x", "--key", key], env=env, capture_output=True)
    assert bad.returncode == 1
    out = subprocess.run([*AGENTTRAIL, "logout"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and not path.exists()


def test_a_killed_run_takes_the_sandboxed_agent_with_it(project: dict[str, Any]) -> None:
    """SIGKILL cannot be forwarded: strace dies with `agenttrail run`, and the sandbox with strace.
    (The agent ran on untraced, holding a live session key.)"""
    _need(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    marker = f"sleep 61.{os.getpid()}"  # unique: another run's leftover is not this agent

    def agent_alive() -> bool:
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and (d / "cmdline").read_bytes().replace(b"\0", b" ").strip() == marker.encode():
                    return True
            except OSError:  # a process that ended while we looked
                continue
        return False

    proc = subprocess.Popen(
        [*AGENTTRAIL, "run", "--", "bash", "-c", f"exec {marker}"],
        cwd=project["repo"],
        env=project["env"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(agent_alive, "the sandboxed agent to start")
        proc.kill()
        proc.wait(timeout=30)
        _wait_for(lambda: not agent_alive(), "the agent to end with agenttrail run", timeout_s=15)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_secret_alone_in_a_command_line_is_not_stored(project: dict[str, Any]) -> None:
    """`aws configure set aws_secret_access_key X`: X is an argv element of its own, which no pattern
    recognises; it must not reach the store, neither in the exec event nor in the launch command."""
    secret, password = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "Hunter2Secret9"
    script = f"echo aws_secret_access_key {secret} >/dev/null; /bin/echo --password {password} grep -rn token src"
    done = _run(project, "--", "bash", "-c", script)
    assert done.returncode == 0, done.stderr
    rec = _record(project, _sid(done.stderr))
    stored = json.dumps(rec)
    assert secret not in stored and password not in stored
    echo = [e for e in rec["events"] if e["kind"] == "exec" and e["payload"]["argv"][0] == "/bin/echo"]
    assert echo and echo[0]["payload"]["argv"][1] == "--password"
    assert echo[0]["payload"]["argv"][3:] == ["grep", "-rn", "token", "src"]  # not a secret: kept as typed
    done = _run(project, "--", "/bin/echo", "aws_secret_access_key", secret)
    rec = _record(project, _sid(done.stderr))
    assert secret not in json.dumps(rec) and rec["start"]["command"][:2] == ["/bin/echo", "aws_secret_access_key"]


def test_ctrl_c_in_the_sandbox_reaches_the_agent_not_bwrap(project: dict[str, Any]) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group. bwrap died of it and took the
    agent with it, so an agent that handles Ctrl-C (aider stops an answer, a script cleans up) was
    killed outright in the sandbox, unlike without it. The agent must get it and decide."""
    _need(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    ctrl_c = lambda p: os.killpg(p.pid, signal.SIGINT)  # noqa: E731  (what the terminal does)
    code, err = _signal_a_trapping_agent(project, ["--allow-write", str(project["tmp"])], signal.SIGINT, ctrl_c)
    assert code == 42, err
    assert (project["repo"] / "caught.txt").read_text() == "caught\n"
    rec = _record(project, _sid(err))
    argv0 = [e["payload"]["argv"][0] for e in rec["events"] if e["kind"] == "exec"]
    assert argv0[0] == "bash"  # the launcher (`env --default-signal=INT`) is not one of the agent's commands…
    assert argv0.count("env") == 1  # …but the agent's own `env` is


def _signal_a_trapping_agent(
    project: dict[str, Any],
    options: list[str],
    trapped: signal.Signals,
    send: Callable[[subprocess.Popen[str]], None],
) -> tuple[int, str]:
    """Run a bash agent that traps `trapped` (exit 42), `send` once it runs; (exit code, stderr)."""
    marker = project["tmp"] / "started"
    script = (
        f"trap 'echo caught > caught.txt; exit 42' {trapped.name.removeprefix('SIG')}; "
        f"env A=1 touch {marker}; while true; do sleep 0.05; done"
    )
    proc = subprocess.Popen(
        [*AGENTTRAIL, "run", *options, "--", "bash", "-c", script],
        cwd=project["repo"],
        env=project["env"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job has
        # …and Ctrl-C at its default, as a terminal's foreground job starts. A test run started in the
        # background by a non-interactive shell (`sh -c '… &'`, as CI may be) has SIGINT ignored, which
        # passes through exec to agenttrail and then, as documented, to the agent, whose trap then cannot
        # take it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: marker.exists() and _exec_seen(project, "touch"), "the agent to start")
        send(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err
