"""SSESplitter: the same events however the bytes are cut, on the fast path (\\n lines, the usual
shapes) and the general one (\\r\\n, comments, several data lines)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.gateway.sse import SSESplitter, event_json

NAME = st.sampled_from(["message_start", "content_block_delta", "ping", " spaced", "ünï"])
DATA = st.sampled_from(
    [
        '{"type":"ping"}',
        '{"text":"a\u2028b\u0085c"}',  # separators that are not line ends in SSE
        "[DONE]",
        "",
        " leading space kept",
        "no: colon split",
    ]
)
FIELD = st.one_of(
    st.tuples(st.just("event"), NAME),
    st.tuples(st.just("data"), DATA),
    st.tuples(st.just(":"), st.just("a comment")),
    st.tuples(st.just("id"), st.just("7")),
)


def reference(stream: bytes, crlf: bool) -> list[tuple[str | None, bytes, bytes]]:
    """What the SSE spec says, written plainly for a stream with one kind of line end."""
    nl = b"\r\n" if crlf else b"\n"
    out = []
    for block in stream.split(nl + nl)[:-1]:
        event, data, seen = None, [], False
        for line in block.split(nl):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"event":
                event, seen = value.decode(), True
            elif field == b"data":
                data.append(value)
                seen = True
        if seen:
            out.append((event, b"\n".join(data), block + nl + nl))
    return out


def encode(events: list[list[tuple[str, str]]], crlf: bool) -> bytes:
    nl = "\r\n" if crlf else "\n"
    blocks = []
    for fields in events:
        lines = [f": {v}" if k == ":" else f"{k}: {v}" for k, v in fields]
        blocks.append(nl.join(lines) + nl + nl)
    return "".join(blocks).encode()


@given(
    events=st.lists(st.lists(FIELD, min_size=1, max_size=4), min_size=1, max_size=6),
    crlf=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_same_events_however_the_stream_is_cut(
    events: list[list[tuple[str, str]]], crlf: bool, cuts: list[int]
) -> None:
    stream = encode(events, crlf)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    splitter = SSESplitter()
    got = []
    prev = 0
    for p in [*points, len(stream)]:
        got += [(e.event, e.data, e.raw) for e in splitter.feed(stream[prev:p])]
        prev = p
    assert got == reference(stream, crlf)
    assert splitter.pending == b""


def test_the_usual_shapes() -> None:
    stream = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
        b'data: {"id":"chatcmpl-1"}\n\n'
        b"data: [DONE]\n\n"
        b"event: ping"  # not terminated yet
    )
    splitter = SSESplitter()
    evs = splitter.feed(stream)
    assert [(e.event, e.data) for e in evs] == [
        ("content_block_delta", b'{"type":"content_block_delta"}'),
        (None, b'{"id":"chatcmpl-1"}'),
        (None, b"[DONE]"),
    ]
    assert b"".join(e.raw for e in evs) + splitter.pending == stream
    assert [(e.event, e.data) for e in splitter.feed(b"\ndata: {}\n\n")] == [("ping", b"{}")]


def test_a_line_separator_inside_json_is_not_a_line_end() -> None:
    payload = {"type": "content_block_delta", "delta": {"text": "one\u2028two\u2029three\u0085four"}}
    (ev,) = SSESplitter().feed(b"event: content_block_delta\r\ndata: " + orjson.dumps(payload) + b"\r\n\r\n")
    assert event_json(ev) == payload


def test_data_that_is_not_utf8_reads_with_replacement_characters() -> None:
    (ev,) = SSESplitter().feed(b'data: {"text":"caf\xe9"}\n\n')
    assert event_json(ev) == {"text": "caf\ufffd"}
