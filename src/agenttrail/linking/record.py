"""The one write path for pull requests: git history, the GitHub webhook and seed-demo all end here.

Idempotent: a PR is keyed by (repo, number); its commits and session links are inserted only when
missing, so recording the same facts again changes nothing. Links by recorded commit sha are made by
the database (trigger on `pr_commit`), links by `Agent-Session:` trailer here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenttrail.store.locks import lock_sessions
from agenttrail.store.tables import git_commit, pr_commit, pr_session, pull_request

# Trailers may be indented or bulleted inside a squash commit's body ("* msg\n\n    Agent-Session: …").
_TRAILER = re.compile(r"^[ \t*>-]*Agent-Session:[ \t]*([A-Za-z0-9_.:-]{1,64})[ \t]*$", re.M | re.I)


def session_trailers(text: str | None) -> list[str]:
    """Every session id named by an `Agent-Session:` trailer line, in order, without repeats."""
    if not text:
        return []
    return list(dict.fromkeys(_TRAILER.findall(text)))


@dataclass(slots=True)
class PullRequestFacts:
    """What is known about one merged pull request, from any source."""

    repo: str
    number: int
    title: str | None = None
    merged_at: datetime | None = None
    merge_sha: str | None = None
    merge_kind: str | None = None  # merge | squash | rebase; None when the source cannot tell
    source: str = "git"  # git | webhook | demo
    commits: list[str] = field(default_factory=list)  # mainline and original shas that carry its work
    sessions: list[str] = field(default_factory=list)  # session ids named by trailers


@dataclass(slots=True)
class LinkResult:
    pull_requests: int = 0  # PRs seen
    new_pull_requests: int = 0
    updated_pull_requests: int = 0
    new_commits: int = 0
    new_trailer_links: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "pull_requests": self.pull_requests,
            "new_pull_requests": self.new_pull_requests,
            "updated_pull_requests": self.updated_pull_requests,
            "new_commits": self.new_commits,
            "new_trailer_links": self.new_trailer_links,
        }


def _naive(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _insert_ignore(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


def _changes(row: Any, pr: PullRequestFacts) -> dict[str, Any]:
    """Fields the new facts add or correct. A source that knows less (a webhook cannot tell a squash
    from a rebase) never erases what a source that knows more recorded."""
    out: dict[str, Any] = {}
    new = {
        "title": pr.title,
        "merged_at": _naive(pr.merged_at),
        "merge_sha": pr.merge_sha,
        "merge_kind": pr.merge_kind,
    }
    for k, v in new.items():
        if v is not None and getattr(row, k) != v:
            out[k] = v
    if pr.source == "git" and row.source != "git":
        out["source"] = "git"
    return out


def record_pull_requests(
    engine: Engine,
    prs: Iterable[PullRequestFacts],
    *,
    chunk: int = 5000,
    progress: Callable[[int], Any] | None = None,
) -> LinkResult:
    """Record the PRs in chunks; `progress(n)` after each chunk of n."""
    result = LinkResult()
    batch: list[PullRequestFacts] = []
    for pr in prs:
        batch.append(pr)
        if len(batch) >= chunk:
            _record_batch(engine, batch, result)
            if progress is not None:
                progress(len(batch))
            batch = []
    if batch:
        _record_batch(engine, batch, result)
        if progress is not None:
            progress(len(batch))
    return result


def _record_batch(engine: Engine, prs: Sequence[PullRequestFacts], result: LinkResult) -> None:
    # The same PR twice in one batch (a webhook retry, two refs) merges into one set of facts.
    merged: dict[tuple[str, int], PullRequestFacts] = {}
    for pr in prs:
        key = (pr.repo, pr.number)
        if key in merged:
            first = merged[key]
            first.commits = list(dict.fromkeys([*first.commits, *pr.commits]))
            first.sessions = list(dict.fromkeys([*first.sessions, *pr.sessions]))
            for attr in ("title", "merged_at", "merge_sha", "merge_kind"):
                if getattr(pr, attr) is not None:
                    setattr(first, attr, getattr(pr, attr))
        else:
            merged[key] = PullRequestFacts(
                pr.repo,
                pr.number,
                pr.title,
                pr.merged_at,
                pr.merge_sha,
                pr.merge_kind,
                pr.source,
                list(dict.fromkeys(pr.commits)),
                list(dict.fromkeys(pr.sessions)),
            )
    with engine.begin() as conn:
        _lock_linked_sessions(conn, merged.values())
        keys = list(merged)
        existing: dict[tuple[str, int], Any] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = conn.execute(
                select(pull_request).where(tuple_(pull_request.c.repo, pull_request.c.number).in_(part))
            ).all()
            existing.update({(r.repo, r.number): r for r in rows})
        ids: dict[tuple[str, int], int] = {}
        to_insert = []
        for key, pr in merged.items():
            row = existing.get(key)
            if row is None:
                to_insert.append(
                    {
                        "repo": pr.repo,
                        "number": pr.number,
                        "title": pr.title,
                        "merged_at": _naive(pr.merged_at),
                        "merge_sha": pr.merge_sha,
                        "merge_kind": pr.merge_kind,
                        "source": pr.source,
                    }
                )
                continue
            ids[key] = row.id
            changes = _changes(row, pr)
            if changes:
                conn.execute(update(pull_request).where(pull_request.c.id == row.id).values(**changes))
                result.updated_pull_requests += 1
        if to_insert:
            # Concurrent writers (two webhook deliveries) may race; the unique key makes the loser a no-op.
            stmt = _insert_ignore(conn, pull_request).returning(
                pull_request.c.id, pull_request.c.repo, pull_request.c.number
            )
            for r in conn.execute(stmt, to_insert).all():
                ids[(r.repo, r.number)] = r.id
                result.new_pull_requests += 1
            missing = [k for k in merged if k not in ids]
            if missing:
                rows = conn.execute(
                    select(pull_request.c.id, pull_request.c.repo, pull_request.c.number).where(
                        tuple_(pull_request.c.repo, pull_request.c.number).in_(missing)
                    )
                ).all()
                ids.update({(r.repo, r.number): r.id for r in rows})
        commit_rows = [{"pr_id": ids[k], "sha": sha} for k, pr in merged.items() for sha in pr.commits if sha]
        link_rows = [
            {"pr_id": ids[k], "session_id": sid, "how": "trailer"} for k, pr in merged.items() for sid in pr.sessions
        ]
        result.pull_requests += len(merged)
        result.new_commits += _insert_new(conn, pr_commit, commit_rows, (pr_commit.c.pr_id, pr_commit.c.sha))
        result.new_trailer_links += _insert_new(
            conn, pr_session, link_rows, (pr_session.c.pr_id, pr_session.c.session_id)
        )


def _lock_linked_sessions(conn: Connection, prs: Iterable[PullRequestFacts]) -> None:
    """PostgreSQL: take ingest's locks on the sessions this batch may link, before its first write.

    A link upserts the session's `session_rollup` row (`merged_prs`), and a batch links in two
    statements (by recorded sha through `pr_commit`'s trigger, then by trailer): holding one session's
    row while an ingest holding another's waits for it deadlocked. Linked sessions are those named by
    trailers and those of stored commits with the batch's shas; a commit stored after this lookup is by
    an ingest that has committed, so its session is no longer held by one that waits on this batch."""
    if conn.dialect.name != "postgresql":
        return
    sessions: set[str] = set()
    shas: list[str] = []
    for pr in prs:
        sessions.update(pr.sessions)
        shas.extend(sha for sha in pr.commits if sha)
    shas = sorted(set(shas))
    for i in range(0, len(shas), 1000):
        rows = conn.execute(
            select(git_commit.c.session_id)
            .where(git_commit.c.sha.in_(shas[i : i + 1000]), git_commit.c.session_id.is_not(None))
            .distinct()
        )
        sessions.update(rows.scalars())
    lock_sessions(conn, sessions)


def _insert_new(conn: Connection, table: Any, rows: list[dict[str, Any]], key: tuple[Any, Any]) -> int:
    """Insert rows whose key is not there yet; returns how many were new."""
    new = 0
    for i in range(0, len(rows), 1000):
        part = rows[i : i + 1000]
        stmt = _insert_ignore(conn, table).returning(*key)
        new += len(conn.execute(stmt, part).all())
    return new
