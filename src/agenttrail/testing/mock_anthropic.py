"""The Anthropic Messages API as the mock speaks it: bodies and the full streaming event sequence."""

from __future__ import annotations

import json
from typing import Any

from agenttrail.testing.mock_scenario import Turn
from agenttrail.testing.mock_wire import (
    Reply,
    SSEEvent,
    anthropic_delta_usage,
    anthropic_error,
    anthropic_usage,
    new_id,
    split_json,
    split_text,
    sse,
)


def validate(body: Any) -> str | None:
    """The checks the real API makes first, with its wording; None when the body is acceptable."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object."
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["messages"], list):
        return "messages: Input should be a valid list"
    return None


def validate_count_tokens(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object."
    for name in ("model", "messages"):
        if name not in body:
            return f"{name}: Field required"
    return None


def _blocks(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text is not None:
        blocks.append({"type": "text", "text": turn.text})
    for call in turn.calls:
        blocks.append({"type": "tool_use", "id": new_id("toolu"), "name": call.name, "input": call.input_object()})
    return blocks


def _stop_reason(turn: Turn) -> str:
    return "tool_use" if turn.calls else "end_turn"


def message_body(reply: Reply) -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _blocks(reply.turn),
        "stop_reason": _stop_reason(reply.turn),
        "stop_sequence": None,
        "usage": anthropic_usage(reply.usage),
    }


def message_events(reply: Reply) -> list[SSEEvent]:
    """message_start, then per block content_block_start / deltas / content_block_stop (a ping after
    the first start, as the API does), then message_delta with stop_reason and usage, message_stop."""
    start_usage = anthropic_usage(reply.usage)
    # The real API reports a token or so of output at message_start; the total comes in message_delta.
    start_usage["output_tokens"] = min(1, reply.usage.output_tokens)
    events = [
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": new_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "model": reply.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    for index, block in enumerate(_blocks(reply.turn)):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in split_text(block["text"], reply.chunks)]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            # The API opens a tool's input with an empty partial_json before the pieces.
            pieces = ["", *split_json(json.dumps(block["input"], ensure_ascii=False))]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        events.append(
            sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        )
        if index == 0:
            events.append(sse("ping", {"type": "ping"}))
        for d in deltas:
            events.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": d},
                    delta=True,
                )
            )
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(reply.turn), "stop_sequence": None},
                "usage": anthropic_delta_usage(reply.usage),
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def stream_error_event(status: int, message: str | None, type_: str | None, request_id: str) -> SSEEvent:
    # A mid-stream failure arrives as an `error` event on an HTTP 200 stream.
    return sse("error", anthropic_error(status, message, type_, request_id))


def count_tokens_body(tokens: int) -> dict[str, Any]:
    return {"input_tokens": tokens}


def models_body(models: tuple[str, ...]) -> dict[str, Any]:
    data = [model_object(m) for m in models]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def model_object(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": "2025-01-01T00:00:00Z",
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": None,
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }
