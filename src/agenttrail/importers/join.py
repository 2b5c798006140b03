"""The join: an agent's own records (transcripts, OTLP) and agenttrail's traced sessions as one record.

It runs inside ingest (`agenttrail.store.ingest` calls it in the same transaction), so a local
`agenttrail import`, an upload with `--server` and the OTLP receiver all join the same way, whichever
arrives first. Three hooks:

`resolve_events(engine, events)` — before events are stored. Events from importers name their agent session
(`payload.agent`, `payload.agent_session_id`) and sit under its own id (`claude-code:<uuid>`, see
`to_events.imported_session_id`). They move to a traced session when, in this order:

1. they carry `agenttrail_session_id` (`agenttrail run` puts it in Claude Code's OTEL_RESOURCE_ATTRIBUTES;
   a session-scoped key implies it);
2. a traced session recorded the same agent session id (`agent_session.agent_session_id`);
3. the gateway recorded one of their calls' provider request ids under a session;
4. the gateway recorded calls with that agent session id (Claude Code's `X-Claude-Code-Session-Id`,
   Codex's `session-id` header) under a session, around the same time;
5. failing all that, a traced session of the same agent in the same `cwd` spans theirs (their first and
   last record fall inside its start and end, give or take `SPAN_SLACK`); the largest overlap wins.

A match also records the agent session id on the traced session (when it has none), so later imports of
the same agent session take rule 2, and moves whatever was stored earlier under the agent session's own
id (`relink`).

`materialise(conn, fresh, who)` — for newly stored events: imported `session_start`/`session_end` make
or widen the agent session's own row (`source = "imported"`) and record the agent's own cost figure
(`agent_metric` `agenttrail.agent_cost_usd`, per process run); importer `llm_call` records become
`llm_call` rows **unless the call is already there**:

- the same `call_id` (a transcript and OTLP copy of one Claude call; or a later, fuller reading of a
  response that was still streaming): token counts keep their maximum;
- the same provider `request_id` (the gateway saw it): the gateway's row stays the one that counts, and
  gains the session and agent session id if it had none;
- a copy without a usable request id (Codex OTLP has none; the gateway records OpenAI's `x-request-id`,
  not the Responses id the rollout keeps): same provider, same agent session (or session), identical
  token counts, within `CALL_MATCH_WINDOW`, and not yet claimed by a copy from the same source. The row
  that stays notes the copy in its `tags` (`agenttrail.copy.<source>`), so each row absorbs one copy.

`after(conn, fresh)` — a traced session that arrived after its transcript (an outbox that was offline)
takes over the agent session stored under its own id: rule 2 by agent session id, rule 5 once the traced
session has ended.

Moving rows keeps the roll-ups exact: `llm_call` updates move their tokens and cost by trigger; the
event counts (prompts, tool calls) have no update trigger, so `relink` moves them itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenttrail.events import LLM_CALL, SESSION_END, SESSION_START, Event
from agenttrail.importers.to_events import IMPORTED, imported_session_id, is_imported_session_id
from agenttrail.store.bulk import insert_rows
from agenttrail.store.ingest import Attribution, iso_week
from agenttrail.store.tables import agent_metric, agent_session, event, llm_call, session_model, session_rollup

SPAN_SLACK = timedelta(minutes=2)
OPEN_SESSION_MAX = timedelta(hours=24)  # a traced session with no end contains nothing after this
CALL_MATCH_WINDOW = timedelta(minutes=15)
AGENT_COST = "agenttrail.agent_cost_usd"  # agent_metric name of the agent's own cost figure (transcripts)
IMPORTER_SOURCES = frozenset({"transcript", "otlp"})
TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
MATCH_TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
# session_rollup columns fed by event and file_change inserts (no update trigger moves them).
EVENT_ROLLUP = (
    "commands",
    "packages",
    "connections",
    "prompts",
    "tool_calls",
    "files_created",
    "files_modified",
    "files_deleted",
    "files_renamed",
    "files_changed",
    "lines_added",
    "lines_removed",
)


def naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return naive(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _insert(conn: Connection, table: Any) -> Any:
    return pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)


_HAS_ROLLUP: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def _has_rollup(conn: Connection) -> bool:
    engine = conn.engine
    have = _HAS_ROLLUP.get(engine)
    if have is None:
        have = bool(conn.dialect.has_table(conn, "session_rollup"))
        _HAS_ROLLUP[engine] = have
    return have


# ------------------------------------------------------------------------------------------ resolve


@dataclass(slots=True)
class Group:
    """The events of one agent session in one ingest batch."""

    imported_id: str
    agent: str
    agent_session_id: str
    hint: str | None = None
    cwd: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    request_ids: set[str] = field(default_factory=set)

    def see(self, ts: datetime | None) -> None:
        if ts is None:
            return
        if self.start is None or ts < self.start:
            self.start = ts
        if self.end is None or ts > self.end:
            self.end = ts


def agent_of(e: Event) -> tuple[str, str] | None:
    """(agent, agent session id) of an importer's event stored under the agent session's own id."""
    p = e.payload
    agent, asid = p.get("agent"), p.get("agent_session_id")
    if not (isinstance(agent, str) and isinstance(asid, str) and agent and asid):
        return None
    if e.session_id != imported_session_id(agent, asid):
        return None
    return agent, asid


def _valid_hint(v: object) -> str | None:
    if isinstance(v, str) and 0 < len(v) <= 64 and not is_imported_session_id(v):
        return v
    return None


def _groups(events: Sequence[Event]) -> dict[str, Group]:
    groups: dict[str, Group] = {}
    for e in events:
        who = agent_of(e)
        if who is None:
            continue
        g = groups.get(e.session_id)
        if g is None:
            g = groups[e.session_id] = Group(e.session_id, who[0], who[1])
        p = e.payload
        g.hint = g.hint or _valid_hint(p.get("agenttrail_session_id"))
        cwd = p.get("cwd")
        if isinstance(cwd, str) and cwd and g.cwd is None:
            g.cwd = cwd
        g.see(naive(e.ts))
        if e.kind in (SESSION_START, SESSION_END):
            g.see(_parse(p.get("started_at")))
            g.see(_parse(p.get("ended_at")))
        record = p.get("record")
        if e.kind == LLM_CALL and isinstance(record, dict) and isinstance(record.get("request_id"), str):
            g.request_ids.add(record["request_id"])
    return groups


def resolve_events(engine: Engine, events: Sequence[Event]) -> list[Event]:
    """`resolve` in a transaction of its own, opened only when some event comes from an importer."""
    groups = _groups(events)
    if not groups:
        return list(events)
    with engine.begin() as conn:
        return _resolve(conn, events, groups)


def resolve(conn: Connection, events: Sequence[Event]) -> list[Event]:
    """The events with each agent session's events moved to the traced session they belong to."""
    groups = _groups(events)
    if not groups:
        return list(events)
    return _resolve(conn, events, groups)


