"""Reconcile: per session, what the gateway priced against what the agent itself says it cost.

Claude Code keeps its own running cost (the transcript's `cost-state` lines, one cumulative figure per
process run; the `claude_code.cost.usage` OTLP metric). agenttrail prices the same calls from their
tokens with genai-prices. The two disagree when the agent's price table differs from the gateway's
(a model the agent does not know, a negotiated rate in agenttrail's overrides), or when calls bypassed
the gateway. This report puts them side by side:

| column | what |
|---|---|
| `gateway_calls`, `gateway_cost_usd` | calls the gateway recorded for the session, as it priced them |
| `imported_calls`, `imported_cost_usd` | calls only the agent's transcript or telemetry saw (priced by agenttrail) |
| `agent_cost_usd`, `agent_cost_source` | the agent's own figure: `transcript` (cost-state), else `otlp` (cost.usage) |
| `difference_usd` | `agent_cost_usd - gateway_cost_usd` |
| `difference_pct` | the difference as a share of the agent's figure |

A session traced through the gateway and imported from its transcript, with prices that agree, shows
`difference_usd = 0` and no imported calls (each call counted once: the join keys on the provider's
request id). Sessions with neither an agent figure nor calls are left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, and_, case, func, select

from agenttrail.importers.join import AGENT_COST
from agenttrail.store.tables import agent_metric, agent_session, llm_call

OTLP_COST = "claude_code.cost.usage"
COLUMNS = (
    "session_id",
    "agent",
    "agent_session_id",
    "source",
    "started_at",
    "gateway_calls",
    "gateway_cost_usd",
    "imported_calls",
    "imported_cost_usd",
    "agent_cost_usd",
    "agent_cost_source",
    "difference_usd",
    "difference_pct",
)


@dataclass(slots=True)
class ReconcileReport:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def _agent_costs(engine: Engine, session_ids: set[str] | None) -> dict[str, tuple[float, str]]:
    """session_id -> (the agent's own cost, where it came from). The transcript's figure wins: it is
    per run and complete; the OTLP metric covers only what was exported while a collector listened."""
    m = agent_metric.c
    q = select(m.session_id, m.name, m.attributes, m.value).where(
        m.name.in_((AGENT_COST, OTLP_COST)), m.session_id.is_not(None)
    )
    if session_ids is not None:
        q = q.where(m.session_id.in_(sorted(session_ids)))
    transcript: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    otlp: dict[str, float] = defaultdict(float)
    with engine.connect() as conn:
        for r in conn.execute(q):
            if r.name == AGENT_COST:
                try:
                    attrs = orjson.loads(r.attributes or "{}")
                except orjson.JSONDecodeError:
                    attrs = {}
                # One figure per (agent session, process run); copies of a row (a relink) count once.
                run = (str(attrs.get("agent_session_id")), str(attrs.get("run")))
                transcript[r.session_id][run] = max(float(r.value), transcript[r.session_id].get(run, 0.0))
            else:
                otlp[r.session_id] += float(r.value)
    out: dict[str, tuple[float, str]] = {}
    for sid, v in otlp.items():
        out[sid] = (v, "otlp")
    for sid, runs in transcript.items():
        out[sid] = (sum(runs.values()), "transcript")
    return out


def reconcile(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    session_id: str | None = None,
    *,
    min_difference_usd: float = 0.0,
) -> ReconcileReport:
    c, s = llm_call.c, agent_session.c
    calls = select(
        c.session_id,
        func.sum(case((c.source == "gateway", 1), else_=0)).label("gw_calls"),
        func.sum(case((c.source == "gateway", c.cost_usd), else_=0.0)).label("gw_cost"),
        func.sum(case((c.source != "gateway", 1), else_=0)).label("imp_calls"),
        func.sum(case((c.source != "gateway", c.cost_usd), else_=0.0)).label("imp_cost"),
    ).where(c.session_id.is_not(None))
    if session_id is not None:
        calls = calls.where(c.session_id == session_id)
    calls = calls.group_by(c.session_id)
    sessions = select(s.session_id, s.agent, s.agent_session_id, s.source, s.started_at)
    conds = []
    if since is not None:
        conds.append(s.started_at >= since)
    if until is not None:
        conds.append(s.started_at < until)
    if session_id is not None:
        conds.append(s.session_id == session_id)
    if conds:
        sessions = sessions.where(and_(*conds))
    with engine.connect() as conn:
        meta = {r.session_id: r for r in conn.execute(sessions)}
        sums = {r.session_id: r for r in conn.execute(calls) if r.session_id in meta}
    costs = _agent_costs(engine, set(meta) if (conds or len(meta) < 5000) else None)
    rows: list[tuple[Any, ...]] = []
    for sid, m in meta.items():
        agg = sums.get(sid)
        agent_cost = costs.get(sid)
        if agg is None and agent_cost is None:
            continue
        gw_calls = int(agg.gw_calls or 0) if agg else 0
        gw_cost = float(agg.gw_cost or 0.0) if agg else 0.0
        imp_calls = int(agg.imp_calls or 0) if agg else 0
        imp_cost = float(agg.imp_cost or 0.0) if agg else 0.0
        diff = pct = None
        if agent_cost is not None:
            diff = round(agent_cost[0] - gw_cost, 9)
            pct = round(100.0 * diff / agent_cost[0], 3) if agent_cost[0] else None
        if min_difference_usd and (diff is None or abs(diff) < min_difference_usd):
            continue
        rows.append(
            (
                sid,
                m.agent,
                m.agent_session_id,
                m.source,
                m.started_at,
                gw_calls,
                round(gw_cost, 9),
                imp_calls,
                round(imp_cost, 9),
                round(agent_cost[0], 9) if agent_cost else None,
                agent_cost[1] if agent_cost else None,
                diff,
                pct,
            )
        )
    rows.sort(key=lambda r: (r[4] is None, r[4]))
    return ReconcileReport(COLUMNS, rows)
