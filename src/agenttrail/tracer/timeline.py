"""A session's record read back from a store: the list of sessions, and one session's timeline.

Reads only the documented views (`sessions`, `events`, `file_changes`, `commits`, `llm_calls`), so
the same code serves `agenttrail sessions` on the local store and the server's sessions API. The
record is plain JSON-ready data; `render_timeline` turns it into text for a person.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

from agenttrail.events import stable_id

LIST_COLUMNS = (
    "session_id",
    "started_at",
    "ended_at",
    "duration_s",
    "engineer",
    "team",
    "project",
    "repo",
    "branch",
    "agent",
    "agent_version",
    "agent_session_id",
    "exit_code",
    "status",
    "files_changed",
    "lines_added",
    "lines_removed",
    "commands",
    "calls",
    "cost_usd",
)
_ID_CHARS = re.compile(r"[A-Za-z0-9.:-]+")
# Kinds shown one per line in the text timeline; the others are summed up (reads are many).
_TIMELINE_KINDS = ("exec", "file_create", "file_write", "file_delete", "file_rename", "net_connect", "package_install")


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose sessions a reader may see (a server's caller); None everywhere means all (the local store)."""

    engineer_id: int | None = None
    team_id: int | None = None
    session_id: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """A condition on `session_id` (a subquery on agent_session, which knows the ids)."""
        if self.session_id is not None:
            return "session_id = :scope_session", {"scope_session": self.session_id}
        if self.engineer_id is not None:
            return (
                "session_id IN (SELECT session_id FROM agent_session WHERE engineer_id = :scope_engineer)",
                {"scope_engineer": self.engineer_id},
            )
        if self.team_id is not None:
            return (
                "session_id IN (SELECT session_id FROM agent_session WHERE team_id = :scope_team)",
                {"scope_team": self.team_id},
            )
        return "1 = 1", {}


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def _row(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _jsonable(v) for k, v in mapping.items()}


def list_sessions(engine: Engine, *, limit: int = 50, scope: Scope | None = None) -> list[dict[str, Any]]:
    """Sessions, newest first."""
    cond, params = (scope or Scope()).where()
    cols = ", ".join(LIST_COLUMNS)
    q = text(f"SELECT {cols} FROM sessions WHERE {cond} ORDER BY started_at DESC, session_id LIMIT :limit")
    with engine.connect() as conn:
        return [_row(r._mapping) for r in conn.execute(q, {**params, "limit": int(limit)})]


class SessionIdError(ValueError):
    """A prefix that cannot name one session: too short to try, or shared by several."""


MIN_PREFIX = 4


def resolve_session_id(engine: Engine, given: str, *, scope: Scope | None = None) -> str | None:
    """The full id for an id or a unique prefix of one (ids are long; people type the first 8).
    None when nothing matches; `SessionIdError` when the prefix is too short or matches several."""
    if "\x00" in given:  # no id holds one, and PostgreSQL refuses it as a parameter
        return None
    cond, params = (scope or Scope()).where()
    with engine.connect() as conn:
        exact = conn.execute(
            text(f"SELECT session_id FROM sessions WHERE session_id = :sid AND {cond}"), {**params, "sid": given}
        ).first()
        if exact is not None:
            return str(exact[0])
        # Only plain id characters make a prefix: no LIKE wildcards from the caller.
        if not _ID_CHARS.fullmatch(given):
            return None
        if len(given) < MIN_PREFIX:
            raise SessionIdError(f"{given!r} is too short to find a session by: give at least {MIN_PREFIX} characters")
        rows = conn.execute(
            text(f"SELECT session_id FROM sessions WHERE session_id LIKE :prefix AND {cond} LIMIT 2"),
            {**params, "prefix": given + "%"},
        ).all()
    if len(rows) > 1:
        raise SessionIdError(f"{given!r} is the start of more than one session id: give more of it")
    return str(rows[0][0]) if rows else None


def _select(conn: Connection, sql: str, sid: str) -> list[dict[str, Any]]:
    return [_row(r._mapping) for r in conn.execute(text(sql), {"sid": sid})]


def _own(events: Sequence[Mapping[str, Any]], kind: str, sid: str) -> dict[str, Any]:
    """The tracer's own start or end event: other sources (an importer, OTLP) may send their own
    `session_start`/`session_end` for the same session, and the tracer's has the exit code, the
    command, the sandbox. Its id is `stable_id(sid, kind)` (tracer.session)."""
    mine = stable_id(sid, kind)
    found = [e for e in events if e["kind"] == kind]
    for e in found:
        if e["event_id"] == mine:
            return dict(e["payload"])
    return dict(found[0]["payload"]) if found else {}


