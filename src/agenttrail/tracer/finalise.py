"""The end of a session: what the workspace diff, the new commits and the trace add to the record.

Everything here derives event ids from the facts (`stable_id`), so finalising twice, or a batch
re-sent after a lost answer, stores each fact once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from agenttrail import events as ev
from agenttrail.events import Event, stable_id
from agenttrail.tracer.agents import transcript_location
from agenttrail.tracer.git_identity import CommitInfo, commit_events
from agenttrail.tracer.snapshot import FileChange

CHANGE_KINDS: dict[str, str] = {
    "created": ev.FILE_CREATE,
    "modified": ev.FILE_WRITE,
    "deleted": ev.FILE_DELETE,
    "renamed": ev.FILE_RENAME,
}


def readable_path(path: str) -> str:
    """A file name that is not UTF-8 (`\\xff\\xfe.bin`) as the tracer writes it from strace: its odd
    bytes as `\\xNN` text. The snapshot reads names with surrogateescape (to find the files again),
    and a payload holding a lone surrogate cannot be stored: ingest refused the whole last batch, the
    session's end with it."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def snapshot_events(session_id: str, changes: Iterable[FileChange], ts: datetime, project_dir: str) -> list[Event]:
    """One event per changed file, `source: snapshot`: ingest turns these into `file_change` rows.

    The strace events say what the agent did when; these say what it left behind, with the diff.
    """
    out = []
    for c in changes:
        payload: dict[str, Any] = {
            **c.to_dict(),
            "source": "snapshot",
            "in_project": True,
            "rel_path": c.path,
            "abs_path": os.path.join(project_dir, c.path),
        }
        for key in ("path", "old_path", "rel_path", "abs_path"):
            if isinstance(payload.get(key), str):
                payload[key] = readable_path(payload[key])
        out.append(
            Event(
                session_id=session_id,
                kind=CHANGE_KINDS[c.change],
                ts=ts,
                payload=payload,
                event_id=stable_id(session_id, "snapshot", c.change, c.old_path or "", c.path),
            )
        )
    return out


def session_commit_events(session_id: str, commits: Iterable[CommitInfo], repo: str | None) -> list[Event]:
    """`commit` events with the fields ingest stores (`author`, `repo`) added to git_identity's own."""
    out = []
    for e in commit_events(session_id, commits):
        p = e.payload
        p["author"] = f"{p.get('author_name', '')} <{p.get('author_email', '')}>".strip()
        if repo:
            p["repo"] = repo
        out.append(e)
    return out


def session_status(exit_code: int | None, forwarded: Iterable[int], tracer_error: str | None) -> str:
    """ok, failed (non-zero exit), interrupted (a signal we forwarded ended it), killed, error (ours)."""
    if tracer_error is not None and exit_code is None:
        return "error"
    if exit_code == 0:
        return "ok"
    if exit_code is not None and exit_code > 128:
        return "interrupted" if (exit_code - 128) in set(forwarded) else "killed"
    return "failed"


def transcript_path(
    agent: str, env: Mapping[str, str], home: str, cwd: str, agent_session_id: str | None
) -> str | None:
    """Where the agent's own transcript of this session is, when we know its id (for the record)."""
    if not agent_session_id:
        return None
    where = transcript_location(agent, env=env, home=home, cwd=cwd)
    if where is None:
        return None
    if agent == "claude-code":
        return str(Path(where, f"{agent_session_id}.jsonl"))
    return str(where)
