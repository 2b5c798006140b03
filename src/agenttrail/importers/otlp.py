"""OTLP/HTTP logs and metrics from Claude Code and Codex, decoded into neutral records.

Both encodings of OTLP/HTTP are read: `application/x-protobuf` (the `opentelemetry-proto` messages
`ExportLogsServiceRequest` / `ExportMetricsServiceRequest`) and `application/json` (the OTLP JSON
mapping: lowerCamelCase names, 64-bit integers as strings *or* numbers, trace and span ids as hex),
optionally gzip- or deflate-compressed.

Logs become an `ImportBatch` (see `logs_to_batch`):

Claude Code (log body `claude_code.<event>`, attribute `event.name`; keyed by `session.id`):
  - `api_request` → a `TranscriptCall` (`model`, `input_tokens`, `output_tokens`, `cache_read_tokens`,
    `cache_creation_tokens` split by `cache_creation_5m_tokens` / `cache_creation_1h_tokens` when present,
    `cost_usd` as `agent_cost_usd`, `duration_ms`, `request_id`). With a request id its `call_id` equals
    the transcript importer's, so the same call from both sources is one record.
  - `api_error` → a `TranscriptCall` with `status="error"` and no usage (`error`, `status_code`, `attempt`).
  - `user_prompt` → `prompt` event (`prompt` is `<REDACTED>` unless OTEL_LOG_USER_PROMPTS=1).
  - `assistant_response` → `response` event; `tool_decision` → `tool_call` event (`tool_name`,
    `tool_use_id`, `decision`, `source`); `tool_result` → `tool_result` event (`success`, `duration_ms`,
    `error`, `tool_parameters`).
Codex (attribute `event.name` = `codex.<event>`; keyed by `conversation.id`):
  - `sse_event` with `event.kind == "response.completed"` and token counts → a `TranscriptCall`
    (`input_token_count` includes `cached_token_count`; `output_token_count` includes
    `reasoning_token_count`; converted like the rollout importer). Codex also sends a count-less
    `response.completed` record per response: it is not a call.
  - `api_request` with an error (`error.message`, or `http.response.status_code` not 2xx) → an error call.
  - `user_prompt` → `prompt`; `tool_decision` → `tool_call`; `tool_result` → `tool_result`.
Other records (`plugin_loaded`, `codex.startup_phase`, …) are counted in nothing and skipped.

Every record's `agenttrail.session_id` (a resource or record attribute that `agenttrail run` sets via
OTEL_RESOURCE_ATTRIBUTES) is carried on calls, sessions and event payloads: the join prefers it to the
agent's own session id. Event and call ids derive from the record's content, so a re-sent export is
stored once.

Metrics become `MetricPoint`s (sums, gauges, histograms as their sum) with their temporality;
`CumulativeToDelta` turns cumulative series into deltas given the previous value of each series.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from agenttrail.events import PROMPT, RESPONSE, TOOL_CALL, TOOL_RESULT, Event, stable_id
from agenttrail.importers.claude_code import call_id_for
from agenttrail.importers.codex import usage_from_codex
from agenttrail.importers.common import DEFAULT_CONTENT_CAP, cap_text, cap_value
from agenttrail.importers.records import (
    CLAUDE_CODE,
    CODEX,
    AgentName,
    ImportBatch,
    LineError,
    ProviderName,
    TranscriptCall,
    TranscriptSession,
)
from agenttrail.usage import Usage

AGENTTRAIL_SESSION_ATTR = "agenttrail.session_id"
CLAUDE_SESSION_ATTR = "session.id"
CODEX_SESSION_ATTR = "conversation.id"
REDACTED = "<REDACTED>"

CLAUDE_CODE_METRICS = frozenset(
    {
        "claude_code.session.count",
        "claude_code.lines_of_code.count",
        "claude_code.pull_request.count",
        "claude_code.commit.count",
        "claude_code.cost.usage",
        "claude_code.token.usage",
        "claude_code.code_edit_tool.decision",
        "claude_code.active_time.total",
    }
)

Encoding = Literal["protobuf", "json"]
Temporality = Literal["delta", "cumulative", "unspecified"]


class OtlpDecodeError(ValueError):
    """The body is not an OTLP export request in the declared encoding (answer 400, or 415 for an
    unsupported content type)."""

    def __init__(self, message: str, *, unsupported_media_type: bool = False) -> None:
        super().__init__(message)
        self.unsupported_media_type = unsupported_media_type


# ------------------------------------------------------------------------------------------ decoding


def encoding_of(content_type: str | None) -> Encoding:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf"):
        return "protobuf"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    raise OtlpDecodeError(
        f"unsupported content type {content_type!r}: send application/x-protobuf or application/json",
        unsupported_media_type=True,
    )


def _decompress(body: bytes, content_encoding: str | None) -> bytes:
    enc = (content_encoding or "").strip().lower()
    try:
        if enc in ("", "identity"):
            return body
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
    except (OSError, EOFError, zlib.error) as e:
        raise OtlpDecodeError(f"body is not valid {enc}: {e}") from e
    raise OtlpDecodeError(f"unsupported content encoding {content_encoding!r}", unsupported_media_type=True)


_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP JSON writes trace and span ids as hex; the protobuf JSON mapping expects base64."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in _HEX_ID_KEYS and isinstance(v, str):
                # Not hex: already base64, or garbage the parser will reject.
                with contextlib.suppress(ValueError):
                    v = base64.b64encode(bytes.fromhex(v)).decode("ascii")
            else:
                v = _hex_ids_to_base64(v)
            out[k] = v
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def _decode(body: bytes, content_type: str | None, content_encoding: str | None, message: Message) -> None:
    encoding = encoding_of(content_type)
    raw = _decompress(body, content_encoding)
    if encoding == "protobuf":
        try:
            message.ParseFromString(raw)
        except DecodeError as e:
            raise OtlpDecodeError(f"body is not a protobuf {type(message).__name__}: {e}") from e
        return
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as e:
        raise OtlpDecodeError(f"body is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise OtlpDecodeError("an OTLP JSON body is an object")
    try:
        json_format.ParseDict(_hex_ids_to_base64(doc), message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise OtlpDecodeError(f"body is not an OTLP {type(message).__name__} in JSON: {e}") from e


def decode_logs_request(
    body: bytes, content_type: str | None, content_encoding: str | None = None
) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    _decode(body, content_type, content_encoding, req)
    return req


def decode_metrics_request(
    body: bytes, content_type: str | None, content_encoding: str | None = None
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    _decode(body, content_type, content_encoding, req)
    return req


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = any_value(kv.value)
    return out


def _ts(nanos: int) -> datetime | None:
    if nanos <= 0:
        return None
    return datetime.fromtimestamp(nanos / 1e9, UTC)


def _int(v: object) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, float):
        # "inf" or "NaN" from a sender has no int: unreadable, as other text is, not a crash.
        return int(v) if math.isfinite(v) else None
    return None


def _float(v: object) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _truthy(v: object) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _str(v: object) -> str | None:
    if isinstance(v, str) and v:
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return None


# -------------------------------------------------------------------------------------------- logs


@dataclass(slots=True)
class _Record:
    agent: AgentName
    name: str  # without the agent prefix: "api_request"
    session_id: str
    agenttrail_session_id: str | None
    ts: datetime
    attrs: dict[str, Any]
    key: str  # stable identity of the record
    version: str | None


def _record_name(body: Any, attrs: dict[str, Any], resource: dict[str, Any]) -> tuple[AgentName, str] | None:
    """Which agent event a record is: by its `event.name` or body prefix, else (an unprefixed
    `event.name`) by the resource's `service.name`. Plain log lines are not events."""
    event_name = attrs.get("event.name")
    for n in (event_name, body):
        if isinstance(n, str):
            if n.startswith("claude_code."):
                return CLAUDE_CODE, n.removeprefix("claude_code.")
            if n.startswith("codex."):
                return CODEX, n.removeprefix("codex.")
    if isinstance(event_name, str) and event_name:
        service = str(resource.get("service.name") or "")
        if service == "claude-code":
            return CLAUDE_CODE, event_name
        if service.startswith("codex"):
            return CODEX, event_name
    return None


