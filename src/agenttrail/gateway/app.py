"""The gateway: authenticate, check, govern, forward, price and record one model call."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from agenttrail.clock import Clock
from agenttrail.config import Settings
from agenttrail.gateway.auth import KeyCache
from agenttrail.gateway.call import Call
from agenttrail.gateway.errors import GatewayError, error_response
from agenttrail.gateway.headers import upstream_headers
from agenttrail.gateway.incoming import Incoming
from agenttrail.gateway.policy import OpenPolicy, Policy
from agenttrail.gateway.providers import PROVIDERS, for_request
from agenttrail.gateway.providers.base import Endpoint, Prepared
from agenttrail.gateway.recorder import Recorder
from agenttrail.gateway.relay import UpstreamDeclined, forward
from agenttrail.gateway.upstream import UpstreamClient
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage

log = logging.getLogger("agenttrail.gateway")


@dataclass
class Gateway:
    settings: Settings
    keys: KeyCache
    recorder: Recorder
    pricer: Pricer
    clock: Clock
    client: UpstreamClient
    policy: Policy = field(default_factory=OpenPolicy)
    observers: list[Any] = field(default_factory=list)  # callables(call) run when a call ends
    _pending: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    # -- one call ---------------------------------------------------------------------------

    async def handle(self, request: Incoming, ep: Endpoint) -> Response:
        ep = for_request(ep, request.headers)
        call = Call(endpoint=ep, started_at=self.clock.now(), t0=time.monotonic())
        call.client = request.headers.get("user-agent")
        admitted = False
        try:
            call.key = await self.keys.authenticate(request.headers)
            self._identify(call, request)
            prepared = await self._prepare(call, request, ep)
            cached = await self.policy.admit(call)
            admitted = True
            if cached is not None:
                self._finish(call)
                return cached
            return await self._forward(call, request, ep, prepared)
        except GatewayError as e:
            call.status = e.record_status
            call.http_status = e.status
            call.error = e.message
            if call.key is not None and ep.billable:
                self._finish(call, settle=admitted)
            elif admitted:
                self._finish(call)
            return error_response(ep.provider, e)
        except ClientDisconnect:
            call.status = "client_disconnected"
            if call.key is not None and ep.billable:
                self._finish(call, settle=admitted)
            return Response(status_code=499)

    def _identify(self, call: Call, request: Incoming) -> None:
        h = request.headers
        key = call.key
        # A session-scoped key fixes the session; a header cannot move its calls elsewhere.
        call.session_id = (key.session_id if key else None) or h.get("x-agenttrail-session") or None
        call.agent_session_id = h.get("x-claude-code-session-id") or h.get("session-id") or None
        call.tags = _parse_tags(h.get("x-agenttrail-tags"))

    async def _prepare(self, call: Call, request: Incoming, ep: Endpoint) -> Prepared:
        spec = PROVIDERS[ep.provider]
        if ep.method == "GET":
            return Prepared(body=b"", stream=False, model=None)
        ctype = request.headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise GatewayError(
                415,
                f"the request body must be JSON (Content-Type: application/json), got {ctype or 'none'!r}",
                record_status="invalid_request",
                retry=False,
            )
        raw = await request.body(self.settings.max_body_bytes)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise GatewayError(
                400, f"the request body is not valid JSON: {e}", record_status="invalid_request", retry=False
            ) from None
        if not isinstance(body, dict):
            raise GatewayError(
                400, "the request body must be a JSON object", record_status="invalid_request", retry=False
            )
        prepared = spec.prepare(ep, raw, body)
        call.body = body
        call.stream = prepared.stream
        call.model_requested = prepared.model
        call.model = prepared.model
        allowed = call.key.allowed_models if call.key else None
        if allowed and prepared.model not in allowed:
            raise GatewayError(
                403,
                f"this key may not use model {prepared.model!r}; allowed: {', '.join(allowed)}",
                code="model_not_allowed",
                record_status="refused",
                retry=False,
            )
        return prepared

    async def _forward(self, call: Call, request: Incoming, ep: Endpoint, prepared: Prepared) -> Response:
        spec = PROVIDERS[ep.provider]
        upstream = self.settings.upstream(ep.provider)
        if not upstream.api_key:
            raise GatewayError(
                502,
                f"the gateway has no {ep.provider} credential configured "
                f"({'ANTHROPIC_API_KEY' if ep.provider == 'anthropic' else 'OPENAI_API_KEY'} on the server)",
                record_status="error",
                retry=False,
            )
        url = spec.upstream_url(upstream.base_url, request.path, request.query)
        headers = upstream_headers(request.header_items, spec.auth_headers(upstream.api_key))
        # Optional policy capabilities (governance has them, OpenPolicy does not): models to fall back
        # on when the upstream declines or times out, and a look at each complete answer (the cache).
        fallbacks = getattr(self.policy, "fallback_models", None)
        models = [call.model, *(fallbacks(call) if fallbacks is not None else [])]
        statuses: frozenset[int] = getattr(self.policy, "fallback_statuses", frozenset())
        for i, model in enumerate(models):
            last = i == len(models) - 1
            if model and model != call.model_requested and call.body is not None:
                # From the prepared body, which may carry the gateway's own changes (include_usage).
                prepared.body = orjson.dumps(dict(orjson.loads(prepared.body), model=model))
            call.model = model
            try:
                response = await forward(
                    self.client,
                    spec,
                    call,
                    prepared,
                    ep.method,
                    url,
                    headers,
                    self._finish,
                    fallback_on=frozenset() if last else statuses,
                )
            except UpstreamDeclined as e:
                _route(call, f"fallback: {model} answered {e.status}")
                continue
            except GatewayError as e:
                if last or e.record_status not in ("upstream_timeout", "upstream_unreachable"):
                    raise
                _route(call, f"fallback: {model} {e.record_status.replace('upstream_', '')}")
                continue
            tap = getattr(self.policy, "tap_response", None)
            return tap(call, response) if tap is not None else response
        raise AssertionError("unreachable: the last model's answer is always returned or raised")

    def _finish(self, call: Call, settle: bool = True) -> None:
        """The call is over. Its latency is fixed now; pricing (genai-prices takes ~0.1 ms), recording
        and settlement run in a task after the answer has gone, so they never delay it."""
        call.ended_at = self.clock.now()
        call.latency_ms = (time.monotonic() - call.t0) * 1000.0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._account(call)
            return
        task = loop.create_task(self._complete(call, settle))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _complete(self, call: Call, settle: bool) -> None:
        self._account(call)
        if settle:
            try:
                await self.policy.settle(call)
            except Exception:
                log.exception("could not settle call %s", call.call_id)

    def _account(self, call: Call) -> None:
        """Price, record and tell observers. Never raises: the answer has been sent already."""
        try:
            if call.endpoint.billable and not call.cache_hit:
                call.usage = bounded(call.usage)
                price = self.pricer.price(call.provider, call.model, call.usage)
                call.cost_usd = price.cost_usd
                call.price_source = price.source
            if call.endpoint.billable:
                self.recorder.add(call.row())
            for obs in self.observers:
                obs(call)
        except Exception:
            log.exception("could not record call %s", call.call_id)

    async def drain(self) -> None:
        """Wait for calls still being accounted (a stopping server flushes them all)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


