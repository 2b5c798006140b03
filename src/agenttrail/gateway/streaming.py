"""A relayed stream sent over ASGI, noticing a client that hangs up.

Starlette's StreamingResponse watches for the hang-up in an anyio task group; closing that group
formats the task's repr for its cancel message, and with the group's scopes it was the largest part of
the ASGI work of a streamed call (docs/performance.md, "Gateway"). This does the same with one plain
task: when the client goes away, the task relaying the stream is cancelled, so the body iterator's
`finally` runs (the call is recorded as `client_disconnected`) and the upstream read stops.
"""

from __future__ import annotations

import asyncio

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send


class RelayResponse(StreamingResponse):
    """A StreamingResponse (the response cache swaps its `body_iterator` to keep a copy) with a cheaper
    hang-up watch. Servers of ASGI 2.4 and later report a hang-up by failing `send`; Starlette's own
    path handles those."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        spec = scope.get("asgi", {}).get("spec_version", "2.0")
        if scope["type"] != "http" or tuple(map(int, spec.split("."))) >= (2, 4):
            await super().__call__(scope, receive, send)
            return
        relay = asyncio.current_task()
        assert relay is not None
        hung_up = False
        streaming = True

        def on_disconnect(watch: asyncio.Task[None]) -> None:
            nonlocal hung_up
            if streaming and not watch.cancelled() and watch.exception() is None:
                hung_up = True
                relay.cancel()

        watch = asyncio.get_running_loop().create_task(_until_disconnect(receive))
        watch.add_done_callback(on_disconnect)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Ours (the client went away) ends the response quietly; anyone else's goes on.
            if not hung_up or relay.uncancel() > 0:
                raise
            # Cancelled between two chunks (in `send`), the iterator has not seen it: close it now,
            # not whenever it is collected, so the call is recorded at once.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            streaming = False
            watch.cancel()
        if self.background is not None:
            await self.background()


async def _until_disconnect(receive: Receive) -> None:
    message: Message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
