"""The mock provider's ASGI app: routing by path tail, credentials, faults, and the answers.

What it serves and how to steer it is documented in `agenttrail.testing.mock_llm`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from agenttrail.testing import mock_anthropic, mock_openai, mock_responses
from agenttrail.testing.mock_config import Failure, MockConfig
from agenttrail.testing.mock_control import control
from agenttrail.testing.mock_scenario import (
    Turn,
    assistant_turns_in_input,
    assistant_turns_in_messages,
)
from agenttrail.testing.mock_state import MockState
from agenttrail.testing.mock_wire import (
    Reply,
    SSEEvent,
    anthropic_error,
    dumps,
    new_id,
    openai_error,
    split_json,
    split_text,
)

__all__ = ["MockDisconnect", "create_app"]

_ANTHROPIC_ENDPOINTS = ("messages", "count_tokens")
_SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")
_MODEL_PATH = re.compile(r"/models/([^/]+)$")


class MockDisconnect(Exception):
    """Raised inside a response on purpose: the server then drops the connection mid-answer."""


def create_app(config: MockConfig | None = None) -> Starlette:
    """The mock provider as an ASGI app; its state is `app.state.mock` (a MockState)."""
    state = MockState(config or MockConfig())

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if "/_mock/" in path or path.endswith("/_mock"):
            return await control(request, state, path.split("/_mock", 1)[1].strip("/"))
        return await _provider(request, state)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
    app.state.mock = state
    return app


def _classify(path: str) -> tuple[str | None, str | None]:
    """(endpoint, model id for /models/{id}) from the path's tail, whatever prefix precedes it."""
    p = path.rstrip("/")
    for suffix, name in (
        ("/messages/count_tokens", "count_tokens"),
        ("/messages", "messages"),
        ("/chat/completions", "chat"),
        ("/responses", "responses"),
        ("/embeddings", "embeddings"),
        ("/models", "models"),
    ):
        if p.endswith(suffix):
            return name, None
    m = _MODEL_PATH.search(p)
    if m:
        return "models", m.group(1)
    return None, None


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in request.headers.items():
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def _bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _is_anthropic(endpoint: str | None, headers: dict[str, str]) -> bool:
    if endpoint in _ANTHROPIC_ENDPOINTS:
        return True
    if endpoint in (None, "models"):
        return "anthropic-version" in headers or "x-api-key" in headers
    return False


