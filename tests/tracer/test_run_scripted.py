"""`agenttrail run` over a scripted bash "agent" that does one of everything a session records.

It reads a file, writes one, creates one, deletes one, renames one, installs a package from a local
path with pip, commits, and connects to a local port. Each action must appear as the right event,
the workspace diffs must be exact, the commit must carry the trailer, and the repository's own
config and hooks must be as they were. Run with and without the sandbox.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrail.tracer.sandbox import probe

from .test_run_harness import agenttrail, base_env, events_of, git, make_repo, need, outside_tmp, record

pytestmark = pytest.mark.slow

# A build backend inside the package: pip builds it offline with no setuptools or wheel to fetch.
BACKEND = """
import base64, hashlib, zipfile
NAME, VERSION = "localpkg", "1.0"
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    di = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}.py": b"X = 1\\n",
        f"{di}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
        f"{di}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{di}/RECORD,,")
        z.writestr(f"{di}/RECORD", "\\n".join(record) + "\\n")
    return name
"""
PYPROJECT = """[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "localpkg"
version = "1.0"
"""

SCRIPT = r"""
set -e
cat notes.txt > /dev/null
printf 'alpha\nBETA\ngamma\n' > keep.txt
printf 'brand new\n' > new.txt
rm old.txt
mv before.txt after.txt
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target vendor ./localpkg
exec 3<>/dev/tcp/127.0.0.1/$PORT
exec 3>&-
git add keep.txt new.txt old.txt before.txt after.txt
git commit -q -m "agent change"
"""


@pytest.fixture
def listener() -> Iterator[int]:
    """A local TCP port that accepts (and drops) connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(5)
    srv.close()


def _fingerprint(repo: Path) -> dict[str, str]:
    """The repository's own configuration and hooks, byte for byte."""
    out = {"config": hashlib.sha256((repo / ".git" / "config").read_bytes()).hexdigest()}
    for hook in sorted((repo / ".git" / "hooks").iterdir()):
        out[f"hooks/{hook.name}"] = hashlib.sha256(hook.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
def test_every_action_of_a_scripted_agent_is_recorded(tmp_path: Path, listener: int, sandbox: bool) -> None:
    need(__import__("shutil").which("strace") is not None, "strace is not installed")
    if sandbox:
        result = probe()
        need(result.ok, f"bubblewrap cannot make a sandbox here: {result.reason}")
    with outside_tmp("at-scripted-") as outside:
        home = outside / "home"
        home.mkdir()
        repo = make_repo(
            outside / "repo",
            {
                "keep.txt": "alpha\nbeta\ngamma\n",
                "old.txt": "to be deleted\n",
                "before.txt": "moved as is\n",
                "notes.txt": "read me\n",
                "localpkg/pyproject.toml": PYPROJECT,
                "localpkg/backend.py": BACKEND,
                ".gitignore": "vendor/\n__pycache__/\n",
            },
        )
        # The repo's own commit-msg hook must still run (the session's hooks forward to it).
        own_hook = repo / ".git" / "hooks" / "commit-msg"
        own_hook.write_text('#!/bin/sh\necho "own hook ran" > "$(git rev-parse --git-dir)/own-hook-ran"\n')
        own_hook.chmod(0o755)
        before = _fingerprint(repo)
        head_before = git(repo, "rev-parse", "HEAD").strip()
        db_url = f"sqlite:///{tmp_path / 'local.db'}"
        env = base_env(home, outside / "at-home", AGENTTRAIL_DATABASE_URL=db_url, PORT=str(listener))
        args = ["run", *([] if sandbox else ["--no-sandbox"]), "--", "bash", "-c", SCRIPT]
        done = agenttrail(args, cwd=repo, env=env)

        sessions = agenttrail(["sessions", "--json"], cwd=repo, env=env)
        sid = __import__("json").loads(sessions.stdout)[0]["session_id"]
        rec = record(db_url, sid)

        # Identity and outcome.
        s = rec["session"]
        assert s["exit_code"] == 0 and s["status"] == "ok", done.stderr
        assert s["engineer"] == "dev@example.com" and s["branch"] == "main"
        assert s["head_before"] == head_before and s["head_after"] == git(repo, "rev-parse", "HEAD").strip()
        assert rec["start"]["sandboxed"] is sandbox and rec["start"]["repo_path"] == str(repo)

        # The workspace diff, exactly.
        files = {f["path"]: f for f in rec["file_changes"]}
        assert set(files) == {"keep.txt", "new.txt", "old.txt", "after.txt"}
        assert files["keep.txt"]["change"] == "modified"
        assert files["keep.txt"]["diff"] == (
            "--- a/keep.txt\n+++ b/keep.txt\n@@ -1,3 +1,3 @@\n alpha\n-beta\n+BETA\n gamma\n"
        )
        assert (files["keep.txt"]["lines_added"], files["keep.txt"]["lines_removed"]) == (1, 1)
        assert files["new.txt"]["change"] == "created"
        assert files["new.txt"]["diff"] == "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+brand new\n"
        assert files["old.txt"]["change"] == "deleted"
        assert files["old.txt"]["diff"] == "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-to be deleted\n"
        assert files["after.txt"]["change"] == "renamed" and files["after.txt"]["old_path"] == "before.txt"

        # What the agent did, as it did it (strace).
        traced = [e for e in rec["events"] if e["payload"].get("source") != "snapshot"]
        in_project = [e for e in traced if e["payload"].get("in_project")]
        by_kind: dict[str, set[str]] = {}
        for e in in_project:
            by_kind.setdefault(e["kind"], set()).add(e["payload"].get("rel_path", ""))
        assert "notes.txt" in by_kind["file_read"]
        assert "keep.txt" in by_kind["file_write"]
        assert "new.txt" in by_kind["file_create"]
        assert "old.txt" in by_kind["file_delete"]
        renames = [p for p in events_of(rec, "file_rename") if p.get("rel_path") == "after.txt"]
        assert renames and renames[0]["old_path"].endswith("/before.txt")
        argvs = [p["argv"] for p in events_of(rec, "exec")]
        assert ["rm", "old.txt"] in argvs and ["mv", "before.txt", "after.txt"] in argvs
        assert any(a[:3] == ["python3", "-m", "pip"] for a in argvs)
        # The trailer hooks' own work is tracer machinery, not the agent's commands; the repository's
        # own hook, which they hand over to, is the repository's work and stays.
        assert not any(a[0].startswith(str(outside / "at-home")) for a in argvs)
        assert any(a[0].endswith(".git/hooks/commit-msg") for a in argvs)
        (pkg,) = events_of(rec, "package_install")
        assert pkg["ecosystem"] == "pypi" and pkg["manager"] == "pip" and pkg["source"] == "path"
        assert pkg["resolved_path"] == str(repo / "localpkg")
        assert (repo / "vendor" / "localpkg.py").exists()
        connects = [p for p in events_of(rec, "net_connect") if p.get("port") == listener]
        assert connects and connects[0]["address"] == "127.0.0.1" and connects[0]["protocol"] == "tcp"

        # The commit: recorded, with the trailer, and the repository untouched.
        message = git(repo, "log", "-1", "--format=%B")
        assert f"Agent-Session: {sid}" in message
        (commit,) = rec["commits"]
        assert commit["sha"] == s["head_after"] and f"Agent-Session: {sid}" in commit["message"]
        assert commit["author"] == "Dev <dev@example.com>"
        assert sorted(commit["files"]) == ["after.txt", "before.txt", "keep.txt", "new.txt", "old.txt"]
        assert (repo / ".git" / "own-hook-ran").exists()
        assert _fingerprint(repo) == before
        assert git(repo, "config", "--local", "--list").count("hookspath") == 0
        # The session's private folder (hooks) is gone; nothing of it stays in the repository.
        assert not (outside / "at-home" / "sessions" / sid).exists()
