"""OpenAI Chat Completions, Embeddings and Models as the mock speaks them (Responses: mock_responses)."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
import time
from typing import Any

from agenttrail.testing.mock_wire import (
    Reply,
    SSEEvent,
    chat_usage,
    dumps,
    new_id,
    openai_error,
    split_json,
    split_text,
    sse,
)


def validate_chat(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    for name in ("model", "messages"):
        if name not in body:
            return f"Missing required parameter: '{name}'."
    if not isinstance(body["messages"], list):
        return "Invalid type for 'messages': expected an array."
    return None


def include_usage(body: dict[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and bool(opts.get("include_usage"))


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id("call"),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments_json()},
        }
        for c in reply.turn.calls
    ]


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.turn.calls else "stop"


def chat_body(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.turn.text,
        "refusal": None,
        "annotations": [],
    }
    if reply.turn.calls:
        message["tool_calls"] = _tool_calls(reply)
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}],
        "usage": chat_usage(reply.usage),
        "service_tier": "default",
        "system_fingerprint": new_id("fingerprint"),
    }


def chat_events(reply: Reply, with_usage: bool) -> list[SSEEvent]:
    """`data:` chunks, then `data: [DONE]`. With include_usage every chunk carries `"usage": null` and
    one more chunk with `choices: []` carries the usage; without it no chunk has a usage key at all."""
    head = {
        "id": new_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": new_id("fingerprint"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, is_delta: bool = False) -> SSEEvent:
        obj: dict[str, Any] = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if with_usage:
            obj["usage"] = None
        return sse(None, obj, delta=is_delta)

    events: list[SSEEvent] = []
    calls = _tool_calls(reply)
    text = reply.turn.text
    if text is not None or not calls:
        events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        events.extend(chunk({"content": piece}, is_delta=True) for piece in split_text(text or "", reply.chunks))
    for i, call in enumerate(calls):
        opening = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        if not events:
            # A tool-only answer opens with the role and a null content, as the API sends it.
            events.append(chunk({"role": "assistant", "content": None, "tool_calls": [opening], "refusal": None}))
        else:
            events.append(chunk({"tool_calls": [opening]}))
        for piece in split_json(call["function"]["arguments"]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, is_delta=True))
    events.append(chunk({}, _finish_reason(reply)))
    if with_usage:
        events.append(sse(None, {**head, "choices": [], "usage": chat_usage(reply.usage)}))
    events.append(SSEEvent(b"data: [DONE]\n\n"))
    return events


def chat_stream_error_event(status: int, message: str | None, type_: str | None) -> SSEEvent:
    # Chat streams report a late failure as a `data:` line holding an error object.
    return sse(None, openai_error(status, message, type_))


# ---------------------------------------------------------------------------------------- embeddings


def validate_embeddings(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    for name in ("model", "input"):
        if name not in body:
            return f"Missing required parameter: '{name}'."
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "Invalid value for 'encoding_format': expected 'float' or 'base64'."
    dims = body.get("dimensions")
    # As the API: a whole number up to the largest model's 3072. Unchecked, 100,000,000 built a vector
    # of that many floats on the event loop and stalled every other request.
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= MAX_DIMENSIONS):
        return f"Invalid value for 'dimensions': expected an integer from 1 to {MAX_DIMENSIONS}, got {dims!r}."
    return None


MAX_DIMENSIONS = 3072


def _inputs(raw: Any) -> list[Any]:
    # A string, a list of strings, a token list, or a list of token lists.
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else [raw]


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """The same input always gets the same unit vector, so similarity tests are stable."""
    seed = hashlib.sha256(dumps(item)).digest()
    rng = random.Random(seed)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    # Rounded through float32 so the float and base64 encodings decode to the same numbers.
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vec]


def embeddings_body(body: dict[str, Any], dimensions: int, tokens_per_input: int) -> dict[str, Any]:
    dims = int(body.get("dimensions") or dimensions)
    b64 = body.get("encoding_format") == "base64"
    data = []
    inputs = _inputs(body["input"])
    for index, item in enumerate(inputs):
        vec = embedding_vector(item, dims)
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = tokens_per_input * len(inputs)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -------------------------------------------------------------------------------------------- models


def model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1735689600, "owned_by": _owner(model)}


def models_body(models: tuple[str, ...]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in models]}


def _owner(model: str) -> str:
    return (
        "anthropic" if model.startswith("claude") else "openai" if model.startswith(("gpt", "o", "text")) else "system"
    )
