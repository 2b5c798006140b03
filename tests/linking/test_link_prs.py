"""PR linkage on a real git repository: a merge, a squash and a rebase merge; a PR no agent touched;
a session whose commit never merged. Running the linker again changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.linking.git import link_repo, read_pull_requests
from agenttrail.linking.record import record_pull_requests
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, ingest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
REPO = "github.com/acme/shop"


class Repo:
    """A git repository driven like GitHub drives one, with fixed dates so shas are reproducible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = T0
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "origin", "https://github.com/acme/shop.git")

    def git(self, *args: str, committer: str = "Dev") -> str:
        self.clock += timedelta(minutes=1)
        stamp = self.clock.isoformat()
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Dev",
            "GIT_AUTHOR_EMAIL": "dev@acme.test",
            "GIT_COMMITTER_NAME": committer,
            "GIT_COMMITTER_EMAIL": "noreply@github.com" if committer == "GitHub" else "dev@acme.test",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_SYSTEM": os.devnull,
        }
        done = subprocess.run(["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def commit(self, name: str, message: str) -> str:
        (self.path / name).write_text(f"{name}\n{message}\n")
        self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def pull_ref(self, number: int, branch: str) -> None:
        self.git("update-ref", f"refs/pull/{number}/head", branch)


def _session(sid: str, commits: list[str], cost: float, when: datetime) -> list[Event]:
    evs = [Event(sid, "session_start", when, {"engineer": "ana@acme.test", "repo": REPO, "agent": "claude-code"})]
    for i, sha in enumerate(commits):
        evs.append(Event(sid, "commit", when + timedelta(minutes=i + 1), {"sha": sha, "message": f"c{i}"}))
    record = {"provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": cost, "input_tokens": 100}
    evs.append(Event(sid, "llm_call", when, {"record": record}))
    evs.append(Event(sid, "session_end", when + timedelta(minutes=30), {"exit_code": 0}))
    return evs


def build(tmp_path: Path) -> tuple[Repo, dict[str, list[str]]]:
    (tmp_path / "shop").mkdir()
    r = Repo(tmp_path / "shop")
    r.commit("README", "initial")
    shas: dict[str, list[str]] = {}

    # PR 1: a merge commit; the session's commits keep their shas.
    r.git("checkout", "-q", "-b", "feat-a")
    shas["s-merge"] = [r.commit("a1", "add a1"), r.commit("a2", "add a2")]
    r.pull_ref(1, "feat-a")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "feat-a", "-m", "Merge pull request #1 from acme/feat-a\n\nAdd feature A")

    # PR 2: a squash merge. s-squash's commits were recorded; s-trailer-only's were not (its laptop was
    # offline), so only the trailer GitHub copies into the squash body names it.
    r.git("checkout", "-q", "-b", "feat-b")
    shas["s-squash"] = [r.commit("b1", "add b1\n\nAgent-Session: s-squash")]
    r.commit("b2", "add b2\n\nAgent-Session: s-trailer-only")
    r.pull_ref(2, "feat-b")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--squash", "feat-b")
    body = "Add feature B (#2)\n\n* add b1\n\nAgent-Session: s-squash\n\n* add b2\n\nAgent-Session: s-trailer-only"
    r.git("commit", "-q", "-m", body, committer="GitHub")

    # PR 3: a rebase merge: GitHub replays the commits, so the mainline shas are new.
    r.git("checkout", "-q", "-b", "feat-c", "main~1")
    shas["s-rebase"] = [r.commit("c1", "add c1"), r.commit("c2", "add c2")]
    r.pull_ref(3, "feat-c")
    r.git("checkout", "-q", "main")
    for sha in shas["s-rebase"]:
        r.git("cherry-pick", sha, committer="GitHub")

    # PR 4: merged, no agent involved.
    r.git("checkout", "-q", "-b", "docs")
    r.commit("DOCS", "write docs")
    r.pull_ref(4, "docs")
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "docs", "-m", "Merge pull request #4 from acme/docs\n\nDocs")

    # PR 5: open, never merged; its session's commit must stay unmerged.
    r.git("checkout", "-q", "-b", "feat-d")
    shas["s-unmerged"] = [r.commit("d1", "add d1")]
    r.pull_ref(5, "feat-d")
    r.git("checkout", "-q", "main")
    return r, shas