def session_record(engine: Engine, session_id: str, *, scope: Scope | None = None) -> dict[str, Any] | None:
    """Everything known about one session, or None when there is no such session (in scope)."""
    sid = resolve_session_id(engine, session_id, scope=scope)
    if sid is None:
        return None
    with engine.connect() as conn:
        sessions = _select(conn, "SELECT * FROM sessions WHERE session_id = :sid", sid)
        events = _select(
            conn, "SELECT event_id, ts, kind, payload FROM events WHERE session_id = :sid ORDER BY ts, event_id", sid
        )
        files = _select(conn, "SELECT * FROM file_changes WHERE session_id = :sid ORDER BY path", sid)
        commits = _select(conn, "SELECT * FROM commits WHERE session_id = :sid ORDER BY committed_at, sha", sid)
        calls = _select(conn, "SELECT * FROM llm_calls WHERE session_id = :sid ORDER BY started_at, call_id", sid)
    for e in events:
        try:
            e["payload"] = json.loads(e["payload"]) if isinstance(e["payload"], str) else e["payload"]
        except ValueError:
            e["payload"] = {"unreadable": e["payload"]}
    for c in commits:
        if isinstance(c.get("files"), str):
            with contextlib.suppress(ValueError):
                c["files"] = json.loads(c["files"])
    start = _own(events, "session_start", sid)
    end = _own(events, "session_end", sid)
    return {
        "session_id": sid,
        "session": sessions[0] if sessions else {"session_id": sid},
        "start": start,
        "end": end,
        "llm_calls": calls,
        "file_changes": files,
        "commits": commits,
        "packages": [dict(e["payload"], ts=e["ts"]) for e in events if e["kind"] == "package_install"],
        "events": events,
    }


# ---- text ---------------------------------------------------------------------------------------


