"""Incremental Server-Sent Events splitting, fed chunk by chunk as bytes arrive from upstream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    raw: bytes  # the event's bytes as received, terminator included


class SSESplitter:
    """Splits a byte stream into events. Upstreams end lines with \\n or \\r\\n; both are handled."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        out: list[SSEEvent] = []
        start = 0
        while True:
            end, sep_len = _find_boundary(buf, start)
            if end < 0:
                break
            raw = buf[start : end + sep_len]
            ev = _parse(buf[start:end])
            if ev is not None:
                out.append(SSEEvent(ev[0], ev[1], raw))
            start = end + sep_len
        self._buf = buf[start:]
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


def _parse(block: bytes) -> tuple[str | None, str] | None:
    event: str | None = None
    data: list[str] = []
    text = block.decode("utf-8", "replace")
    for line in text.splitlines():
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if event is None and not data:
        return None
    return event, "\n".join(data)
