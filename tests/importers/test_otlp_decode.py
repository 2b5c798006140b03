"""OTLP/HTTP payloads in the documented Claude Code and Codex schemas, in both encodings."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric, NumberDataPoint

from agenttrail.events import PROMPT, RESPONSE, TOOL_CALL, TOOL_RESULT
from agenttrail.importers.claude_code import call_id_for
from agenttrail.importers.otlp import (
    CLAUDE_CODE_METRICS,
    CumulativeToDelta,
    MetricPoint,
    OtlpDecodeError,
    decode_logs_request,
    parse_otlp_logs,
    parse_otlp_metrics,
)
from agenttrail.usage import Usage

T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)
CLAUDE_SID = "f63bed84-e413-4c65-bc0b-41665cebf1b9"
CODEX_SID = "01a20418-5f19-72f2-8fc3-7a2bdea137ec"
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")


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
    elif isinstance(value, list):
        v.array_value.values.extend(AnyValue(string_value=str(x)) for x in value)
    else:
        v.string_value = str(value)
    return KeyValue(key=key, value=v)


def encode(message: Message, encoding: str, *, numbers: bool = False) -> tuple[bytes, str]:
    """The body and content type of an OTLP/HTTP export. JSON follows the OTLP JSON mapping (hex trace
    ids); with `numbers`, intValue is a JSON number, as Claude Code's JavaScript exporter sends it."""
    if encoding == "protobuf":
        return message.SerializeToString(), "application/x-protobuf"
    doc = json_format.MessageToDict(message)

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k in ("traceId", "spanId") and isinstance(v, str):
                    out[k] = base64.b64decode(v).hex()
                elif k == "intValue" and numbers:
                    out[k] = int(v)
                else:
                    out[k] = fix(v)
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return orjson.dumps(fix(doc)), "application/json"


ENCODINGS = [("protobuf", False), ("json", False), ("json", True)]

# ----------------------------------------------------------------------------------- Claude Code logs


def claude_record(event: str, offset_ms: int, seq: int, **attrs: Any) -> LogRecord:
    ts = ns(T0 + timedelta(milliseconds=offset_ms))
    rec = LogRecord(time_unix_nano=ts, observed_time_unix_nano=ts, body=AnyValue(string_value=f"claude_code.{event}"))
    rec.trace_id = TRACE_ID
    rec.span_id = SPAN_ID
    common = {
        "agenttrail.session_id": "at-sess-1",
        "user.id": "a5c08bba",
        "session.id": CLAUDE_SID,
        "terminal.type": "xterm",
        "event.name": event,
        "event.timestamp": (T0 + timedelta(milliseconds=offset_ms)).isoformat(),
        "event.sequence": seq,
        "prompt.id": "da60dbd3",
    }
    rec.attributes.extend(kv(k, v) for k, v in {**common, **attrs}.items())
    return rec


def claude_logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(
        [kv("service.name", "claude-code"), kv("service.version", "2.1.330"), kv("agenttrail.session_id", "at-sess-1")]
    )
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    sl.log_records.extend(
        [
            claude_record("plugin_loaded", 0, 0, **{"plugin.name": "x"}),
            claude_record("user_prompt", 10, 1, prompt_length="15", prompt="<REDACTED>"),
            claude_record(
                "tool_decision",
                20,
                2,
                decision="accept",
                source="config",
                tool_name="Bash",
                tool_use_id="toolu_1",
                request_id="req_011A",
            ),
            claude_record(
                "api_request",
                30,
                3,
                model="claude-sonnet-4-5-20250929",
                input_tokens=1200,
                output_tokens=250,
                cache_read_tokens=3000,
                cache_creation_tokens=500,
                cache_creation_5m_tokens=400,
                cache_creation_1h_tokens=100,
                cost_usd=0.01545,
                duration_ms=4200,
                request_id="req_011A",
            ),
            claude_record(
                "assistant_response",
                31,
                4,
                response_length=11,
                response="<REDACTED>",
                request_id="req_011A",
                model="claude-sonnet-4-5-20250929",
            ),
            claude_record(
                "tool_result",
                40,
                5,
                tool_name="Bash",
                tool_use_id="toolu_1",
                success="false",
                duration_ms="34",
                error="exit 1",
                tool_parameters='{"bash_command": "false", "full_command": "false"}',
            ),
            claude_record(
                "api_error",
                50,
                6,
                model="claude-sonnet-4-5-20250929",
                error="Overloaded",
                status_code="529",
                duration_ms=120,
                attempt=1,
            ),
            claude_record(
                "api_request",
                60,
                7,
                model="claude-haiku-4-5-20251001",
                input_tokens=10,
                output_tokens=5,
                cache_read_tokens=0,
                cache_creation_tokens=20,
                cost_usd=0.0001,
                duration_ms=300,
            ),
        ]
    )
    return req


