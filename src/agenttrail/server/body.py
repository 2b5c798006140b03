"""Reading a request body with a ceiling: a body past it is refused as soon as it is, never held whole.

Starlette's `request.body()` buffers everything first; a client sending hundreds of megabytes (or a
chunked body with no Content-Length) would hold them all in memory before any length check ran.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge once more than `limit` bytes are declared or have arrived."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
