from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agenttrail.tracer.commit_hook import HOOK_NAMES, hook_env, install_hooks

SESSION = "sess-42"


def _git(
    repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, check=check, capture_output=True, text=True, env=env)


def _hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def repo(git: str, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "dev@example.com")
    _git(root, "config", "user.name", "Dev")
    return root


@pytest.fixture
def session_env(tmp_path: Path) -> dict[str, str]:
    hooks = install_hooks(tmp_path / "session" / "hooks", SESSION)
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return base | hook_env(hooks, base)


def _message(repo: Path, rev: str = "HEAD") -> str:
    return _git(repo, "log", "-1", "--format=%B", rev).stdout.strip()


def test_trailer_added_once_and_the_repos_own_hooks_still_run(repo: Path, session_env: dict[str, str]) -> None:
    _hook(repo / ".git" / "hooks" / "commit-msg", 'echo "Own-Hook: ran" >> "$1"\n')
    _hook(repo / ".git" / "hooks" / "post-commit", "touch .git/post-commit-ran\n")
    config_before = (repo / ".git" / "config").read_bytes()
    hooks_before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt", env=session_env)
    _git(repo, "commit", "-qm", "feat: add a", env=session_env)
    msg = _message(repo)
    assert msg.count(f"Agent-Session: {SESSION}") == 1
    assert "Own-Hook: ran" in msg  # the repo's own commit-msg hook chained
    assert (repo / ".git" / "post-commit-ran").exists()  # other hooks are forwarded too
    _git(repo, "commit", "-q", "--amend", "--no-edit", env=session_env)
    assert _message(repo).count(f"Agent-Session: {SESSION}") == 1  # idempotent
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == hooks_before
    # Outside the session the repo behaves as before: no trailer.
    (repo / "b.txt").write_text("b\n")
    _git(repo, "add", "b.txt")
    _git(repo, "commit", "-qm", "plain")
    assert "Agent-Session" not in _message(repo)


def test_no_verify_still_gets_the_trailer(repo: Path, session_env: dict[str, str]) -> None:
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "--no-verify", "-m", "skip hooks", env=session_env)
    assert _message(repo).endswith(f"Agent-Session: {SESSION}")


def test_respects_the_repos_own_hooks_path(repo: Path, session_env: dict[str, str]) -> None:
    _git(repo, "config", "core.hooksPath", ".githooks")
    _hook(repo / ".githooks" / "pre-commit", "echo 'blocked by the repo policy' >&2; exit 1\n")
    config_before = (repo / ".git" / "config").read_bytes()
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt", env=session_env)
    failed = _git(repo, "commit", "-qm", "x", env=session_env, check=False)
    assert failed.returncode != 0 and "blocked by the repo policy" in failed.stderr
    (repo / ".githooks" / "pre-commit").unlink()
    _hook(repo / ".githooks" / "commit-msg", 'echo "From-Hooks-Path: yes" >> "$1"\n')
    _git(repo, "commit", "-qm", "y", env=session_env)
    msg = _message(repo)
    assert "From-Hooks-Path: yes" in msg and f"Agent-Session: {SESSION}" in msg
    assert (repo / ".git" / "config").read_bytes() == config_before


def test_existing_git_config_env_entries_are_kept(repo: Path, tmp_path: Path) -> None:
    hooks = install_hooks(tmp_path / "h", SESSION)
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    base |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "From Env"}
    env = base | hook_env(hooks, base)
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_1"]) == ("2", "core.hooksPath")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt", env=env)
    _git(repo, "commit", "-qm", "z", env=env)
    assert _git(repo, "log", "-1", "--format=%an").stdout.strip() == "From Env"
    assert _message(repo).endswith(f"Agent-Session: {SESSION}")


def test_install_writes_every_hook_executable(tmp_path: Path) -> None:
    hooks = install_hooks(tmp_path / "h", SESSION)
    assert sorted(p.name for p in hooks.iterdir()) == sorted(HOOK_NAMES)
    assert all(os.access(hooks / name, os.X_OK) for name in HOOK_NAMES)
    assert "push-to-checkout" not in HOOK_NAMES
    with pytest.raises(ValueError):
        install_hooks(tmp_path / "bad", "has space")