def _resolve(conn: Connection, events: Sequence[Event], groups: dict[str, Group]) -> list[Event]:
    moved: dict[str, str] = {}
    # One look for the whole batch first: most imports have nothing to join to, and asking each agent
    # session's rules one by one was a sixth of a stored Codex import (thousands of rollouts).
    nothing_to_join = _nothing_to_join(conn, [g for g in groups.values() if not g.hint])
    for gid, g in groups.items():
        target = (g.hint or gid) if nothing_to_join else find_session(conn, g)
        if target != gid:
            moved[gid] = target
            bind(conn, target, g.agent_session_id)
            relink(conn, gid, target)
    if not moved:
        return list(events)
    return [dc_replace(e, session_id=moved[e.session_id]) if e.session_id in moved else e for e in events]


def find_session(conn: Connection, g: Group) -> str:
    """The traced session `g` belongs to (rules 1-5 of the module docstring), or its own id."""
    if g.hint:
        return g.hint
    s = agent_session.c
    rows = conn.execute(
        select(s.session_id, s.agent)
        .where(s.agent_session_id == g.agent_session_id, s.source != IMPORTED)
        .order_by(s.started_at.desc())
    ).all()
    for r in rows:
        if r.agent in (None, g.agent):
            return str(r.session_id)
    c = llm_call.c
    ids = sorted(g.request_ids)
    for i in range(0, len(ids), 500):
        hit = conn.execute(
            select(c.session_id)
            .where(c.request_id.in_(ids[i : i + 500]), c.source == "gateway", c.session_id.is_not(None))
            .limit(1)
        ).first()
        if hit is not None:
            return str(hit.session_id)
    own = conn.execute(select(s.cwd, s.started_at, s.ended_at).where(s.session_id == g.imported_id)).first()
    cwd, start, end = _widened(g, own)
    if start is not None and end is not None:
        # Rule 4: the started_at index bounds the scan (agent_session_id has no index on llm_call).
        hit = conn.execute(
            select(c.session_id)
            .where(
                c.started_at.between(start - CALL_MATCH_WINDOW, end + CALL_MATCH_WINDOW),
                c.agent_session_id == g.agent_session_id,
                c.source == "gateway",
                c.session_id.is_not(None),
            )
            .limit(1)
        ).first()
        if hit is not None:
            return str(hit.session_id)
    if cwd and start is not None and end is not None:
        target = _by_cwd_and_span(conn, g.agent, cwd, start, end)
        if target is not None:
            return target
    return g.imported_id


