"""`agenttrail serve`: gateway, ingest, query and UI in one ASGI app.

State lives in objects made here and passed explicitly; importing this module does no work.
Other parts add routes through `extra_routes` and start/stop hooks through `Services`
(see `agenttrail.server.parts`). The gateway's endpoints are served ahead of Starlette's middleware
stack (`ServerApp`, `agenttrail.gateway.asgi`); everything else goes through Starlette as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from agenttrail.clock import Clock, SystemClock
from agenttrail.config import Settings
from agenttrail.gateway.app import Gateway, probe
from agenttrail.gateway.asgi import GatewayASGI
from agenttrail.gateway.auth import KeyCache
from agenttrail.gateway.errors import GatewayError, error_response, internal_error
from agenttrail.gateway.policy import OpenPolicy, Policy
from agenttrail.gateway.recorder import Recorder
from agenttrail.gateway.upstream import UpstreamClient
from agenttrail.pricing import Pricer
from agenttrail.store.database import open_engine

log = logging.getLogger("agenttrail.server")

Hook = Callable[[], Awaitable[None]]


@dataclass
class Services:
    """Everything the server's parts share, made once per app."""

    settings: Settings
    engine: Engine
    clock: Clock
    pricer: Pricer
    keys: KeyCache
    recorder: Recorder
    gateway: Gateway
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    # `GET /metrics` serves this one registry: each part adds its own metrics to it.
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)


def build_services(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    policy: Policy | None = None,
) -> Services:
    engine = engine or open_engine(settings.database_url)
    clock = clock or SystemClock()
    pricer = Pricer(settings.price_overrides)
    keys = KeyCache(engine, clock)
    recorder = Recorder(engine, batch_size=settings.record_batch_size, interval_s=settings.record_flush_interval_s)
    client = UpstreamClient(settings.upstream_connect_timeout_s, settings.upstream_read_timeout_s)
    gateway = Gateway(
        settings=settings,
        keys=keys,
        recorder=recorder,
        pricer=pricer,
        clock=clock,
        client=client,
        policy=policy or OpenPolicy(),
    )
    return Services(settings, engine, clock, pricer, keys, recorder, gateway)


class ServerApp(Starlette):
    """Starlette, except that a model call goes straight to the gateway's bare ASGI app."""

    def __init__(self, gateway: GatewayASGI, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ep = self.gateway.match(scope)
            if ep is not None:
                scope["app"] = self
                await self.gateway.serve(ep, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    svc = services or build_services(settings)

    async def healthz(request: Request) -> Response:
        try:
            with svc.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            return JSONResponse({"status": "error", "database": str(e)[:200]}, status_code=503)
        # The worker's pid tells apart the processes of `serve --workers N` (one socket, several accepters).
        return JSONResponse({"status": "ok", "pending_records": len(svc.recorder._pending), "worker": os.getpid()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await svc.recorder.start()
        await svc.gateway.client.start()
        for hook in svc.on_startup:
            await hook()
        try:
            yield
        finally:
            for hook in svc.on_shutdown:
                await hook()
            await svc.gateway.drain()
            await svc.recorder.stop()
            await svc.gateway.client.close()

    gateway = GatewayASGI(svc.gateway)
    routes: list[BaseRoute] = [
        Route("/", probe, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        *gateway.routes(),
        *(extra_routes or []),
    ]
    handlers = {HTTPException: _http_error, Exception: _internal_error}
    app = ServerApp(gateway, routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.services = svc
    return app


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error("anthropic" if request.url.path.startswith("/v1/messages") else "openai", exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """An unknown path or a wrong method, answered in JSON like every other refusal (not Starlette's
    plain text): in the provider's shape under /v1/, so an SDK shows the message."""
    assert isinstance(exc, HTTPException)
    method, path, headers = request.method, request.url.path, dict(exc.headers or {})
    if exc.status_code == 405:
        message = f"{path} takes {headers.get('Allow', 'other methods')}, not {method}"
    elif exc.status_code == 404:
        message = f"agenttrail has no endpoint {method} {path}{_base_url_hint(path)}"
    else:
        message = str(exc.detail)
    if path.startswith("/v1/") or path in _PROVIDER_PATHS:
        provider = "anthropic" if path.removeprefix("/v1").removeprefix("/v1").startswith("/messages") else "openai"
        response = error_response(provider, GatewayError(exc.status_code, message))
        response.headers.update(headers)
        return response
    return JSONResponse({"error": {"message": message, "status": exc.status_code}}, exc.status_code, headers)


# The gateway's paths without their /v1: what a client whose base URL lacks it asks for.
_PROVIDER_PATHS = ("/messages", "/messages/count_tokens", "/chat/completions", "/responses", "/embeddings", "/models")


def _base_url_hint(path: str) -> str:
    """The usual cause of a 404 from an SDK or agent CLI: its base URL has /v1 once too often or too few."""
    right = "ANTHROPIC_BASE_URL=http://HOST:PORT, OPENAI_BASE_URL=http://HOST:PORT/v1"
    if path.startswith("/v1/v1/"):
        return f"; the client's base URL ends in /v1 once too often ({right})"
    if path in _PROVIDER_PATHS:
        return f"; the client's base URL lacks /v1 ({right})"
    return ""
