"""Configuration of the mock provider: fixed usage, latency, script, credentials, failures."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agenttrail.testing.mock_scenario import Scenario
from agenttrail.usage import Usage

DEFAULT_TEXT = "Hello from the agenttrail mock provider. This answer is fixed so tests can check it."

DEFAULT_MODELS = (
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
    "gpt-5",
    "gpt-5-mini",
    "gpt-4.1",
    "text-embedding-3-small",
)

Mode = Literal["status", "garbled", "hang", "disconnect", "stream_error"]
MODES: tuple[str, ...] = ("status", "garbled", "hang", "disconnect", "stream_error")
ENDPOINTS: tuple[str, ...] = ("messages", "count_tokens", "chat", "responses", "embeddings", "models")

# Events sent before the fault when the rule does not say: a broken stream is most telling once the
# client has already started consuming it.
_DEFAULT_AFTER = {"status": 0, "hang": 0, "garbled": 2, "disconnect": 3, "stream_error": 2}


def default_anthropic_usage() -> Usage:
    return Usage(input_tokens=1200, cache_read_tokens=3000, cache_write_5m_tokens=500, output_tokens=250)


def default_chat_usage() -> Usage:
    # prompt_tokens = input + cache_read = 1500, of which 1000 cached (agenttrail's convention).
    return Usage(input_tokens=500, cache_read_tokens=1000, output_tokens=300)


def default_responses_usage() -> Usage:
    return Usage(input_tokens=500, cache_read_tokens=1000, output_tokens=300)


@dataclass
class Failure:
    """A fault to inject into matching model requests.

    `count` requests fail (-1: every one until cleared). `model` is an exact id or a glob
    (`claude-*`); `endpoint` one of ENDPOINTS; either left out matches all. `after_events` is how many
    stream events reach the client before a garbled/disconnect/stream_error/hang fault."""

    status: int = 500
    mode: Mode = "status"
    count: int = 1
    model: str | None = None
    endpoint: str | None = None
    message: str | None = None
    type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after_events: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, not {self.mode!r}")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {list(ENDPOINTS)}, not {self.endpoint!r}")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"status must be an HTTP status, not {self.status!r}")
        if self.count == 0 or self.count < -1:
            raise ValueError("count is a positive number of requests, or -1 for every request")

    @property
    def events_before(self) -> int:
        return _DEFAULT_AFTER[self.mode] if self.after_events is None else max(0, self.after_events)

    def matches(self, model: str | None, endpoint: str) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return self.model is None or fnmatch.fnmatchcase(model or "", self.model)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Failure:
        if not isinstance(raw, Mapping):
            raise ValueError("a failure is a JSON object")
        allowed = {
            "status",
            "mode",
            "count",
            "model",
            "endpoint",
            "message",
            "type",
            "headers",
            "after_events",
        }
        unknown = set(raw) - allowed
        if unknown:
            raise ValueError(f"unknown failure keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        headers = raw.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ValueError("'headers' must be an object")
        count = raw.get("count", 1)
        after = raw.get("after_events")
        return cls(
            status=whole(raw.get("status", 500), "status"),
            mode=raw.get("mode", "status"),
            count=-1 if count is None else whole(count, "count"),
            model=raw.get("model"),
            endpoint=raw.get("endpoint"),
            message=raw.get("message"),
            type=raw.get("type"),
            headers={str(k): str(v) for k, v in headers.items()},
            after_events=None if after is None else whole(after, "after_events"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "mode": self.mode,
            "count": self.count,
            "model": self.model,
            "endpoint": self.endpoint,
            "message": self.message,
            "type": self.type,
            "headers": dict(self.headers),
            "after_events": self.after_events,
        }


@dataclass
class MockConfig:
    """Everything the fake provider answers with. Usage is in agenttrail's one convention
    (`agenttrail.usage.Usage`: `input_tokens` is the uncached input), and converted to each wire format:
    Anthropic reports it as is; OpenAI reports `prompt_tokens = input + cache_read (+ cache writes)`
    with `cached_tokens = cache_read`, and `completion_tokens = output_tokens` (reasoning included)."""

    text: str = DEFAULT_TEXT
    stream_chunks: int = 4
    anthropic_usage: Usage = field(default_factory=default_anthropic_usage)
    chat_usage: Usage = field(default_factory=default_chat_usage)
    responses_usage: Usage = field(default_factory=default_responses_usage)
    # None: the whole Anthropic prompt of `anthropic_usage` (input + cache read + cache write).
    count_tokens: int | None = None
    embedding_dimensions: int = 1536
    embedding_tokens_per_input: int = 8
    models: tuple[str, ...] = DEFAULT_MODELS
    ttft_ms: float = 0.0
    chunk_ms: float = 0.0
    latency_ms: float | None = None
    scenario: Scenario | None = None
    failures: list[Failure] = field(default_factory=list)
    expected_key: str | None = None
    record_path: str | Path | None = None
    max_recorded: int = 10_000
    # A `hang` fault gives up after this long so a forgotten test cannot pin a worker forever.
    hang_max_s: float = 600.0

    def __post_init__(self) -> None:
        if self.latency_ms is not None:
            self.ttft_ms = float(self.latency_ms)
        if self.stream_chunks < 1:
            raise ValueError("stream_chunks must be at least 1")
        if self.ttft_ms < 0 or self.chunk_ms < 0:
            raise ValueError("latencies cannot be negative")

    @property
    def anthropic_count_tokens(self) -> int:
        if self.count_tokens is not None:
            return self.count_tokens
        return self.anthropic_usage.prompt_tokens


def whole(value: Any, name: str) -> int:
    """An integer setting from JSON or a query string, or a ValueError naming it ("invalid literal for
    int() with base 10" named nothing)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
