"""Helpers shared by the `agenttrail run` end-to-end tests (this module holds no tests).

Everything is real: `agenttrail run` and `agenttrail serve` are subprocesses of the CLI, mock-llm is
the upstream, git repositories are made with git. Folders the sandbox must see as they are (the
user's home, agenttrail's home) are made under /var/tmp: the sandbox gives the agent a private /tmp,
so anything under /tmp would be invisible to it whatever the hiding rules say, and Codex refuses to
work with its home inside TMPDIR.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenttrail.store import keys, org
from agenttrail.store.database import forget_engine, open_engine
from agenttrail.tracer.timeline import session_record

STRICT = os.environ.get("AGENTTRAIL_TEST_STRICT") == "1"
AGENTTRAIL = [sys.executable, "-m", "agenttrail"]
REAL_ANTHROPIC = "sk-ant-api03-REAL-upstream-credential-do-not-leak-0123456789"
REAL_OPENAI = "sk-proj-REAL-upstream-openai-credential-do-not-leak-0123456789"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI (AGENTTRAIL_TEST_STRICT=1) but missing: {reason}")
    pytest.skip(reason)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Poll a real process's observable state until `check` is truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


@contextlib.contextmanager
def outside_tmp(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


def make_repo(path: Path, files: dict[str, str] | None = None, remote: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", "init")
    if remote:
        git(path, "remote", "add", "origin", remote)
    return path


def base_env(home: Path, agenttrail_home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for `agenttrail run`: nothing from the outer session leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AGENTTRAIL_HOME": str(agenttrail_home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "COLUMNS": "400",  # rich wraps messages at the terminal width; keep each on one line
    }
    for var in ("AGENTTRAIL_TEST_STRICT", "AGENTTRAIL_AGENT_CLIS", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"):
        if var in os.environ:
            env[var] = os.environ[var]
    env.update(extra)
    return env


def agenttrail(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 180, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*AGENTTRAIL, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        out = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"agenttrail {' '.join(args[:3])}… exited {done.returncode}:\n{out}")
    return done


def session_id_from(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("agenttrail: session ") and "(" in line:
            return line.split()[2]
    pytest.fail(f"no session id in agenttrail's output:\n{stderr[-2000:]}")


def record(db_url: str, session_id: str) -> dict[str, Any]:
    rec = session_record(open_engine(db_url), session_id)
    assert rec is not None, f"session {session_id} is not in {db_url}"
    return rec


def events_of(rec: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in rec["events"] if e["kind"] == kind]


@dataclass
class Server:
    url: str
    db_url: str
    engine: Any
    key: str  # the engineer's key
    proc: subprocess.Popen[bytes] | None
    port: int
    log: Path
    env: dict[str, str]

    def start(self) -> None:
        """Start (or restart) `agenttrail serve` on the same port and database."""
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*AGENTTRAIL, "serve", "--port", str(self.port), "--db", self.db_url, "--log-level", "warning"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"agenttrail serve exited {proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, "agenttrail serve to answer /healthz", timeout_s=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def calls(self, session_id: str, expect: int = 1, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """The gateway's records of the session's model calls (written in batches: poll)."""
        from sqlalchemy import text

        def rows() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                found = conn.execute(
                    text("SELECT * FROM llm_calls WHERE session_id = :s ORDER BY started_at"), {"s": session_id}
                )
                got = [dict(r._mapping) for r in found]
            return got if len(got) >= expect else []

        return list(wait_for(rows, f"{expect} model calls of session {session_id}", timeout_s))


@contextlib.contextmanager
def running_server(workdir: Path, mock_url: str, *, start: bool = True) -> Iterator[Server]:
    """`agenttrail serve` (SQLite) in front of mock-llm, with a team, an engineer and their key."""
    db_url = f"sqlite:///{workdir / 'server.db'}"
    engine = open_engine(db_url)
    org.add_team(engine, "payments")
    org.add_engineer(engine, "dev@example.com", "payments")
    org.add_project(engine, "checkout", "payments")
    key, _ = keys.create_key(engine, team_name="payments", engineer_email="dev@example.com", now=datetime.utcnow())
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "AGENTTRAIL_HOME": str(workdir / "server-home"),
        "AGENTTRAIL_ANTHROPIC_BASE_URL": mock_url,
        "AGENTTRAIL_OPENAI_BASE_URL": mock_url + "/v1",
        "ANTHROPIC_API_KEY": REAL_ANTHROPIC,
        "OPENAI_API_KEY": REAL_OPENAI,
    }
    port = free_port()
    server = Server(f"http://127.0.0.1:{port}", db_url, engine, key, None, port, workdir / "serve.log", env)
    try:
        if start:
            server.start()
        yield server
    finally:
        server.stop()
        forget_engine(db_url)