def _t(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    return None


def _money(v: Any) -> str:
    try:
        x = float(v or 0)
    except (TypeError, ValueError):
        return "?"
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def _argv(argv: Sequence[Any] | None, width: int = 140) -> str:
    import shlex

    s = " ".join(shlex.quote(str(a)) for a in (argv or [])).replace("\n", "\\n")
    return s if len(s) <= width else s[: width - 1] + "…"


def _rel(path: Any, root: str | None) -> str:
    p = str(path or "?")
    if root and p.startswith(root.rstrip("/") + "/"):
        return p[len(root.rstrip("/")) + 1 :]
    return p


def _git_internal(kind: str, p: Mapping[str, Any], root: str | None) -> bool:
    """File work inside .git (objects, locks, refs): git's own bookkeeping, summed up in the text."""
    if not kind.startswith("file_"):
        return False
    return any(_rel(p.get(k), root).startswith(".git/") for k in ("path", "old_path") if p.get(k))


def _event_line(kind: str, p: Mapping[str, Any], root: str | None) -> str | None:
    if p.get("source") == "snapshot":
        return None  # the diff section shows these
    where = p.get("rel_path") or p.get("path") or ""
    if kind == "exec":
        return f"exec     {_argv(p.get('argv'))}"
    if kind == "file_create":
        return f"create   {where}"
    if kind == "file_write":
        return f"write    {where}"
    if kind == "file_delete":
        return f"delete   {where}"
    if kind == "file_rename":
        return f"rename   {_rel(p.get('old_path'), root)} -> {_rel(p.get('path'), root)}"
    if kind == "net_connect":
        proto = f"{p.get('protocol')} " if p.get("protocol") else ""
        return f"connect  {proto}{p.get('address', '?')}:{p.get('port', '')}"
    if kind == "package_install":
        spec = p.get("version_spec") or ""
        return f"package  {p.get('ecosystem', '?')} {p.get('name', '?')}{spec} ({p.get('manager', '?')})"
    return None


def _call_line(c: Mapping[str, Any]) -> str:
    tokens = (
        f"in {c.get('input_tokens') or 0}, cache read {c.get('cache_read_tokens') or 0}, "
        f"cache write {c.get('cache_write_tokens') or 0}, out {c.get('output_tokens') or 0}"
    )
    status = "" if c.get("status") in (None, "ok") else f" [{c.get('status')}]"
    model = c.get("model") or c.get("model_requested") or "?"
    return f"model    {c.get('provider', '?')} {model}: {tokens}; {_money(c.get('cost_usd'))}{status}"


def render_timeline(record: Mapping[str, Any], *, diffs: bool = True, everything: bool = False) -> str:
    """The record as text: a header, the timeline (model calls, commands, the project's files,
    connections, packages), each changed file with its diff, packages and commits. Reads, git's
    own files and file work outside the project are counted, and listed with `everything`."""
    s = record.get("session") or {}
    start = record.get("start") or {}
    end = record.get("end") or {}
    t0 = _t(s.get("started_at"))
    lines: list[str] = []
    agent = " ".join(str(x) for x in (s.get("agent"), s.get("agent_version")) if x)
    repo = s.get("repo") or start.get("repo") or s.get("cwd") or ""
    branch = f" ({s.get('branch')})" if s.get("branch") else ""
    lines.append(f"session {record.get('session_id')}  {agent}  {s.get('engineer') or ''}  {repo}{branch}".rstrip())
    when = t0.strftime("%Y-%m-%d %H:%M:%S UTC") if t0 else "?"
    dur = s.get("duration_s")
    dur_text = f", {float(dur):.1f} s" if isinstance(dur, int | float) else ", still running or ended unrecorded"
    sandbox = "sandboxed" if start.get("sandboxed") else "no sandbox"
    exit_text = f", exit {s.get('exit_code')} ({s.get('status')})" if s.get("exit_code") is not None else ""
    lines.append(f"started {when}{dur_text}{exit_text}, {sandbox}")
    if start.get("command"):
        lines.append(f"command {_argv(start.get('command'))}")
    calls = list(record.get("llm_calls") or [])
    cost = sum(float(c.get("cost_usd") or 0) for c in calls)
    lines.append(
        f"cost {_money(cost)} over {len(calls)} model calls; {s.get('commands', 0)} commands; "
        f"{s.get('files_changed', 0)} files changed (+{s.get('lines_added', 0)} -{s.get('lines_removed', 0)}); "
        f"{len(record.get('commits') or [])} commits"
    )
    if end.get("agent_session_id") or s.get("agent_session_id"):
        lines.append(f"agent session {end.get('agent_session_id') or s.get('agent_session_id')}")

    items: list[tuple[datetime, str]] = []
    read_count, reads_outside, git_internal, outside = 0, 0, 0, 0
    root = start.get("repo_path") or s.get("cwd")
    for e in record.get("events") or []:
        ts = _t(e.get("ts"))
        if ts is None:
            continue
        kind, p = str(e.get("kind")), e.get("payload") or {}
        if kind == "file_read":
            read_count += 1
            reads_outside += 0 if p.get("in_project") else 1
            if everything:
                items.append((ts, f"read     {p.get('rel_path') or p.get('path')}"))
            continue
        if p.get("source") != "snapshot" and not everything:
            if _git_internal(kind, p, root):
                git_internal += 1
                continue
            if kind.startswith("file_") and not (p.get("in_project") or p.get("old_in_project")):
                outside += 1
                continue
        line = _event_line(kind, p, root) if kind in _TIMELINE_KINDS else None
        if line:
            items.append((ts, line))
    for c in calls:
        ts = _t(c.get("started_at"))
        if ts is not None:
            items.append((ts, _call_line(c)))
    items.sort(key=lambda x: x[0])
    lines += ["", "timeline"]
    base = t0 or (items[0][0] if items else None)
    for ts, line in items:
        offset = (ts - base).total_seconds() if base else 0.0
        lines.append(f"  {offset:+8.1f}s  {line}")
    if not everything:
        hidden = [
            f"{read_count} file reads ({reads_outside} outside the project)" if read_count else "",
            f"{outside} other file operations outside the project" if outside else "",
            f"{git_internal} inside .git" if git_internal else "",
        ]
        if any(hidden):
            lines.append(f"  (not shown: {'; '.join(h for h in hidden if h)}; --all lists them)")

    files = list(record.get("file_changes") or [])
    if files:
        lines += ["", "files"]
        for f in files:
            moved = f" (from {f.get('old_path')})" if f.get("old_path") else ""
            binary = " binary" if f.get("binary") else ""
            counts = f"+{f.get('lines_added', 0)} -{f.get('lines_removed', 0)}"
            lines.append(f"  {f.get('change', '?'):<9}{f.get('path')}{moved}  {counts}{binary}")
            if diffs and f.get("diff"):
                lines += ["    " + d for d in str(f["diff"]).rstrip("\n").split("\n")]
                if f.get("diff_truncated"):
                    lines.append("    … (diff truncated)")
    packages = list(record.get("packages") or [])
    if packages:
        lines += ["", "packages"]
        for p in packages:
            spec = f"{p.get('name')}{p.get('version_spec') or ''}"
            lines.append(f"  {p.get('ecosystem')} {spec}  ({_argv(p.get('argv'), 80)})")
    commits = list(record.get("commits") or [])
    if commits:
        lines += ["", "commits"]
        for c in commits:
            subject = str(c.get("message") or "").split("\n", 1)[0]
            lines.append(f"  {str(c.get('sha'))[:12]}  {subject}  ({c.get('author') or '?'})")
    return "\n".join(lines) + "\n"


def render_list(sessions: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """Rows for a table: id, started, agent, repo, exit, files, commands, calls, cost."""
    rows = []
    for s in sessions:
        t = _t(s.get("started_at"))
        rows.append(
            [
                str(s.get("session_id") or "")[:12],
                t.strftime("%Y-%m-%d %H:%M") if t else "",
                str(s.get("agent") or ""),
                str(s.get("repo") or ""),
                "" if s.get("exit_code") is None else str(s.get("exit_code")),
                str(s.get("files_changed") or 0),
                str(s.get("commands") or 0),
                str(s.get("calls") or 0),
                _money(s.get("cost_usd")),
            ]
        )
    return rows
