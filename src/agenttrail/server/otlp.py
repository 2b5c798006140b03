"""`POST /otlp/v1/logs` and `POST /otlp/v1/metrics`: Claude Code's and Codex's own telemetry.

OTLP/HTTP in both encodings (`application/x-protobuf`, `application/json`), optionally gzip- or
deflate-compressed, authenticated by a virtual key in `x-api-key` or `Authorization: Bearer` (what
`agenttrail run` puts in OTEL_EXPORTER_OTLP_HEADERS). Decoding and mapping are `agenttrail.importers`'.

Logs become events through the same idempotent ingest as transcripts (`to_events.batch_to_events`), so
`claude_code.api_request` and `codex.sse_event` records become `llm_call` rows unless the gateway or a
transcript already has the call (see `importers.join`), and everything lands under the traced session
named by the `agenttrail.session_id` resource attribute, else the session-scoped key's session, else
the agent's own session id (`session.id`, `conversation.id`) as the join decides.

Metrics become `agent_metric` rows, one per data point, under the same session. Delta points are stored
as they are; cumulative ones as the difference from the previous point of their series, which is read
from the store (so several server processes, or a restart, never count a cumulative total twice). A
re-sent export changes nothing: every row remembers its point id.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from anyio import to_thread
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from sqlalchemy import Connection, Engine, insert, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agenttrail.events import LLM_CALL
from agenttrail.gateway.errors import GatewayError
from agenttrail.importers import CLAUDE_CODE, CODEX, ImportBatch
from agenttrail.importers import join as joiner
from agenttrail.importers.otlp import (
    CumulativeToDelta,
    MetricPoint,
    OtlpDecodeError,
    SeriesState,
    encoding_of,
    parse_otlp_logs,
    parse_otlp_metrics,
)
from agenttrail.importers.to_events import batch_to_events, imported_session_id
from agenttrail.server.app import Services
from agenttrail.server.body import BodyTooLarge
from agenttrail.server.body import read_body as read_limited
from agenttrail.store.event_fields import BadEvent
from agenttrail.store.ingest import Attribution, ingest
from agenttrail.store.keys import KeyInfo
from agenttrail.store.tables import agent_metric

MAX_BODY = 16 * 1024 * 1024
GATEWAY_SETTLE_S = 2.0  # how long a logs export waits for the gateway's records of the same calls


def _naive(ts: datetime | None) -> datetime | None:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts is not None and ts.tzinfo else ts


def _ns(ts: datetime | None) -> int:
    if ts is None:
        return 0
    aware = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000) * 1000


def _problem(status: int, message: str) -> Response:
    # OTLP/HTTP answers errors with a google.rpc.Status; its JSON form is what exporters log.
    return JSONResponse({"code": status, "message": message, "error": {"message": message}}, status_code=status)


def _success(request: Request, message: Message) -> Response:
    try:
        binary = encoding_of(request.headers.get("content-type")) == "protobuf"
    except OtlpDecodeError:
        binary = False
    if binary:
        return Response(message.SerializeToString(), media_type="application/x-protobuf")
    return Response(
        orjson.dumps(json_format.MessageToDict(message)),
        media_type="application/json",
    )


# ------------------------------------------------------------------------------------------- metrics


@dataclass(slots=True)
class MetricResult:
    stored: int = 0
    duplicates: int = 0
    without_session: int = 0


def agent_of_metric(p: MetricPoint) -> str | None:
    if p.name.startswith("claude_code.") or (p.service or "") == "claude-code":
        return CLAUDE_CODE
    if p.name.startswith("codex.") or (p.service or "").startswith("codex"):
        return CODEX
    return None


def store_metrics(engine: Engine, points: list[MetricPoint], *, default_session: str | None = None) -> MetricResult:
    """Store data points as `agent_metric` rows under their session (see the module docstring)."""
    result = MetricResult()
    sessions: dict[tuple[str | None, str | None, str | None], str | None] = {}
    with engine.begin() as conn:
        for p in points:
            key = (agent_of_metric(p), p.session_id, p.agenttrail_session_id)
            if key not in sessions:
                sessions[key] = _metric_session(conn, p, key[0], default_session)
            session_id = sessions[key]
            if session_id is None:
                result.without_session += 1
            if _store_point(conn, p, session_id):
                result.stored += 1
            else:
                result.duplicates += 1
    return result


def _metric_session(conn: Connection, p: MetricPoint, agent: str | None, default: str | None) -> str | None:
    hint = p.agenttrail_session_id or default
    if hint:
        return hint
    if agent is None or not p.session_id:
        return None
    g = joiner.Group(imported_session_id(agent, p.session_id), agent, p.session_id)
    g.see(_naive(p.start))
    g.see(_naive(p.end))
    return joiner.find_session(conn, g)


def _store_point(conn: Connection, p: MetricPoint, session_id: str | None) -> bool:
    m = agent_metric.c
    where = [m.session_id.is_(None) if session_id is None else m.session_id == session_id, m.name == p.name]
    marker = f'%"_point":"{p.point_id}"%'
    if conn.execute(select(m.id).where(*where, m.attributes.like(marker)).limit(1)).first() is not None:
        return False
    point = p
    if p.temporality == "cumulative":
        prev = conn.execute(
            select(m.attributes, m.start_time, m.end_time)
            .where(*where, m.attributes.like(f'%"_series":"{p.series_key}"%'))
            .order_by(m.end_time.desc())
            .limit(1)
        ).first()
        state: dict[str, SeriesState] = {}
        if prev is not None:
            attrs = orjson.loads(prev.attributes)
            state[p.series_key] = SeriesState(
                start_ns=int(attrs.get("_start_ns") or _ns(prev.start_time)),
                end_ns=int(attrs.get("_end_ns") or _ns(prev.end_time)),
                value=float(attrs.get("_cumulative") or 0.0),
                count=attrs.get("_count_total"),
            )
        converted = CumulativeToDelta(state).convert(p)
        if converted is None:
            return False  # not newer than what is stored: a re-sent export
        point = converted
    attributes: dict[str, Any] = dict(p.attributes)
    attributes.update(_point=p.point_id, _series=p.series_key, _temporality=p.temporality)
    if p.unit:
        attributes["_unit"] = p.unit
    if point.count is not None:
        attributes["_count"] = point.count
    if p.temporality == "cumulative":
        # What the next point of the series is the difference from.
        attributes.update(_cumulative=p.value, _start_ns=_ns(p.start), _end_ns=_ns(p.end), _count_total=p.count)
    conn.execute(
        insert(agent_metric).values(
            session_id=session_id,
            name=p.name,
            attributes=orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode(),
            value=point.value,
            start_time=_naive(point.start),
            end_time=_naive(point.end) or datetime.now(UTC).replace(tzinfo=None),
        )
    )
    return True


# ---------------------------------------------------------------------------------------------- logs


def log_events(svc: Services, batch: ImportBatch, key: KeyInfo) -> list[Any]:
    """The events of a logs export, priced with the server's prices, under the key's session if any."""
    return batch_to_events(batch, svc.pricer, agenttrail_session_id=key.session_id)


async def _gateway_settled(svc: Services, request_ids: set[str]) -> None:
    """Let the gateway write its records of these calls first, so they count and the copies do not.

    Claude Code exports a call's record seconds after the response ended; the gateway writes its own
    within half a second. This closes what is left of that race in this process."""
    if not request_ids:
        return
    await svc.gateway.drain()
    recorder = svc.recorder
    deadline = time.monotonic() + GATEWAY_SETTLE_S
    while time.monotonic() < deadline:
        pending = getattr(recorder, "_pending", [])
        if not any(r.get("request_id") in request_ids for r in pending):
            return
        wake = getattr(recorder, "_wake", None)
        if wake is not None:
            wake.set()
        await asyncio.sleep(0.02)


def install(svc: Services) -> list[BaseRoute]:
    async def authenticate(request: Request) -> KeyInfo | Response:
        try:
            return await svc.keys.authenticate(request.headers)
        except GatewayError as e:
            return _problem(401, e.message)

    async def read_body(request: Request) -> bytes | Response:
        try:
            return await read_limited(request, MAX_BODY)
        except BodyTooLarge:
            return _problem(413, f"the export is larger than {MAX_BODY} bytes; export in smaller batches")

    async def logs(request: Request) -> Response:
        key = await authenticate(request)
        if isinstance(key, Response):
            return key
        raw = await read_body(request)
        if isinstance(raw, Response):
            return raw
        ctype, cenc = request.headers.get("content-type"), request.headers.get("content-encoding")
        try:
            batch = await to_thread.run_sync(lambda: parse_otlp_logs(raw, ctype, cenc))
        except OtlpDecodeError as e:
            return _problem(415 if e.unsupported_media_type else 400, str(e))
        events = log_events(svc, batch, key)
        request_ids = {
            str(e.payload["record"]["request_id"])
            for e in events
            if e.kind == LLM_CALL and e.payload["record"].get("request_id")
        }
        await _gateway_settled(svc, request_ids)
        who = Attribution(
            team_id=key.team_id, project_id=key.project_id, engineer_id=key.engineer_id, engineer=key.engineer
        )
        if events:
            try:
                await to_thread.run_sync(ingest, svc.engine, events, who)
            except BadEvent as e:  # a value no column can hold (a token count past 64 bits, say)
                return _problem(400, f"cannot store the exported records: {e}")
        response = ExportLogsServiceResponse()
        if batch.errors:
            response.partial_success.rejected_log_records = len(batch.errors)
            response.partial_success.error_message = "; ".join(sorted({e.reason for e in batch.errors}))[:500]
        return _success(request, response)

    async def metrics(request: Request) -> Response:
        key = await authenticate(request)
        if isinstance(key, Response):
            return key
        raw = await read_body(request)
        if isinstance(raw, Response):
            return raw
        ctype, cenc = request.headers.get("content-type"), request.headers.get("content-encoding")
        try:
            points = await to_thread.run_sync(lambda: parse_otlp_metrics(raw, ctype, cenc))
        except OtlpDecodeError as e:
            return _problem(415 if e.unsupported_media_type else 400, str(e))
        # NaN or an infinity is no amount: summed into a session's cost it would make every total NaN.
        kept = [p for p in points if math.isfinite(p.value)]
        if kept:
            await to_thread.run_sync(lambda: store_metrics(svc.engine, kept, default_session=key.session_id))
        response = ExportMetricsServiceResponse()
        if len(kept) < len(points):
            response.partial_success.rejected_data_points = len(points) - len(kept)
            response.partial_success.error_message = "a data point's value was NaN or infinite"
        return _success(request, response)

    return [
        Route("/otlp/v1/logs", logs, methods=["POST"]),
        Route("/otlp/v1/metrics", metrics, methods=["POST"]),
    ]
