"""Wire-level pieces shared by the fake providers: ids, SSE framing, error bodies, usage objects.

Every shape here copies what the real APIs send, because the gateway's parsers and the official SDKs
are tested against it. When a provider changes its format, this is the one place to follow.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

import orjson

from agenttrail.testing.mock_scenario import Turn
from agenttrail.usage import Usage

_BASE62 = string.ascii_letters + string.digits


def _rand62(n: int) -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def new_id(kind: str) -> str:
    """An id shaped like the provider's own, so code that checks prefixes or lengths is exercised."""
    if kind == "msg":  # Anthropic message: msg_01 + 22 base62
        return "msg_01" + _rand62(22)
    if kind == "toolu":
        return "toolu_01" + _rand62(22)
    if kind == "anthropic_request":
        return "req_011C" + _rand62(20)
    if kind == "chatcmpl":
        return "chatcmpl-" + _rand62(29)
    if kind == "call":
        return "call_" + _rand62(24)
    if kind in ("resp", "msg_resp", "fc", "ctc"):
        # Responses ids are a prefix plus 48-50 hex digits; items carry their own prefixes.
        prefix = {"resp": "resp_", "msg_resp": "msg_", "fc": "fc_", "ctc": "ctc_"}[kind]
        return prefix + secrets.token_hex(25)
    if kind == "openai_request":
        return "req_" + secrets.token_hex(16)
    if kind == "fingerprint":
        return "fp_" + secrets.token_hex(5)
    raise ValueError(f"unknown id kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, whatever the provider: the model asked for, the turn to say, its usage."""

    model: str
    turn: Turn
    usage: Usage
    chunks: int


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One framed SSE event. `delta` marks content deltas: `chunk_ms` is paid before each of them."""

    data: bytes
    delta: bool = False


def sse(event: str | None, payload: Any, *, delta: bool = False) -> SSEEvent:
    # Anthropic and Responses name every event; Chat Completions sends bare `data:` lines.
    head = b"event: " + event.encode() + b"\n" if event else b""
    body = payload if isinstance(payload, bytes) else dumps(payload)
    return SSEEvent(head + b"data: " + body + b"\n\n", delta)


def split_text(text: str, pieces: int) -> list[str]:
    """Split text into about `pieces` deltas on word boundaries; the joined pieces are the text."""
    if not text:
        return []
    words = re.findall(r"\s*\S+\s*", text) or [text]
    if "".join(words) != text:  # only whitespace: keep it whole rather than lose it
        words = [text]
    pieces = max(1, min(pieces, len(words)))
    size, extra = divmod(len(words), pieces)
    out: list[str] = []
    start = 0
    for i in range(pieces):
        end = start + size + (1 if i < extra else 0)
        out.append("".join(words[start:end]))
        start = end
    return out


def split_json(text: str, pieces: int = 3) -> list[str]:
    """Split serialized tool arguments the way providers do: at arbitrary character offsets."""
    if not text:
        return []
    step = max(1, -(-len(text) // pieces))
    return [text[i : i + step] for i in range(0, len(text), step)]


# ---------------------------------------------------------------------------------------------- usage


def anthropic_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": u.cache_write_1h_tokens,
        },
        "output_tokens": u.output_tokens,
        "service_tier": "standard",
    }


def anthropic_delta_usage(u: Usage) -> dict[str, Any]:
    # message_delta counts are cumulative and, on today's API, repeat the input side too: a gateway
    # that adds message_start and message_delta together double-counts, and this mock exposes that.
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def _openai_prompt(u: Usage) -> int:
    # OpenAI's prompt count includes both the cached tokens and the tokens written to the cache.
    return u.input_tokens + u.cache_read_tokens + u.cache_write_tokens


def chat_usage(u: Usage) -> dict[str, Any]:
    prompt = _openai_prompt(u)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(u: Usage) -> dict[str, Any]:
    prompt = _openai_prompt(u)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": prompt + u.output_tokens,
    }


# --------------------------------------------------------------------------------------------- errors

_ANTHROPIC_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not Found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

_OPENAI_TYPES: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", None, "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def anthropic_error(
    status: int, message: str | None = None, type_: str | None = None, request_id: str | None = None
) -> dict[str, Any]:
    default_type, default_message = _ANTHROPIC_TYPES.get(
        status,
        ("api_error", "Internal server error") if status >= 500 else ("invalid_request_error", "Error"),
    )
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": type_ or default_type, "message": message or default_message},
    }
    if request_id:
        body["request_id"] = request_id
    return body


def openai_error(
    status: int,
    message: str | None = None,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    default_type, default_code, default_message = _OPENAI_TYPES.get(
        status,
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500
        else ("invalid_request_error", None, "Error"),
    )
    return {
        "error": {
            "message": message or default_message,
            "type": type_ or default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
