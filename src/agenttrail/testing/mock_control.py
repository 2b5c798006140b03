"""The `/_mock/` control endpoints: what tests use to inspect and steer a running mock provider."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agenttrail.testing.mock_config import Failure, whole
from agenttrail.testing.mock_scenario import Scenario
from agenttrail.testing.mock_state import MockState

_RUNTIME_SETTINGS = ("ttft_ms", "chunk_ms", "latency_ms", "text", "expected_key", "count_tokens")


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> Any:
    raw = await request.body()
    return orjson.loads(raw) if raw.strip() else None


async def control(request: Request, state: MockState, command: str) -> Response:
    method = request.method
    try:
        payload = await _json(request) if method in ("POST", "PUT") else None
    except orjson.JSONDecodeError as e:
        return _bad(f"body is not JSON: {e}")
    try:
        if command == "requests" and method == "GET":
            q = request.query_params
            since = whole(q.get("since", "0"), "since")
            return JSONResponse(state.requests(q.get("endpoint"), q.get("path"), since))
        if command == "reset" and method == "POST":
            state.reset()
            return JSONResponse({"ok": True})
        if command == "fail":
            if method == "GET":
                return JSONResponse(state.failures())
            if method == "DELETE":
                state.clear_failures()
                return JSONResponse([])
            if method == "POST":
                items: list[Any] = payload if isinstance(payload, list) else [payload]
                state.add_failures([Failure.from_dict(f) for f in items])
                return JSONResponse(state.failures())
        if command == "scenario":
            if method == "GET":
                player = state.player
                if player is None:
                    return JSONResponse({"scenario": None})
                return JSONResponse(
                    {
                        "scenario": {"turns": len(player.scenario.turns), "cursor": player.scenario.cursor},
                        "positions": player.positions(),
                    }
                )
            if method == "POST":
                state.set_scenario(None if payload is None else Scenario.parse(payload))
                return JSONResponse({"ok": True})
        if command == "config" and method == "POST":
            return _set_config(state, payload)
    except (ValueError, TypeError) as e:
        return _bad(str(e))
    return _bad(f"unknown control endpoint: {method} /_mock/{command}", 404)


def _set_config(state: MockState, payload: Any) -> Response:
    if not isinstance(payload, dict):
        return _bad("expected an object of settings")
    unknown = set(payload) - set(_RUNTIME_SETTINGS)
    if unknown:
        return _bad(f"cannot change {sorted(unknown)} at runtime; can change {list(_RUNTIME_SETTINGS)}")
    cfg = state.config
    for key in ("ttft_ms", "chunk_ms", "latency_ms"):
        if key in payload and (not isinstance(payload[key], int | float) or payload[key] < 0):
            return _bad(f"{key} must be a non-negative number")
    if "latency_ms" in payload:
        cfg.ttft_ms = float(payload["latency_ms"])
    if "ttft_ms" in payload:
        cfg.ttft_ms = float(payload["ttft_ms"])
    if "chunk_ms" in payload:
        cfg.chunk_ms = float(payload["chunk_ms"])
    if "text" in payload:
        cfg.text = str(payload["text"])
    if "expected_key" in payload:
        cfg.expected_key = None if payload["expected_key"] is None else str(payload["expected_key"])
    if "count_tokens" in payload:
        cfg.count_tokens = None if payload["count_tokens"] is None else int(payload["count_tokens"])
    return JSONResponse({"ok": True, "ttft_ms": cfg.ttft_ms, "chunk_ms": cfg.chunk_ms})
