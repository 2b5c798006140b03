"""`agenttrail report reconcile`: gateway cost against the agent's own figure, per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.importers.join import AGENT_COST
from agenttrail.reports.reconcile import reconcile
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest

T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)


def session(engine: Engine, sid: str, start: datetime = T0, **payload: Any) -> None:
    ingest(
        engine,
        [
            Event(sid, "session_start", start, {"agent": "claude-code", **payload}, f"{sid}-s"),
            Event(sid, "session_end", start + timedelta(minutes=5), {}, f"{sid}-e"),
        ],
    )


def call(engine: Engine, cid: str, sid: str, cost: float, source: str = "gateway") -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO llm_call (call_id, started_at, source, provider, model, cost_usd, status, session_id) "
                "VALUES (:c, :t, :src, 'anthropic', 'claude-sonnet-4-5', :cost, 'ok', :s)"
            ),
            {"c": cid, "t": T0.replace(tzinfo=None), "src": source, "cost": cost, "s": sid},
        )


def metric(engine: Engine, sid: str, name: str, value: float, **attrs: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agent_metric (session_id, name, attributes, value, end_time) VALUES (:s, :n, :a, :v, :t)"
            ),
            {"s": sid, "n": name, "a": orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS).decode(), "v": value, "t": T0},
        )


def test_reconcile_rows(db_url: str) -> None:
    engine = open_engine(db_url)
    # Agrees: two gateway calls, and the transcript's cost-state over two process runs.
    session(engine, "agree")
    call(engine, "a1", "agree", 0.25)
    call(engine, "a2", "agree", 0.75)
    metric(engine, "agree", AGENT_COST, 0.4, agent_session_id="x", run="1", source="transcript")
    metric(engine, "agree", AGENT_COST, 0.6, agent_session_id="x", run="2", source="transcript")
    # The agent says more: part of the session bypassed the gateway (seen only in the transcript).
    session(engine, "bypass", T0 + timedelta(hours=1))
    call(engine, "b1", "bypass", 0.5)
    call(engine, "b2", "bypass", 0.3, source="transcript")
    metric(engine, "bypass", AGENT_COST, 0.8, agent_session_id="y", run="1", source="transcript")
    # Only Claude Code's OTLP cost metric (delta points add up).
    session(engine, "otlp", T0 + timedelta(hours=2))
    call(engine, "c1", "otlp", 0.2)
    metric(engine, "otlp", "claude_code.cost.usage", 0.1, model="m")
    metric(engine, "otlp", "claude_code.cost.usage", 0.15, model="m")
    # No agent figure at all (Codex reports none): listed, difference unknown.
    session(engine, "codex", T0 + timedelta(hours=3), agent="codex")
    call(engine, "d1", "codex", 0.1)
    # Nothing to reconcile: left out.
    session(engine, "empty", T0 + timedelta(hours=4))

    rows = {r["session_id"]: r for r in reconcile(engine).as_dicts()}

    assert list(rows) == ["agree", "bypass", "otlp", "codex"]
    agree = rows["agree"]
    assert (agree["gateway_calls"], agree["gateway_cost_usd"], agree["agent_cost_usd"]) == (2, 1.0, 1.0)
    assert agree["difference_usd"] == pytest.approx(0.0) and agree["agent_cost_source"] == "transcript"
    bypass = rows["bypass"]
    assert (bypass["imported_calls"], bypass["imported_cost_usd"]) == (1, 0.3)
    assert bypass["difference_usd"] == pytest.approx(0.3) and bypass["difference_pct"] == pytest.approx(37.5)
    assert rows["otlp"]["agent_cost_source"] == "otlp" and rows["otlp"]["difference_usd"] == pytest.approx(0.05)
    assert rows["codex"]["agent_cost_usd"] is None and rows["codex"]["difference_usd"] is None

    only = reconcile(engine, min_difference_usd=0.1).as_dicts()
    assert [r["session_id"] for r in only] == ["bypass"]
    since = reconcile(engine, since=(T0 + timedelta(minutes=30)).replace(tzinfo=None)).as_dicts()
    assert [r["session_id"] for r in since] == ["bypass", "otlp", "codex"]
    assert [r["session_id"] for r in reconcile(engine, session_id="otlp").as_dicts()] == ["otlp"]


def test_reconcile_command(db_url: str, home: str) -> None:
    engine = open_engine(db_url)
    session(engine, "s1")
    call(engine, "g1", "s1", 0.5)
    metric(engine, "s1", AGENT_COST, 0.5, agent_session_id="x", run="1", source="transcript")
    args = [sys.executable, "-m", "agenttrail", "report", "reconcile", "--db", db_url]
    out = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, timeout=120, check=True)
    (row,) = json.loads(out.stdout)
    assert (row["session_id"], row["gateway_cost_usd"], row["agent_cost_usd"], row["difference_usd"]) == (
        "s1",
        0.5,
        0.5,
        0.0,
    )
    wide = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True, env=wide).stdout
    assert "s1" in table and "difference_usd" in table
    bad = subprocess.run([*args, "--format", "xml"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "--format must be one of" in bad.stderr
