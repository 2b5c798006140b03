"""Request bodies past a route's ceiling are refused while they arrive, never buffered whole."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from agenttrail.server.body import BodyTooLarge, read_body


def _app() -> Starlette:
    async def echo(request: Request) -> Response:
        try:
            body = await read_body(request, 1000)
        except BodyTooLarge as e:
            return JSONResponse({"error": str(e)}, status_code=413)
        return JSONResponse({"size": len(body)})

    return Starlette(routes=[Route("/echo", echo, methods=["POST"])])


def test_under_the_ceiling_the_body_is_whole() -> None:
    with TestClient(_app()) as c:
        assert c.post("/echo", content=b"x" * 1000).json() == {"size": 1000}


def test_a_declared_length_past_the_ceiling_is_refused_unread() -> None:
    with TestClient(_app()) as c:
        r = c.post("/echo", content=b"x" * 5000)
    assert r.status_code == 413 and r.json()["error"] == "the request body is larger than 1000 bytes"


@pytest.mark.parametrize("chunks", [10, 1000])
def test_a_chunked_body_is_refused_once_past_the_ceiling(chunks: int) -> None:
    pulled: list[int] = []

    async def receive() -> dict[str, object]:  # a chunked upload, no Content-Length
        pulled.append(600)
        return {"type": "http.request", "body": b"y" * 600, "more_body": len(pulled) < chunks}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(request, 1000))
    assert sum(pulled) == 1200  # it stopped reading as soon as it knew
