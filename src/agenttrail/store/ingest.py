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
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import DBAPIError

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.redact import redact_values
from agenttrail.store import event_fields
from agenttrail.store.bulk import by_columns, clipped, insert_rows, sqlite_time
from agenttrail.store.engine import bulk_transaction
from agenttrail.store.event_fields import END_FIELDS, SESSION_FIELDS, BadEvent
from agenttrail.store.locks import lock_sessions
from agenttrail.store.tables import agent_session, event, file_change, git_commit, llm_call
from agenttrail.store.team_locks import OTHER_TEAM, CallsLock, batch_teams

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
    if ts.tzinfo is UTC:  # what events carry (parsed or made here): one call, not two
        return ts.replace(tzinfo=None)
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


# Payloads redacted per call of redact_values: its prefilter's cost is mostly per call (a seed-demo payload
# 13 µs alone, 7 µs in a chunk); a chunk bounds how many strings a rule that one payload needs runs on.
_REDACT_CHUNK = 256


def _redacted(events: Sequence[Event]) -> list[Event]:
    out: list[Event] = []
    for i in range(0, len(events), _REDACT_CHUNK):
        chunk = events[i : i + _REDACT_CHUNK]
        payloads = redact_values([e.payload for e in chunk])
        out += [
            e if p is e.payload else Event(e.session_id, e.kind, e.ts, p, e.event_id)
            for e, p in zip(chunk, payloads, strict=True)
        ]
    return out


@dataclass(slots=True)
class Prepared:
    """A batch made ready outside the store's transaction: redacted, and each event id's row built (the
    first event with that id). A server prepares a batch in the request's thread, so that on SQLite the
    one writer thread spends its time on the database while the next batch is prepared beside it."""

    events: list[Event]
    rows: dict[str, dict[str, Any]]

    @classmethod
    def joined(cls, parts: Sequence[Prepared]) -> Prepared:
        rows: dict[str, dict[str, Any]] = {}
        for part in parts:
            for event_id, row in part.rows.items():
                rows.setdefault(event_id, row)
        return cls([e for part in parts for e in part.events], rows)


def prepare(events: Sequence[Event], *, sqlite: bool = False) -> Prepared:
    """`sqlite`: the rows' times as the text SQLite stores (what `store.bulk` would make of them), so
    that a server's request thread, not the one writer thread, formats them."""
    # Redacted here whatever the source (an outbox redacts too; twice changes nothing): prompts,
    # commands and diffs hold secrets, and the store must never keep them.
    sent = _redacted(events)
    event_fields.check(sent)  # what is stored: a redacted value may be longer or shorter
    rows: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(sent):
        if e.event_id not in rows:  # one event id may repeat inside a batch too; the first one counts
            try:
                payload = orjson.dumps(e.payload, default=str).decode()
            except orjson.JSONEncodeError as err:  # an integer past 64 bits, from a decoder that made one
                raise BadEvent(f"event {i} ({e.kind} {e.event_id}): the payload cannot be stored: {err}", i) from None
            if "\\u0000" in payload:  # JSON's only way to write a NUL; PostgreSQL's text cannot hold one
                e = sent[i] = Event(e.session_id, e.kind, e.ts, _without_nul(e.payload), e.event_id)
                payload = orjson.dumps(e.payload, default=str).decode()
            ts = _naive(e.ts)
            rows[e.event_id] = {
                "event_id": e.event_id,
                "session_id": e.session_id,
                "ts": sqlite_time(ts) if sqlite else ts,
                "kind": e.kind,
                "payload": payload,
            }
    return Prepared(sent, rows)


