"""`POST /api/v1/ingest`: events from tracers and importers, authenticated by a virtual key."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from anyio import to_thread
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agenttrail.events import KINDS, Event
from agenttrail.gateway.errors import GatewayError
from agenttrail.server.app import Services
from agenttrail.server.body import BodyTooLarge, read_body
from agenttrail.server.ingest_metrics import IngestMetrics
from agenttrail.server.ingest_writer import IngestWriter
from agenttrail.store.event_fields import BadEvent
from agenttrail.store.ingest import Attribution, IngestResult, Prepared, ingest, prepare

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
MAX_EVENTS = 50_000


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def parse_events(items: Any) -> list[Event]:
    """A request's events, checked; the first bad one is named in a ValueError (the client's 400).

    This runs for every event the server takes: the usual event (strings where they belong, a UTC time,
    an object payload) is built directly; anything else goes the long way for its message."""
    if not isinstance(items, list):
        raise ValueError('the body must be {"events": [...]}')
    if len(items) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events per batch; send smaller batches")
    out: list[Event] = []
    append = out.append
    for i, item in enumerate(items):
        try:
            event_id, session_id, kind, ts = item["event_id"], item["session_id"], item["kind"], item["ts"]
            payload = item.get("payload")
            if (
                type(event_id) is str  # exactly str: anything else takes the long way
                and type(session_id) is str
                and type(ts) is str
                and 0 < len(event_id) <= 64
                and 0 < len(session_id) <= 64
                and type(payload) is dict
                and kind in KINDS
            ):
                when = datetime.fromisoformat(ts)
                if when.tzinfo is not None:
                    # The payload is this request's own (just parsed): no copy, unlike Event.from_dict.
                    append(Event(session_id, kind, when, payload, event_id))
                    continue
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        append(_checked(i, item))
    return out


def _checked(i: int, item: Any) -> Event:
    """One event the long way: what is wrong with it, in the client's terms."""
    if not isinstance(item, dict):
        raise ValueError(f"event {i} is not an object")
    missing = [k for k in ("event_id", "session_id", "kind", "ts") if not item.get(k)]
    if missing:
        raise ValueError(f"event {i} lacks {', '.join(missing)}")
    if len(str(item["event_id"])) > 64 or len(str(item["session_id"])) > 64:
        raise ValueError(f"event {i}: event_id and session_id are at most 64 characters")
    if not isinstance(item["ts"], str):
        raise ValueError(f"event {i}: ts must be an ISO 8601 time as text, such as 2026-05-12T09:00:00Z")
    payload = item.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise ValueError(f"event {i}: payload must be an object")
    try:
        return Event.from_dict(item)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"event {i}: {e}") from None


def _parse(raw: bytes) -> list[Event]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"the body is not valid JSON: {e}") from None
    return parse_events(body.get("events") if isinstance(body, dict) else None)


def _prepared(raw: bytes) -> Prepared:
    """A batch for the SQLite writer (only SQLite has one)."""
    return prepare(_parse(raw), sqlite=True)


def install(svc: Services) -> list[BaseRoute]:
    metrics = IngestMetrics(svc.registry)
    writer = IngestWriter(svc.engine, on_turn=metrics.turn) if svc.engine.dialect.name == "sqlite" else None
    if writer is not None:
        stop_writer = writer.close

        async def stop() -> None:
            await to_thread.run_sync(stop_writer)

        svc.on_shutdown.append(stop)

    async def ingest_route(request: Request) -> Response:
        response = await answer(request)
        if isinstance(response, IngestResult):
            metrics.answered(200, response.accepted, response.duplicates)
            return JSONResponse({"accepted": response.accepted, "duplicates": response.duplicates})
        metrics.answered(response.status_code)
        return response

    async def answer(request: Request) -> IngestResult | Response:
        try:
            key = await svc.keys.authenticate(request.headers)
        except GatewayError as e:
            return _problem(401, e.message)
        try:
            raw = await read_body(request, MAX_BODY)
        except BodyTooLarge:
            return _problem(413, f"the batch is larger than {MAX_BODY} bytes; send smaller batches")
        who = Attribution(
            team_id=key.team_id, project_id=key.project_id, engineer_id=key.engineer_id, engineer=key.engineer
        )
        # Parsed in a worker thread: a 50,000-event body is a quarter of a second of Python, which on the
        # event loop would hold up every gateway call of the process. On SQLite the batch is prepared there
        # too, beside the writer's database work (SQLite lets go of the GIL).
        try:
            if writer is None:
                events = await to_thread.run_sync(_parse, raw)
            else:
                batch = await to_thread.run_sync(_prepared, raw)
        except ValueError as e:
            return _problem(400, str(e))
        try:
            if writer is None:
                result = await to_thread.run_sync(ingest, svc.engine, events, who)
            else:
                result = await writer.ingest(batch, who)
        except BadEvent as e:  # found by `prepare` on PostgreSQL (on SQLite, above)
            return _problem(400, str(e))
        except SQLAlchemyError as e:
            # The store's fault, not the client's: nothing of the batch was kept, and a resend may succeed
            # (an outbox retries a 5xx by itself).
            log.warning("ingest: the store refused a batch of %d bytes: %s", len(raw), e)
            reason = str(getattr(e, "orig", None) or e).splitlines()[0][:200]
            return _problem(503, f"the store could not take the batch ({reason}); send it again later")
        return result

    return [Route("/api/v1/ingest", ingest_route, methods=["POST"])]