class _Answer:
    """How to answer in one provider's dialect: error bodies and headers."""

    def __init__(self, anthropic: bool) -> None:
        self.anthropic = anthropic
        self.request_id = new_id("anthropic_request" if anthropic else "openai_request")

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"request-id": self.request_id} if self.anthropic else {"x-request-id": self.request_id}
        if not self.anthropic:
            h["openai-processing-ms"] = "1"
        return {**h, **(extra or {})}

    def error_body(
        self, status: int, message: str | None = None, type_: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        if self.anthropic:
            return anthropic_error(status, message, type_, self.request_id)
        return openai_error(status, message, type_, code)

    def error(
        self,
        status: int,
        message: str | None = None,
        type_: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = self.error_body(status, message, type_, code)
        return JSONResponse(body, status_code=status, headers=self.headers(headers))

    def json(self, body: Any) -> Response:
        return Response(dumps(body), media_type="application/json", headers=self.headers())


def _check_key(state: MockState, answer: _Answer, headers: dict[str, str]) -> Response | None:
    if answer.anthropic:
        key = (headers.get("x-api-key") or "").strip() or _bearer(headers)
        if not key:
            return answer.error(401, "x-api-key header is required")
    else:
        key = _bearer(headers)
        if not key:
            return answer.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header"
                " using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
    expected = state.config.expected_key
    if expected is not None and key != expected:
        if answer.anthropic:
            return answer.error(401, "invalid x-api-key")
        shown = f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"
        return answer.error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at"
            " https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return None


async def _provider(request: Request, state: MockState) -> Response:
    path = request.url.path
    method = request.method
    endpoint, model_id = _classify(path)
    headers = _headers(request)
    raw = await request.body()
    body: Any = None
    bad_json = False
    if raw:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body, bad_json = raw.decode("utf-8", "replace"), True
    if endpoint is not None or method != "HEAD":
        state.record(
            {
                "method": method,
                "path": path,
                "query": dict(request.query_params),
                "headers": headers,
                "body": body,
                "endpoint": endpoint,
            }
        )
    answer = _Answer(_is_anthropic(endpoint, headers))

    get_like = method in ("GET", "HEAD")
    if endpoint is None or (endpoint == "models") != get_like:
        if get_like and (method == "HEAD" or "/v1/" not in path):
            # Agents probe their base URL before the first call; a 404 there reads as "server down".
            probe = b"" if method == "HEAD" else b'{"ok":true,"service":"agenttrail mock-llm"}'
            return Response(probe, media_type="application/json")
        return answer.error(404, f"Not Found: {method} {path}")

    denied = _check_key(state, answer, headers)
    if denied is not None:
        return denied
    if bad_json:
        return answer.error(400, "There was an error parsing the body of your request as JSON.")

    cfg = state.config
    if endpoint != "models":
        invalid = {
            "messages": mock_anthropic.validate,
            "count_tokens": mock_anthropic.validate_count_tokens,
            "chat": mock_openai.validate_chat,
            "responses": mock_responses.validate,
            "embeddings": mock_openai.validate_embeddings,
        }[endpoint](body)
        if invalid:
            return answer.error(400, invalid)
    model = model_id if endpoint == "models" else str(body["model"])
    failure = state.take_failure(model, endpoint)
    streamed = _wants_stream(body, endpoint)
    if failure is not None and (failure.mode == "status" or (failure.mode == "stream_error" and not streamed)):
        await _sleep_ms(cfg.ttft_ms)
        return answer.error(failure.status, failure.message, failure.type, headers=failure.headers)
    if failure is not None and failure.mode == "hang" and (failure.events_before == 0 or not streamed):
        await _hang(state, request)
        return answer.error(504, "The mock provider was told to hang.")

    if endpoint == "models":
        await _sleep_ms(cfg.ttft_ms)
        if model_id is None:
            listing = (
                mock_anthropic.models_body(cfg.models) if answer.anthropic else mock_openai.models_body(cfg.models)
            )
            return _body_response(answer, listing, failure)
        if model_id not in cfg.models:
            return answer.error(404, f"model: {model_id}", code="model_not_found")
        obj = mock_anthropic.model_object(model_id) if answer.anthropic else mock_openai.model_object(model_id)
        return _body_response(answer, obj, failure)
    if endpoint == "count_tokens":
        await _sleep_ms(cfg.ttft_ms)
        return _body_response(answer, mock_anthropic.count_tokens_body(cfg.anthropic_count_tokens), failure)
    if endpoint == "embeddings":
        await _sleep_ms(cfg.ttft_ms)
        emb = mock_openai.embeddings_body(body, cfg.embedding_dimensions, cfg.embedding_tokens_per_input)
        return _body_response(answer, emb, failure)
    return await _generate(request, state, answer, endpoint, body, headers, failure)


def _wants_stream(body: Any, endpoint: str) -> bool:
    return endpoint in ("messages", "chat", "responses") and isinstance(body, dict) and body.get("stream") is True


def _pick_turn(
    state: MockState, endpoint: str, body: dict[str, Any], headers: dict[str, str], advance: bool
) -> tuple[int | None, Turn]:
    player = state.player
    if player is None:
        return None, Turn(text=state.config.text)
    session = next((headers[h] for h in _SESSION_HEADERS if headers.get(h)), "")
    if endpoint == "responses":
        depth = assistant_turns_in_input(body.get("input"))
        prev = body.get("previous_response_id")
        if isinstance(prev, str):
            before = state.response_turn(prev)
            if before is not None:
                depth += before + 1
    else:
        depth = assistant_turns_in_messages(body.get("messages"))
    has_tools = bool(body.get("tools") or body.get("functions"))
    return player.next_turn(session, depth, has_tools, state.config.text, advance=advance)


async def _generate(
    request: Request,
    state: MockState,
    answer: _Answer,
    endpoint: str,
    body: dict[str, Any],
    headers: dict[str, str],
    failure: Failure | None,
) -> Response:
    cfg = state.config
    # A faulted answer never reached the client, so its retry must get the same turn.
    index, turn = _pick_turn(state, endpoint, body, headers, advance=failure is None)
    base = {"messages": cfg.anthropic_usage, "chat": cfg.chat_usage, "responses": cfg.responses_usage}[endpoint]
    reply = Reply(model=str(body["model"]), turn=turn, usage=turn.usage_for(base), chunks=cfg.stream_chunks)
    stream = _wants_stream(body, endpoint)

    builder = mock_responses.ResponseBuilder(reply, body) if endpoint == "responses" else None
    if builder is not None and index is not None:
        state.remember_response(builder.id, index)

    if not stream:
        deltas = len(split_text(turn.text or "", reply.chunks)) + sum(
            len(split_json(c.arguments_json())) for c in turn.calls
        )
        await _sleep_ms(cfg.ttft_ms + cfg.chunk_ms * max(0, deltas - 1))
        if endpoint == "messages":
            payload = mock_anthropic.message_body(reply)
        elif endpoint == "chat":
            payload = mock_openai.chat_body(reply)
        else:
            assert builder is not None
            payload = builder.body()
        return _body_response(answer, payload, failure)

    if endpoint == "messages":
        events = mock_anthropic.message_events(reply)
    elif endpoint == "chat":
        events = mock_openai.chat_events(reply, mock_openai.include_usage(body))
    else:
        assert builder is not None
        events = builder.events()

    def late_error(position: int) -> SSEEvent:
        assert failure is not None
        if endpoint == "messages":
            return mock_anthropic.stream_error_event(failure.status, failure.message, failure.type, answer.request_id)
        if endpoint == "chat":
            return mock_openai.chat_stream_error_event(failure.status, failure.message, failure.type)
        assert builder is not None
        return builder.failed_event(failure.status, failure.message, failure.type, position)

    await _sleep_ms(cfg.ttft_ms)
    return StreamingResponse(
        _stream(state, events, failure, late_error),
        media_type="text/event-stream; charset=utf-8",
        headers=answer.headers({"cache-control": "no-cache", "x-accel-buffering": "no"}),
    )


async def _stream(
    state: MockState,
    events: list[SSEEvent],
    failure: Failure | None,
    late_error: Callable[[int], SSEEvent],
) -> AsyncIterator[bytes]:
    # The fault lands before the last event at the latest, so a faulted stream is never complete.
    cut = min(failure.events_before, len(events) - 1) if failure is not None else -1
    if failure is not None and failure.mode == "garbled":
        # Clients skip some events unparsed (Anthropic's ping), so garble content the client must read.
        cut = next((i for i in range(cut, len(events) - 1) if events[i].delta), cut)
    first_delta = True
    for i, ev in enumerate(events):
        if failure is not None and i == cut:
            if failure.mode == "disconnect":
                raise MockDisconnect("mock-llm: connection dropped on purpose")
            if failure.mode == "garbled":
                yield _garble(ev.data)
            elif failure.mode == "stream_error":
                yield late_error(i).data
            elif failure.mode == "hang":
                await _hang(state, None)
            return
        if ev.delta:
            if not first_delta:
                await _sleep_ms(state.config.chunk_ms)
            first_delta = False
        yield ev.data


def _garble(data: bytes) -> bytes:
    # Keep the framing (so the client reads an event) but cut the JSON in half.
    head, sep, payload = data.partition(b"data: ")
    payload = payload.rstrip(b"\n")
    return head + sep + payload[: max(1, len(payload) // 2)] + b"\n\n"


def _body_response(answer: _Answer, payload: Any, failure: Failure | None) -> Response:
    data = dumps(payload)
    if failure is None:
        return Response(data, media_type="application/json", headers=answer.headers())
    if failure.mode == "garbled":
        return Response(data[: len(data) // 2], media_type="application/json", headers=answer.headers())

    async def half_then_drop() -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        raise MockDisconnect("mock-llm: connection dropped on purpose")

    # The declared length promises the whole body, so the client sees a truncated message, not a short one.
    return StreamingResponse(
        half_then_drop(),
        media_type="application/json",
        headers=answer.headers({"content-length": str(len(data))}),
    )


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


async def _hang(state: MockState, request: Request | None) -> None:
    """Wait until the client leaves, the server stops, or `hang_max_s` passes. Polling (rather than one
    long sleep) lets a stopping server finish instead of waiting out its graceful-shutdown timeout."""
    deadline = time.monotonic() + state.config.hang_max_s
    while not state.closing.is_set() and time.monotonic() < deadline:
        if request is not None and await request.is_disconnected():
            return
        await asyncio.sleep(0.05)