def _without_nul(value: Any) -> Any:
    """A payload with each NUL character replaced by U+FFFD, in keys and text at any depth. A damaged
    transcript or a client's `\\u0000` carries one, and PostgreSQL refused the whole batch for it (the
    server's 503, which an outbox retries for ever); it is the same record on either database."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def ingest(engine: Engine, events: Sequence[Event], who: Attribution | None = None) -> IngestResult:
    return ingest_prepared(engine, prepare(events, sqlite=engine.dialect.name == "sqlite"), who)


def ingest_prepared(engine: Engine, prepared: Prepared, who: Attribution | None = None) -> IngestResult:
    new_ids = ingest_ids(engine, prepared, who)
    return IngestResult(accepted=len(new_ids), duplicates=len(prepared.events) - len(new_ids))


def ingest_ids(engine: Engine, prepared: Prepared, who: Attribution | None = None) -> set[str]:
    """`ingest` of a prepared batch, returning the ids of the events that were new (the others were
    stored already)."""
    if not prepared.events:
        return set()
    who = who or Attribution()
    sent = prepared.events
    # Transcript and OTLP records join the traced session they belong to (agenttrail.importers.join).
    # Imported here, not at the top: `importers.join` imports this module (Attribution, iso_week).
    from agenttrail.importers import join

    events = join.resolve_events(engine, sent)
    first: dict[str, Event] = {}
    for e in events:
        first.setdefault(e.event_id, e)
    rows = []
    for e in first.values():
        row = prepared.rows[e.event_id]
        if row["session_id"] != e.session_id:  # moved by the join to its traced session
            row = {**row, "session_id": e.session_id}
        rows.append(row)
    batch_sessions = {e.session_id for e in sent} | {e.session_id for e in first.values()}
    try:
        new_ids = _store(engine, rows, list(first.values()), batch_sessions, who, by_team=True)
    except DBAPIError as e:
        # A row of a team the batch did not lock (migration 0013's guard): stored again, store-wide lock.
        if getattr(e.orig, "sqlstate", None) != OTHER_TEAM:
            raise
        new_ids = _store(engine, rows, list(first.values()), batch_sessions, who, by_team=False)
    return new_ids


def _store(
    engine: Engine,
    rows: list[dict[str, Any]],
    first: list[Event],
    batch_sessions: set[str],
    who: Attribution,
    *,
    by_team: bool,
) -> set[str]:
    """One transaction: the event rows, then the rows they imply. Returns the ids of the new events."""
    from agenttrail.importers import join

    with bulk_transaction(engine) as conn:
        sessions = batch_sessions | _takeover_candidates(conn, first)
        lock_sessions(conn, sessions)
        calls_lock = CallsLock(conn, batch_teams(conn, first, who, sessions) if by_team else None)
        new_ids = set(insert_rows(conn, event, rows, ignore=True, returning=event.c.event_id))
        fresh = [e for e in first if e.event_id in new_ids]
        # The calls' lock as late as it can be: before the join if it may write calls, else before
        # ingest's own sessions and calls (the events, file changes and commits before them still overlap).
        if _join_touches_calls(fresh):
            calls_lock.take()
        fresh = join.materialise(conn, fresh, who)
        _materialise(conn, fresh, who, calls_lock)
        join.after(conn, fresh)
    return new_ids


def _takeover_candidates(conn: Connection, events: list[Event]) -> set[str]:
    """PostgreSQL: the imported sessions `join.after` may take over (relink to a traced session of the
    batch), so they are locked with the batch's own sessions, in the same order, before any write.

    The take-over moves an imported session's events, calls and roll-up rows while this ingest holds the
    calls' lock; an ingest of that imported session (a transcript upload) holding its roll-up row and
    waiting for the calls' lock deadlocked with it. A superset of what `absorb` matches: imported sessions
    with an agent session id or a cwd of the batch's traced sessions (from their events or stored rows).
    One that appears after this lookup was committed by an ingest that no longer holds it."""
    if conn.dialect.name != "postgresql":
        return set()
    from agenttrail.importers.to_events import IMPORTED, is_imported_session_id

    traced: set[str] = set()
    asids: set[str] = set()
    cwds: set[str] = set()
    for e in events:
        if e.kind not in (ev.SESSION_START, ev.SESSION_END) or e.payload.get("source") == IMPORTED:
            continue
        if is_imported_session_id(e.session_id):
            continue
        traced.add(e.session_id)
        for key, into in (("agent_session_id", asids), ("cwd", cwds)):
            value = e.payload.get(key)
            if isinstance(value, str) and value:
                into.add(value)
    if not traced:
        return set()
    # One statement text whatever the batch (an array, not an IN list): this runs for every batch that
    # holds a session's start or end, and SQLAlchemy's select() cost ~0.7 ms of CPU a batch.
    stored = conn.exec_driver_sql(
        "SELECT agent_session_id, cwd FROM agent_session WHERE session_id = ANY(%s) "
        "AND (agent_session_id IS NOT NULL OR cwd IS NOT NULL)",
        (sorted(traced),),
    )
    for asid, cwd in stored:
        asids.update([asid] if asid else [])
        cwds.update([cwd] if cwd else [])
    if not (asids or cwds):
        return set()
    s = agent_session.c
    found: set[str] = set()
    for chunk in _chunks(sorted(asids), 500):
        found.update(conn.scalars(select(s.session_id).where(s.source == IMPORTED, s.agent_session_id.in_(chunk))))
    for chunk in _chunks(sorted(cwds), 500):
        found.update(conn.scalars(select(s.session_id).where(s.source == IMPORTED, s.cwd.in_(chunk))))
    return found


def _join_touches_calls(fresh: list[Event]) -> bool:
    """Whether `join.materialise` may write calls: an imported session's start or end (it claims and
    relinks calls), or a transcript or OTLP call (the join inserts it)."""
    from agenttrail.importers.join import IMPORTED, IMPORTER_SOURCES

    for e in fresh:
        if e.kind in (ev.SESSION_START, ev.SESSION_END) and e.payload.get("source") == IMPORTED:
            return True
        record = e.payload.get("record") if e.kind == ev.LLM_CALL else None
        if isinstance(record, dict) and record.get("source") in IMPORTER_SOURCES:
            return True
    return False


def _materialise(conn: Connection, fresh: list[Event], who: Attribution, calls_lock: CallsLock) -> None:
    """The rows the fresh events imply, a few statements per table for the whole batch.

    One statement per event cost ~1 ms each (SQLAlchemy builds and caches a statement per `.values()`,
    and on PostgreSQL every statement fires the roll-up triggers once); the result is the same as
    applying the events one by one in time order, session starts first."""
    sessions: list[Event] = []
    snapshots: list[Event] = []
    committed: list[Event] = []
    calls: list[Event] = []
    for e in fresh:
        if e.kind in (ev.SESSION_START, ev.SESSION_END):
            sessions.append(e)
        elif e.kind in SNAPSHOT_KINDS and e.payload.get("source") == "snapshot":
            snapshots.append(e)
        elif e.kind == ev.COMMIT:
            committed.append(e)
        elif e.kind == ev.LLM_CALL and e.payload.get("record"):
            calls.append(e)
    # Each part in the order of the whole batch sorted (a stable sort of a part keeps that order): most
    # of a batch is in no part, and sorting all of it was the SQLite writer's largest Python cost.
    for part in (sessions, snapshots, committed, calls):
        part.sort(key=_applied_order)
    files = [_file_change_row(e) for e in snapshots]
    commits = [_commit_row(e) for e in committed]
    # File changes and commits before the sessions: a session's start moves its week's roll-up row, which
    # takes the calls' lock (migration 0011) until commit, and concurrent ingests wait for that lock in
    # turn; the roll-ups come out the same in any order, as they do when a batch's parts arrive apart.
    insert_rows(conn, file_change, files)
    # In sha order: two ingests of one commit (two sessions) each wait for the other's row in one order.
    insert_rows(conn, git_commit, sorted(commits, key=itemgetter("sha")), ignore=True)
    if calls or sessions:  # a session's start moves its week's row; calls, links and absorbs of calls
        calls_lock.take()
    _sessions(conn, sessions, who)
    _llm_calls(conn, calls, who)
    _link_agent_sessions(conn, [e for e in sessions if e.kind == ev.SESSION_END])


def _applied_order(e: Event) -> tuple[bool, datetime]:
    """Events are applied in time order, session starts first."""
    return (e.kind != ev.SESSION_START, e.ts)


def _session_values(e: Event, who: Attribution) -> dict[str, Any]:
    p = e.payload
    values: dict[str, Any] = {k: p[k] for k in SESSION_FIELDS if p.get(k) is not None}
    if isinstance(p.get("command"), list):
        values["command"] = orjson.dumps(p["command"]).decode()
    values.setdefault("engineer", who.engineer)
    for k in ("team_id", "project_id", "engineer_id"):
        v = p.get(k) if isinstance(p.get(k), int) else getattr(who, k)
        if v is not None:
            values[k] = v
    return values


def _start_values(e: Event, who: Attribution) -> dict[str, Any]:
    started = _naive(e.ts)
    return {"started_at": started, "week": iso_week(started), **_session_values(e, who)}


def _end_values(e: Event) -> dict[str, Any]:
    p = e.payload
    return {"ended_at": _naive(e.ts), **{k: p[k] for k in END_FIELDS if p.get(k) is not None}}


def _sessions(conn: Connection, events: list[Event], who: Attribution) -> None:
    """Create each session row if missing, fill in its start, then its end.

    Per session, in event order: a start creates the row (or, when an end or an earlier batch made it,
    overwrites the start fields); an end creates a placeholder from its own time when no start came,
    then sets the end fields. A row new to this batch is inserted once with all of it."""
    new: dict[str, dict[str, Any]] = {}  # the row to insert if missing
    starts: dict[str, dict[str, Any]] = {}  # start fields for a row that already exists
    ends: dict[str, dict[str, Any]] = {}
    for e in events:  # starts first, then by time
        sid = e.session_id
        if e.kind == ev.SESSION_START:
            values = _start_values(e, who)
            starts.setdefault(sid, {}).update(values)
            new.setdefault(sid, {"session_id": sid}).update(values)
        else:
            if sid not in new:
                new[sid] = {"session_id": sid, **_start_values(e, who)}
            ends.setdefault(sid, {}).update(_end_values(e))
    rows = [{**row, **ends.get(sid, {})} for sid, row in new.items()]
    made = set(insert_rows(conn, agent_session, rows, ignore=True, returning=agent_session.c.session_id))
    # The rows that existed already: the start fields, then the end fields, as updates.
    for fields in (starts, ends):
        updates = clipped(agent_session, [{"sid": sid, **v} for sid, v in fields.items() if sid not in made])
        for group in by_columns(updates):
            # No values(): the SET clause is the columns the parameters name.
            conn.execute(update(agent_session).where(agent_session.c.session_id == bindparam("sid")), group)


def _link_agent_sessions(conn: Connection, ends: list[Event]) -> None:
    """The agent's own id is often learnt only at the end (its transcript, a gateway header); its
    gateway calls made without a session key are tied to the session by it."""
    links = [
        {"sid": e.session_id, "key": e.payload["agent_session_id"]} for e in ends if e.payload.get("agent_session_id")
    ]
    _claim_calls(conn, llm_call.c.agent_session_id, links)


def _claim_calls(conn: Connection, by: Any, claims: list[dict[str, Any]]) -> None:
    """Calls stored without a session (`by` = key) gain the session id (sid); one that has one keeps it."""
    if claims:
        stmt = update(llm_call).where(by == bindparam("key")).where(llm_call.c.session_id.is_(None))
        conn.execute(stmt.values(session_id=bindparam("sid")), claims)


def _file_change_row(e: Event) -> dict[str, Any]:
    p = e.payload
    return {
        "session_id": e.session_id,
        "path": str(p.get("path", "")),
        "change": p.get("change") or SNAPSHOT_KINDS[e.kind],
        "old_path": p.get("old_path"),
        "lines_added": int(p.get("lines_added") or 0),
        "lines_removed": int(p.get("lines_removed") or 0),
        "binary": bool(p.get("binary")),
        "diff": p.get("diff"),
        "diff_truncated": bool(p.get("diff_truncated")),
    }


def _commit_row(e: Event) -> dict[str, Any]:
    p = e.payload
    committed = p.get("committed_at")
    when = None
    if isinstance(committed, str):
        try:
            when = _naive(datetime.fromisoformat(committed.replace("Z", "+00:00")))
        except ValueError:
            when = None
    return {
        "sha": str(p.get("sha", "")),
        "session_id": e.session_id,
        "repo": p.get("repo"),
        "message": p.get("message"),
        "author": p.get("author"),
        "committed_at": when or _naive(e.ts),
        "files": orjson.dumps(p.get("files") or []).decode(),
    }


_CALL_COLUMNS = frozenset(c.name for c in llm_call.columns) - {"started_at", "ended_at"}


def _llm_calls(conn: Connection, calls: list[Event], who: Attribution) -> None:
    """Calls the gateway did not see (subscription plans, unenrolled laptops) enter the record; one it
    did see is not counted twice (same provider request id): it only gains the session id it lacked."""
    request_ids = {r for e in calls if (r := e.payload["record"].get("request_id"))}
    seen: dict[str, str] = {}  # request id -> a stored call with it
    for chunk in _chunks(sorted(request_ids), 500):
        for call_id, request_id in conn.execute(
            select(llm_call.c.call_id, llm_call.c.request_id).where(llm_call.c.request_id.in_(chunk))
        ):
            seen.setdefault(request_id, call_id)
    rows: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}  # request id -> a row of this batch with it
    claims: list[dict[str, Any]] = []
    for e in calls:
        r = e.payload["record"]
        request_id = r.get("request_id")
        if request_id in seen:
            claims.append({"key": seen[request_id], "sid": e.session_id})
            continue
        if request_id in pending:
            if pending[request_id]["session_id"] is None:
                pending[request_id]["session_id"] = e.session_id
            continue
        values = {k: v for k, v in r.items() if k in _CALL_COLUMNS}
        values.update(
            call_id=r.get("call_id") or e.event_id,
            started_at=_naive(e.ts),
            session_id=e.session_id,
            source=r.get("source") or "transcript",
            status=r.get("status") or "ok",
            provider=r.get("provider") or "unknown",
        )
        for k in ("team_id", "project_id", "engineer_id"):
            values.setdefault(k, getattr(who, k))
        rows.append(values)
        if request_id:
            pending[request_id] = values
    _claim_calls(conn, llm_call.c.call_id, claims)
    insert_rows(conn, llm_call, rows, ignore=True)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
