"""Who and where: the repository a session works in, the engineer's git email, and the commits made.

The repo is named by its origin remote normalised to `host/owner/name`, so that the ssh and https
clones of one repository, with or without credentials and `.git`, are the same repo in reports.
Without a remote it is named by its path.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agenttrail import events as ev
from agenttrail.events import Event, stable_id

_SCP_LIKE = re.compile(r"(?:[^@/]+@)?([^:/]+):(?!//)(.+)")
_TRAILER = re.compile(r"^Agent-Session:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True, slots=True)
class RepoIdentity:
    root: str  # the worktree's top level
    repo: str  # host/owner/name, or the root path when there is no remote
    remote_url: str | None = None  # the remote's URL with any credentials removed
    branch: str | None = None  # None when HEAD is detached
    head: str | None = None  # None before the first commit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    message: str
    author_name: str
    author_email: str
    authored_at: str  # ISO 8601 with offset, as git prints it
    committed_at: str
    parents: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def agent_session(self) -> str | None:
        """The session id of the last `Agent-Session:` trailer, if any."""
        found = _TRAILER.findall(self.message)
        return found[-1] if found else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parents"], d["files"] = list(self.parents), list(self.files)
        d["agent_session"] = self.agent_session
        return d


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x` → `https://host/x`; other URLs unchanged."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def normalize_remote_url(url: str) -> str:
    """A remote URL as `host/owner/name`: scheme, user, password, port and `.git` removed, host lower-cased.

    `git@github.com:o/n.git`, `ssh://git@github.com:22/o/n`, `https://tok@github.com/o/n.git/` all give
    `github.com/o/n`. A local path (or `file://` URL) gives the path without `.git`.
    """
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        path = parts.path
    else:
        m = _SCP_LIKE.fullmatch(url)
        if m and not url.startswith(("/", ".", "~")):
            host, path = m.group(1).lower(), m.group(2)
        else:
            host, path = "", url
    path = path.strip("/").removesuffix(".git").rstrip("/") if host else path.rstrip("/").removesuffix(".git")
    return f"{host}/{path}" if host else path


def _git(cwd: str | os.PathLike[str], *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def repo_identity(path: str | os.PathLike[str]) -> RepoIdentity | None:
    """The repository containing `path`; None when it is not in a git worktree."""
    root = _git(path, "rev-parse", "--show-toplevel")
    if not root:
        return None
    remotes = (_git(root, "remote") or "").split()
    remote = "origin" if "origin" in remotes else (sorted(remotes)[0] if remotes else None)
    url = _git(root, "remote", "get-url", remote) if remote else None
    return RepoIdentity(
        root=root,
        repo=normalize_remote_url(url) if url else root,
        remote_url=strip_credentials(url) if url else None,
        branch=_git(root, "symbolic-ref", "--short", "-q", "HEAD") or None,
        head=_git(root, "rev-parse", "-q", "--verify", "HEAD") or None,
    )


def engineer_email(path: str | os.PathLike[str] | None = None) -> str | None:
    """`git config user.email` as seen from `path` (repo config first, then global and system)."""
    return _git(path or Path.cwd(), "config", "user.email") or None


def head_sha(path: str | os.PathLike[str]) -> str | None:
    return _git(path, "rev-parse", "-q", "--verify", "HEAD") or None


def _files(repo: str | os.PathLike[str], sha: str, parents: tuple[str, ...]) -> tuple[str, ...]:
    # A merge is described against its first parent: what the merge brought into the branch.
    args = ["diff-tree", "--no-commit-id", "-r", "--name-only", "-z"]
    args += [parents[0], sha] if len(parents) > 1 else ["--root", sha]
    out = _git(repo, *args) or ""
    return tuple(f for f in out.split("\0") if f)


def commits_between(
    repo: str | os.PathLike[str], before: str | None, after: str | None, *, limit: int = 1000
) -> list[CommitInfo]:
    """Commits reachable from `after` and not from `before`, oldest first (all of `after`'s history,
    up to `limit`, when `before` is None: a repo that had no commit when the session started)."""
    if not after or after == before:
        return []
    rev = f"{before}..{after}" if before else after
    fmt = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cI%x00%B%x1e"
    out = _git(repo, "log", "--reverse", f"--max-count={limit}", f"--format={fmt}", rev)
    if out is None:
        return []
    commits = []
    for record in out.split("\x1e"):
        fields = record.strip("\n").split("\0")
        if len(fields) < 7:
            continue
        sha, parents_text, name, email, authored, committed, message = fields[:7]
        parents = tuple(parents_text.split())
        commits.append(
            CommitInfo(sha, message.rstrip("\n"), name, email, authored, committed, parents, _files(repo, sha, parents))
        )
    return commits


def commit_events(session_id: str, commits: Iterable[CommitInfo]) -> list[Event]:
    """`commit` events; the id comes from the sha, so recording a commit twice stores it once."""
    return [
        Event(
            session_id=session_id,
            kind=ev.COMMIT,
            ts=datetime.fromisoformat(c.committed_at),
            payload=c.to_dict(),
            event_id=stable_id(session_id, "commit", c.sha),
        )
        for c in commits
    ]
