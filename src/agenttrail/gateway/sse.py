"""Incremental Server-Sent Events splitting, fed chunk by chunk as bytes arrive from upstream.

Every relayed event passes through here, so the usual shapes (`event: NAME\\ndata: ONE LINE` and
`data: ONE LINE`, lines ending in \\n) are read with a few byte searches and no decoding; anything
else (\\r\\n line ends, comments, several data lines, other fields) takes the general path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: bytes  # the data lines joined by \n, undecoded (orjson reads bytes)
    raw: bytes  # the event's bytes as received, terminator included


def event_json(ev: SSEEvent) -> Any:
    """The event's data as JSON; JSONDecodeError if it is not. Bytes that are not UTF-8 are read as
    replacement characters, not refused."""
    try:
        return orjson.loads(ev.data)
    except orjson.JSONDecodeError:
        return orjson.loads(ev.data.decode("utf-8", "replace"))


class SSESplitter:
    """Splits a byte stream into events. Upstreams end lines with \\n or \\r\\n; both are handled."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[SSEEvent] = []
        start = 0
        if b"\r" not in buf:
            end = buf.find(b"\n\n")
            while end >= 0:
                ev = _parse_lf(buf[start:end])
                if ev is not None:
                    out.append(SSEEvent(ev[0], ev[1], buf[start : end + 2]))
                start = end + 2
                end = buf.find(b"\n\n", start)
        else:
            while True:
                end, sep_len = _find_boundary(buf, start)
                if end < 0:
                    break
                ev = _parse(buf[start:end])
                if ev is not None:
                    out.append(SSEEvent(ev[0], ev[1], buf[start : end + sep_len]))
                start = end + sep_len
        self._buf = buf[start:] if start else buf
        return out

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (a stream cut mid-event leaves these)."""
        return self._buf


def _find_boundary(buf: bytes, start: int) -> tuple[int, int]:
    i = buf.find(b"\n\n", start)
    j = buf.find(b"\r\n\r\n", start)
    if j >= 0 and (i < 0 or j < i):
        return j, 4
    if i >= 0:
        return i, 2
    return -1, 0


def _parse_lf(block: bytes) -> tuple[str | None, bytes] | None:
    """A block without \\r: the two usual shapes directly, anything else by the general parser."""
    if block[:6] == b"data: ":
        if block.find(b"\n") < 0:
            return None, block[6:]
    elif block[:7] == b"event: ":
        nl = block.find(b"\n")
        if nl > 0 and block[nl + 1 : nl + 7] == b"data: " and block.find(b"\n", nl + 1) < 0:
            return block[7:nl].decode("utf-8", "replace"), block[nl + 7 :]
    return _parse(block)


def _parse(block: bytes) -> tuple[str | None, bytes] | None:
    event: str | None = None
    data: list[bytes] = []
    for line in block.splitlines():
        if not line or line[:1] == b":":
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"event":
            event = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    if event is None and not data:
        return None
    return event, b"\n".join(data)
