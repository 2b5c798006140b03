"""Forwarding to the configured upstream: bodies unchanged, streams relayed event by event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import Response

from agenttrail.gateway.call import Call
from agenttrail.gateway.errors import GatewayError, error_response, stream_error_event
from agenttrail.gateway.headers import client_headers
from agenttrail.gateway.providers.base import Prepared, ProviderSpec
from agenttrail.gateway.sse import SSESplitter
from agenttrail.gateway.streaming import RelayResponse
from agenttrail.gateway.upstream import UpstreamClient, UpstreamResponse, UpstreamTimeout, UpstreamUnreachable

Finish = Callable[[Call], None]


class UpstreamDeclined(Exception):
    """The upstream answered with a status the caller asked to fall back on (forward's `fallback_on`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _connect_error(provider: str, e: Exception) -> GatewayError:
    if isinstance(e, UpstreamTimeout):
        return GatewayError(
            504,
            f"the {provider} upstream did not answer in time ({e}); try again later",
            record_status="upstream_timeout",
            retry=True,
        )
    return GatewayError(
        502,
        f"the gateway cannot reach the {provider} upstream ({e}); "
        "the service may be down or the upstream base URL misconfigured",
        record_status="upstream_unreachable",
        retry=True,
    )


async def forward(
    client: UpstreamClient,
    spec: ProviderSpec,
    call: Call,
    prepared: Prepared,
    method: str,
    url: str,
    headers: dict[str, str],
    finish: Finish,
    fallback_on: frozenset[int] = frozenset(),
) -> Response:
    """Send the call upstream and return the client's response. `finish(call)` runs exactly once,
    when the call is over (for a stream: when it ends, fails, or the client goes away).

    An answer whose status is in `fallback_on` is not relayed: UpstreamDeclined is raised instead
    (and `finish` is not called), so the caller can try another model."""
    try:
        upstream = await client.send(method, url, headers, prepared.body if method != "GET" else None)
    except (UpstreamTimeout, UpstreamUnreachable) as e:
        raise _connect_error(spec.name, e) from None
    if upstream.status in fallback_on:
        try:
            content = await upstream.read()
        except (UpstreamTimeout, UpstreamUnreachable):
            content = b""
        finally:
            upstream.close()
        parsed: Any = None
        if content[:1] == b"{":
            try:
                parsed = orjson.loads(content)
            except orjson.JSONDecodeError:
                parsed = None
        raise UpstreamDeclined(upstream.status, _error_message(parsed, content))
    call.http_status = upstream.status
    call.request_id = spec.request_id(upstream.headers)
    ctype = upstream.headers.get("content-type", "")
    if not (prepared.stream and upstream.status == 200 and ctype.startswith("text/event-stream")):
        return await _whole(spec, call, upstream, finish)
    return RelayResponse(
        _stream(spec, call, prepared, upstream, finish),
        status_code=upstream.status,
        headers=client_headers(upstream.headers.items()),
        media_type=None,
    )


async def _whole(spec: ProviderSpec, call: Call, upstream: UpstreamResponse, finish: Finish) -> Response:
    try:
        content = await upstream.read()
    except (UpstreamTimeout, UpstreamUnreachable) as e:
        timeout = isinstance(e, UpstreamTimeout)
        raise GatewayError(
            504 if timeout else 502,
            f"the {spec.name} upstream broke off its answer ({e})",
            record_status="upstream_timeout" if timeout else "upstream_error",
            retry=True,
        ) from None
    finally:
        upstream.close()
    _mark_first_byte(call)
    parsed: Any = None
    if content[:1] in (b"{", b"["):
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            parsed = None
    if upstream.status < 400:
        usage, model = spec.read_body(call.endpoint, parsed)
        call.request_id = spec.body_request_id(call.endpoint, parsed) or call.request_id
        if usage is not None:
            call.usage = usage
        call.model = model or call.model
        call.status = "ok" if parsed is not None or not call.endpoint.billable else "upstream_bad_body"
        if call.status != "ok":
            call.error = "upstream answered with a body that is not JSON"
            finish(call)
            # Relayed as it is, a cut-off body reaches the client's JSON parser: the SDKs raise a bare
            # JSONDecodeError. An error in the provider's shape says what happened, and a retry may help.
            return error_response(
                spec.name,
                GatewayError(
                    502,
                    f"agenttrail gateway: the {spec.name} upstream answered {upstream.status} with a body "
                    "that is not JSON (cut off or garbled); try again",
                    retry=True,
                ),
            )
    else:
        call.status = "upstream_error"
        call.error = _error_message(parsed, content)
    finish(call)
    if upstream.status == 401:
        # The provider refused the server's own credential, not the client's virtual key: relayed as is,
        # a 401 reads as "your key is wrong" (Claude Code asks the user to log in again).
        env = "ANTHROPIC_API_KEY" if spec.name == "anthropic" else "OPENAI_API_KEY"
        message = (
            f"the {spec.name} provider refused the gateway's own credential ({call.error}); your virtual key "
            f"is fine: the gateway's admin must fix {env} on the server"
        )
        return error_response(spec.name, GatewayError(502, message, retry=False))
    return Response(content, status_code=upstream.status, headers=client_headers(upstream.headers.items()))


def _error_message(parsed: Any, content: bytes) -> str:
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return content[:500].decode("utf-8", "replace")


def _mark_first_byte(call: Call) -> None:
    if call.ttft_ms is None:
        call.ttft_ms = (time.monotonic() - call.t0) * 1000.0


async def _stream(
    spec: ProviderSpec, call: Call, prepared: Prepared, upstream: UpstreamResponse, finish: Finish
) -> AsyncIterator[bytes]:
    observer = spec.observer(call.endpoint, prepared)
    splitter = SSESplitter()
    ended = False
    try:
        try:
            while chunk := await upstream.read_some():
                events = splitter.feed(chunk)
                if not events:
                    continue
                out = [ev.raw for ev in events if observer.on_event(ev)]
                if observer.garbled:
                    call.status = "upstream_bad_stream"
                    call.error = observer.error
                    yield b"".join(out) + stream_error_event(
                        spec.name, f"agenttrail gateway: {observer.error}; the answer was cut off"
                    )
                    ended = True
                    return
                if out:
                    _mark_first_byte(call)
                    # Every event of a read goes to the client in one write.
                    yield out[0] if len(out) == 1 else b"".join(out)
        except (UpstreamTimeout, UpstreamUnreachable) as e:
            timeout = isinstance(e, UpstreamTimeout)
            call.status = "upstream_timeout" if timeout else "upstream_error"
            call.error = f"the upstream stream broke off: {e}"
            yield stream_error_event(spec.name, f"agenttrail gateway: {call.error}")
            ended = True
            return
        if not observer.complete and observer.error:
            # The provider ended its stream with its own error event (Anthropic's overloaded_error, a
            # Chat Completions error chunk): the client has read it already; one error is enough.
            call.status = "upstream_error"
            call.error = observer.error
        elif not observer.complete:
            call.status = "upstream_incomplete"
            call.error = "the upstream stream ended before its final event"
            yield stream_error_event(spec.name, f"agenttrail gateway: {call.error}")
        else:
            call.status = "upstream_error" if observer.error else "ok"
            call.error = observer.error
        ended = True
    finally:
        if not ended:
            # A client may hang up right after the final event (the OpenAI SDK does after [DONE]).
            call.status = ("upstream_error" if observer.error else "ok") if observer.complete else "client_disconnected"
            call.error = call.error or observer.error
        call.usage = observer.usage
        call.model = observer.model or call.model
        call.request_id = observer.response_id or call.request_id
        upstream.close()
        finish(call)