def _widened(g: Group, own: Any) -> tuple[str | None, datetime | None, datetime | None]:
    """The group's cwd and span, completed by its session's own stored row (`own`, or None)."""
    start, end, cwd = g.start, g.end, g.cwd
    if own is not None:
        cwd = cwd or own.cwd
        start = min(x for x in (start, own.started_at) if x is not None) if (start or own.started_at) else None
        end = max(x for x in (end, own.ended_at) if x is not None) if (end or own.ended_at) else None
    return cwd, start, end


def _nothing_to_join(conn: Connection, groups: list[Group]) -> bool:
    """True when no group can match any rule of `find_session`: each rule's query with the group's own
    terms widened to the whole batch's (any of the agent session ids, any request id, the union of the
    spans) finds nothing. Then every group keeps its own id, as `find_session` would say one by one."""
    if not groups:
        return True
    s, c = agent_session.c, llm_call.c
    asids = sorted({g.agent_session_id for g in groups})
    for i in range(0, len(asids), _IN_CHUNK):  # rule 1
        q = select(s.session_id).where(s.agent_session_id.in_(asids[i : i + _IN_CHUNK]), s.source != IMPORTED)
        if conn.execute(q.limit(1)).first() is not None:
            return False
    rids = sorted({r for g in groups for r in g.request_ids})
    for i in range(0, len(rids), _IN_CHUNK):  # rule 2
        q = select(c.call_id).where(
            c.request_id.in_(rids[i : i + _IN_CHUNK]), c.source == "gateway", c.session_id.is_not(None)
        )
        if conn.execute(q.limit(1)).first() is not None:
            return False
    own: dict[str, Any] = {}
    ids = sorted(g.imported_id for g in groups)
    for i in range(0, len(ids), _IN_CHUNK):
        q = select(s.session_id, s.cwd, s.started_at, s.ended_at).where(s.session_id.in_(ids[i : i + _IN_CHUNK]))
        own.update((r.session_id, r) for r in conn.execute(q))
    spans = [_widened(g, own.get(g.imported_id)) for g in groups]
    timed = [(cwd, start, end) for cwd, start, end in spans if start is not None and end is not None]
    if timed:  # rule 4
        lo = min(start for _, start, _ in timed if start is not None) - CALL_MATCH_WINDOW
        hi = max(end for _, _, end in timed if end is not None) + CALL_MATCH_WINDOW
        q = select(c.call_id).where(c.started_at.between(lo, hi), c.source == "gateway", c.session_id.is_not(None))
        if conn.execute(q.limit(1)).first() is not None:
            return False
    starts = [start for cwd, start, _ in timed if cwd and start is not None]
    if starts:  # rule 5
        q = select(s.session_id).where(
            s.source != IMPORTED,
            s.started_at <= max(starts) + SPAN_SLACK,
            s.started_at >= min(starts) - OPEN_SESSION_MAX,
        )
        if conn.execute(q.limit(1)).first() is not None:
            return False
    return True


def _by_cwd_and_span(conn: Connection, agent: str, cwd: str, start: datetime, end: datetime) -> str | None:
    s = agent_session.c
    rows = conn.execute(
        select(s.session_id, s.agent, s.started_at, s.ended_at).where(
            s.cwd == cwd,
            s.source != IMPORTED,
            s.started_at <= start + SPAN_SLACK,
            s.started_at >= start - OPEN_SESSION_MAX,
            or_(s.ended_at.is_(None), s.ended_at >= end - SPAN_SLACK),
        )
    ).all()
    best: tuple[float, datetime, str] | None = None
    for r in rows:
        if r.agent not in (None, agent):
            continue
        t_end = r.ended_at or max(end, r.started_at)
        overlap = (min(end, t_end) - max(start, r.started_at)).total_seconds()
        key = (overlap, r.started_at, str(r.session_id))
        if best is None or key > best:
            best = key
    return best[2] if best is not None else None


def bind(conn: Connection, session_id: str, agent_session_id: str) -> None:
    """Record the agent session id on a traced session that has none (later imports then match by id)."""
    s = agent_session.c
    conn.execute(
        update(agent_session)
        .where(s.session_id == session_id, s.agent_session_id.is_(None), s.source != IMPORTED)
        .values(agent_session_id=agent_session_id)
    )