@pytest.mark.parametrize(("encoding", "numbers"), ENCODINGS)
def test_claude_code_logs(encoding: str, numbers: bool) -> None:
    body, ctype = encode(claude_logs(), encoding, numbers=numbers)

    batch = parse_otlp_logs(body, ctype)

    assert batch.errors == []
    (s,) = batch.sessions
    assert (s.agent, s.agent_session_id, s.agenttrail_session_id) == ("claude-code", CLAUDE_SID, "at-sess-1")
    assert s.agent_version == "2.1.330"
    assert s.models == ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    assert s.started_at == T0 + timedelta(milliseconds=10)

    ok = [c for c in batch.calls if c.status == "ok"]
    (err,) = [c for c in batch.calls if c.status == "error"]
    assert len(ok) == 2
    first = next(c for c in ok if c.request_id == "req_011A")
    assert first.usage == Usage(
        input_tokens=1200,
        cache_read_tokens=3000,
        cache_write_5m_tokens=400,
        cache_write_1h_tokens=100,
        output_tokens=250,
    )
    assert first.call_id == call_id_for("req_011A", "msg_whatever", "x")  # same id as the transcript's
    assert first.agent_cost_usd == pytest.approx(0.01545)
    assert first.duration_ms == 4200
    assert first.source == "otlp" and first.provider == "anthropic"
    assert first.agenttrail_session_id == "at-sess-1"
    assert first.ts == T0 + timedelta(milliseconds=30)
    second = next(c for c in ok if c.request_id is None)
    assert second.usage == Usage(input_tokens=10, cache_write_5m_tokens=20, output_tokens=5)  # no split: 5m
    assert err.usage == Usage() and err.error == "529: Overloaded"

    kinds = [e.kind for e in batch.events]
    assert kinds == [PROMPT, TOOL_CALL, RESPONSE, TOOL_RESULT]
    prompt, decision, response, result = batch.events
    assert prompt.payload["redacted"] is True and prompt.payload["length"] == 15
    assert "text" not in prompt.payload
    assert decision.payload["decision"] == "accept" and decision.payload["tool_use_id"] == "toolu_1"
    assert response.payload["request_id"] == "req_011A"
    assert result.payload["is_error"] is True and result.payload["duration_ms"] == 34
    assert result.payload["tool_parameters"] == {"bash_command": "false", "full_command": "false"}
    assert all(e.session_id == CLAUDE_SID for e in batch.events)
    assert all(e.payload["agenttrail_session_id"] == "at-sess-1" for e in batch.events)


def test_encodings_give_identical_records() -> None:
    batches = [parse_otlp_logs(*encode(claude_logs(), enc, numbers=num)) for enc, num in ENCODINGS]
    ids = [([e.event_id for e in b.events], sorted(c.call_id for c in b.calls)) for b in batches]
    assert ids[0] == ids[1] == ids[2]
    # A re-sent export maps to the same ids: it is stored once.
    again = parse_otlp_logs(*encode(claude_logs(), "protobuf"))
    assert [e.event_id for e in again.events] == ids[0][0]


def test_json_trace_ids_are_hex() -> None:
    body, ctype = encode(claude_logs(), "json")
    assert TRACE_ID.hex() in body.decode()
    req = decode_logs_request(body, ctype)
    rec = req.resource_logs[0].scope_logs[0].log_records[0]
    assert rec.trace_id == TRACE_ID and rec.span_id == SPAN_ID


def test_prompt_text_kept_when_logged() -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "claude-code"))
    rl.scope_logs.add().log_records.append(claude_record("user_prompt", 0, 0, prompt="fix the bug", prompt_length=11))
    (event,) = parse_otlp_logs(*encode(req, "protobuf")).events
    assert event.payload["text"] == "fix the bug"


