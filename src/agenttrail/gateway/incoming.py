"""The client's request as the gateway reads it, straight from the ASGI scope.

Headers are decoded once into a dict: the gateway looks up about ten of them per call, and Starlette's
`Headers` decodes and scans the whole list on every lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect

from agenttrail.gateway.errors import GatewayError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Incoming:
    __slots__ = ("header_items", "headers", "path", "query", "receive")

    def __init__(self, scope: MutableMapping[str, Any], receive: Receive) -> None:
        self.receive = receive
        self.path: str = scope["path"]
        self.query: str = scope.get("query_string", b"").decode()
        # Every header as sent, repeats included (what is forwarded upstream)...
        self.header_items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        # ...and for lookups the first of a repeated header, as Starlette's `Headers.get` answers.
        self.headers: dict[str, str] = dict(reversed(self.header_items))

    async def body(self, limit: int) -> bytes:
        """The whole body, refused (413) past `limit` bytes; ClientDisconnect if the client goes away."""
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise GatewayError(
                413,
                f"the request body is {int(declared)} bytes; this gateway takes at most {limit}",
                record_status="invalid_request",
                retry=False,
            )
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise GatewayError(
                    413,
                    f"the request body is over this gateway's limit of {limit} bytes",
                    record_status="invalid_request",
                    retry=False,
                )
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)
