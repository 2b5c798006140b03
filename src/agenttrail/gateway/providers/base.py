"""What the gateway needs from a provider module: URL mapping, credentials, and usage reading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agenttrail.gateway.sse import SSEEvent
from agenttrail.usage import Usage


@dataclass(frozen=True, slots=True)
class Endpoint:
    provider: str
    name: str  # messages | count_tokens | chat | responses | embeddings | models
    path: str  # the gateway's own path, e.g. /v1/chat/completions
    method: str = "POST"
    billable: bool = True
    streams: bool = True


class StreamObserver(Protocol):
    """Watches a relayed stream event by event; decides which events the client sees."""

    usage: Usage
    model: str | None
    complete: bool
    error: str | None  # the upstream reported an error in-stream, or the stream was unreadable
    garbled: bool
    response_id: str | None  # an id the body carries that identifies the call, where the provider has one

    def on_event(self, ev: SSEEvent) -> bool:
        """Return False to hide the event from the client."""
        ...


@dataclass(slots=True)
class Prepared:
    body: bytes
    stream: bool
    model: str | None
    client_wants_usage: bool = True


class ProviderSpec(Protocol):
    name: str
    endpoints: tuple[Endpoint, ...]

    def upstream_url(self, base_url: str, path: str, query: str) -> str: ...

    def auth_headers(self, real_key: str) -> dict[str, str]: ...

    def prepare(self, endpoint: Endpoint, raw: bytes, body: dict[str, Any]) -> Prepared: ...

    def read_body(self, endpoint: Endpoint, body: Any) -> tuple[Usage | None, str | None]: ...

    def observer(self, endpoint: Endpoint, prepared: Prepared) -> StreamObserver: ...

    def request_id(self, headers: Any) -> str | None: ...

    def body_request_id(self, endpoint: Endpoint, body: Any) -> str | None: ...


def join_url(base_url: str, suffix: str, query: str) -> str:
    url = base_url.rstrip("/") + suffix
    return f"{url}?{query}" if query else url
