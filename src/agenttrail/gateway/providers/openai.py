"""OpenAI Chat Completions, Responses and Embeddings.

For streamed chat the gateway asks for `stream_options.include_usage` so every call is priced,
and hides the extra usage chunk from a client that did not ask for it.
"""

from __future__ import annotations

from typing import Any

import orjson

from agenttrail.gateway.providers.base import Endpoint, Prepared, join_url
from agenttrail.gateway.sse import SSEEvent, event_json
from agenttrail.usage import Usage


class ChatObserver:
    __slots__ = ("client_wants_usage", "complete", "error", "garbled", "model", "response_id", "usage")

    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.response_id: str | None = None
        self.usage = Usage()
        self.model: str | None = None
        self.complete = False
        self.error: str | None = None
        self.garbled = False

    def on_event(self, ev: SSEEvent) -> bool:
        data = ev.data
        if data == b"[DONE]":
            self.complete = True
            return True
        try:
            obj = event_json(ev)
        except orjson.JSONDecodeError:
            self.garbled = True
            self.error = "upstream sent an unreadable chat completion chunk"
            return False
        if not isinstance(obj, dict):
            return True
        if "error" in obj and isinstance(obj["error"], dict):
            self.error = str(obj["error"].get("message") or "upstream error")
            return True
        if self.model is None and isinstance(obj.get("model"), str):
            self.model = obj["model"]
        u = obj.get("usage")
        if isinstance(u, dict):
            self.usage = Usage.from_openai(u)
            if not self.client_wants_usage and not obj.get("choices"):
                return False
        return True


class ResponsesObserver:
    __slots__ = ("complete", "error", "garbled", "model", "response_id", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.model: str | None = None
        # The Responses id (resp_…) is what Codex writes in its rollouts: the join key for its calls.
        self.response_id: str | None = None
        self.complete = False
        self.error: str | None = None
        self.garbled = False

    def on_event(self, ev: SSEEvent) -> bool:
        name = ev.event
        try:
            obj = event_json(ev)
        except orjson.JSONDecodeError:
            self.garbled = True
            self.error = f"upstream sent an unreadable {name or 'responses'} event"
            return False
        if not isinstance(obj, dict):
            return True
        kind = obj.get("type", name)
        if kind in ("response.completed", "response.incomplete", "response.failed", "response.created"):
            resp = obj.get("response") or {}
            if isinstance(resp.get("id"), str):
                self.response_id = resp["id"]
            if isinstance(resp.get("model"), str):
                self.model = resp["model"]
            if isinstance(resp.get("usage"), dict):
                self.usage = Usage.from_openai(resp["usage"])
            if kind != "response.created":
                self.complete = True
            if kind == "response.failed":
                err = resp.get("error") or {}
                self.error = str(err.get("message") or "response failed")
        elif kind == "error":
            self.error = str(obj.get("message") or (obj.get("error") or {}).get("message") or "upstream error")
        return True


class OpenAISpec:
    name = "openai"
    endpoints = (
        Endpoint("openai", "chat", "/v1/chat/completions"),
        Endpoint("openai", "responses", "/v1/responses"),
        Endpoint("openai", "embeddings", "/v1/embeddings", streams=False),
        Endpoint("openai", "models", "/v1/models", method="GET", billable=False, streams=False),
    )

    def upstream_url(self, base_url: str, path: str, query: str) -> str:
        # The OpenAI base URL already ends in /v1 (as the SDK's does); the gateway path repeats it.
        suffix = path[3:] if path.startswith("/v1/") else path
        return join_url(base_url, suffix, query)

    def auth_headers(self, real_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {real_key}"}

    def prepare(self, endpoint: Endpoint, raw: bytes, body: dict[str, Any]) -> Prepared:
        stream = bool(body.get("stream"))
        model = body.get("model") if isinstance(body.get("model"), str) else None
        if endpoint.name != "chat" or not stream:
            return Prepared(body=raw, stream=stream, model=model)
        opts = body.get("stream_options")
        wants = isinstance(opts, dict) and bool(opts.get("include_usage"))
        if wants:
            return Prepared(body=raw, stream=True, model=model, client_wants_usage=True)
        new_opts = dict(opts) if isinstance(opts, dict) else {}
        new_opts["include_usage"] = True
        patched = dict(body, stream_options=new_opts)
        return Prepared(body=orjson.dumps(patched), stream=True, model=model, client_wants_usage=False)

    def read_body(self, endpoint: Endpoint, body: Any) -> tuple[Usage | None, str | None]:
        if not isinstance(body, dict) or endpoint.name == "models":
            return None, None
        model = body.get("model") if isinstance(body.get("model"), str) else None
        u = body.get("usage")
        return (Usage.from_openai(u) if isinstance(u, dict) else None), model

    def observer(self, endpoint: Endpoint, prepared: Prepared) -> ChatObserver | ResponsesObserver:
        if endpoint.name == "responses":
            return ResponsesObserver()
        return ChatObserver(prepared.client_wants_usage)

    def request_id(self, headers: Any) -> str | None:
        return headers.get("x-request-id") or headers.get("request-id")

    def body_request_id(self, endpoint: Endpoint, body: Any) -> str | None:
        """For Responses, the response id identifies the call (Codex rollouts record it)."""
        if endpoint.name == "responses" and isinstance(body, dict) and isinstance(body.get("id"), str):
            return str(body["id"])
        return None


OPENAI = OpenAISpec()
