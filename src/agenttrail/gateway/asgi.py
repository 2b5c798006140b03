"""The gateway's endpoints as a bare ASGI app.

A model call is the hot path of the server: the server app (`agenttrail.server.app`) hands these
paths straight to `GatewayASGI.serve`, ahead of Starlette's middleware stack and router, whose layers
cost tens of microseconds per call and a few per relayed chunk (docs/performance.md, "Gateway").
The same endpoints are also registered as Starlette routes (`routes()`), so a request these do not
take (another method, a root path) gets Starlette's answer, 405 included.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from agenttrail.gateway.app import Gateway
from agenttrail.gateway.errors import internal_error
from agenttrail.gateway.incoming import Incoming
from agenttrail.gateway.providers import PROVIDERS
from agenttrail.gateway.providers.base import Endpoint

log = logging.getLogger("agenttrail.server")


class GatewayASGI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._by_path = {ep.path: ep for spec in PROVIDERS.values() for ep in spec.endpoints}

    def match(self, scope: MutableMapping[str, Any]) -> Endpoint | None:
        """The endpoint this HTTP request is for, when the bare path can serve it."""
        ep = self._by_path.get(scope["path"])
        if ep is None or ep.method != scope["method"] or scope.get("root_path"):
            return None
        return ep

    async def serve(self, ep: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        """One call, with what Starlette's ServerErrorMiddleware would do on a bug: log it, answer 500
        in the provider's shape if nothing was sent yet, and raise on for the server to log."""
        try:
            response = await self.gateway.handle(Incoming(scope, receive), ep)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            await internal_error(ep.provider, exc)(scope, receive, send)
            raise
        try:
            await response(scope, receive, send)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            raise

    def routes(self) -> list[BaseRoute]:
        return [
            Route(ep.path, _Routed(self.gateway, ep), methods=[ep.method], name=f"{ep.provider}_{ep.name}")
            for spec in PROVIDERS.values()
            for ep in spec.endpoints
        ]


class _Routed:
    """An endpoint as a plain ASGI app inside Starlette's router (its middleware handles errors there)."""

    __slots__ = ("endpoint", "gateway")

    def __init__(self, gateway: Gateway, endpoint: Endpoint) -> None:
        self.gateway = gateway
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.gateway.handle(Incoming(scope, receive), self.endpoint)
        await response(scope, receive, send)
