"""Content retention: past a cutoff, drop what was said and typed, keep what it cost and changed.

DESIGN.md: "purge content on a retention schedule while keeping the aggregates". Content is the
dialogue (prompt, response, tool_call and tool_result events), commands (exec events' argv and each
session's launch command, cut to the program's name), diffs, and cached responses. The roll-ups that
reports and the `sessions` view read (cost, tokens, files and lines changed, commands counted) are kept
by insert triggers and have no delete or payload trigger, so they stay as they were; so do file paths,
packages, connections, commits and every `llm_calls` row.

A purged event keeps a small allowlist of identifying fields (which tool, which process, which call) and
`"purged": true`, so a security reviewer still sees that something happened and when. Purging is
idempotent and resumable: it walks the `(kind, ts)` index in keyset order, one batch per transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, bindparam, text

from agenttrail.config import ConfigError, Settings

CONTENT_KINDS = ("prompt", "response", "tool_call", "tool_result", "exec")
# Fields that say which thing happened, never what was said: short scalars only survive.
KEPT_FIELDS = frozenset(
    {
        "agent",
        "agent_session_id",
        "agenttrail_session_id",
        "source",
        "pid",
        "ppid",
        "tid",
        "tool",
        "name",
        "tool_use_id",
        "call_id",
        "message_id",
        "request_id",
        "subagent_id",
        "model",
        "role",
        "status",
        "is_error",
        "exit_code",
        "ok",
        "errno",
        "duration_ms",
        "count",
    }
)
MAX_KEPT_STRING = 200
PURGED_PREFIX = b'{"purged":true'


@dataclass(frozen=True, slots=True)
class Purged:
    events: int = 0
    diffs: int = 0
    commands: int = 0
    cached_responses: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "diffs": self.diffs,
            "commands": self.commands,
            "cached_responses": self.cached_responses,
        }


def purged_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"purged": True}
    for k, v in payload.items():
        if k in KEPT_FIELDS and (v is None or isinstance(v, bool | int | float) or _short(v)):
            kept[k] = v
    if kind == "exec":
        argv = payload.get("argv")
        if isinstance(argv, list) and argv and isinstance(argv[0], str):
            kept["program"] = os.path.basename(argv[0])
    return kept


def _object(raw: str) -> Mapping[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _short(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= MAX_KEPT_STRING


def _program_only(command: str | None) -> str | None:
    try:
        argv = orjson.loads(command) if command else None
    except orjson.JSONDecodeError:
        return "[]"
    if not isinstance(argv, list):
        return "[]"
    return orjson.dumps([os.path.basename(str(argv[0]))] if argv else []).decode()


def _events(engine: Engine, before: datetime, batch: int, dry_run: bool, progress: Callable[[int], None]) -> int:
    done = 0
    page = text(
        "SELECT event_id, ts, payload FROM event WHERE kind = :kind AND ts < :before "
        "AND (ts > :ts OR (ts = :ts AND event_id > :id)) AND payload NOT LIKE :purged "
        "ORDER BY ts, event_id LIMIT :n"
    )
    write = text("UPDATE event SET payload = :payload WHERE event_id = :event_id")
    # Purged rows are skipped by the database, so a daily run reads only what is new to purge.
    params = {"before": before, "n": batch, "purged": PURGED_PREFIX.decode() + "%"}
    for kind in CONTENT_KINDS:
        last_ts, last_id = datetime.min, ""
        while True:
            with engine.begin() as conn:
                rows = conn.execute(page, {**params, "kind": kind, "ts": last_ts, "id": last_id}).all()
                if not rows:
                    break
                last_ts, last_id = rows[-1].ts, rows[-1].event_id
                todo = [
                    {"event_id": r.event_id, "payload": orjson.dumps(purged_payload(kind, _object(r.payload))).decode()}
                    for r in rows
                ]
                if todo and not dry_run:
                    conn.execute(write, todo)
            done += len(todo)
            progress(len(rows))
    return done


def _sessions_before(conn: Any, before: datetime) -> list[str]:
    return list(
        conn.execute(text("SELECT session_id FROM agent_session WHERE started_at < :b"), {"b": before}).scalars()
    )


def _diffs_and_commands(engine: Engine, before: datetime, batch: int, dry_run: bool) -> tuple[int, int]:
    diffs = commands = 0
    with engine.connect() as conn:
        ids = _sessions_before(conn, before)
    clear = text("UPDATE file_change SET diff = NULL WHERE diff IS NOT NULL AND session_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    count = text("SELECT COUNT(*) FROM file_change WHERE diff IS NOT NULL AND session_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    launch = text("SELECT session_id, command FROM agent_session WHERE session_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    cut = text("UPDATE agent_session SET command = :command WHERE session_id = :session_id")
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        with engine.begin() as conn:
            if dry_run:
                diffs += conn.execute(count, {"ids": chunk}).scalar_one()
            else:
                diffs += conn.execute(clear, {"ids": chunk}).rowcount
            todo = []
            for sid, command in conn.execute(launch, {"ids": chunk}):
                short = _program_only(command)
                if command is not None and short != command:
                    todo.append({"session_id": sid, "command": short})
            if todo and not dry_run:
                conn.execute(cut, todo)
            commands += len(todo)
    return diffs, commands


def _cached_responses(engine: Engine, before: datetime, dry_run: bool) -> int:
    where = "FROM response_cache WHERE created_at < :b"
    with engine.begin() as conn:
        if dry_run:
            return int(conn.execute(text(f"SELECT COUNT(*) {where}"), {"b": before}).scalar_one())
        return int(conn.execute(text(f"DELETE {where}"), {"b": before}).rowcount)


def count_content_events(engine: Engine, before: datetime) -> int:
    """How many content events lie before `before` (purged or not): the size of a purge's walk."""
    q = text("SELECT COUNT(*) FROM event WHERE kind IN :kinds AND ts < :b").bindparams(
        bindparam("kinds", expanding=True)
    )
    with engine.connect() as conn:
        return int(conn.execute(q, {"kinds": list(CONTENT_KINDS), "b": _naive(before)}).scalar_one())


def purge_content(
    engine: Engine,
    before: datetime,
    *,
    batch: int = 2000,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda n: None,
) -> Purged:
    """Purge content recorded before `before` (see the module docstring). `progress` gets events walked."""
    cutoff = _naive(before)
    events = _events(engine, cutoff, batch, dry_run, progress)
    diffs, commands = _diffs_and_commands(engine, cutoff, batch, dry_run)
    return Purged(events, diffs, commands, _cached_responses(engine, cutoff, dry_run))


def _naive(ts: datetime) -> datetime:
    # The store keeps naive UTC datetimes.
    return ts if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    content_days: int | None = None  # None: content is kept for ever
    every_s: float = 24 * 3600.0


def retention_settings(settings: Settings) -> RetentionSettings:
    """The `[retention]` table of agenttrail.toml."""
    raw = settings.section("retention")
    unknown = set(raw) - {"content_days", "every_hours"}
    if unknown:
        raise ConfigError(f"[retention] has unknown keys {sorted(unknown)}; known: content_days, every_hours")
    days = raw.get("content_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ConfigError(f"[retention] content_days must be a whole number of days >= 1, not {days!r}")
    hours = raw.get("every_hours", 24)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise ConfigError(f"[retention] every_hours must be a positive number, not {hours!r}")
    return RetentionSettings(days, float(hours) * 3600.0)
