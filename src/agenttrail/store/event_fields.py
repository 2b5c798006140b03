"""What ingest copies from an event into typed columns, checked before the batch is stored.

An event is kept as its JSON whatever its payload holds. But a session's repo, a call's token counts,
a file's line counts and a commit's author go into columns of a type and a length, and a value that
does not fit (a dict where text belongs, a count past the column's integers, a name longer than the
column, a time the calendar cannot put in UTC) made the database refuse the whole batch. The server
answered 503, and an outbox retries a 503 for ever. It is the sender's mistake, so it is a
`BadEvent` naming the event and the field: the server's 400.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, String, Table

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.store.tables import agent_session, file_change, git_commit, llm_call

INT32 = 2**31
INT64 = 2**63
# Columns that name a thing other rows are matched on: never shortened.
IDENTITIES = frozenset({"call_id", "request_id", "agent_session_id", "session_id"})


class BadEvent(ValueError):
    """An event of the batch cannot be stored as sent; the message names it and what is wrong, `index`
    is its place in the batch."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def check(events: Iterable[Event]) -> None:
    """Raise BadEvent for the first event whose typed fields would not fit their columns."""
    for i, e in enumerate(events):
        tz = e.ts.tzinfo
        # Most events are in UTC already, and most kinds have no typed fields: both checks are skipped.
        fault = _time_fault(e) if tz is not None and tz is not UTC else None
        if "\x00" in e.event_id or "\x00" in e.session_id:
            fault = "event_id and session_id must not contain a NUL character"
        if fault is None and e.kind in _CHECKED:
            fault = next(_faults(e), None)
        if fault:
            raise BadEvent(f"event {i} ({e.kind} {e.event_id}): {fault}", i)


def _time_fault(e: Event) -> str | None:
    try:
        e.ts.astimezone(UTC)
    except (OverflowError, ValueError):
        return f"ts {e.ts.isoformat()} is outside the years UTC can hold (1 to 9999)"
    return None


# What ingest copies from a session's start and end (`store.ingest`).
SESSION_FIELDS = (
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
END_FIELDS = ("exit_code", "status", "head_after", "agent_session_id")
# Ingest takes these from a session's payload only when they are integers (else the key's own).
_SESSION_IDS = ("team_id", "project_id", "engineer_id")
_SNAPSHOT_KEYS = ("change", "old_path", "diff")
_COMMIT_KEYS = ("repo", "message", "author")
_SNAPSHOT_KINDS = frozenset({ev.FILE_CREATE, ev.FILE_WRITE, ev.FILE_DELETE, ev.FILE_RENAME})
_CHECKED = frozenset({ev.SESSION_START, ev.SESSION_END, ev.LLM_CALL, ev.COMMIT, ev.EXEC, *_SNAPSHOT_KINDS})


def _faults(e: Event) -> Iterator[str]:
    p = e.payload
    kind = e.kind
    if kind in (ev.SESSION_START, ev.SESSION_END):
        yield from _columns(agent_session, p, (*SESSION_FIELDS, *END_FIELDS), "payload")
        for k in _SESSION_IDS:
            v = p.get(k)
            if isinstance(v, int) and not -INT32 <= v < INT32:
                yield f"payload.{k} must be a whole number below {INT32:,}"
    elif kind == ev.LLM_CALL:
        record = p.get("record")
        if record is not None and not isinstance(record, dict):
            yield "payload.record must be an object"
        elif record:
            yield from _columns(llm_call, record, [k for k in record if k in _CALL_KEYS], "payload.record")
    elif kind in _SNAPSHOT_KINDS and p.get("source") == "snapshot":
        yield from _columns(file_change, p, _SNAPSHOT_KEYS, "payload")
        for k in ("lines_added", "lines_removed"):
            yield from _count(p.get(k), f"payload.{k}")
    elif kind == ev.COMMIT:
        yield from _columns(git_commit, p, _COMMIT_KEYS, "payload")
        if len(str(p.get("sha", ""))) > 64:
            yield "payload.sha is longer than 64 characters"
    elif kind == ev.EXEC:
        argv = p.get("argv")
        if argv is not None and not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            yield "payload.argv must be a list of strings"


_CALL_KEYS = frozenset(llm_call.c.keys()) - {"started_at", "ended_at"}


@dataclass(frozen=True, slots=True)
class _Kinds:
    """A table's columns by what fits them at a glance; the rest, and any value these do not pass, go
    through `_fits`. Every call record and session is checked, field by field, on every ingest."""

    text: frozenset[str]  # any str fits (longer text is cut where it is copied)
    ints: dict[str, int]  # a Python int fits when -bound <= v < bound
    floats: frozenset[str]

    @classmethod
    def of(cls, table: Table) -> _Kinds:
        text, ints, floats = set(), {}, set()
        for col in table.columns:
            kind = col.type
            if isinstance(kind, String) and not (col.name in IDENTITIES and kind.length is not None):
                text.add(col.name)
            elif isinstance(kind, Integer) and not isinstance(kind, Boolean):
                ints[col.name] = INT64 if isinstance(kind, BigInteger) else INT32
            elif isinstance(kind, Float):
                floats.add(col.name)
        return cls(frozenset(text), ints, frozenset(floats))


_KINDS = {t.name: _Kinds.of(t) for t in (agent_session, file_change, git_commit, llm_call)}


def _columns(table: Table, values: dict[str, Any], keys: Iterable[str], where: str) -> Iterator[str]:
    kinds = _KINDS[table.name]
    for k in keys:
        v = values.get(k)
        if v is None:
            continue
        t = type(v)  # exactly: a bool is an int, and must take the long way
        if (
            (t is str and k in kinds.text)
            or (t is int and -kinds.ints.get(k, 0) <= v < kinds.ints.get(k, 0))
            or (t is float and k in kinds.floats and math.isfinite(v))
        ):
            continue
        fault = _fits(table.c[k], v)
        if fault:
            yield f"{where}.{k} {fault}"


def _fits(col: Column[Any], v: Any) -> str | None:
    kind = col.type
    if isinstance(kind, Boolean):
        return None if isinstance(v, bool) or v in (0, 1) else "must be true or false"
    if isinstance(kind, Integer):  # BigInteger too
        bound = INT64 if isinstance(kind, BigInteger) else INT32
        if not isinstance(v, int):
            return "must be a whole number"
        return None if -bound <= v < bound else f"must be a whole number below {bound:,}"
    if isinstance(kind, Float):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return "must be a number"
        try:
            return None if math.isfinite(float(v)) else "must be a finite number"
        except OverflowError:
            return "must be a finite number"
    if isinstance(kind, String):  # Text too
        if not isinstance(v, str):
            return "must be text"
        # Other text longer than its column is cut to it where it is copied (store.bulk); the event keeps
        # it whole. An identity cut short could match another's, so it is refused instead.
        length = kind.length
        if col.name in IDENTITIES and length is not None and len(v) > length:
            return f"is longer than {length} characters"
    return None


def _count(v: Any, where: str) -> Iterator[str]:
    """A line count, which ingest reads with int() (so "12" is 12)."""
    if not v:
        return
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        yield f"{where} must be a whole number"
        return
    if not -INT32 <= n < INT32:
        yield f"{where} must be a whole number below {INT32:,}"