def test_record_without_session_is_reported() -> None:
    req = claude_logs()
    bad = LogRecord(time_unix_nano=ns(T0), body=AnyValue(string_value="claude_code.api_request"))
    bad.attributes.extend([kv("event.name", "api_request"), kv("input_tokens", 5)])
    req.resource_logs[0].scope_logs[0].log_records.insert(0, bad)

    batch = parse_otlp_logs(*encode(req, "protobuf"))

    assert [(e.line_no, "session.id" in e.reason) for e in batch.errors] == [(1, True)]
    assert len(batch.calls) == 3


# ---------------------------------------------------------------------------------------- Codex logs


def codex_record(event: str, offset_ms: int, **attrs: Any) -> LogRecord:
    ts = ns(T0 + timedelta(milliseconds=offset_ms))
    rec = LogRecord(time_unix_nano=ts, observed_time_unix_nano=ts)
    common = {
        "event.name": f"codex.{event}",
        "event.timestamp": "2026-05-04T09:00:00Z",
        "conversation.id": CODEX_SID,
        "app.version": "0.169.0",
        "originator": "codex_exec",
        "terminal.type": "xterm",
        "model": "gpt-5.5-codex",
        "slug": "gpt-5.5-codex",
    }
    rec.attributes.extend(kv(k, v) for k, v in {**common, **attrs}.items())
    return rec


def codex_logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "codex_exec"), kv("service.version", "0.169.0")])
    sl = rl.scope_logs.add()
    sl.log_records.extend(
        [
            codex_record("conversation_starts", 0, provider_name="openai", approval_policy="never"),
            codex_record("user_prompt", 10, prompt_length="15", prompt="Add hello.txt"),
            codex_record("api_request", 20, duration_ms="36", **{"http.response.status_code": "200"}, attempt="0"),
            codex_record("sse_event", 21, **{"event.kind": "response.created"}, duration_ms="0"),
            codex_record("sse_event", 22, **{"event.kind": "response.completed"}, duration_ms="0"),
            codex_record(
                "sse_event",
                22,
                **{"event.kind": "response.completed"},
                input_token_count="1500",
                output_token_count="300",
                cached_token_count="1000",
                reasoning_token_count="120",
                tool_token_count="1800",
            ),
            codex_record(
                "tool_decision", 30, tool_name="exec_command", call_id="call_1", decision="approved", source="Config"
            ),
            codex_record(
                "tool_result",
                40,
                tool_name="exec_command",
                call_id="call_1",
                duration_ms="196",
                success="true",
                arguments='{"cmd": "ls"}',
                output="Process exited with code 0\nhello.txt",
            ),
            codex_record(
                "api_request",
                50,
                duration_ms="5",
                **{"http.response.status_code": "500", "error.message": "upstream exploded"},
            ),
        ]
    )
    plain = LogRecord(time_unix_nano=ns(T0), body=AnyValue(string_value="flushing OTEL metrics"))
    req.resource_logs.add().scope_logs.add().log_records.append(plain)
    return req


@pytest.mark.parametrize(("encoding", "numbers"), ENCODINGS)
def test_codex_logs(encoding: str, numbers: bool) -> None:
    batch = parse_otlp_logs(*encode(codex_logs(), encoding, numbers=numbers))

    assert batch.errors == []
    (s,) = batch.sessions
    assert (s.agent, s.agent_session_id, s.agent_version) == ("codex", CODEX_SID, "0.169.0")
    assert s.models == ["gpt-5.5-codex"]
    (ok,) = [c for c in batch.calls if c.status == "ok"]
    (err,) = [c for c in batch.calls if c.status == "error"]
    assert ok.usage == Usage(input_tokens=500, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=120)
    assert ok.provider == "openai" and ok.model == "gpt-5.5-codex" and ok.session_id == CODEX_SID
    assert err.error == "500: upstream exploded"
    assert [e.kind for e in batch.events] == [PROMPT, TOOL_CALL, TOOL_RESULT]
    prompt, decision, result = batch.events
    assert prompt.payload["text"] == "Add hello.txt"
    assert decision.payload == {
        "name": "exec_command",
        "tool_use_id": "call_1",
        "decision": "approved",
        "decision_source": "Config",
        "source": "otlp",
    }
    assert result.payload["is_error"] is False and result.payload["input"] == '{"cmd": "ls"}'
    assert result.payload["text"].endswith("hello.txt")


# ------------------------------------------------------------------------------------------- metrics