def _ingest_sessions(engine: Engine, shas: dict[str, list[str]]) -> None:
    costs = {"s-merge": 1.0, "s-squash": 2.0, "s-trailer-only": 3.0, "s-rebase": 4.0, "s-unmerged": 5.0}
    evs: list[Event] = []
    for i, (sid, cost) in enumerate(costs.items()):
        evs += _session(sid, shas.get(sid, []), cost, T0 + timedelta(hours=i))
    ingest(engine, evs, Attribution(engineer="ana@acme.test"))


def _snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    with engine.connect() as conn:
        for table, order in (
            ("pull_request", "id"),
            ("pr_commit", "pr_id, sha"),
            ("pr_session", "pr_id, session_id"),
            ("session_rollup", "session_id"),
        ):
            out[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
    return out


def test_merge_squash_rebase_and_unmerged(db_url: str, tmp_path: Path) -> None:
    repo, shas = build(tmp_path)
    engine = open_engine(db_url)
    _ingest_sessions(engine, shas)

    result = link_repo(engine, repo.path, "main")
    assert result.pull_requests == 4 and result.new_pull_requests == 4

    with engine.connect() as conn:
        prs = {
            r.number: r
            for r in conn.execute(text("SELECT number, title, merge_kind, sessions, cost_usd, repo FROM pull_requests"))
        }
        merged = dict(conn.execute(text("SELECT session_id, merged FROM sessions")).all())
        links = set(conn.execute(text("SELECT number, session_id, how FROM pr_sessions")).all())
    assert {n: p.merge_kind for n, p in prs.items()} == {1: "merge", 2: "squash", 3: "rebase", 4: "merge"}
    assert prs[1].title == "Add feature A" and prs[2].title == "Add feature B"
    assert {p.repo for p in prs.values()} == {REPO}
    assert {n: p.sessions for n, p in prs.items()} == {1: 1, 2: 2, 3: 1, 4: 0}
    assert {n: round(p.cost_usd, 6) for n, p in prs.items()} == {1: 1.0, 2: 5.0, 3: 4.0, 4: 0.0}
    assert links == {
        (1, "s-merge", "sha"),
        (2, "s-squash", "sha"),  # the original commit came from refs/pull/2/head
        (2, "s-trailer-only", "trailer"),
        (3, "s-rebase", "sha"),
    }
    assert merged == {"s-merge": 1, "s-squash": 1, "s-trailer-only": 1, "s-rebase": 1, "s-unmerged": 0}

    before = _snapshot(engine)
    again = link_repo(engine, repo.path, "main")
    assert (again.new_pull_requests, again.updated_pull_requests, again.new_commits, again.new_trailer_links) == (
        0,
        0,
        0,
        0,
    )
    assert _snapshot(engine) == before


def test_without_pull_refs_merge_and_squash_still_link(tmp_path: Path) -> None:
    repo, _ = build(tmp_path)
    for n in range(1, 6):
        repo.git("update-ref", "-d", f"refs/pull/{n}/head")
    facts = {p.number: p for p in read_pull_requests(repo.path, REPO, "main")}
    # A rebase merge leaves no PR number in git without the pull refs; the webhook records those.
    assert sorted(facts) == [1, 2, 4]
    assert facts[2].sessions == ["s-squash", "s-trailer-only"]


def test_commit_recorded_after_linking_still_links(db_url: str, tmp_path: Path) -> None:
    repo, shas = build(tmp_path)
    engine = open_engine(db_url)
    link_repo(engine, repo.path, "main")
    _ingest_sessions(engine, shas)  # the tracer's upload arrives after link-prs ran
    with engine.connect() as conn:
        merged = dict(conn.execute(text("SELECT session_id, merged FROM sessions")).all())
    assert merged == {"s-merge": 1, "s-squash": 1, "s-trailer-only": 1, "s-rebase": 1, "s-unmerged": 0}


def test_recording_tells_progress_chunk_by_chunk(tmp_path: Path) -> None:
    repo, _ = build(tmp_path)
    facts = read_pull_requests(repo.path, REPO, "main")
    told: list[int] = []
    engine = open_engine(f"sqlite:///{tmp_path / 'p.db'}")
    assert record_pull_requests(engine, facts, chunk=3, progress=told.append).pull_requests == len(facts)
    assert told == [3, len(facts) - 3]