class _LogMapper:
    def __init__(self, content_cap: int, source: str) -> None:
        self.cap = content_cap
        self.source = source
        self.batch = ImportBatch()
        self.sessions: dict[tuple[str, str], TranscriptSession] = {}
        self.calls: dict[str, TranscriptCall] = {}

    def record(self, ordinal: int, rec: Any, resource: dict[str, Any]) -> None:
        attrs = attributes(rec.attributes)
        body = any_value(rec.body) if rec.HasField("body") else None
        named = _record_name(body, attrs, resource)
        if named is None:
            return
        agent, name = named
        sid_attr = CLAUDE_SESSION_ATTR if agent == CLAUDE_CODE else CODEX_SESSION_ATTR
        sid = _str(attrs.get(sid_attr)) or _str(resource.get(sid_attr))
        if sid is None:
            self.batch.errors.append(LineError(self.source, ordinal, f"{agent} event {name!r} without {sid_attr}"))
            return
        ts = _ts(rec.time_unix_nano) or _ts(rec.observed_time_unix_nano)
        if ts is None:
            ts = _parse_iso(attrs.get("event.timestamp")) or datetime.now(UTC)
        digest = hashlib.blake2b(
            orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS), digest_size=16
        ).hexdigest()
        r = _Record(
            agent=agent,
            name=name,
            session_id=sid,
            agenttrail_session_id=_str(attrs.get(AGENTTRAIL_SESSION_ATTR))
            or _str(resource.get(AGENTTRAIL_SESSION_ATTR)),
            ts=ts,
            attrs=attrs,
            key=stable_id("otlp", agent, sid, name, rec.time_unix_nano, digest),
            version=_str(attrs.get("app.version")) or _str(resource.get("service.version")),
        )
        handler = (_CLAUDE_HANDLERS if agent == CLAUDE_CODE else _CODEX_HANDLERS).get(name)
        if handler is None:
            return
        session = self._session(r)
        session.see(ts)
        model = _str(attrs.get("model"))
        handler(self, r)
        if name in ("api_request", "sse_event") and model:
            session.add_model(model)

    def _session(self, r: _Record) -> TranscriptSession:
        s = self.sessions.get((r.agent, r.session_id))
        if s is None:
            s = TranscriptSession(agent=r.agent, agent_session_id=r.session_id)
            self.sessions[(r.agent, r.session_id)] = s
        if r.agenttrail_session_id:
            s.agenttrail_session_id = r.agenttrail_session_id
        if r.version and s.agent_version is None:
            s.agent_version = r.version
        return s

    def event(self, r: _Record, kind: str, payload: dict[str, Any]) -> None:
        payload["source"] = "otlp"
        if r.agenttrail_session_id:
            payload["agenttrail_session_id"] = r.agenttrail_session_id
        prompt_id = _str(r.attrs.get("prompt.id"))
        if prompt_id:
            payload.setdefault("prompt_id", prompt_id)
        self.batch.events.append(
            Event(session_id=r.session_id, kind=kind, ts=r.ts, payload=payload, event_id=stable_id("otlp-event", r.key))
        )

    def call(self, r: _Record, call_id: str, usage: Usage, **fields: Any) -> None:
        provider: ProviderName = "anthropic" if r.agent == CLAUDE_CODE else "openai"
        c = TranscriptCall(
            call_id=call_id,
            session_id=r.session_id,
            agent=r.agent,
            provider=provider,
            model=_str(r.attrs.get("model")),
            ts=r.ts,
            usage=usage,
            source="otlp",
            agenttrail_session_id=r.agenttrail_session_id,
            **fields,
        )
        have = self.calls.get(call_id)
        if have is None:
            self.calls[call_id] = c
        else:
            have.merge(c)

    def text(self, value: object) -> dict[str, Any]:
        if not isinstance(value, str) or value == REDACTED:
            return {"redacted": True} if value == REDACTED else {}
        return cap_text(value, self.cap)

    def finish(self) -> ImportBatch:
        self.batch.sessions = list(self.sessions.values())
        self.batch.calls = list(self.calls.values())
        return self.batch


