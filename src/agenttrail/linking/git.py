"""Merged pull requests read from a mainline's git history.

- Merge commits: "Merge pull request #N from owner/branch" (GitHub) or "See merge request g/p!N"
  (GitLab); the PR's commits are those the merge brought in (reachable from the second parent, not
  the first).
- Squash merges: a single-parent commit whose subject ends in "(#N)"; the squashed messages, with
  their trailers, are in its body.
- Rebase merges leave no mark in the commits themselves. They are found through the pull refs a
  clone can fetch (`refs/pull/N/head`, or `refs/remotes/<remote>/pr/N`): a PR whose head is not in the
  mainline but whose commits' patches (`git patch-id --stable`) appear there was rebase-merged.
  Pull refs also give a squash's original commits, so sessions link by the shas the tracer recorded.

The whole history is read with one `git log`; the branch's commits are attributed in one pass.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from agenttrail.linking.record import LinkResult, PullRequestFacts, record_pull_requests, session_trailers

_MERGE_GITHUB = re.compile(r"^Merge pull request #(\d+) from (\S+)")
_MERGE_GITLAB = re.compile(r"^See merge request \S+!(\d+)\s*$", re.M)
_SQUASH = re.compile(r"^(.*\S)\s+\(#(\d+)\)\s*$")
_PULL_REF = re.compile(r"^refs/(?:pull/(\d+)/head|remotes/[^/]+/pr/(\d+))$")


class GitError(Exception):
    """git failed or the repository is not what was expected; the message says what to do."""


@dataclass(slots=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    committed_at: datetime
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()

    @property
    def body(self) -> str:
        parts = self.message.split("\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""


def _git(repo: Path, *args: str, input_text: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
            timeout=600,
        )
    except FileNotFoundError:
        raise GitError("git is not installed; install git to link pull requests") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:2])} took more than 10 minutes in {repo}") from None
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed in {repo}: {done.stderr.strip()[:300]}")
    return done.stdout


_FORMAT = "%H%x00%P%x00%cI%x00%B%x1e"


def _log(repo: Path, *revs: str) -> dict[str, Commit]:
    out = _git(repo, "log", f"--format={_FORMAT}", *revs, "--")
    commits: dict[str, Commit] = {}
    for record in out.split("\x1e"):
        fields = record.lstrip("\n").split("\x00")
        if len(fields) < 4 or not fields[0]:
            continue
        sha, parents, when, message = fields[0], fields[1], fields[2], "\x00".join(fields[3:])
        commits[sha] = Commit(sha, tuple(parents.split()), datetime.fromisoformat(when), message.rstrip("\n"))
    return commits


def resolve_branch(repo: Path, branch: str) -> str:
    for candidate in (branch, f"origin/{branch}", f"refs/remotes/origin/{branch}"):
        try:
            return _git(repo, "rev-parse", "--verify", "-q", f"{candidate}^{{commit}}").strip()
        except GitError:
            continue
    names = _git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads", "refs/remotes").split()
    names = [n for n in names if not n.endswith("/HEAD")]
    if not names:
        raise GitError(f"{repo} has no commits yet: nothing has been merged to link")
    listed = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    raise GitError(f"no branch {branch!r} in {repo} (it has {listed}); name the mainline with --branch")


def pull_refs(repo: Path) -> dict[int, str]:
    out = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/pull", "refs/remotes")
    refs: dict[int, str] = {}
    for line in out.splitlines():
        name, _, sha = line.partition(" ")
        m = _PULL_REF.match(name)
        if m:
            refs[int(m.group(1) or m.group(2))] = sha
    return refs


def _first_parent_chain(commits: dict[str, Commit], tip: str) -> list[Commit]:
    chain = []
    sha: str | None = tip
    while sha is not None and sha in commits:
        c = commits[sha]
        chain.append(c)
        sha = c.parents[0] if c.parents else None
    chain.reverse()
    return chain


def _walk(commits: dict[str, Commit], starts: Iterable[str], stop: set[str]) -> list[Commit]:
    """Commits reachable from `starts` that are in `commits` and not in `stop`, newest first."""
    out, stack, seen = [], list(starts), set()
    while stack:
        sha = stack.pop()
        if sha in seen or sha in stop or sha not in commits:
            continue
        seen.add(sha)
        c = commits[sha]
        out.append(c)
        stack.extend(c.parents)
    out.sort(key=lambda c: c.committed_at, reverse=True)
    return out


def _patch_ids(repo: Path, shas: list[str]) -> dict[str, str]:
    """sha -> stable patch id, for non-merge commits."""
    if not shas:
        return {}
    patches = _git(repo, "show", "--format=commit %H", "-p", "--no-color", *shas)
    out = _git(repo, "patch-id", "--stable", input_text=patches)
    ids: dict[str, str] = {}
    for line in out.splitlines():
        pid, _, sha = line.partition(" ")
        if sha:
            ids[sha] = pid
    return ids


def _chunked_patch_ids(repo: Path, shas: list[str], size: int = 500) -> dict[str, str]:
    ids: dict[str, str] = {}
    for i in range(0, len(shas), size):
        ids.update(_patch_ids(repo, shas[i : i + size]))
    return ids


def read_pull_requests(repo_path: str | Path, repo: str, branch: str = "main") -> list[PullRequestFacts]:
    """Every merged pull request the branch's history shows, oldest first."""
    path = Path(repo_path)
    tip = resolve_branch(path, branch)
    commits = _log(path, tip)
    chain = _first_parent_chain(commits, tip)
    found: dict[int, PullRequestFacts] = {}
    attributed: set[str] = set()  # mainline commits that belong to a merge or squash PR
    seen: set[str] = set()  # everything reachable from the mainline commits walked so far
    for c in chain:
        if len(c.parents) > 1:
            brought = _walk(commits, c.parents[1:], seen)
            seen.update(x.sha for x in brought)
            number, title = _merge_pr(c)
            if number is not None:
                messages = [c.message, *(x.message for x in brought)]
                found[number] = PullRequestFacts(
                    repo=repo,
                    number=number,
                    title=title,
                    merged_at=c.committed_at,
                    merge_sha=c.sha,
                    merge_kind="merge",
                    commits=[c.sha, *(x.sha for x in reversed(brought))],
                    sessions=_trailers(messages),
                )
                attributed.add(c.sha)
        else:
            m = _SQUASH.match(c.subject)
            if m and int(m.group(2)) not in found:
                number = int(m.group(2))
                found[number] = PullRequestFacts(
                    repo=repo,
                    number=number,
                    title=m.group(1),
                    merged_at=c.committed_at,
                    merge_sha=c.sha,
                    merge_kind="squash",
                    commits=[c.sha],
                    sessions=session_trailers(c.message),
                )
                attributed.add(c.sha)
        seen.add(c.sha)
    _from_pull_refs(path, repo, tip, chain, commits, found, attributed)
    return sorted(found.values(), key=lambda p: (p.merged_at or datetime.min, p.number))


