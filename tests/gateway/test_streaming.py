"""RelayResponse: a client that hangs up ends the relay (the body's `finally` runs at once); any other
cancellation goes on; a stream that ends is sent whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agenttrail.gateway.streaming import RelayResponse

SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST"}


class Body:
    """Yields `n` chunks, then waits forever; records how it ended."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ended: str | None = None
        self.sent_all = asyncio.Event()

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            for i in range(self.n):
                yield b"event %d\n\n" % i
            self.sent_all.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise
        finally:
            self.ended = self.ended or "closed"


class Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_a_hang_up_ends_the_relay_and_closes_the_body() -> None:
    body, client = Body(2), Client()
    task = asyncio.create_task(RelayResponse(body.stream())(SCOPE, client.receive, client.send))
    await body.sent_all.wait()
    client.gone.set()
    await asyncio.wait_for(task, 5)  # returns quietly: the hang-up is not an error
    assert body.ended == "cancelled"
    assert [m.get("body") for m in client.sent[1:]] == [b"event 0\n\n", b"event 1\n\n"]
    assert not task.cancelled() and task.cancelling() == 0


async def test_a_hang_up_between_chunks_closes_the_body_at_once() -> None:
    client = Client()
    closed = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b"one"
            yield b"two"
        finally:
            closed.set()

    async def slow_send(message: dict[str, Any]) -> None:
        client.sent.append(message)
        if message.get("body") == b"one":
            client.gone.set()
            await asyncio.sleep(10)  # a send held up by flow control when the client goes

    task = asyncio.create_task(RelayResponse(stream())(SCOPE, client.receive, slow_send))
    await asyncio.wait_for(task, 5)
    assert closed.is_set()
    assert [m.get("body") for m in client.sent[1:]] == [b"one"]


async def test_a_cancellation_from_elsewhere_goes_on() -> None:
    body, client = Body(1), Client()
    task = asyncio.create_task(RelayResponse(body.stream())(SCOPE, client.receive, client.send))
    await body.sent_all.wait()
    task.cancel()  # e.g. the server stopping
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.ended == "cancelled"


async def test_a_finished_stream_is_sent_whole_and_a_late_disconnect_changes_nothing() -> None:
    client = Client()

    async def stream() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    await RelayResponse(stream(), status_code=200, headers={"x-h": "1"})(SCOPE, client.receive, client.send)
    client.gone.set()
    await asyncio.sleep(0.01)
    start, *bodies = client.sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"x-h", b"1") in start["headers"]
    assert [(m["body"], m["more_body"]) for m in bodies] == [(b"a", True), (b"b", True), (b"", False)]
