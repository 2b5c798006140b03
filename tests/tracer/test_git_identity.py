from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agenttrail.tracer.git_identity import (
    commit_events,
    commits_between,
    engineer_email,
    head_sha,
    normalize_remote_url,
    repo_identity,
    strip_credentials,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("git@github.com:owner/name.git", "github.com/owner/name"),
        ("git@github.com:owner/name", "github.com/owner/name"),
        ("https://github.com/owner/name.git", "github.com/owner/name"),
        ("https://user:ghp_secret@github.com/owner/name.git", "github.com/owner/name"),
        ("https://x-access-token:tok@GitHub.com/owner/name/", "github.com/owner/name"),
        ("ssh://git@github.com/owner/name.git", "github.com/owner/name"),
        ("ssh://git@git.example.com:2222/team/sub/repo.git", "git.example.com/team/sub/repo"),
        ("git://example.org/proj.git", "example.org/proj"),
        ("gitlab.com:group/sub/name.git", "gitlab.com/group/sub/name"),
        ("/srv/git/project.git", "/srv/git/project"),
        ("file:///srv/git/project.git", "/srv/git/project"),
        ("  https://github.com/o/n  ", "github.com/o/n"),
    ],
)
def test_normalize_remote_url(url: str, expected: str) -> None:
    assert normalize_remote_url(url) == expected


def test_strip_credentials() -> None:
    assert strip_credentials("https://u:p@host.example/x.git") == "https://host.example/x.git"
    assert strip_credentials("git@github.com:o/n.git") == "git@github.com:o/n.git"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(git: str, tmp_path: Path) -> Path:
    root = tmp_path / "r"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "dev@example.com")
    _git(root, "config", "user.name", "Dev One")
    return root


def test_identity_without_remote_and_before_first_commit(repo: Path) -> None:
    ident = repo_identity(repo)
    assert ident is not None
    assert (ident.repo, ident.remote_url, ident.branch, ident.head) == (str(repo), None, "main", None)
    assert engineer_email(repo) == "dev@example.com"


def test_identity_with_remote_branch_and_head(repo: Path, tmp_path: Path) -> None:
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-qm", "first")
    _git(repo, "remote", "add", "origin", "https://bot:tok123@github.com/Acme/widgets.git")
    _git(repo, "checkout", "-q", "-b", "feature/x")
    (repo / "sub").mkdir()
    ident = repo_identity(repo / "sub")
    assert ident is not None
    assert ident.repo == "github.com/Acme/widgets"  # host lower-cased; owner and name as written
    assert ident.remote_url == "https://github.com/Acme/widgets.git"
    assert ident.branch == "feature/x"
    assert ident.head == _git(repo, "rev-parse", "HEAD")
    assert ident.root == str(repo)
    _git(repo, "checkout", "-q", "--detach")
    detached = repo_identity(repo)
    assert detached is not None and detached.branch is None
    assert repo_identity(tmp_path / "nowhere-in-a-repo") is None


def test_commits_between(repo: Path) -> None:
    (repo / "base.txt").write_text("0\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    before = head_sha(repo)
    (repo / "a.txt").write_text("a\n")
    (repo / "b.txt").write_text("b\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "add a and b\n\nbody line\n\nAgent-Session: s-123")
    (repo / "a.txt").write_text("a2\n")
    _git(repo, "commit", "-qam", "edit a")
    after = head_sha(repo)
    commits = commits_between(repo, before, after)
    assert [(c.message, c.files, c.author_name, c.author_email) for c in commits] == [
        ("add a and b\n\nbody line\n\nAgent-Session: s-123", ("a.txt", "b.txt"), "Dev One", "dev@example.com"),
        ("edit a", ("a.txt",), "Dev One", "dev@example.com"),
    ]
    assert commits[1].sha == after and commits[1].parents == (commits[0].sha,)
    assert commits[0].agent_session == "s-123" and commits[1].agent_session is None
    assert commits_between(repo, after, after) == []
    assert [c.message for c in commits_between(repo, None, after)] == [
        "base",
        "add a and b\n\nbody line\n\nAgent-Session: s-123",
        "edit a",
    ]
    events = commit_events("s-123", commits)
    assert [e.kind for e in events] == ["commit", "commit"]
    assert events[0].payload["files"] == ["a.txt", "b.txt"] and events[0].payload["agent_session"] == "s-123"
    assert events[0].event_id == commit_events("s-123", commits[:1])[0].event_id