def relink(conn: Connection, from_id: str, to_id: str) -> bool:
    """Move everything stored under an agent session's own id to the traced session. True if it moved."""
    if from_id == to_id:
        return False
    has_events = conn.execute(select(event.c.event_id).where(event.c.session_id == from_id).limit(1)).first()
    has_metrics = conn.execute(select(agent_metric.c.id).where(agent_metric.c.session_id == from_id).limit(1)).first()
    has_calls = conn.execute(select(llm_call.c.call_id).where(llm_call.c.session_id == from_id).limit(1)).first()
    if has_events is None and has_metrics is None and has_calls is None:
        return False
    rollup = _has_rollup(conn)
    counts: dict[str, int] = {}
    if rollup:
        r = conn.execute(select(session_rollup).where(session_rollup.c.session_id == from_id)).mappings().first()
        if r is not None:
            counts = {k: int(r[k] or 0) for k in EVENT_ROLLUP if r[k]}
    conn.execute(update(event).where(event.c.session_id == from_id).values(session_id=to_id))
    conn.execute(update(llm_call).where(llm_call.c.session_id == from_id).values(session_id=to_id))
    conn.execute(update(agent_metric).where(agent_metric.c.session_id == from_id).values(session_id=to_id))
    conn.execute(delete(agent_session).where(agent_session.c.session_id == from_id))
    if rollup:
        if counts:
            stmt = _insert(conn, session_rollup).values(session_id=to_id, **counts)
            stmt = stmt.on_conflict_do_update(
                index_elements=["session_id"],
                set_={k: getattr(session_rollup.c, k) + stmt.excluded[k] for k in counts},
            )
            conn.execute(stmt)
        # Its calls left by trigger (leaving zeros); its events were just moved: nothing is left to show.
        conn.execute(delete(session_rollup).where(session_rollup.c.session_id == from_id))
        conn.execute(delete(session_model).where(session_model.c.session_id == from_id))
    return True


# --------------------------------------------------------------------------------------- materialise


def materialise(conn: Connection, fresh: Sequence[Event], who: Attribution) -> list[Event]:
    """Store what newly arrived importer events imply; return the events left for ingest's own rules."""
    rest: list[Event] = []
    calls: list[Event] = []
    sessions: list[Event] = []
    for e in fresh:
        p = e.payload
        if e.kind in (SESSION_START, SESSION_END) and p.get("source") == IMPORTED and p.get("agent_session_id"):
            sessions.append(e)
        elif e.kind == LLM_CALL and isinstance(p.get("record"), dict) and p["record"].get("source") in IMPORTER_SOURCES:
            calls.append(e)
        else:
            rest.append(e)
    if sessions:
        _imported_sessions(conn, sessions, who)
    if calls:
        _calls(conn, calls, who, {})
    return rest


def after(conn: Connection, fresh: Sequence[Event]) -> None:
    """A traced session's start or end just arrived: take over its agent sessions imported earlier."""
    ids: dict[str, None] = {}
    for e in fresh:
        if e.kind not in (SESSION_START, SESSION_END) or e.payload.get("source") == IMPORTED:
            continue
        if is_imported_session_id(e.session_id):
            continue
        asid = e.payload.get("agent_session_id")
        if isinstance(asid, str) and asid:
            bind(conn, e.session_id, asid)
        ids[e.session_id] = None
    # One lookup for the batch's sessions: most have nothing to match by yet (no agent session id, or no
    # cwd and end), and a round trip each was a tenth of ingest's time on PostgreSQL.
    s = agent_session.c
    can_match: set[str] = set()
    batch = list(ids)
    for i in range(0, len(batch), 500):
        rows = conn.execute(
            select(s.session_id).where(
                s.session_id.in_(batch[i : i + 500]),
                or_(s.agent_session_id.is_not(None), and_(s.cwd.is_not(None), s.ended_at.is_not(None))),
            )
        )
        can_match.update(rows.scalars())
    for sid in ids:
        if sid in can_match:
            absorb(conn, sid)


