"""Token usage of one model call, in agenttrail's one convention for every provider.

`input_tokens` counts only the input billed at the base rate, so the whole prompt is
`input_tokens + cache_read_tokens + cache_write_tokens`. Anthropic reports usage this way;
for OpenAI `input_tokens = prompt_tokens - cached_tokens`. Cache writes are split by TTL
because Anthropic prices 5-minute and 1-hour writes differently; `cache_write_tokens` is their sum.
`reasoning_tokens` is informational: providers already include it in `output_tokens`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt: base input plus cache reads and writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def is_empty(self) -> bool:
        return self.total_tokens == 0 and self.reasoning_tokens == 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @classmethod
    def from_anthropic(cls, u: dict[str, object] | None) -> Usage:
        """From an Anthropic `usage` object (message or message_delta)."""
        u = u or {}
        get = u.get
        inp, read, write_total, out = (
            get("input_tokens"),
            get("cache_read_input_tokens"),
            get("cache_creation_input_tokens", 0),
            get("output_tokens"),
        )
        detail = get("cache_creation")
        # The usual object, plain non-negative ints with a consistent TTL split, without a call per field
        # (a transcript import builds one per response line); anything else takes the general rule below.
        if type(inp) is type(read) is type(out) is type(write_total) is int and inp >= 0 <= read and out >= 0:
            if type(detail) is dict:
                w5, w1 = detail.get("ephemeral_5m_input_tokens"), detail.get("ephemeral_1h_input_tokens")
                if type(w5) is type(w1) is int and w5 >= 0 <= w1 and w5 + w1 == write_total:
                    return cls(inp, read, w5, w1, out)
            elif detail is None and write_total >= 0:
                return cls(inp, read, write_total, 0, out)
        write_total = token_count(u.get("cache_creation_input_tokens"))
        w5 = w1 = 0
        if isinstance(detail, dict):
            w5 = token_count(detail.get("ephemeral_5m_input_tokens"))
            w1 = token_count(detail.get("ephemeral_1h_input_tokens"))
        if w5 + w1 != write_total:
            # The split is absent or inconsistent: price the total at the 5-minute rate, the default TTL.
            w5, w1 = write_total, 0
        return cls(
            input_tokens=token_count(u.get("input_tokens")),
            cache_read_tokens=token_count(u.get("cache_read_input_tokens")),
            cache_write_5m_tokens=w5,
            cache_write_1h_tokens=w1,
            output_tokens=token_count(u.get("output_tokens")),
        )

    @classmethod
    def from_openai(cls, u: dict[str, object] | None) -> Usage:
        """From an OpenAI `usage` object: Chat Completions (prompt_/completion_tokens) or Responses
        (input_/output_tokens). Cached tokens are included in the provider's prompt count, so they are
        subtracted here."""
        u = u or {}
        if "prompt_tokens" in u or "completion_tokens" in u:
            prompt = token_count(u.get("prompt_tokens"))
            out = token_count(u.get("completion_tokens"))
            pdet, odet = u.get("prompt_tokens_details"), u.get("completion_tokens_details")
        else:
            prompt = token_count(u.get("input_tokens"))
            out = token_count(u.get("output_tokens"))
            pdet, odet = u.get("input_tokens_details"), u.get("output_tokens_details")
        cached = token_count(pdet.get("cached_tokens")) if isinstance(pdet, dict) else 0
        reasoning = token_count(odet.get("reasoning_tokens")) if isinstance(odet, dict) else 0
        cached = min(cached, prompt)
        return cls(
            input_tokens=prompt - cached,
            cache_read_tokens=cached,
            output_tokens=out,
            reasoning_tokens=reasoning,
        )


def sum_usages(usages: Sequence[Usage]) -> Usage:
    """The field-wise sum, a field at a time: adding Usage records builds one per term (a Python call
    each), which was most of totalling a history's calls."""
    return Usage(*(sum(map(getter, usages)) for getter in _FIELD_GETTERS))


_FIELD_GETTERS = tuple(attrgetter(f.name) for f in fields(Usage))


def token_count(v: object) -> int:
    """A token count as a provider or a transcript wrote it: a non-negative int; anything else (a bool,
    text, null, infinity) counts 0."""
    if type(v) is int:  # the common case first (a bool is never exactly an int)
        return v if v > 0 else 0
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return max(v, 0)
    if isinstance(v, float):
        return max(int(v), 0) if math.isfinite(v) else 0  # infinity has no int
    return 0
