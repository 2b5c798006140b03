"""`POST /api/v1/ingest`: events from tracers and importers, authenticated by a virtual key."""

from __future__ import annotations

from typing import Any

import orjson
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agenttrail.events import Event
from agenttrail.gateway.errors import GatewayError
from agenttrail.server.app import Services
from agenttrail.store.ingest import Attribution, ingest

MAX_BODY = 64 * 1024 * 1024
MAX_EVENTS = 50_000


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "status": status}}, status_code=status)


def parse_events(items: Any) -> list[Event]:
    if not isinstance(items, list):
        raise ValueError('the body must be {"events": [...]}')
    if len(items) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events per batch; send smaller batches")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"event {i} is not an object")
        missing = [k for k in ("event_id", "session_id", "kind", "ts") if not item.get(k)]
        if missing:
            raise ValueError(f"event {i} lacks {', '.join(missing)}")
        if len(str(item["event_id"])) > 64 or len(str(item["session_id"])) > 64:
            raise ValueError(f"event {i}: event_id and session_id are at most 64 characters")
        try:
            out.append(Event.from_dict(item))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"event {i}: {e}") from None
    return out


def install(svc: Services) -> list[BaseRoute]:
    async def ingest_route(request: Request) -> Response:
        try:
            key = await svc.keys.authenticate(request.headers)
        except GatewayError as e:
            return _problem(401, e.message)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _problem(413, f"the batch is {len(raw)} bytes; at most {MAX_BODY}; send smaller batches")
        try:
            body = orjson.loads(raw)
            events = parse_events(body.get("events") if isinstance(body, dict) else None)
        except orjson.JSONDecodeError as e:
            return _problem(400, f"the body is not valid JSON: {e}")
        except ValueError as e:
            return _problem(400, str(e))
        who = Attribution(
            team_id=key.team_id, project_id=key.project_id, engineer_id=key.engineer_id, engineer=key.engineer
        )
        result = await to_thread.run_sync(ingest, svc.engine, events, who)
        return JSONResponse({"accepted": result.accepted, "duplicates": result.duplicates})

    return [Route("/api/v1/ingest", ingest_route, methods=["POST"])]
