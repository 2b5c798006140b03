"""One model call as the gateway sees it, from admission to its `llm_call` row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from agenttrail.events import new_id
from agenttrail.gateway.providers.base import Endpoint
from agenttrail.redact import redact_obj, redact_text
from agenttrail.store.keys import KeyInfo
from agenttrail.usage import Usage


@dataclass(slots=True)
class Call:
    endpoint: Endpoint
    started_at: datetime
    t0: float  # monotonic seconds, for latency
    call_id: str = field(default_factory=new_id)
    key: KeyInfo | None = None
    body: dict[str, Any] | None = None
    stream: bool = False
    model_requested: str | None = None
    model: str | None = None  # the model the upstream served (or will be asked for)
    route_reason: str | None = None
    provider: str = ""
    session_id: str | None = None
    agent_session_id: str | None = None
    client: str | None = None
    tags: dict[str, str] | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    price_source: str | None = None
    status: str = "pending"
    http_status: int | None = None
    error: str | None = None
    ended_at: datetime | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    request_id: str | None = None
    cache_hit: bool = False
    source: str = "gateway"
    # Set by the governance policy at admission; read back when the call settles.
    reservation: Any = None

    def __post_init__(self) -> None:
        self.provider = self.provider or self.endpoint.provider

    def row(self) -> dict[str, Any]:
        k = self.key
        u = self.usage
        return {
            "call_id": self.call_id,
            "started_at": self.started_at.replace(tzinfo=None),
            "ended_at": self.ended_at.replace(tzinfo=None) if self.ended_at else None,
            "key_id": k.id if k else None,
            "team_id": k.team_id if k else None,
            "project_id": k.project_id if k else None,
            "engineer_id": k.engineer_id if k else None,
            "session_id": self.session_id,
            "agent_session_id": self.agent_session_id,
            "source": self.source,
            "provider": self.provider,
            "endpoint": self.endpoint.name,
            "model_requested": self.model_requested,
            "model": self.model,
            "route_reason": self.route_reason,
            "input_tokens": u.input_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "cache_write_1h_tokens": u.cache_write_1h_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cost_usd": float(self.cost_usd),
            "cost_nanos": int(self.cost_usd * 1_000_000_000),
            "saved_usd": float(self.saved_usd),
            "price_source": self.price_source,
            "status": self.status,
            "http_status": self.http_status,
            # The gateway keeps no prompt, but these three can quote one (an upstream's error message)
            # or carry whatever a client put in a header: redacted like everything agenttrail stores.
            "error": redact_text(self.error)[:2000] if self.error else None,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "stream": self.stream,
            "client": redact_text(self.client)[:300] if self.client else None,
            "request_id": self.request_id,
            "tags": orjson.dumps(redact_obj(self.tags)).decode() if self.tags else None,
            "cache_hit": self.cache_hit,
        }