def _parse_iso(v: object) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        ts = datetime.fromisoformat(v)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _claude_api_request(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    write_total = _int(a.get("cache_creation_tokens")) or 0
    w5, w1 = _int(a.get("cache_creation_5m_tokens")), _int(a.get("cache_creation_1h_tokens"))
    usage = Usage.from_anthropic(
        {
            "input_tokens": _int(a.get("input_tokens")) or 0,
            "output_tokens": _int(a.get("output_tokens")) or 0,
            "cache_read_input_tokens": _int(a.get("cache_read_tokens")) or 0,
            "cache_creation_input_tokens": write_total,
            "cache_creation": {"ephemeral_5m_input_tokens": w5 or 0, "ephemeral_1h_input_tokens": w1 or 0}
            if w5 is not None or w1 is not None
            else None,
        }
    )
    request_id = _str(a.get("request_id"))
    m.call(
        r,
        call_id_for(request_id, None, r.key),
        usage,
        request_id=request_id,
        agent_cost_usd=_float(a.get("cost_usd")),
        duration_ms=_int(a.get("duration_ms")),
    )


def _claude_api_error(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    status = _str(a.get("status_code"))
    error = _str(a.get("error")) or "error"
    m.call(
        r,
        stable_id(CLAUDE_CODE, "otlp-error", r.key),
        Usage(),
        status="error",
        request_id=_str(a.get("request_id")),
        error=f"{status}: {error}" if status else error,
        duration_ms=_int(a.get("duration_ms")),
    )


def _claude_user_prompt(m: _LogMapper, r: _Record) -> None:
    payload = m.text(r.attrs.get("prompt"))
    length = _int(r.attrs.get("prompt_length"))
    if length is not None:
        payload.setdefault("length", length)
    m.event(r, PROMPT, payload)


def _claude_assistant_response(m: _LogMapper, r: _Record) -> None:
    payload = m.text(r.attrs.get("response"))
    length = _int(r.attrs.get("response_length"))
    if length is not None:
        payload.setdefault("length", length)
    payload["request_id"] = _str(r.attrs.get("request_id"))
    payload["model"] = _str(r.attrs.get("model"))
    m.event(r, RESPONSE, payload)


def _tool_decision(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    m.event(
        r,
        TOOL_CALL,
        {
            "name": _str(a.get("tool_name")),
            "tool_use_id": _str(a.get("tool_use_id")) or _str(a.get("call_id")),
            "decision": _str(a.get("decision")),
            "decision_source": _str(a.get("source")),
        },
    )


def _claude_tool_result(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    success = _truthy(a.get("success"))
    payload: dict[str, Any] = {
        "name": _str(a.get("tool_name")),
        "tool_use_id": _str(a.get("tool_use_id")),
        "is_error": success is False,
        "duration_ms": _int(a.get("duration_ms")),
    }
    if _str(a.get("error")):
        payload["error"] = a["error"]
    for k in ("decision", "decision_type", "decision_source", "source"):
        if _str(a.get(k)):
            payload[k] = a[k]
    params = a.get("tool_parameters")
    if isinstance(params, str) and params:
        with contextlib.suppress(orjson.JSONDecodeError):
            params = orjson.loads(params)
        payload["tool_parameters"] = cap_value(params, m.cap)
    m.event(r, TOOL_RESULT, payload)


def _codex_sse_event(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    if a.get("event.kind") != "response.completed" or a.get("input_token_count") is None:
        return
    raw = (
        _int(a.get("input_token_count")) or 0,
        _int(a.get("cached_token_count")) or 0,
        _int(a.get("cache_write_token_count")) or 0,
        _int(a.get("output_token_count")) or 0,
        _int(a.get("reasoning_token_count")) or 0,
    )
    m.call(r, stable_id(CODEX, "otlp", r.key), usage_from_codex(raw))


def _codex_api_request(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    status = _int(a.get("http.response.status_code"))
    error = _str(a.get("error.message"))
    if error is None and (status is None or 200 <= status < 300):
        return
    m.call(
        r,
        stable_id(CODEX, "otlp-error", r.key),
        Usage(),
        status="error",
        error=f"{status}: {error or 'error'}" if status else error,
        duration_ms=_int(a.get("duration_ms")),
    )


def _codex_user_prompt(m: _LogMapper, r: _Record) -> None:
    payload = m.text(r.attrs.get("prompt"))
    length = _int(r.attrs.get("prompt_length"))
    if length is not None:
        payload.setdefault("length", length)
    m.event(r, PROMPT, payload)


def _codex_tool_result(m: _LogMapper, r: _Record) -> None:
    a = r.attrs
    success = _truthy(a.get("success"))
    payload: dict[str, Any] = {
        "name": _str(a.get("tool_name")),
        "tool_use_id": _str(a.get("call_id")),
        "is_error": success is False,
        "duration_ms": _int(a.get("duration_ms")),
    }
    args = a.get("arguments")
    if isinstance(args, str):
        payload["input"] = cap_value(args, m.cap)
    payload.update(m.text(a.get("output")))
    m.event(r, TOOL_RESULT, payload)


_CLAUDE_HANDLERS = {
    "api_request": _claude_api_request,
    "api_error": _claude_api_error,
    "user_prompt": _claude_user_prompt,
    "assistant_response": _claude_assistant_response,
    "tool_decision": _tool_decision,
    "tool_result": _claude_tool_result,
}
_CODEX_HANDLERS = {
    "sse_event": _codex_sse_event,
    "api_request": _codex_api_request,
    "user_prompt": _codex_user_prompt,
    "tool_decision": _tool_decision,
    "tool_result": _codex_tool_result,
}


def logs_to_batch(
    req: ExportLogsServiceRequest, *, content_cap: int = DEFAULT_CONTENT_CAP, source: str = "otlp:logs"
) -> ImportBatch:
    """Map the Claude Code and Codex records of a logs export into sessions, calls and events.
    A record that cannot be keyed to a session is reported in `errors` (`line_no` is its 1-based
    position in the request); other records are skipped."""
    m = _LogMapper(content_cap, source)
    ordinal = 0
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                ordinal += 1
                try:
                    m.record(ordinal, rec, resource)
                except Exception as e:  # one odd record must not lose the rest of the export
                    m.batch.errors.append(LineError(source, ordinal, f"internal error: {type(e).__name__}: {e}"))
    return m.finish()


def parse_otlp_logs(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None = None,
    *,
    content_cap: int = DEFAULT_CONTENT_CAP,
) -> ImportBatch:
    """Decode an OTLP/HTTP logs body and map it (raises OtlpDecodeError for a body it cannot decode)."""
    return logs_to_batch(decode_logs_request(body, content_type, content_encoding), content_cap=content_cap)


# ----------------------------------------------------------------------------------------- metrics


@dataclass(slots=True)
class MetricPoint:
    name: str  # e.g. claude_code.token.usage
    kind: Literal["sum", "gauge", "histogram"]
    value: float  # for a histogram: the sum of its observations
    end: datetime
    start: datetime | None
    temporality: Temporality  # gauges are "unspecified"
    is_monotonic: bool
    unit: str
    attributes: dict[str, Any]  # the data point's attributes (type, model, …)
    resource: dict[str, Any]
    session_id: str | None  # `session.id` (Claude Code) or `conversation.id` (Codex)
    agenttrail_session_id: str | None
    service: str | None
    count: int | None = None  # histogram observation count
    series_key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.series_key:
            ident = {"name": self.name, "resource": self.resource, "attributes": self.attributes}
            self.series_key = stable_id(
                "otlp-series", orjson.dumps(ident, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
            )

    @property
    def point_id(self) -> str:
        """Stable id of this data point (series + interval), so a re-sent export is stored once."""
        return stable_id("otlp-point", self.series_key, self.temporality, _ns(self.start), _ns(self.end))

    @property
    def type(self) -> str | None:
        """The `type` attribute (token.usage: input/output/cacheRead/cacheCreation; lines_of_code: added/removed)."""
        t = self.attributes.get("type")
        return t if isinstance(t, str) else None


def _ns(ts: datetime | None) -> int:
    if ts is None:
        return 0
    return int(ts.timestamp() * 1_000_000) * 1000


def _temporality(t: int) -> Temporality:
    if t == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA:
        return "delta"
    if t == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE:
        return "cumulative"
    return "unspecified"


def metrics_to_points(req: ExportMetricsServiceRequest) -> list[MetricPoint]:
    """Every number data point (sums and gauges) and histogram (as its sum and count) of an export."""
    points: list[MetricPoint] = []
    for rm in req.resource_metrics:
        resource = attributes(rm.resource.attributes)
        service = _str(resource.get("service.name"))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.WhichOneof("data")
                if data == "sum":
                    temporality = _temporality(metric.sum.aggregation_temporality)
                    monotonic = metric.sum.is_monotonic
                    dps: Any = metric.sum.data_points
                elif data == "gauge":
                    temporality, monotonic, dps = "unspecified", False, metric.gauge.data_points
                elif data == "histogram":
                    temporality = _temporality(metric.histogram.aggregation_temporality)
                    monotonic, dps = True, metric.histogram.data_points
                else:
                    continue  # exponential histograms and summaries: not produced by the agents
                for dp in dps:
                    attrs = attributes(dp.attributes)
                    end = _ts(dp.time_unix_nano) or datetime.now(UTC)
                    count: int | None = None
                    if data == "histogram":
                        value, count = float(dp.sum), int(dp.count)
                    else:
                        value = float(dp.as_int) if dp.WhichOneof("value") == "as_int" else float(dp.as_double)
                    sid = (
                        _str(attrs.get(CLAUDE_SESSION_ATTR))
                        or _str(attrs.get(CODEX_SESSION_ATTR))
                        or _str(resource.get(CLAUDE_SESSION_ATTR))
                        or _str(resource.get(CODEX_SESSION_ATTR))
                    )
                    points.append(
                        MetricPoint(
                            name=metric.name,
                            kind=data,
                            value=value,
                            end=end,
                            start=_ts(dp.start_time_unix_nano),
                            temporality=temporality,
                            is_monotonic=monotonic,
                            unit=metric.unit,
                            attributes=attrs,
                            resource=resource,
                            session_id=sid,
                            agenttrail_session_id=(
                                _str(attrs.get(AGENTTRAIL_SESSION_ATTR)) or _str(resource.get(AGENTTRAIL_SESSION_ATTR))
                            ),
                            service=service,
                            count=count,
                        )
                    )
    return points


def parse_otlp_metrics(body: bytes, content_type: str | None, content_encoding: str | None = None) -> list[MetricPoint]:
    return metrics_to_points(decode_metrics_request(body, content_type, content_encoding))


@dataclass(slots=True)
class SeriesState:
    start_ns: int
    end_ns: int
    value: float
    count: int | None = None


class CumulativeToDelta:
    """Turns cumulative data points into deltas, one series at a time.

    Keep one instance per receiver and feed it points in arrival order; persist `state()` and pass it
    back to the constructor to survive a restart (without it the first point of a series after a restart
    counts in full). Delta and gauge points pass through unchanged.

    For a cumulative point: the first of its series is a delta from its own start time (its whole value);
    a later one is `value - previous value` over `(previous end, end]`; a point whose start time moved on,
    or (monotonic series) whose value went down, is a reset: its whole value is the delta. A point not
    newer than the last one seen (a re-sent export) gives None."""

    def __init__(self, state: dict[str, SeriesState] | None = None) -> None:
        self._last: dict[str, SeriesState] = dict(state or {})

    def state(self) -> dict[str, SeriesState]:
        return dict(self._last)

    def convert(self, p: MetricPoint) -> MetricPoint | None:
        if p.temporality != "cumulative":
            return p
        start_ns, end_ns = _ns(p.start), _ns(p.end)
        prev = self._last.get(p.series_key)
        if prev is not None and end_ns <= prev.end_ns:
            return None
        self._last[p.series_key] = SeriesState(start_ns, end_ns, p.value, p.count)
        if prev is None:
            return replace(p, temporality="delta")
        reset = (start_ns > prev.start_ns and start_ns != 0) or (p.is_monotonic and p.value < prev.value)
        if reset:
            return replace(p, temporality="delta")
        count = p.count - prev.count if p.count is not None and prev.count is not None else p.count
        return replace(p, value=p.value - prev.value, start=_ts(prev.end_ns), temporality="delta", count=count)
