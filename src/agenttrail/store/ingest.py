"""Idempotent ingest of events, and the rows they imply.

Events are the only transport from capture to store. Besides the `event` row itself, some
events materialise rows of their own, only the first time they arrive:

- `session_start` / `session_end` create and complete the `agent_session` row (either may
  arrive first: a killed run's end, or an upload out of order);
- `file_create|file_write|file_delete|file_rename` with `payload.source == "snapshot"` carry the
  workspace diff and become `file_change` rows (strace's own file events do not);
- `commit` becomes a `git_commit` row;
- `llm_call` (from transcripts and OTLP) becomes an `llm_call` row unless the gateway already
  recorded the same provider request id.

So a re-sent batch changes nothing: only newly inserted event ids are materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.redact import redact_obj
from agenttrail.store.tables import agent_session, event, file_change, git_commit, llm_call

SNAPSHOT_KINDS = {
    ev.FILE_CREATE: "created",
    ev.FILE_WRITE: "modified",
    ev.FILE_DELETE: "deleted",
    ev.FILE_RENAME: "renamed",
}


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who the events belong to, from the key that uploaded them."""

    team_id: int | None = None
    project_id: int | None = None
    engineer_id: int | None = None
    engineer: str | None = None


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0


def iso_week(when: datetime) -> str:
    y, w, _ = when.isocalendar()
    return f"{y}-W{w:02d}"


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _insert_ignore(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


def ingest(engine: Engine, events: Sequence[Event], who: Attribution | None = None) -> IngestResult:
    if not events:
        return IngestResult()
    who = who or Attribution()
    # Redacted here whatever the source (an outbox redacts too; twice changes nothing): prompts,
    # commands and diffs hold secrets, and the store must never keep them.
    events = [Event(e.session_id, e.kind, e.ts, redact_obj(e.payload), e.event_id) for e in events]
    # Transcript and OTLP records join the traced session they belong to (agenttrail.importers.join).
    # Imported here, not at the top: the importers package loads protobuf, which most callers never need.
    from agenttrail.importers import join

    events = join.resolve_events(engine, events)
    rows = [
        {
            "event_id": e.event_id,
            "session_id": e.session_id,
            "ts": _naive(e.ts),
            "kind": e.kind,
            "payload": orjson.dumps(e.payload, default=str).decode(),
        }
        for e in events
    ]
    # One event id may repeat inside a batch too; the first one counts.
    unique = list({r["event_id"]: r for r in reversed(rows)}.values())
    with engine.begin() as conn:
        new_ids: set[str] = set()
        for i in range(0, len(unique), 1000):
            chunk = unique[i : i + 1000]
            stmt = _insert_ignore(conn, event).returning(event.c.event_id)
            new_ids.update(conn.execute(stmt, chunk).scalars().all())
        fresh = [e for e in events if e.event_id in new_ids]
        seen: set[str] = set()
        fresh = [e for e in fresh if not (e.event_id in seen or seen.add(e.event_id))]  # type: ignore[func-returns-value]
        fresh = join.materialise(conn, fresh, who)
        _materialise(conn, fresh, who)
        join.after(conn, fresh)
    return IngestResult(accepted=len(new_ids), duplicates=len(events) - len(new_ids))


def _materialise(conn: Connection, fresh: list[Event], who: Attribution) -> None:
    fresh.sort(key=lambda e: (e.kind != ev.SESSION_START, e.ts))
    for e in fresh:
        if e.kind == ev.SESSION_START:
            _session_start(conn, e, who)
        elif e.kind == ev.SESSION_END:
            _session_end(conn, e, who)
        elif e.kind in SNAPSHOT_KINDS and e.payload.get("source") == "snapshot":
            _file_change(conn, e)
        elif e.kind == ev.COMMIT:
            _commit(conn, e)
        elif e.kind == ev.LLM_CALL and e.payload.get("record"):
            _llm_call(conn, e, who)


_SESSION_FIELDS = (
    "engineer",
    "repo",
    "repo_path",
    "branch",
    "head_before",
    "agent",
    "agent_version",
    "agent_session_id",
    "cwd",
    "host",
    "source",
    "sandboxed",
)


def _session_values(e: Event, who: Attribution) -> dict[str, Any]:
    p = e.payload
    values: dict[str, Any] = {k: p[k] for k in _SESSION_FIELDS if p.get(k) is not None}
    if isinstance(p.get("command"), list):
        values["command"] = orjson.dumps(p["command"]).decode()
    values.setdefault("engineer", who.engineer)
    for k in ("team_id", "project_id", "engineer_id"):
        v = p.get(k) if isinstance(p.get(k), int) else getattr(who, k)
        if v is not None:
            values[k] = v
    return values


def _ensure_session(conn: Connection, e: Event, who: Attribution) -> bool:
    """Create the session row if missing; True if it was created here."""
    started = _naive(e.ts)
    stmt = (
        _insert_ignore(conn, agent_session)
        .values(session_id=e.session_id, started_at=started, week=iso_week(started), **_session_values(e, who))
        .returning(agent_session.c.session_id)
    )
    return conn.execute(stmt).first() is not None


def _session_start(conn: Connection, e: Event, who: Attribution) -> None:
    if _ensure_session(conn, e, who):
        return
    # An end (or another event) arrived first and made a placeholder: fill in the start.
    started = _naive(e.ts)
    conn.execute(
        update(agent_session)
        .where(agent_session.c.session_id == e.session_id)
        .values(started_at=started, week=iso_week(started), **_session_values(e, who))
    )


def _session_end(conn: Connection, e: Event, who: Attribution) -> None:
    p = e.payload
    _ensure_session(conn, e, who)
    values: dict[str, Any] = {"ended_at": _naive(e.ts)}
    for k in ("exit_code", "status", "head_after", "agent_session_id"):
        if p.get(k) is not None:
            values[k] = p[k]
    conn.execute(update(agent_session).where(agent_session.c.session_id == e.session_id).values(**values))
    if p.get("agent_session_id"):
        # The agent's own id is often learnt only at the end (its transcript, a gateway header); its
        # gateway calls made without a session key are tied to the session by it.
        conn.execute(
            update(llm_call)
            .where(llm_call.c.agent_session_id == p["agent_session_id"])
            .where(llm_call.c.session_id.is_(None))
            .values(session_id=e.session_id)
        )


def _file_change(conn: Connection, e: Event) -> None:
    p = e.payload
    conn.execute(
        insert(file_change).values(
            session_id=e.session_id,
            path=str(p.get("path", "")),
            change=p.get("change") or SNAPSHOT_KINDS[e.kind],
            old_path=p.get("old_path"),
            lines_added=int(p.get("lines_added") or 0),
            lines_removed=int(p.get("lines_removed") or 0),
            binary=bool(p.get("binary")),
            diff=p.get("diff"),
            diff_truncated=bool(p.get("diff_truncated")),
        )
    )


def _commit(conn: Connection, e: Event) -> None:
    p = e.payload
    committed = p.get("committed_at")
    when = None
    if isinstance(committed, str):
        try:
            when = _naive(datetime.fromisoformat(committed.replace("Z", "+00:00")))
        except ValueError:
            when = None
    stmt = _insert_ignore(conn, git_commit).values(
        sha=str(p.get("sha", "")),
        session_id=e.session_id,
        repo=p.get("repo"),
        message=p.get("message"),
        author=p.get("author"),
        committed_at=when or _naive(e.ts),
        files=orjson.dumps(p.get("files") or []).decode(),
    )
    conn.execute(stmt)


def _llm_call(conn: Connection, e: Event, who: Attribution) -> None:
    """A call the gateway did not see (subscription plans, unenrolled laptops) enters the record;
    one it did see is not counted twice (same provider request id)."""
    r = e.payload["record"]
    request_id = r.get("request_id")
    if request_id:
        dup = conn.execute(select(llm_call.c.call_id).where(llm_call.c.request_id == request_id).limit(1)).first()
        if dup is not None:
            conn.execute(
                update(llm_call)
                .where(llm_call.c.call_id == dup.call_id)
                .where(llm_call.c.session_id.is_(None))
                .values(session_id=e.session_id)
            )
            return
    started = _naive(e.ts)
    values = {c.name: r[c.name] for c in llm_call.columns if c.name in r and c.name not in ("started_at", "ended_at")}
    values.update(
        call_id=r.get("call_id") or e.event_id,
        started_at=started,
        session_id=e.session_id,
        source=r.get("source") or "transcript",
        status=r.get("status") or "ok",
        provider=r.get("provider") or "unknown",
    )
    for k in ("team_id", "project_id", "engineer_id"):
        values.setdefault(k, getattr(who, k))
    conn.execute(_insert_ignore(conn, llm_call).values(**values))