def absorb(conn: Connection, session_id: str) -> int:
    """Relink to `session_id` the imported agent sessions that belong to it; returns how many."""
    s = agent_session.c
    t = conn.execute(
        select(s.agent_session_id, s.cwd, s.started_at, s.ended_at, s.agent).where(s.session_id == session_id)
    ).first()
    if t is None:
        return 0
    conds = []
    if t.agent_session_id:
        conds.append(s.agent_session_id == t.agent_session_id)
    if t.cwd and t.ended_at is not None:
        conds.append(
            and_(
                s.cwd == t.cwd,
                s.started_at >= t.started_at - SPAN_SLACK,
                func.coalesce(s.ended_at, s.started_at) <= t.ended_at + SPAN_SLACK,
            )
        )
    if not conds:
        return 0
    rows = conn.execute(
        select(s.session_id, s.agent, s.agent_session_id, s.started_at, s.ended_at).where(
            s.source == IMPORTED, or_(*conds)
        )
    ).all()
    n = 0
    for r in rows:
        if t.agent not in (None, r.agent) and r.agent_session_id != t.agent_session_id:
            continue
        if r.agent_session_id != t.agent_session_id and r.started_at is not None:
            # Matched by cwd and span: only if no other traced session fits it better.
            best = _by_cwd_and_span(conn, r.agent or "", t.cwd, r.started_at, r.ended_at or r.started_at)
            if best not in (None, session_id):
                continue
        if relink(conn, r.session_id, session_id):
            n += 1
        if r.agent_session_id:
            bind(conn, session_id, r.agent_session_id)
    return n


def _imported_sessions(conn: Connection, events: Sequence[Event], who: Attribution) -> None:
    """Imported session_start/session_end events: each agent session's own row is made or widened, then
    the agent's own cost figures recorded. The batch's events are folded per session first (earliest
    start, latest end, the first value of each detail), which is what taking them one by one gives, so
    the rows cost a few statements per batch rather than a few per event."""
    own: dict[str, dict[str, Any]] = {}
    costs: list[tuple[Event, str, str, datetime]] = []
    for e in events:
        p = e.payload
        agent, asid = str(p.get("agent") or ""), str(p["agent_session_id"])
        start = _parse(p.get("started_at")) or naive(e.ts)
        end = _parse(p.get("ended_at")) or naive(e.ts)
        if end < start:
            start, end = end, start
        if e.session_id == imported_session_id(agent, asid):
            details = {k: p[k] for k in _DETAILS if isinstance(p.get(k), str) and p[k]}
            have = own.get(e.session_id)
            if have is None:
                own[e.session_id] = {"agent": agent, "asid": asid, "start": start, "end": end, "details": details}
            else:
                have["start"] = min(have["start"], start)
                have["end"] = max(have["end"], end)
                for k, v in details.items():
                    have["details"].setdefault(k, v)
        if isinstance(p.get("agent_cost_by_run"), dict):
            costs.append((e, agent, asid, end))
    if own:
        _own_sessions(conn, own, who)
    for e, agent, asid, end in costs:
        for run, cost in e.payload["agent_cost_by_run"].items():
            if isinstance(cost, int | float) and not isinstance(cost, bool):
                upsert_metric(
                    conn,
                    session_id=e.session_id,
                    name=AGENT_COST,
                    attributes={"agent": agent, "agent_session_id": asid, "run": str(run), "source": "transcript"},
                    value=float(cost),
                    end_time=end,
                )


_DETAILS = ("agent_version", "cwd", "repo", "repo_path", "branch", "head_before")


def _own_sessions(conn: Connection, own: dict[str, dict[str, Any]], who: Attribution) -> None:
    """Insert the agent sessions' own rows that are missing; widen the others' span and fill the details
    they lack."""
    s = agent_session.c
    ids = sorted(own)
    rows: dict[str, Any] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        for row in conn.execute(select(agent_session).where(s.session_id.in_(ids[i : i + _IN_CHUNK]))).mappings():
            rows[row["session_id"]] = row
    missing = [sid for sid in ids if sid not in rows]
    if missing:
        values = [
            {
                "session_id": sid,
                "started_at": own[sid]["start"],
                "ended_at": own[sid]["end"],
                "week": iso_week(own[sid]["start"]),
                "source": IMPORTED,
                "agent": own[sid]["agent"],
                "agent_session_id": own[sid]["asid"],
                "engineer": who.engineer,
                "team_id": who.team_id,
                "project_id": who.project_id,
                "engineer_id": who.engineer_id,
                **{k: own[sid]["details"].get(k) for k in _DETAILS},
            }
            for sid in missing
        ]
        stmt = _insert(conn, agent_session).on_conflict_do_nothing().returning(s.session_id)
        inserted = set(conn.execute(stmt, values).scalars().all())
        raced = [sid for sid in missing if sid not in inserted]  # made meanwhile by another ingest
        if raced:
            for row in conn.execute(select(agent_session).where(s.session_id.in_(raced))).mappings():
                rows[row["session_id"]] = row
    for sid, row in rows.items():
        want = own[sid]
        changes: dict[str, Any] = {}
        if row["started_at"] is None or want["start"] < row["started_at"]:
            changes["started_at"] = want["start"]
            changes["week"] = iso_week(want["start"])
        if row["ended_at"] is None or want["end"] > row["ended_at"]:
            changes["ended_at"] = want["end"]
        for k, v in want["details"].items():
            if row[k] is None:
                changes[k] = v
        if changes:
            conn.execute(update(agent_session).where(s.session_id == sid).values(**changes))