def _merge_pr(c: Commit) -> tuple[int | None, str | None]:
    m = _MERGE_GITHUB.match(c.subject)
    if m:
        body = c.body.splitlines()
        return int(m.group(1)), (body[0].strip() if body and body[0].strip() else c.subject)
    g = _MERGE_GITLAB.search(c.message)
    if g:
        return int(g.group(1)), c.subject
    return None, None


def _trailers(messages: Iterable[str]) -> list[str]:
    out: list[str] = []
    for m in messages:
        out.extend(session_trailers(m))
    return list(dict.fromkeys(out))


def _from_pull_refs(
    path: Path,
    repo: str,
    tip: str,
    chain: list[Commit],
    commits: dict[str, Commit],
    found: dict[int, PullRequestFacts],
    attributed: set[str],
) -> None:
    """Original commits of squash merges, and rebase merges, from the pull refs a clone fetched."""
    refs = pull_refs(path)
    if not refs:
        return
    off_main = {n: sha for n, sha in refs.items() if sha not in commits}
    if not off_main:
        return
    extra = _log(path, *off_main.values(), f"^{tip}")
    originals = {n: list(reversed(_walk(extra, [sha], set()))) for n, sha in off_main.items()}
    for n, pr in found.items():
        if pr.merge_kind == "squash" and n in originals:
            pr.commits += [c.sha for c in originals[n]]
            pr.sessions = _trailers([*(c.message for c in originals[n])]) + pr.sessions
            pr.sessions = list(dict.fromkeys(pr.sessions))
    candidates = {n: cs for n, cs in originals.items() if n not in found and cs}
    if not candidates:
        return
    mainline = [c for c in chain if len(c.parents) == 1 and c.sha not in attributed]
    main_ids = _chunked_patch_ids(path, [c.sha for c in mainline])
    by_patch: dict[str, list[Commit]] = {}
    for c in mainline:
        if c.sha in main_ids:
            by_patch.setdefault(main_ids[c.sha], []).append(c)
    orig_ids = _chunked_patch_ids(path, [c.sha for cs in candidates.values() for c in cs if len(c.parents) == 1])
    for n, cs in sorted(candidates.items()):
        matched: list[Commit] = []
        for c in cs:
            pid = orig_ids.get(c.sha)
            hits = [m for m in by_patch.get(pid, []) if m.sha not in attributed] if pid else []
            if hits:
                matched.append(hits[0])
                attributed.add(hits[0].sha)
        if not matched:
            continue  # not merged, or merged in a way that changed every patch
        last = max(matched, key=lambda c: c.committed_at)
        found[n] = PullRequestFacts(
            repo=repo,
            number=n,
            title=cs[0].subject,  # rebase merges keep no PR title; the first commit's subject stands in
            merged_at=last.committed_at,
            merge_sha=last.sha,
            merge_kind="rebase",
            commits=[*(m.sha for m in matched), *(c.sha for c in cs)],
            sessions=_trailers([*(m.message for m in matched), *(c.message for c in cs)]),
        )


def repo_name(repo_path: str | Path) -> str:
    """The repo as sessions name it (`host/owner/name` from the origin remote), so PRs and sessions meet."""
    from agenttrail.tracer.git_identity import repo_identity

    ident = repo_identity(repo_path)
    if ident is None:
        raise GitError(f"{repo_path} is not a git repository")
    return ident.repo


def link_repo(engine: Engine, repo_path: str | Path, branch: str = "main", repo: str | None = None) -> LinkResult:
    """Read the mainline's merged PRs and record them; running it again changes nothing."""
    name = repo or repo_name(repo_path)
    return record_pull_requests(engine, read_pull_requests(repo_path, name, branch))
