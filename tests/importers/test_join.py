"""The join at ingest: transcript and OTLP records meet traced sessions and gateway calls, counted once.

Gateway rows are written the way the gateway's recorder writes them (straight into llm_call), so these
tests need no running server; test_join_real_clis.py does the same with the real CLIs through the gateway.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event, new_id
from agenttrail.importers import import_claude_code, import_codex
from agenttrail.importers.records import ImportBatch, TranscriptCall
from agenttrail.importers.to_events import batch_to_events, imported_session_id
from agenttrail.pricing import Pricer
from agenttrail.reports.reconcile import reconcile
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, ingest
from agenttrail.store.tables import llm_call
from agenttrail.usage import Usage

from .builders import T0, ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage

PRICER = Pricer()
MODEL = "claude-sonnet-4-5-20250929"
U1 = anthropic_usage(1200, 250, cache_read=3000, cache_5m=400, cache_1h=100)
U2 = anthropic_usage(10, 5, cache_read=4000)


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def one(engine: Engine, sql: str, **params: Any) -> Any:
    (r,) = rows(engine, sql, **params)
    return next(iter(r.values()))


def claude_session(tmp: Path, *, cost_state: bool = True, cwd: str = "/home/dev/widgets") -> ClaudeTranscript:
    t = ClaudeTranscript(cwd=cwd)
    t.prompt("Create hello.py")
    t.response(
        [
            {"type": "text", "text": "I'll create it."},
            {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "hello.py", "content": "x"}},
        ],
        U1,
    )
    t.tool_result("toolu_1", "File created")
    t.response([{"type": "text", "text": "Done."}], U2)
    if cost_state:
        t.cost_state(expected_cost())
    t.write(tmp / "projects")
    return t


def expected_cost() -> float:
    return float(
        PRICER.price("anthropic", MODEL, Usage.from_anthropic(U1)).cost_usd
        + PRICER.price("anthropic", MODEL, Usage.from_anthropic(U2)).cost_usd
    )


def imported(tmp: Path, *, agent: str = "claude-code") -> list[Event]:
    batch = import_claude_code(tmp / "projects") if agent == "claude-code" else import_codex(tmp / "codex")
    assert batch.errors == []
    return batch_to_events(batch, PRICER)


def traced(
    sid: str,
    *,
    cwd: str = "/home/dev/widgets",
    start: datetime = T0 - timedelta(seconds=30),
    end: datetime | None = T0 + timedelta(minutes=10),
    agent_session_id: str | None = None,
    agent: str = "claude-code",
) -> list[Event]:
    payload: dict[str, Any] = {"agent": agent, "cwd": cwd, "repo": "github.com/acme/widgets", "command": ["claude"]}
    if agent_session_id:
        payload["agent_session_id"] = agent_session_id
    out = [Event(sid, "session_start", start, payload, event_id=f"{sid}-start")]
    if end is not None:
        out.append(Event(sid, "session_end", end, {"exit_code": 0}, event_id=f"{sid}-end"))
    return out


def gateway_calls(engine: Engine, t: ClaudeTranscript, session_id: str, *, with_request_id: bool = True) -> float:
    """The rows the gateway's recorder writes for the transcript's calls; returns their total cost."""
    total = 0.0
    with engine.begin() as conn:
        for line in t.lines:
            if line.get("type") != "assistant" or line.get("apiBlockIndex") != 0:
                continue
            u = Usage.from_anthropic(line["message"]["usage"])
            price = PRICER.price("anthropic", MODEL, u)
            total += float(price.cost_usd)
            conn.execute(
                llm_call.insert().values(
                    call_id=new_id(),
                    started_at=datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).replace(tzinfo=None)
                    - timedelta(seconds=1),
                    session_id=session_id,
                    agent_session_id=t.session_id,
                    source="gateway",
                    provider="anthropic",
                    endpoint="messages",
                    model=MODEL,
                    input_tokens=u.input_tokens,
                    cache_read_tokens=u.cache_read_tokens,
                    cache_write_tokens=u.cache_write_tokens,
                    cache_write_1h_tokens=u.cache_write_1h_tokens,
                    output_tokens=u.output_tokens,
                    cost_usd=float(price.cost_usd),
                    cost_nanos=price.cost_nanos,
                    status="ok",
                    stream=True,
                    request_id=line["requestId"] if with_request_id else None,
                )
            )
    return total


def test_traced_session_and_its_transcript_count_each_call_once(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    ingest(engine, traced("sess-1", agent_session_id=t.session_id))
    gw_cost = gateway_calls(engine, t, "sess-1")

    events = imported(tmp_path)
    first = ingest(engine, events)
    again = ingest(engine, events)

    assert (again.accepted, again.duplicates) == (0, len(events))
    calls = rows(engine, "SELECT session_id, source, agent_session_id FROM llm_calls")
    assert len(calls) == 2 and {(c["session_id"], c["source"]) for c in calls} == {("sess-1", "gateway")}
    assert first.accepted == len(events)
    # The dialogue is in the traced session; no separate imported session was made.
    assert one(engine, "SELECT COUNT(*) FROM events WHERE session_id <> 'sess-1'") == 0
    (s,) = rows(engine, "SELECT * FROM sessions")
    assert (s["session_id"], s["calls"], s["prompts"], s["tool_calls"]) == ("sess-1", 2, 1, 1)
    assert s["cost_usd"] == pytest.approx(gw_cost)
    assert s["input_tokens"] == 1210 and s["cache_write_tokens"] == 500
    # Reconcile: the agent's own figure equals the gateway's when the prices agree.
    (r,) = reconcile(engine).as_dicts()
    assert r["session_id"] == "sess-1" and r["gateway_calls"] == 2 and r["imported_calls"] == 0
    assert r["agent_cost_source"] == "transcript"
    assert r["gateway_cost_usd"] == pytest.approx(expected_cost())
    assert r["difference_usd"] == pytest.approx(0.0, abs=1e-9)


def test_join_by_cwd_and_span_binds_the_agent_session_id(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    # Two traced runs in the same folder; only the first spans the transcript. Neither knows its id.
    ingest(engine, traced("early", start=T0 - timedelta(minutes=1), end=T0 + timedelta(minutes=5)))
    ingest(engine, traced("later", start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)))
    ingest(engine, traced("elsewhere", cwd="/home/dev/other", end=T0 + timedelta(minutes=5)))

    ingest(engine, imported(tmp_path))

    calls = rows(engine, "SELECT session_id, source FROM llm_calls")
    assert {(c["session_id"], c["source"]) for c in calls} == {("early", "transcript")} and len(calls) == 2
    assert one(engine, "SELECT agent_session_id FROM agent_session WHERE session_id = 'early'") == t.session_id
    assert one(engine, "SELECT COUNT(*) FROM agent_session WHERE source = 'imported'") == 0
    early = rows(engine, "SELECT calls, prompts, cost_usd FROM sessions WHERE session_id = 'early'")[0]
    assert early["calls"] == 2 and early["prompts"] == 1
    assert early["cost_usd"] == pytest.approx(expected_cost())
    (r,) = [r for r in reconcile(engine).as_dicts() if r["session_id"] == "early"]
    assert (
        r["gateway_calls"] == 0 and r["imported_calls"] == 2 and r["difference_usd"] == pytest.approx(expected_cost())
    )


def test_untraced_transcript_is_a_session_of_its_own(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    ingest(engine, imported(tmp_path), Attribution(engineer="ana@example.com"))

    own = imported_session_id("claude-code", t.session_id)
    (s,) = rows(engine, "SELECT * FROM sessions")
    assert (s["session_id"], s["source"], s["agent"], s["agent_session_id"]) == (
        own,
        "imported",
        "claude-code",
        t.session_id,
    )
    assert (s["calls"], s["prompts"], s["tool_calls"], s["cwd"]) == (2, 1, 1, "/home/dev/widgets")
    assert s["cost_usd"] == pytest.approx(expected_cost()) and s["engineer"] == "ana@example.com"
    assert s["model"] == MODEL
    assert one(engine, "SELECT COUNT(*) FROM llm_calls WHERE source = 'transcript'") == 2


def _session_event(asid: str, kind: str, start: str, end: str, **details: str) -> Event:
    payload = {"source": "imported", "agent": "codex", "agent_session_id": asid, "started_at": start, "ended_at": end}
    return Event(
        imported_session_id("codex", asid), kind, datetime.fromisoformat(start), {**payload, **details}, new_id()
    )


def test_imported_session_rows_widen_across_and_within_batches(db_url: str) -> None:
    engine = open_engine(db_url)
    a, b = "a-0000", "b-0000"
    ingest(
        engine, [_session_event(a, "session_start", "2026-05-04T10:00:05+00:00", "2026-05-04T10:00:20+00:00", cwd="/w")]
    )
    # One batch, several readings of each session: they fold into one row each, as one by one.
    ingest(
        engine,
        [
            _session_event(a, "session_end", "2026-05-04T10:00:00+00:00", "2026-05-04T10:00:10+00:00", branch="dev"),
            _session_event(a, "session_end", "2026-05-04T10:00:08+00:00", "2026-05-04T10:00:30+00:00", cwd="/other"),
            _session_event(b, "session_start", "2026-05-04T11:00:00+00:00", "2026-05-04T11:00:05+00:00", cwd="/b"),
            _session_event(b, "session_end", "2026-05-04T10:59:00+00:00", "2026-05-04T11:00:02+00:00", branch="main"),
        ],
    )

    got = rows(engine, "SELECT agent_session_id, started_at, ended_at, cwd, branch FROM sessions ORDER BY 1")
    assert [
        (r["agent_session_id"], str(r["started_at"])[:19], str(r["ended_at"])[:19], r["cwd"], r["branch"]) for r in got
    ] == [
        (a, "2026-05-04 10:00:00", "2026-05-04 10:00:30", "/w", "dev"),
        (b, "2026-05-04 10:59:00", "2026-05-04 11:00:05", "/b", "main"),
    ]


def test_traced_session_arriving_later_takes_over_the_imported_one(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    ingest(engine, imported(tmp_path))
    assert one(engine, "SELECT COUNT(*) FROM sessions") == 1

    # The tracer's outbox was offline: its session arrives after the import.
    ingest(engine, traced("sess-late", agent_session_id=t.session_id))

    (s,) = rows(engine, "SELECT * FROM sessions")
    assert s["session_id"] == "sess-late" and s["source"] == "traced"
    assert (s["calls"], s["prompts"], s["tool_calls"]) == (2, 1, 1)
    assert s["cost_usd"] == pytest.approx(expected_cost())
    assert one(engine, "SELECT COUNT(*) FROM events WHERE session_id <> 'sess-late'") == 0
    assert one(engine, "SELECT COUNT(*) FROM agent_metric WHERE session_id <> 'sess-late'") == 0
    assert one(engine, "SELECT COUNT(*) FROM session_rollup WHERE session_id <> 'sess-late'") == 0
    (r,) = reconcile(engine).as_dicts()
    assert r["session_id"] == "sess-late" and r["agent_cost_usd"] == pytest.approx(expected_cost())
    # Importing again changes nothing, and the join now goes straight to the traced session.
    again = ingest(engine, imported(tmp_path))
    assert again.accepted == 0
    assert one(engine, "SELECT COUNT(*) FROM llm_calls") == 2


def test_traced_session_ending_later_takes_over_by_cwd_and_span(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    ingest(engine, imported(tmp_path))
    start, end = traced("sess-x")
    ingest(engine, [start])  # still running: an open span takes nothing over
    assert one(engine, "SELECT COUNT(*) FROM agent_session WHERE source = 'imported'") == 1
    ingest(engine, [end])

    assert [r["session_id"] for r in rows(engine, "SELECT session_id FROM sessions")] == ["sess-x"]
    assert one(engine, "SELECT agent_session_id FROM agent_session WHERE session_id = 'sess-x'") == t.session_id
    assert one(engine, "SELECT calls FROM sessions") == 2


def test_agenttrail_session_id_wins(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    claude_session(tmp_path)
    batch = import_claude_code(tmp_path / "projects")
    events = batch_to_events(batch, PRICER, agenttrail_session_id="at-hinted")
    ingest(engine, traced("other-same-cwd"))  # would match by cwd and span, but the hint says otherwise
    ingest(engine, events)
    assert {r["session_id"] for r in rows(engine, "SELECT session_id FROM llm_calls")} == {"at-hinted"}
    assert one(engine, "SELECT COUNT(*) FROM events WHERE session_id = 'at-hinted'") == len(events)


def test_gateway_request_id_finds_the_session(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    # No session row for it yet (its start is still in an outbox), but the gateway tagged the calls.
    gateway_calls(engine, t, "sess-gw")
    ingest(engine, imported(tmp_path))
    assert one(engine, "SELECT COUNT(*) FROM llm_calls") == 2
    assert one(engine, "SELECT COUNT(*) FROM events WHERE session_id <> 'sess-gw'") == 0


def test_gateway_call_without_session_gains_it_from_the_transcript(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    t = claude_session(tmp_path)
    gateway_calls(engine, t, None)  # type: ignore[arg-type]
    ingest(engine, imported(tmp_path))
    own = imported_session_id("claude-code", t.session_id)
    calls = rows(engine, "SELECT session_id, source, agent_session_id FROM llm_calls")
    assert [(c["session_id"], c["source"]) for c in calls] == [(own, "gateway")] * 2
    assert one(engine, "SELECT calls FROM sessions") == 2


def _call(source: str, output: int, **kw: Any) -> TranscriptCall:
    return TranscriptCall(
        call_id="c" * 32,
        session_id="7f0c-agent-session",
        agent="claude-code",
        provider="anthropic",
        model=MODEL,
        ts=T0,
        usage=Usage(input_tokens=100, cache_read_tokens=50, output_tokens=output),
        request_id="req_partial",
        source=source,  # type: ignore[arg-type]
        **kw,
    )


def test_partial_reading_is_completed_and_copies_count_once(db_url: str) -> None:
    engine = open_engine(db_url)
    # A response read while still streaming (output 1), then complete from OTLP and from the transcript.
    for call in (_call("transcript", 1), _call("otlp", 250, agent_cost_usd=0.01), _call("transcript", 250)):
        ingest(engine, batch_to_events(ImportBatch(calls=[call]), PRICER))
    (c,) = rows(engine, "SELECT output_tokens, cost_usd, session_id FROM llm_calls")
    full = PRICER.price("anthropic", MODEL, Usage(input_tokens=100, cache_read_tokens=50, output_tokens=250))
    assert c["output_tokens"] == 250 and c["cost_usd"] == pytest.approx(float(full.cost_usd))
    assert one(engine, "SELECT cost_usd FROM sessions") == pytest.approx(float(full.cost_usd))
    assert one(engine, "SELECT output_tokens FROM sessions") == 250


def _codex(tmp: Path, n: int = 3) -> CodexRollout:
    r = CodexRollout(cwd="/home/dev/gadgets", model="gpt-5")
    r.meta()
    r.turn_context()
    r.user("Say hi")
    for i in range(n):
        r.assistant(f"step {i}")
        r.usage_record(f"resp_{i:04d}", codex_usage(1500, 1000, 300, 120))
    r.write(tmp / "codex")
    return r


def test_codex_rollout_and_gateway_calls_pair_one_to_one(db_url: str, tmp_path: Path) -> None:
    """Through the gateway a Codex call is recorded with OpenAI's x-request-id, not the Responses id the
    rollout keeps: the copies pair up by agent session, tokens and time, one gateway row per rollout call."""
    engine = open_engine(db_url)
    r = _codex(tmp_path)
    ingest(engine, traced("sess-codex", cwd="/home/dev/gadgets", agent="codex", agent_session_id=r.session_id))
    u = Usage(input_tokens=500, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=120)
    price = PRICER.price("openai", "gpt-5", u)
    with engine.begin() as conn:
        for i, line in enumerate(x for x in r.lines if x["type"] == "token_usage_record"):
            ts = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)
            conn.execute(
                llm_call.insert().values(
                    call_id=f"gw{i}",
                    started_at=ts - timedelta(seconds=2),
                    session_id="sess-codex",
                    agent_session_id=r.session_id,
                    source="gateway",
                    provider="openai",
                    endpoint="responses",
                    model="gpt-5-2025-08-07",
                    input_tokens=u.input_tokens,
                    cache_read_tokens=u.cache_read_tokens,
                    output_tokens=u.output_tokens,
                    reasoning_tokens=u.reasoning_tokens,
                    cost_usd=float(price.cost_usd),
                    status="ok",
                    request_id=f"req_{i}abc",
                )
            )
    ingest(engine, imported(tmp_path, agent="codex"))
    ingest(engine, imported(tmp_path, agent="codex"))

    calls = rows(engine, "SELECT call_id, source, tags FROM llm_calls ORDER BY call_id")
    assert [c["source"] for c in calls] == ["gateway"] * 3
    assert all("agenttrail.copy.transcript" in c["tags"] for c in calls)
    assert one(engine, "SELECT calls FROM sessions") == 3


def test_codex_otlp_and_rollout_copies_count_once(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    r = _codex(tmp_path, n=2)
    rollout = import_codex(tmp_path / "codex")
    # The same two responses as Codex's OTLP sse_event records: no response id, their own call ids.
    otlp = ImportBatch(
        calls=[
            dataclasses.replace(c, call_id=f"otlp{i}", request_id=None, source="otlp", ts=c.ts + timedelta(seconds=1))
            for i, c in enumerate(rollout.calls)
        ]
    )
    ingest(engine, batch_to_events(otlp, PRICER, default_agent="codex"))
    ingest(engine, batch_to_events(rollout, PRICER))

    calls = rows(engine, "SELECT source, request_id, session_id FROM llm_calls ORDER BY request_id")
    assert [c["source"] for c in calls] == ["otlp", "otlp"]
    assert [c["request_id"] for c in calls] == ["resp_0000", "resp_0001"]  # the rollout's ids, adopted
    assert {c["session_id"] for c in calls} == {imported_session_id("codex", r.session_id)}
    assert one(engine, "SELECT calls FROM sessions") == 2


def test_different_calls_with_equal_usage_are_not_merged(db_url: str, tmp_path: Path) -> None:
    """Pairing without a shared id needs a different source: two transcript calls stay two."""
    engine = open_engine(db_url)
    _codex(tmp_path, n=2)
    ingest(engine, imported(tmp_path, agent="codex"))
    assert one(engine, "SELECT COUNT(*) FROM llm_calls") == 2