def upsert_metric(
    conn: Connection,
    *,
    session_id: str | None,
    name: str,
    attributes: dict[str, Any],
    value: float,
    end_time: datetime,
    start_time: datetime | None = None,
) -> None:
    """One `agent_metric` row per (session, name, attributes): the latest value replaces the previous."""
    attrs = orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS).decode()
    m = agent_metric.c
    where = [m.name == name, m.attributes == attrs]
    where.append(m.session_id.is_(None) if session_id is None else m.session_id == session_id)
    hit = conn.execute(select(m.id).where(*where).limit(1)).first()
    if hit is not None:
        conn.execute(update(agent_metric).where(m.id == hit.id).values(value=value, end_time=end_time))
        return
    conn.execute(
        insert(agent_metric).values(
            session_id=session_id,
            name=name,
            attributes=attrs,
            value=value,
            start_time=start_time,
            end_time=end_time,
        )
    )


# ---------------------------------------------------------------------------------------------- calls


# Columns an inserted call must not leave NULL (executemany needs one key set for every row).
_CALL_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(TOKENS, 0),
    "cost_usd": 0.0,
    "cost_nanos": 0,
    "saved_usd": 0.0,
    "stream": False,
    "cache_hit": False,
}
_CALL_COLUMNS = tuple(col.name for col in llm_call.columns)
# A row's start (every column, the defaults set) and the record's keys it takes as they are: built once,
# copied per call (building each from the column list was a dict comprehension over every column).
_CALL_ROW = {**dict.fromkeys(_CALL_COLUMNS), **_CALL_DEFAULTS}
_CALL_TAKEN = frozenset(_CALL_COLUMNS) - {"started_at", "ended_at"}
_IN_CHUNK = 500


@dataclass(slots=True)
class _Rec:
    e: Event
    r: dict[str, Any]
    call_id: str
    asid: str | None
    request_id: str | None


def _calls(conn: Connection, events: Sequence[Event], who: Attribution, attribution: dict[str, dict[str, Any]]) -> None:
    """Store the importer calls of one ingest batch: a few set-based lookups, then one insert."""
    recs: list[_Rec] = []
    for e in events:
        r: dict[str, Any] = e.payload["record"]
        asid = e.payload.get("agent_session_id")
        asid = asid if isinstance(asid, str) else r.get("agent_session_id")
        rid = r.get("request_id")
        recs.append(
            _Rec(e, r, str(r.get("call_id") or e.event_id), asid, rid if isinstance(rid, str) and rid else None)
        )
    c = llm_call.c
    have: dict[str, Any] = {}
    ids = sorted({x.call_id for x in recs})
    for i in range(0, len(ids), _IN_CHUNK):
        for m in conn.execute(select(llm_call).where(c.call_id.in_(ids[i : i + _IN_CHUNK]))).mappings():
            have[m["call_id"]] = m
    by_request: dict[str, dict[str, Any]] = {}
    rids = sorted({x.request_id for x in recs if x.request_id and x.call_id not in have})
    for i in range(0, len(rids), _IN_CHUNK):
        q = select(c.call_id, c.session_id, c.agent_session_id, c.request_id).where(
            c.request_id.in_(rids[i : i + _IN_CHUNK])
        )
        for row in conn.execute(q):
            by_request.setdefault(row.request_id, dict(row._mapping))
    if who.team_id is None:  # the sessions' own attribution, one query per chunk, not one per session
        _prefetch_attribution(conn, sorted({x.e.session_id for x in recs} - attribution.keys()), attribution)
    new: dict[str, dict[str, Any]] = {}  # call_id -> row to insert
    new_rids: set[str] = set()
    unmatched: list[_Rec] = []
    for x in recs:
        if x.call_id in have:
            # The same call read before (a transcript and OTLP copy, or a fuller reading): keep the maximum.
            merged = _merge_usage(conn, have[x.call_id], x.r)
            if merged is not None:
                have[x.call_id] = merged
            continue
        if x.call_id in new:
            _merge_into(new[x.call_id], x.r)
            continue
        if x.request_id and x.request_id in by_request:
            # The gateway (or another source) recorded the provider request id: its row is the one that counts.
            dup = by_request[x.request_id]
            fill: dict[str, Any] = {}
            if dup["session_id"] is None:
                fill["session_id"] = x.e.session_id
            if dup["agent_session_id"] is None and x.asid:
                fill["agent_session_id"] = x.asid
            if fill:
                conn.execute(update(llm_call).where(c.call_id == dup["call_id"]).values(**fill))
                dup.update(fill)
            continue
        if x.request_id and x.request_id in new_rids:
            continue
        unmatched.append(x)
        new[x.call_id] = _row(conn, x, who, attribution)
        if x.request_id:
            new_rids.add(x.request_id)
    if unmatched:
        for x in _claim_copies(conn, unmatched):
            new.pop(x.call_id, None)
    # The store's bulk insert: on SQLite it rolls the batch up once instead of once per row (the
    # per-row triggers were most of a usage-only import's insert time).
    insert_rows(conn, llm_call, list(new.values()), ignore=True)


