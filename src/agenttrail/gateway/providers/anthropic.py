"""Anthropic Messages API: usage from the body, or from `message_start` + `message_delta` in a stream."""

from __future__ import annotations

from typing import Any

import orjson

from agenttrail.gateway.providers.base import Endpoint, Prepared, join_url
from agenttrail.gateway.sse import SSEEvent, event_json
from agenttrail.usage import Usage


class AnthropicObserver:
    __slots__ = ("_raw_usage", "complete", "error", "garbled", "model", "response_id", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self._raw_usage: dict[str, Any] = {}
        self.model: str | None = None
        self.complete = False
        self.error: str | None = None
        self.garbled = False
        self.response_id: str | None = None

    def on_event(self, ev: SSEEvent) -> bool:
        name = ev.event
        # Every event is parsed, deltas included: a garbled one must not reach the client's parser.
        try:
            obj = event_json(ev)
        except orjson.JSONDecodeError:
            self.garbled = True
            self.error = f"upstream sent an unreadable {name or 'stream'} event"
            return False
        if not isinstance(obj, dict):
            return True
        kind = obj.get("type", name)
        if kind == "message_start":
            msg = obj.get("message") or {}
            self.model = msg.get("model") or self.model
            self._merge(msg.get("usage"))
        elif kind == "message_delta":
            self._merge(obj.get("usage"))
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            err = obj.get("error") or {}
            self.error = f"{err.get('type', 'error')}: {err.get('message', '')}".strip()
        return True

    def _merge(self, u: Any) -> None:
        # message_delta carries cumulative counts; a field it omits keeps its message_start value.
        if isinstance(u, dict):
            self._raw_usage.update({k: v for k, v in u.items() if v is not None})
            self.usage = Usage.from_anthropic(self._raw_usage)


# GET /v1/models is OpenAI's path too, and routed there (providers.for_request picks this one for a
# request that speaks Anthropic), so it is not among the endpoints the server routes by path.
MODELS = Endpoint("anthropic", "models", "/v1/models", method="GET", billable=False, streams=False)


class AnthropicSpec:
    name = "anthropic"
    endpoints = (
        Endpoint("anthropic", "messages", "/v1/messages"),
        Endpoint("anthropic", "count_tokens", "/v1/messages/count_tokens", billable=False, streams=False),
    )

    def upstream_url(self, base_url: str, path: str, query: str) -> str:
        return join_url(base_url, path, query)

    def auth_headers(self, real_key: str) -> dict[str, str]:
        return {"x-api-key": real_key}

    def prepare(self, endpoint: Endpoint, raw: bytes, body: dict[str, Any]) -> Prepared:
        return Prepared(body=raw, stream=bool(body.get("stream")), model=_str(body.get("model")))

    def read_body(self, endpoint: Endpoint, body: Any) -> tuple[Usage | None, str | None]:
        if not isinstance(body, dict) or endpoint.name != "messages":
            return None, None
        return Usage.from_anthropic(body.get("usage")), _str(body.get("model"))

    def observer(self, endpoint: Endpoint, prepared: Prepared) -> AnthropicObserver:
        return AnthropicObserver()

    def request_id(self, headers: Any) -> str | None:
        return headers.get("request-id") or headers.get("x-request-id")

    def body_request_id(self, endpoint: Endpoint, body: Any) -> str | None:
        return None  # the request-id header is what Claude Code's transcripts record


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


ANTHROPIC = AnthropicSpec()