# Tokens of one class in one call, at most: a thousand times the largest context window. An upstream
# that reported 9e18 output tokens priced the call past the 64-bit columns of its record and of the
# budget counters: the recorder retried that batch for ever (no later call was recorded), and every
# admission against the team's budgets failed as if the database were down.
MAX_TOKENS = 10**9


def bounded(u: Usage) -> Usage:
    values = {f.name: getattr(u, f.name) for f in fields(u)}
    if all(0 <= v <= MAX_TOKENS for v in values.values()):
        return u
    return Usage(**{k: min(max(0, v), MAX_TOKENS) for k, v in values.items()})


def _parse_tags(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    value = value.strip()
    if value.startswith("{"):
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"tags": value[:200]}
        return {str(k)[:100]: str(v)[:200] for k, v in obj.items()} if isinstance(obj, dict) else None
    tags: dict[str, str] = {}
    for part in value.split(","):
        k, sep, v = part.partition("=")
        if k.strip():
            tags[k.strip()[:100]] = v.strip()[:200] if sep else ""
    return tags or None


def _route(call: Call, reason: str) -> None:
    call.route_reason = f"{call.route_reason}; {reason}"[:200] if call.route_reason else reason


async def probe(request: Request) -> Response:
    """Claude Code probes `HEAD /` (and some clients `GET /`) before calling."""
    return PlainTextResponse("agenttrail gateway\n")