def _row(conn: Connection, x: _Rec, who: Attribution, attribution: dict[str, dict[str, Any]]) -> dict[str, Any]:
    r = x.r
    row: dict[str, Any] = _CALL_ROW.copy()
    taken = _CALL_TAKEN
    row.update({k: v for k, v in r.items() if v is not None and k in taken})
    row.update(
        call_id=x.call_id,
        started_at=naive(x.e.ts),
        session_id=x.e.session_id,
        agent_session_id=x.asid,
        source=r.get("source") or "transcript",
        status=r.get("status") or "ok",
        provider=r.get("provider") or "unknown",
    )
    for k, v in _attribution(conn, x.e.session_id, who, attribution).items():
        if row.get(k) is None:
            row[k] = v
    return row


def _merge_into(row: dict[str, Any], r: dict[str, Any]) -> None:
    """Two readings of one call in the same batch: the row to insert keeps the larger of each."""
    grown = any(int(r.get(k) or 0) > int(row.get(k) or 0) for k in TOKENS)
    dominated = all(int(r.get(k) or 0) >= int(row.get(k) or 0) for k in TOKENS)
    for k in TOKENS:
        row[k] = max(int(row.get(k) or 0), int(r.get(k) or 0))
    if grown:
        if dominated:
            row["cost_usd"], row["cost_nanos"] = r.get("cost_usd") or 0.0, r.get("cost_nanos") or 0
        else:
            row["cost_usd"] = max(float(row["cost_usd"] or 0), float(r.get("cost_usd") or 0))
            row["cost_nanos"] = max(int(row["cost_nanos"] or 0), int(r.get("cost_nanos") or 0))


def _prefetch_attribution(conn: Connection, session_ids: list[str], cache: dict[str, dict[str, Any]]) -> None:
    """`_attribution`'s cache filled for many sessions at once (a session without a row: {})."""
    s = agent_session.c
    for i in range(0, len(session_ids), _IN_CHUNK):
        chunk = session_ids[i : i + _IN_CHUNK]
        found = conn.execute(
            select(s.session_id, s.team_id, s.project_id, s.engineer_id).where(s.session_id.in_(chunk))
        )
        for row in found:
            sid, team, project, engineer = row
            cache[sid] = {"team_id": team, "project_id": project, "engineer_id": engineer}
        for sid in chunk:
            cache.setdefault(sid, {})


