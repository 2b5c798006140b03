"""The OTLP receiver: payloads built with opentelemetry-proto, in both encodings, land as the right events,
calls and metrics under the right session; keys, bad bodies, re-sent exports and cumulative series."""

from __future__ import annotations

import base64
import gzip
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, NumberDataPoint
from sqlalchemy import Engine, text

from agenttrail.config import load_settings
from agenttrail.events import Event
from agenttrail.importers.claude_code import call_id_for
from agenttrail.importers.to_events import imported_session_id
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.keys import create_key, create_session_key
from agenttrail.store.org import add_team

T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)
CLAUDE_SID = "f63bed84-e413-4c65-bc0b-41665cebf1b9"
CODEX_SID = "01a20418-5f19-72f2-8fc3-7a2bdea137ec"
MODEL = "claude-sonnet-4-5-20250929"


# ------------------------------------------------------------------------------------------ payloads


def ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


def kv(key: str, value: Any) -> KeyValue:
    v = AnyValue()
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    else:
        v.string_value = str(value)
    return KeyValue(key=key, value=v)


def body(message: Message, encoding: str) -> tuple[bytes, dict[str, str]]:
    """An OTLP/HTTP request body and headers: protobuf, OTLP JSON (string integers, hex ids), or OTLP
    JSON with numeric integers as Claude Code's JavaScript exporter writes them; `+gzip` compresses."""
    enc, _, gz = encoding.partition("+")
    if enc == "protobuf":
        raw, ctype = message.SerializeToString(), "application/x-protobuf"
    else:
        doc = json_format.MessageToDict(message)

        def fix(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for k, v in node.items():
                    if k in ("traceId", "spanId") and isinstance(v, str):
                        out[k] = base64.b64decode(v).hex()
                    elif k == "intValue" and enc == "json-numbers":
                        out[k] = int(v)
                    else:
                        out[k] = fix(v)
                return out
            if isinstance(node, list):
                return [fix(v) for v in node]
            return node

        raw, ctype = orjson.dumps(fix(doc)), "application/json"
    headers = {"content-type": ctype}
    if gz:
        raw = gzip.compress(raw)
        headers["content-encoding"] = "gzip"
    return raw, headers


def claude_record(event: str, ms: int, **attrs: Any) -> LogRecord:
    ts = ns(T0 + timedelta(milliseconds=ms))
    rec = LogRecord(time_unix_nano=ts, observed_time_unix_nano=ts, body=AnyValue(string_value=f"claude_code.{event}"))
    rec.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    common = {"session.id": CLAUDE_SID, "user.id": "u1", "event.name": event, "event.sequence": ms, "prompt.id": "p1"}
    rec.attributes.extend(kv(k, v) for k, v in {**common, **attrs}.items())
    return rec


def claude_logs(agenttrail_session: str | None = "at-sess-1", request_id: str = "req_011A") -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    resource = [kv("service.name", "claude-code"), kv("service.version", "2.1.330")]
    if agenttrail_session:
        resource.append(kv("agenttrail.session_id", agenttrail_session))
    rl.resource.attributes.extend(resource)
    rl.scope_logs.add().log_records.extend(
        [
            claude_record("user_prompt", 10, prompt_length=15, prompt="Create hello.py"),
            claude_record("tool_decision", 20, decision="accept", source="config", tool_name="Write", tool_use_id="t1"),
            claude_record(
                "api_request",
                30,
                model=MODEL,
                input_tokens=1200,
                output_tokens=250,
                cache_read_tokens=3000,
                cache_creation_tokens=500,
                cache_creation_5m_tokens=400,
                cache_creation_1h_tokens=100,
                cost_usd=0.01545,
                duration_ms=4200,
                request_id=request_id,
            ),
            claude_record("assistant_response", 31, response="Done.", request_id=request_id, model=MODEL),
            claude_record("tool_result", 40, tool_name="Write", tool_use_id="t1", success="true", duration_ms=34),
            claude_record("api_error", 50, model=MODEL, error="Overloaded", status_code="529", duration_ms=120),
            claude_record("plugin_loaded", 60, **{"plugin.name": "x"}),
        ]
    )
    lost = LogRecord(time_unix_nano=ns(T0), body=AnyValue(string_value="claude_code.user_prompt"))
    lost.attributes.append(kv("event.name", "user_prompt"))  # no session.id: rejected, reported
    rl.scope_logs[0].log_records.append(lost)
    return req


def codex_logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "codex_exec"), kv("service.version", "0.169.0")])

    def rec(event: str, ms: int, **attrs: Any) -> LogRecord:
        r = LogRecord(time_unix_nano=ns(T0 + timedelta(milliseconds=ms)))
        common = {"event.name": f"codex.{event}", "conversation.id": CODEX_SID, "model": "gpt-5"}
        r.attributes.extend(kv(k, v) for k, v in {**common, **attrs}.items())
        return r

    rl.scope_logs.add().log_records.extend(
        [
            rec("user_prompt", 10, prompt="Add hello.txt", prompt_length=13),
            rec("sse_event", 20, **{"event.kind": "response.completed"}),
            rec(
                "sse_event",
                21,
                **{"event.kind": "response.completed"},
                input_token_count=1500,
                output_token_count=300,
                cached_token_count=1000,
                reasoning_token_count=120,
            ),
            rec("tool_decision", 30, tool_name="apply_patch", call_id="c1", decision="approved", source="Config"),
            rec("tool_result", 40, tool_name="apply_patch", call_id="c1", success="true", output="Success."),
        ]
    )
    return req


