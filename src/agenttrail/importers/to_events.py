"""An `ImportBatch` as the events ingest stores: the one path for local imports, uploads and OTLP.

Every record an importer read becomes an `Event`, so `agenttrail import`, `agenttrail import --server`
and the OTLP receiver all go through the same idempotent ingest, and the join (`importers.join`) runs at
ingest time wherever that is:

- dialogue events (`prompt`, `response`, `tool_call`, `tool_result`) keep their stable ids;
- each call becomes an `llm_call` event whose payload `record` holds `llm_call` columns, priced here with
  genai-prices (cache writes by TTL). Its id derives from the call id *and* its usage, so a later reading
  of a response that was still streaming (a larger `output_tokens`) is a new event that updates the row;
- each session becomes a `session_start` (once) and a `session_end` (again whenever its end, or the
  agent's own cost figure, moved on), both with `source: "imported"`.

Until the join says otherwise, an agent session is stored under its own session id,
`imported_session_id(agent, agent_session_id)` (`claude-code:<uuid>`, `codex:<uuid>`). Every event names
its agent and agent session in the payload (`agent`, `agent_session_id`), which is what the join keys on;
`agenttrail_session_id` (from OTLP resource attributes, or the session-scoped key that sent them) says
outright which traced session the records belong to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from agenttrail.events import LLM_CALL, SESSION_END, SESSION_START, Event, stable_id
from agenttrail.importers.records import CLAUDE_CODE, ImportBatch, TranscriptCall, TranscriptSession
from agenttrail.tracer.git_identity import normalize_remote_url

if TYPE_CHECKING:  # ingest imports this module through the join; it never prices
    from agenttrail.pricing import Pricer

IMPORTED = "imported"  # agent_session.source of a session known only from its transcript or telemetry
MAX_SESSION_ID = 64  # what ingest accepts
_ENDPOINT = {"anthropic": "messages", "openai": "responses"}


def imported_session_id(agent: str, agent_session_id: str) -> str:
    """The session id an agent session is stored under until it is joined to a traced one."""
    sid = f"{agent}:{agent_session_id}"
    if len(sid) <= MAX_SESSION_ID:
        return sid
    return f"{agent}:{stable_id(agent, agent_session_id)}"


def is_imported_session_id(session_id: str) -> bool:
    return session_id.startswith(("claude-code:", "codex:"))


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat() if ts is not None else None


def call_record(call: TranscriptCall, pricer: Pricer) -> dict[str, Any]:
    """The `llm_call` columns of one call, priced (genai-prices plus the organisation's overrides)."""
    u = call.usage
    price = pricer.price_call(call.provider, call.model, u)  # a history prices every call: the fast spelling
    record: dict[str, Any] = {
        "call_id": call.call_id,
        "source": call.source,
        "provider": call.provider,
        "endpoint": _ENDPOINT.get(call.provider),
        "model": call.model,
        "model_requested": call.model,
        "input_tokens": u.input_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cache_write_1h_tokens": u.cache_write_1h_tokens,
        "output_tokens": u.output_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "cost_usd": float(price.cost_usd),
        "cost_nanos": price.cost_nanos,
        "price_source": price.source,
        "status": call.status,
        "stream": True,  # both agents stream every call
        "request_id": call.request_id,
        "agent_session_id": call.session_id,
        "client": call.agent,
    }
    if call.error:
        record["error"] = call.error[:2000]
    if call.duration_ms is not None:
        record["latency_ms"] = float(call.duration_ms)
    return record


def _call_event(call: TranscriptCall, session_id: str, pricer: Pricer) -> Event:
    u = call.usage
    payload: dict[str, Any] = {
        "agent": call.agent,
        "agent_session_id": call.session_id,
        "source": call.source,
        "record": call_record(call, pricer),
    }
    for name in ("message_id", "subagent_id", "agent_cost_usd", "cwd", "git_branch", "agenttrail_session_id"):
        value = getattr(call, name)
        if value is not None:
            payload[name] = value
    usage_key = (u.input_tokens, u.cache_read_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.output_tokens)
    return Event(
        session_id=session_id,
        kind=LLM_CALL,
        ts=call.ts,
        payload=payload,
        event_id=stable_id("llm_call", call.call_id, call.status, *usage_key),
    )


def _session_events(s: TranscriptSession, session_id: str, first_ts: datetime | None) -> list[Event]:
    start = s.started_at or first_ts
    if start is None:
        return []  # nothing in the batch says when: the session's records carry their own times
    end = s.ended_at or start
    common: dict[str, Any] = {
        "source": IMPORTED,
        "agent": s.agent,
        "agent_session_id": s.agent_session_id,
        "started_at": _iso(start),
        "ended_at": _iso(end),
    }
    if s.agenttrail_session_id:
        common["agenttrail_session_id"] = s.agenttrail_session_id
    details: dict[str, Any] = {
        "agent_version": s.agent_version,
        "cwd": s.cwd,
        "repo_path": s.cwd,
        "repo": normalize_remote_url(s.repo_url) if s.repo_url else None,
        "repo_url": s.repo_url,
        "branch": s.branch,
        "head_before": s.git_commit,
        "title": s.title,
        "models": list(s.models) or None,
        "transcript": s.source_path,
    }
    details = {k: v for k, v in details.items() if v is not None}
    start_ev = Event(
        session_id=session_id,
        kind=SESSION_START,
        ts=start,
        payload={**common, **details},
        event_id=stable_id("imported-session", s.agent, s.agent_session_id, "start"),
    )
    cost = dict(sorted(s.agent_cost_by_run.items()))
    end_payload: dict[str, Any] = {**common, **details}
    if cost:
        end_payload["agent_cost_by_run"] = cost
        end_payload["agent_cost_usd"] = s.agent_reported_cost_usd
    end_ev = Event(
        session_id=session_id,
        kind=SESSION_END,
        ts=end,
        payload=end_payload,
        # A new id whenever the span or the agent's own figure moved on, so ingest takes the update (a
        # usage-only import sees a narrower span than the full import after it).
        event_id=stable_id(
            "imported-session",
            s.agent,
            s.agent_session_id,
            "end",
            _iso(start),
            _iso(end),
            orjson.dumps(cost).decode(),
            ",".join(s.models),
            s.title or "",
        ),
    )
    return [start_ev, end_ev]


def batch_to_events(
    batch: ImportBatch,
    pricer: Pricer,
    *,
    default_agent: str = CLAUDE_CODE,
    agenttrail_session_id: str | None = None,
) -> list[Event]:
    """Every session, call and dialogue event of `batch` as ingest events (see the module docstring).

    `agenttrail_session_id` names the traced session the whole batch belongs to when the sender knows it
    (the OTLP receiver passes a session-scoped key's session); a record's own attribute wins over it."""
    agents: dict[str, str] = {s.agent_session_id: s.agent for s in batch.sessions}
    for c in batch.calls:
        agents.setdefault(c.session_id, c.agent)
    hints: dict[str, str] = {}
    for s in batch.sessions:
        if s.agenttrail_session_id:
            hints[s.agent_session_id] = s.agenttrail_session_id
    for c in batch.calls:
        if c.agenttrail_session_id:
            hints.setdefault(c.session_id, c.agenttrail_session_id)

    def sid_of(agent_session_id: str) -> tuple[str, str]:
        agent = agents.get(agent_session_id, default_agent)
        return agent, imported_session_id(agent, agent_session_id)

    out: list[Event] = []
    first_ts: dict[str, datetime] = {}
    last_ts: dict[str, datetime] = {}
    for e in batch.events:
        agent, sid = sid_of(e.session_id)
        payload = dict(e.payload)
        payload["agent"] = agent
        payload["agent_session_id"] = e.session_id
        hint = payload.get("agenttrail_session_id") or hints.get(e.session_id) or agenttrail_session_id
        if hint:
            payload["agenttrail_session_id"] = hint
        out.append(Event(session_id=sid, kind=e.kind, ts=e.ts, payload=payload, event_id=e.event_id))
        _span(first_ts, last_ts, e.session_id, e.ts)
    for c in batch.calls:
        _, sid = sid_of(c.session_id)
        hint = c.agenttrail_session_id or hints.get(c.session_id) or agenttrail_session_id
        if hint and c.agenttrail_session_id is None:
            c = replace(c, agenttrail_session_id=hint)
        out.append(_call_event(c, sid, pricer))
        _span(first_ts, last_ts, c.session_id, c.ts)
    sessions = list(batch.sessions)
    known = {x.agent_session_id for x in sessions}
    for asid, ts in first_ts.items():
        if asid not in known:
            # Records without their session's own record (a hand-made batch): the session still exists.
            agent = agents.get(asid, default_agent)
            sessions.append(
                TranscriptSession(agent=agent, agent_session_id=asid, started_at=ts, ended_at=last_ts[asid])  # type: ignore[arg-type]
            )
    for s in sessions:
        if agenttrail_session_id and not s.agenttrail_session_id:
            s = replace(s, agenttrail_session_id=agenttrail_session_id)
        out.extend(
            _session_events(s, imported_session_id(s.agent, s.agent_session_id), first_ts.get(s.agent_session_id))
        )
    return out


def _span(first: dict[str, datetime], last: dict[str, datetime], key: str, ts: datetime) -> None:
    if key not in first or ts < first[key]:
        first[key] = ts
    if key not in last or ts > last[key]:
        last[key] = ts


def count_kinds(events: Iterable[Event]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        out[e.kind] = out.get(e.kind, 0) + 1
    return out
