"""Scripted conversations for the mock provider: which answer the next model request gets.

The file format is documented in `agenttrail.testing.mock_llm` and docs/mock-llm.md. In short:

    {"cursor": "request", "final": "All done.",
     "turns": [{"text": "I'll write it.", "tool": "Write", "input": {"file_path": "a.py", "content": "x"}},
               {"custom_tool": "apply_patch", "input": "*** Begin Patch\\n..."},
               {"text": "Done.", "usage": {"output_tokens": 42}}]}

or the same in TOML (`[[turns]]` tables), or a bare JSON list of turns.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agenttrail.usage import Usage

Cursor = Literal["request", "history"]

# Neutral usage keys (agenttrail's convention) a turn may override; `cache_write_tokens` is the
# 5-minute write, the default TTL, so a scenario author need not know about the split.
_USAGE_KEYS = {
    "input_tokens": "input_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_write_tokens": "cache_write_5m_tokens",
    "cache_write_5m_tokens": "cache_write_5m_tokens",
    "cache_write_1h_tokens": "cache_write_1h_tokens",
    "output_tokens": "output_tokens",
    "reasoning_tokens": "reasoning_tokens",
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function tool call (`input` is an object) or a custom tool call (`input` is free text)."""

    name: str
    input: dict[str, Any] | str

    @property
    def custom(self) -> bool:
        return isinstance(self.input, str)

    def arguments_json(self) -> str:
        # Custom tools have no schema; providers without them see the text wrapped in an object.
        obj = {"input": self.input} if isinstance(self.input, str) else self.input
        return json.dumps(obj, ensure_ascii=False)

    def input_object(self) -> dict[str, Any]:
        return {"input": self.input} if isinstance(self.input, str) else dict(self.input)


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted answer: optional text, then zero or more tool calls, optional usage override."""

    text: str | None = None
    calls: tuple[ToolCall, ...] = ()
    usage: Mapping[str, int] | None = None

    @property
    def is_tool(self) -> bool:
        return bool(self.calls)

    def usage_for(self, base: Usage) -> Usage:
        if not self.usage:
            return base
        return dataclasses.replace(base, **{_USAGE_KEYS[k]: int(v) for k, v in self.usage.items()})

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "turn") -> Turn:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
        known = {"text", "tool", "custom_tool", "input", "calls", "usage"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        text = raw.get("text")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{where}: 'text' must be a string")
        calls: list[ToolCall] = []
        if "tool" in raw or "custom_tool" in raw:
            calls.append(_parse_call(raw, where))
        elif "input" in raw:
            raise ValueError(f"{where}: 'input' given without 'tool' or 'custom_tool'")
        for i, c in enumerate(raw.get("calls") or []):
            calls.append(_parse_call(c, f"{where}.calls[{i}]"))
        usage = raw.get("usage")
        if usage is not None:
            if not isinstance(usage, Mapping):
                raise ValueError(f"{where}: 'usage' must be an object")
            bad = set(usage) - set(_USAGE_KEYS)
            if bad:
                raise ValueError(f"{where}: unknown usage keys {sorted(bad)}; allowed: {sorted(_USAGE_KEYS)}")
            for k, v in usage.items():
                # What the wire formats (and orjson) carry: a whole number in 64 bits. 2**64 was loaded
                # and every answer of the turn was then a 500.
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**63:
                    raise ValueError(f"{where}: usage {k} must be a whole number from 0 to 2**63-1, got {v!r}")
            usage = dict(usage)
        if text is None and not calls:
            raise ValueError(f"{where}: a turn needs 'text', 'tool', 'custom_tool' or 'calls'")
        return cls(text=text, calls=tuple(calls), usage=usage)


def _parse_call(raw: Any, where: str) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object")
    if "custom_tool" in raw:
        inp = raw.get("input", "")
        if not isinstance(inp, str):
            raise ValueError(f"{where}: a custom_tool's 'input' is a string")
        return ToolCall(str(raw["custom_tool"]), inp)
    if "tool" not in raw:
        raise ValueError(f"{where}: expected 'tool' or 'custom_tool'")
    inp = raw.get("input", {})
    if not isinstance(inp, Mapping):
        raise ValueError(f"{where}: a tool's 'input' is an object (use 'custom_tool' for free text)")
    return ToolCall(str(raw["tool"]), dict(inp))


@dataclass(frozen=True, slots=True)
class Scenario:
    turns: tuple[Turn, ...]
    cursor: Cursor = "request"
    final: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Scenario:
        """From a list of turns or an object `{"turns": [...], "cursor": ..., "final": ...}`."""
        if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
            raw = {"turns": raw}
        if not isinstance(raw, Mapping):
            raise ValueError("a scenario is a list of turns or an object with 'turns'")
        unknown = set(raw) - {"turns", "cursor", "final"}
        if unknown:
            raise ValueError(f"scenario: unknown keys {sorted(unknown)}")
        turns = raw.get("turns")
        if not isinstance(turns, Sequence) or isinstance(turns, str) or not turns:
            raise ValueError("scenario: 'turns' must be a non-empty list")
        cursor = raw.get("cursor", "request")
        if cursor not in ("request", "history"):
            raise ValueError("scenario: 'cursor' is 'request' or 'history'")
        final = raw.get("final")
        if final is not None and not isinstance(final, str):
            raise ValueError("scenario: 'final' must be a string")
        parsed = tuple(Turn.parse(t, f"turns[{i}]") for i, t in enumerate(turns))
        return cls(turns=parsed, cursor=cursor, final=final)

    def after_last(self, default_text: str) -> Turn:
        """What every request past the script gets: `final`, else a last pure-text turn, else "Done."."""
        if self.final is not None:
            return Turn(text=self.final)
        last = self.turns[-1]
        if not last.is_tool and last.text is not None:
            return Turn(text=last.text, usage=last.usage)
        return Turn(text="Done.")


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    data = p.read_bytes()
    try:
        raw = tomllib.loads(data.decode()) if p.suffix.lower() == ".toml" else json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'}: {e}") from e
    try:
        return Scenario.parse(raw)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e


# ------------------------------------------------------------------------------------ conversation depth


def assistant_turns_in_messages(messages: Any) -> int:
    """Anthropic Messages and Chat Completions: each assistant message is one answered turn."""
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "assistant")


_RESPONSE_OUTPUT_TYPES = {
    "function_call",
    "custom_tool_call",
    "reasoning",
    "local_shell_call",
    "web_search_call",
    "file_search_call",
    "computer_call",
}


def assistant_turns_in_input(items: Any) -> int:
    """Responses input: one answer may be several items (message + calls), so count runs of them."""
    if not isinstance(items, list):
        return 0
    runs, inside = 0, False
    for it in items:
        produced = isinstance(it, Mapping) and (
            it.get("type") in _RESPONSE_OUTPUT_TYPES or it.get("role") == "assistant"
        )
        if produced and not inside:
            runs += 1
        inside = produced
    return runs


@dataclass
class ScenarioPlayer:
    """Hands out turns. `request` cursors advance per model request (one per session header, else one
    global); `history` cursors are derived from how many answers the request's conversation already
    holds, so retries and side requests cannot push the script out of step."""

    scenario: Scenario
    _cursors: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_turn(
        self, session: str, depth: int, has_tools: bool, default_text: str, advance: bool = True
    ) -> tuple[int, Turn]:
        """Return (index, turn); index is len(turns) past the script. A request that declares no tools
        never gets a tool turn (no real model can call an undeclared tool) and does not advance a
        request cursor, so an agent's side requests (titles, quota probes) cannot swallow a tool call."""
        turns = self.scenario.turns
        with self._lock:
            index = depth if self.scenario.cursor == "history" else self._cursors.get(session, 0)
            turn = turns[index] if index < len(turns) else self.scenario.after_last(default_text)
            if turn.is_tool and not has_tools:
                return min(index, len(turns)), Turn(text=turn.text or default_text, usage=turn.usage)
            if self.scenario.cursor == "request" and advance:
                self._cursors[session] = index + 1
            return min(index, len(turns)), turn

    def reset(self) -> None:
        with self._lock:
            self._cursors.clear()

    def positions(self) -> dict[str, int]:
        with self._lock:
            return dict(self._cursors)