def number_point(value: float, start: datetime, end: datetime, **attrs: Any) -> NumberDataPoint:
    dp = NumberDataPoint(start_time_unix_nano=ns(start), time_unix_nano=ns(end))
    if isinstance(value, int):
        dp.as_int = value
    else:
        dp.as_double = value
    dp.attributes.extend(kv(k, v) for k, v in {"session.id": CLAUDE_SID, **attrs}.items())
    return dp


def sum_metric(name: str, unit: str, points: list[NumberDataPoint], *, cumulative: bool = False) -> Metric:
    m = Metric(name=name, unit=unit)
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        if cumulative
        else AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    m.sum.data_points.extend(points)
    return m


def claude_metrics(*, cumulative: bool = False) -> ExportMetricsServiceRequest:
    a, b = T0, T0 + timedelta(seconds=60)
    model = {"model": "claude-sonnet-4-5-20250929"}
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "claude-code"), kv("agenttrail.session_id", "at-sess-1")])
    sm = rm.scope_metrics.add()
    sm.scope.name = "com.anthropic.claude_code"
    sm.metrics.extend(
        [
            sum_metric("claude_code.session.count", "", [number_point(1.0, a, b)], cumulative=cumulative),
            sum_metric("claude_code.cost.usage", "USD", [number_point(0.01545, a, b, **model)], cumulative=cumulative),
            sum_metric(
                "claude_code.token.usage",
                "tokens",
                [
                    number_point(1200.0, a, b, type="input", **model),
                    number_point(250.0, a, b, type="output", **model),
                    number_point(3000.0, a, b, type="cacheRead", **model),
                    number_point(500.0, a, b, type="cacheCreation", **model),
                ],
                cumulative=cumulative,
            ),
            sum_metric(
                "claude_code.lines_of_code.count",
                "",
                [number_point(12, a, b, type="added"), number_point(3, a, b, type="removed")],
                cumulative=cumulative,
            ),
            sum_metric("claude_code.commit.count", "", [number_point(1, a, b)], cumulative=cumulative),
            sum_metric("claude_code.pull_request.count", "", [number_point(1, a, b)], cumulative=cumulative),
            sum_metric(
                "claude_code.active_time.total", "s", [number_point(42.5, a, b, type="cli")], cumulative=cumulative
            ),
        ]
    )
    gauge = sm.metrics.add(name="some.gauge", unit="1")
    gauge.gauge.data_points.append(number_point(7.0, a, b))
    hist = sm.metrics.add(name="some.histogram", unit="ms")
    hist.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    hdp = hist.histogram.data_points.add(start_time_unix_nano=ns(a), time_unix_nano=ns(b), count=3, sum=90.0)
    hdp.bucket_counts.extend([1, 2])
    hdp.explicit_bounds.append(50.0)
    return req


@pytest.mark.parametrize(("encoding", "numbers"), ENCODINGS)
def test_claude_code_metrics(encoding: str, numbers: bool) -> None:
    points = parse_otlp_metrics(*encode(claude_metrics(), encoding, numbers=numbers))

    by = {(p.name, p.type): p for p in points}
    assert {p.name for p in points} >= CLAUDE_CODE_METRICS - {"claude_code.code_edit_tool.decision"}
    tokens = {t: by[("claude_code.token.usage", t)].value for t in ("input", "output", "cacheRead", "cacheCreation")}
    assert tokens == {"input": 1200, "output": 250, "cacheRead": 3000, "cacheCreation": 500}
    assert by[("claude_code.lines_of_code.count", "added")].value == 12
    assert by[("claude_code.lines_of_code.count", "removed")].value == 3
    cost = by[("claude_code.cost.usage", None)]
    assert cost.value == pytest.approx(0.01545) and cost.unit == "USD"
    assert cost.attributes["model"] == "claude-sonnet-4-5-20250929"
    assert cost.temporality == "delta" and cost.kind == "sum" and cost.is_monotonic
    assert cost.start == T0 and cost.end == T0 + timedelta(seconds=60)
    assert cost.session_id == CLAUDE_SID and cost.agenttrail_session_id == "at-sess-1"
    assert cost.service == "claude-code"
    assert by[("claude_code.commit.count", None)].value == 1
    assert by[("claude_code.pull_request.count", None)].value == 1
    assert by[("claude_code.active_time.total", "cli")].value == 42.5
    assert by[("some.gauge", None)].temporality == "unspecified"
    hist = by[("some.histogram", None)]
    assert (hist.kind, hist.value, hist.count) == ("histogram", 90.0, 3)
    assert len({p.point_id for p in points}) == len(points)