def claude_metrics(
    values: dict[str, float],
    *,
    start: datetime = T0,
    end: datetime = T0 + timedelta(seconds=60),
    cumulative: bool = False,
    agenttrail_session: str | None = "at-sess-1",
) -> ExportMetricsServiceRequest:
    """token.usage points by type (plus a cost.usage point when values has "cost")."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    resource = [kv("service.name", "claude-code")]
    if agenttrail_session:
        resource.append(kv("agenttrail.session_id", agenttrail_session))
    rm.resource.attributes.extend(resource)
    sm = rm.scope_metrics.add()
    temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        if cumulative
        else AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    for name, unit, items in (
        ("claude_code.token.usage", "tokens", {k: v for k, v in values.items() if k != "cost"}),
        ("claude_code.cost.usage", "USD", {"": values["cost"]} if "cost" in values else {}),
    ):
        if not items:
            continue
        m = sm.metrics.add(name=name, unit=unit)
        m.sum.is_monotonic = True
        m.sum.aggregation_temporality = temporality
        for typ, value in items.items():
            dp = NumberDataPoint(start_time_unix_nano=ns(start), time_unix_nano=ns(end), as_double=value)
            attrs = {"session.id": CLAUDE_SID, "model": MODEL, **({"type": typ} if typ else {})}
            dp.attributes.extend(kv(k, v) for k, v in attrs.items())
            m.sum.data_points.append(dp)
    return req


# -------------------------------------------------------------------------------------------- server


@dataclass
class Otlp:
    url: str
    key: str
    engine: Engine
    db_url: str
    tmp: Path

    def post(self, signal: str, message: Message, encoding: str = "protobuf", key: str | None = None) -> httpx.Response:
        raw, headers = body(message, encoding)
        headers["x-api-key"] = self.key if key is None else key
        return httpx.post(f"{self.url}/otlp/v1/{signal}", content=raw, headers=headers, timeout=30)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def run_server(db_url: str, tmp: Path) -> Iterator[str]:
    settings = load_settings(db=db_url, env={"AGENTTRAIL_HOME": str(tmp / "server-home")})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(create_server_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture
def otlp(db_url: str, tmp_path: Path) -> Iterator[Otlp]:
    engine = open_engine(db_url)
    add_team(engine, "core")
    key, _ = create_key(engine, team_name="core", now=T0.replace(tzinfo=None))
    gen = run_server(db_url, tmp_path)
    url = next(gen)
    try:
        yield Otlp(url, key, engine, db_url, tmp_path)
    finally:
        gen.close()


def traced(sid: str, **payload: Any) -> list[Event]:
    return [
        Event(sid, "session_start", T0 - timedelta(seconds=5), {"agent": "claude-code", **payload}, f"{sid}-s"),
        Event(sid, "session_end", T0 + timedelta(minutes=5), {"exit_code": 0}, f"{sid}-e"),
    ]


# --------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("encoding", ["protobuf", "json", "json-numbers", "protobuf+gzip", "json+gzip"])
def test_claude_code_logs_land_under_the_agenttrail_session(otlp: Otlp, encoding: str) -> None:
    ingest(otlp.engine, traced("at-sess-1"))
    r = otlp.post("logs", claude_logs(), encoding)

    assert r.status_code == 200, r.text
    expected_type = "application/json" if encoding.startswith("json") else "application/x-protobuf"
    assert r.headers["content-type"].startswith(expected_type)
    if expected_type == "application/x-protobuf":
        answer = ExportLogsServiceResponse.FromString(r.content)
        assert answer.partial_success.rejected_log_records == 1
    else:
        assert int(r.json()["partialSuccess"]["rejectedLogRecords"]) == 1
    events = otlp.rows("SELECT kind, session_id FROM events ORDER BY ts")
    assert {e["session_id"] for e in events} == {"at-sess-1"}
    assert [e["kind"] for e in events if e["kind"] not in ("session_start", "session_end")] == [
        "prompt",
        "tool_call",
        "llm_call",
        "response",
        "tool_result",
        "llm_call",
    ]
    calls = otlp.rows("SELECT * FROM llm_calls ORDER BY started_at")
    ok, err = calls
    assert (ok["source"], ok["session_id"], ok["agent_session_id"], ok["team"]) == (
        "otlp",
        "at-sess-1",
        CLAUDE_SID,
        "core",
    )
    assert (ok["input_tokens"], ok["cache_read_tokens"], ok["cache_write_tokens"], ok["cache_write_1h_tokens"]) == (
        1200,
        3000,
        500,
        100,
    )
    assert ok["call_id"] == call_id_for("req_011A", None, "") and ok["cost_usd"] > 0
    assert (err["status"], err["error"], err["input_tokens"]) == ("error", "529: Overloaded", 0)
    (s,) = otlp.rows("SELECT session_id, calls, prompts, tool_calls FROM sessions")
    assert s == {"session_id": "at-sess-1", "calls": 2, "prompts": 1, "tool_calls": 1}

    # The exporter retries: the same export is stored once.
    assert otlp.post("logs", claude_logs(), encoding).status_code == 200
    assert len(otlp.rows("SELECT event_id FROM events")) == len(events)
    assert len(otlp.rows("SELECT call_id FROM llm_calls")) == 2


def test_gateway_call_counts_and_the_telemetry_copy_does_not(otlp: Otlp) -> None:
    with otlp.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO llm_call (call_id, started_at, source, provider, model, input_tokens, output_tokens, "
                "cost_usd, status, request_id, session_id) VALUES "
                "('gw1', :t, 'gateway', 'anthropic', :m, 1200, 250, 0.02, 'ok', 'req_011A', 'at-sess-1')"
            ),
            {"t": T0.replace(tzinfo=None), "m": MODEL},
        )
    assert otlp.post("logs", claude_logs()).status_code == 200
    calls = otlp.rows("SELECT call_id, source, agent_session_id FROM llm_calls WHERE status = 'ok'")
    assert calls == [{"call_id": "gw1", "source": "gateway", "agent_session_id": CLAUDE_SID}]


def test_keys(otlp: Otlp) -> None:
    assert otlp.post("logs", claude_logs(), key="").status_code == 401
    denied = otlp.post("logs", claude_logs(), key="sk-at-unknown")
    assert denied.status_code == 401 and "unknown virtual key" in denied.json()["message"]
    raw, headers = body(claude_logs(), "json")
    bearer = httpx.post(
        f"{otlp.url}/otlp/v1/logs", content=raw, headers={**headers, "authorization": f"Bearer {otlp.key}"}
    )
    assert bearer.status_code == 200
    assert otlp.post("metrics", claude_metrics({"input": 1.0}), key="").status_code == 401


def test_bad_bodies(otlp: Otlp) -> None:
    def post(content: bytes, ctype: str, signal: str = "logs", **extra: str) -> httpx.Response:
        headers = {"content-type": ctype, "x-api-key": otlp.key, **extra}
        return httpx.post(f"{otlp.url}/otlp/v1/{signal}", content=content, headers=headers)

    assert post(b"hello", "text/plain").status_code == 415
    assert post(b"\xff\x00garbage", "application/x-protobuf").status_code == 400
    assert post(b"{not json", "application/json", "metrics").status_code == 400
    assert post(b"not gzip", "application/json", **{"content-encoding": "gzip"}).status_code == 400
    assert post(b"{}", "application/json", **{"content-encoding": "br"}).status_code == 415
    empty = post(b"", "application/x-protobuf")
    assert empty.status_code == 200 and otlp.rows("SELECT COUNT(*) AS n FROM events") == [{"n": 0}]


def test_session_scoped_key_names_the_session(otlp: Otlp) -> None:
    parent = create_key(otlp.engine, team_name="core", now=T0.replace(tzinfo=None))[1]
    session_key, _ = create_session_key(otlp.engine, parent, "at-run-7", T0.replace(tzinfo=None))
    assert otlp.post("logs", claude_logs(agenttrail_session=None), key=session_key).status_code == 200
    assert (
        otlp.post("metrics", claude_metrics({"input": 5.0}, agenttrail_session=None), key=session_key).status_code
        == 200
    )
    assert {r["session_id"] for r in otlp.rows("SELECT session_id FROM events")} == {"at-run-7"}
    assert {r["session_id"] for r in otlp.rows("SELECT session_id FROM agent_metric")} == {"at-run-7"}


def test_without_agenttrail_session_the_agent_session_is_joined(otlp: Otlp) -> None:
    # Nothing names the traced session, but it recorded Claude Code's session id.
    ingest(otlp.engine, traced("at-traced", agent_session_id=CLAUDE_SID))
    assert otlp.post("logs", claude_logs(agenttrail_session=None), "json").status_code == 200
    assert otlp.post("metrics", claude_metrics({"input": 5.0}, agenttrail_session=None)).status_code == 200
    assert {r["session_id"] for r in otlp.rows("SELECT session_id FROM events")} == {"at-traced"}
    assert {r["session_id"] for r in otlp.rows("SELECT session_id FROM agent_metric")} == {"at-traced"}


def test_untraced_agent_session_stands_alone(otlp: Otlp) -> None:
    assert otlp.post("logs", claude_logs(agenttrail_session=None)).status_code == 200
    own = imported_session_id("claude-code", CLAUDE_SID)
    (s,) = otlp.rows("SELECT session_id, source, agent, calls, model FROM sessions")
    assert s == {"session_id": own, "source": "imported", "agent": "claude-code", "calls": 2, "model": MODEL}


def test_codex_logs(otlp: Otlp) -> None:
    assert otlp.post("logs", codex_logs(), "json").status_code == 200
    own = imported_session_id("codex", CODEX_SID)
    (call,) = otlp.rows("SELECT * FROM llm_calls")
    assert (call["session_id"], call["provider"], call["model"], call["source"]) == (own, "openai", "gpt-5", "otlp")
    assert (call["input_tokens"], call["cache_read_tokens"], call["output_tokens"], call["reasoning_tokens"]) == (
        500,
        1000,
        300,
        120,
    )
    kinds = [r["kind"] for r in otlp.rows("SELECT kind FROM events WHERE session_id = :s ORDER BY ts", s=own)]
    assert [k for k in kinds if k not in ("session_start", "session_end")] == [
        "prompt",
        "llm_call",
        "tool_call",
        "tool_result",
    ]


@pytest.mark.parametrize("encoding", ["protobuf", "json-numbers"])
def test_delta_metrics(otlp: Otlp, encoding: str) -> None:
    values = {"input": 1200.0, "output": 250.0, "cacheRead": 3000.0, "cacheCreation": 500.0, "cost": 0.01545}
    assert otlp.post("metrics", claude_metrics(values), encoding).status_code == 200
    later = T0 + timedelta(seconds=60)
    second = claude_metrics({"input": 10.0, "cost": 0.001}, start=later, end=later + timedelta(seconds=60))
    assert otlp.post("metrics", second, encoding).status_code == 200
    assert otlp.post("metrics", claude_metrics(values), encoding).status_code == 200  # re-sent: stored once

    rows = otlp.rows("SELECT session_id, name, attributes, value FROM agent_metric")
    assert {r["session_id"] for r in rows} == {"at-sess-1"}
    tokens: dict[str, float] = {}
    for r in rows:
        if r["name"] == "claude_code.token.usage":
            typ = orjson.loads(r["attributes"])["type"]
            tokens[typ] = tokens.get(typ, 0.0) + r["value"]
    assert tokens == {"input": 1210.0, "output": 250.0, "cacheRead": 3000.0, "cacheCreation": 500.0}
    cost = sum(r["value"] for r in rows if r["name"] == "claude_code.cost.usage")
    assert cost == pytest.approx(0.01645)


def test_cumulative_metrics_become_deltas_across_restarts(otlp: Otlp) -> None:
    def export(value: float, seconds: int) -> None:
        msg = claude_metrics({"input": value}, end=T0 + timedelta(seconds=seconds), cumulative=True)
        assert otlp.post("metrics", msg, "json").status_code == 200

    export(10.0, 10)
    export(25.0, 20)
    export(25.0, 20)  # the same export again
    # Another server process (or this one restarted) continues the series from the store.
    first, gen = otlp.url, run_server(otlp.db_url, otlp.tmp / "second")
    otlp.url = next(gen)
    try:
        export(40.0, 30)
    finally:
        gen.close()
        otlp.url = first
    values = [r["value"] for r in otlp.rows("SELECT value FROM agent_metric ORDER BY end_time")]
    assert values == [10.0, 15.0, 15.0]
    # The counter restarted (a new start time): its whole value is new.
    msg = claude_metrics(
        {"input": 4.0}, start=T0 + timedelta(seconds=40), end=T0 + timedelta(seconds=50), cumulative=True
    )
    assert otlp.post("metrics", msg).status_code == 200
    assert sum(r["value"] for r in otlp.rows("SELECT value FROM agent_metric")) == 44.0


@pytest.mark.parametrize("tokens", [2**63 - 1, 1e300])
def test_a_token_count_no_column_can_hold_is_a_400_not_a_500(otlp: Otlp, tokens: float) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "claude-code"))
    huge = claude_record("api_request", 30, model=MODEL, input_tokens=tokens, output_tokens=1, request_id="req_huge")
    rl.scope_logs.add().log_records.append(huge)
    r = otlp.post("logs", req)
    assert r.status_code == 400, r.text
    assert "cannot store the exported records" in r.json()["message"]
    assert otlp.rows("SELECT call_id FROM llm_call") == []


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), float("-inf")])
def test_a_metric_value_that_is_no_amount_is_rejected_and_the_rest_kept(otlp: Otlp, cost: float) -> None:
    """A NaN cost summed into a session made every total NaN, and reconcile showed inf."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

    r = otlp.post("metrics", claude_metrics({"input": 1200.0, "cost": cost}))
    assert r.status_code == 200, r.text
    answer = ExportMetricsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_data_points == 1
    assert "NaN or infinite" in answer.partial_success.error_message
    rows = otlp.rows("SELECT name, value FROM agent_metric")
    assert [(r["name"], r["value"]) for r in rows] == [("claude_code.token.usage", 1200.0)]