def _attribution(
    conn: Connection, session_id: str, who: Attribution, cache: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Team, project and engineer of a call: the uploading key's, else the session's (a local import
    joined to a traced session bills the traced session's team)."""
    if who.team_id is not None:
        return {"team_id": who.team_id, "project_id": who.project_id, "engineer_id": who.engineer_id}
    hit = cache.get(session_id)
    if hit is None:
        s = agent_session.c
        row = conn.execute(select(s.team_id, s.project_id, s.engineer_id).where(s.session_id == session_id)).first()
        hit = cache[session_id] = (
            {"team_id": row.team_id, "project_id": row.project_id, "engineer_id": row.engineer_id} if row else {}
        )
    return hit


def _merge_usage(conn: Connection, have: Any, r: dict[str, Any]) -> dict[str, Any] | None:
    """A later reading of a call stored before: token counts only grow while a response streams.
    Returns the row as it now is, or None when nothing changed."""
    new = {k: int(r.get(k) or 0) for k in TOKENS}
    old = {k: int(have[k] or 0) for k in TOKENS}
    merged = {k: max(new[k], old[k]) for k in TOKENS}
    changes: dict[str, Any] = {}
    if merged != old:
        changes.update(merged)
        if merged == new:
            changes.update(cost_usd=r.get("cost_usd") or 0.0, cost_nanos=r.get("cost_nanos") or 0)
            if r.get("price_source"):
                changes["price_source"] = r["price_source"]
        else:
            # Each reading larger in some field: cannot happen with append-only transcripts. Keep the
            # larger cost rather than price here (ingest has no pricer); the tokens are exact.
            changes.update(
                cost_usd=max(float(have["cost_usd"] or 0), float(r.get("cost_usd") or 0)),
                cost_nanos=max(int(have["cost_nanos"] or 0), int(r.get("cost_nanos") or 0)),
            )
    for k in ("request_id", "model", "agent_session_id", "latency_ms"):
        if have[k] is None and r.get(k) is not None:
            changes[k] = r[k]
    if not changes:
        return None
    conn.execute(update(llm_call).where(llm_call.c.call_id == have["call_id"]).values(**changes))
    return {**dict(have), **changes}


def _eligible(cand: Any, request_id: str | None) -> bool:
    """Could `cand` and a record with `request_id` be one call although their request ids differ?"""
    if not request_id or not cand.request_id:
        return True
    # The gateway keeps OpenAI's x-request-id; a rollout keeps the Responses id (resp_…). Two real
    # response ids that differ are two calls.
    return bool(cand.source == "gateway" and cand.provider == "openai" and not str(cand.request_id).startswith("resp_"))


def _claim_copies(conn: Connection, recs: list[_Rec]) -> list[_Rec]:
    """The records already stored from a channel without a shared request id (see the module docstring):
    each such row notes its copy in `tags`. One query for the whole batch; returns the records claimed."""
    wanted = [x for x in recs if x.r.get("status", "ok") == "ok" and any(int(x.r.get(k) or 0) for k in MATCH_TOKENS)]
    if not wanted:
        return []
    c = llm_call.c
    times = [naive(x.e.ts) for x in wanted]
    sessions = sorted({x.e.session_id for x in wanted})
    asids = sorted({x.asid for x in wanted if x.asid})
    scope = [c.session_id.in_(sessions)]
    if asids:
        scope.append(c.agent_session_id.in_(asids))
    q = select(
        c.call_id, c.source, c.provider, c.request_id, c.tags, c.started_at, c.session_id, c.agent_session_id,
        *(getattr(c, k) for k in MATCH_TOKENS),
    ).where(
        c.started_at.between(min(times) - CALL_MATCH_WINDOW, max(times) + CALL_MATCH_WINDOW),
        or_(*scope),
    )  # fmt: skip
    by_tokens: dict[tuple[int, ...], list[Any]] = {}
    for row in conn.execute(q):
        by_tokens.setdefault(tuple(int(getattr(row, k) or 0) for k in MATCH_TOKENS), []).append(row)
    if not by_tokens:
        return []
    claimed: list[_Rec] = []
    taken: dict[str, dict[str, Any]] = {}  # call_id -> its tags as updated in this batch
    for x, ts in zip(wanted, times, strict=True):
        source = str(x.r.get("source") or "transcript")
        mark = f"agenttrail.copy.{source}"
        provider = x.r.get("provider") or "unknown"
        best = None
        for cand in by_tokens.get(tuple(int(x.r.get(k) or 0) for k in MATCH_TOKENS), ()):
            if cand.source == source or cand.provider != provider:
                continue
            if cand.session_id != x.e.session_id and not (x.asid and cand.agent_session_id == x.asid):
                continue
            if abs(cand.started_at - ts) > CALL_MATCH_WINDOW or not _eligible(cand, x.request_id):
                continue
            tags = taken.get(cand.call_id) or _tags(cand.tags)
            if mark in tags:
                continue
            if best is None or abs((cand.started_at - ts).total_seconds()) < abs(
                (best[0].started_at - ts).total_seconds()
            ):
                best = (cand, tags)
        if best is None:
            continue
        cand, tags = best
        tags = {**tags, mark: x.call_id}
        taken[cand.call_id] = tags
        values: dict[str, Any] = {"tags": orjson.dumps(tags).decode()}
        if cand.request_id is None and x.request_id:
            values["request_id"] = x.request_id
        if cand.session_id is None:
            values["session_id"] = x.e.session_id
        if cand.agent_session_id is None and x.asid:
            values["agent_session_id"] = x.asid
        conn.execute(update(llm_call).where(c.call_id == cand.call_id).values(**values))
        claimed.append(x)
    return claimed


def _tags(raw: object) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        v = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return v if isinstance(v, dict) else {}