def test_metric_ids_are_stable_across_encodings() -> None:
    a = parse_otlp_metrics(*encode(claude_metrics(), "protobuf"))
    b = parse_otlp_metrics(*encode(claude_metrics(), "json", numbers=True))
    assert [p.point_id for p in a] == [p.point_id for p in b]
    assert [p.series_key for p in a] == [p.series_key for p in b]


def _cumulative(value: float, start: datetime, end: datetime) -> MetricPoint:
    return MetricPoint(
        name="claude_code.cost.usage",
        kind="sum",
        value=value,
        end=end,
        start=start,
        temporality="cumulative",
        is_monotonic=True,
        unit="USD",
        attributes={"session.id": CLAUDE_SID},
        resource={},
        session_id=CLAUDE_SID,
        agenttrail_session_id=None,
        service="claude-code",
    )


def test_cumulative_to_delta() -> None:
    conv = CumulativeToDelta()
    t = [T0 + timedelta(seconds=10 * i) for i in range(8)]

    first = conv.convert(_cumulative(10.0, t[0], t[1]))
    second = conv.convert(_cumulative(25.0, t[0], t[2]))
    resent = conv.convert(_cumulative(25.0, t[0], t[2]))
    older = conv.convert(_cumulative(10.0, t[0], t[1]))
    restarted = conv.convert(_cumulative(4.0, t[3], t[4]))  # the exporter restarted: new start time
    after_restart = conv.convert(_cumulative(6.0, t[3], t[5]))
    dropped = conv.convert(_cumulative(2.0, t[3], t[6]))  # went down without a new start: a reset

    assert first is not None and (first.value, first.start, first.temporality) == (10.0, t[0], "delta")
    assert second is not None and (second.value, second.start, second.end) == (15.0, t[1], t[2])
    assert resent is None and older is None
    assert restarted is not None and (restarted.value, restarted.start) == (4.0, t[3])
    assert after_restart is not None and after_restart.value == pytest.approx(2.0)
    assert dropped is not None and dropped.value == 2.0
    total = sum(p.value for p in (first, second, restarted, after_restart, dropped))
    assert total == pytest.approx(10 + 15 + 4 + 2 + 2)

    # State carried over (e.g. persisted across a receiver restart) continues the series.
    resumed = CumulativeToDelta(conv.state())
    nxt = resumed.convert(_cumulative(5.0, t[3], t[7]))
    assert nxt is not None and nxt.value == 3.0


def test_delta_points_pass_through_and_series_are_separate() -> None:
    points = parse_otlp_metrics(*encode(claude_metrics(cumulative=True), "protobuf"))
    conv = CumulativeToDelta()
    out = [conv.convert(p) for p in points]
    assert all(p is not None for p in out)
    # First sight of each series: its whole value since its start.
    assert [p.value for p in out if p is not None] == [p.value for p in points]
    delta = parse_otlp_metrics(*encode(claude_metrics(), "protobuf"))
    assert [conv.convert(p) for p in delta] == delta


# ------------------------------------------------------------------------------------ transport edges


def test_gzip_and_content_type_parameters() -> None:
    body, _ = encode(claude_logs(), "json")
    batch = parse_otlp_logs(gzip.compress(body), "application/json; charset=utf-8", "gzip")
    assert len(batch.calls) == 3


@pytest.mark.parametrize(
    ("body", "ctype", "encoding", "unsupported"),
    [
        (b"{}", "text/plain", None, True),
        (b"not json", "application/json", None, False),
        (b"[1]", "application/json", None, False),
        (b'{"resourceLogs": "nope"}', "application/json", None, False),
        (b"\xff\xff\xff\xff", "application/x-protobuf", None, False),
        (b"xx", "application/json", "gzip", False),
        (b"{}", "application/json", "br", True),
    ],
)
def test_undecodable_bodies(body: bytes, ctype: str, encoding: str | None, unsupported: bool) -> None:
    with pytest.raises(OtlpDecodeError) as info:
        parse_otlp_logs(body, ctype, encoding)
    assert info.value.unsupported_media_type is unsupported


def test_empty_export_is_empty() -> None:
    assert parse_otlp_logs(b"", "application/x-protobuf").calls == []
    assert parse_otlp_logs(b"{}", "application/json").events == []
    assert parse_otlp_metrics(b"", "application/x-protobuf") == []
