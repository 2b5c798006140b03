"""Routing: model aliases, fallbacks when an upstream fails, and a cheaper model past a soft budget.

Every change is recorded on the call: `model_requested` is what the client asked for, `model` what
served it, `route_reason` why they differ (`alias fast`, `fallback: claude-opus-4-1 answered 529`,
`downgrade: team "payments" monthly budget at 85%`).

Fallbacks stay within the provider the client speaks to: the gateway relays bytes and does not
translate one provider's format into another's.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agenttrail.config import ConfigError, Settings
from agenttrail.gateway.call import Call

DEFAULT_FALLBACK_ON = frozenset({429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """`[routing]` in agenttrail.toml."""

    aliases: Mapping[str, str] = field(default_factory=dict)
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_attempts: int = 3  # upstream attempts per call, the first included: the retry budget
    fallback_on: frozenset[int] = DEFAULT_FALLBACK_ON
    downgrade_at_pct: float = 80.0
    downgrade: tuple[tuple[str, str], ...] = ()  # (model glob, cheaper model), first match wins

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingSettings:
        raw = settings.section("routing")
        aliases = _str_map(raw.get("aliases", {}), "[routing.aliases]")
        fallbacks: dict[str, tuple[str, ...]] = {}
        fb = raw.get("fallbacks", {})
        if not isinstance(fb, Mapping):
            raise ConfigError(
                '[routing.fallbacks] must map a model to a list, e.g. "claude-opus-4-1" = ["claude-sonnet-4-5"]'
            )
        for model, chain in fb.items():
            if isinstance(chain, str):
                chain = [chain]
            if not isinstance(chain, list) or not all(isinstance(m, str) for m in chain):
                raise ConfigError(f'[routing.fallbacks] "{model}" must be a list of model names')
            fallbacks[str(model)] = tuple(chain)
        attempts = raw.get("max_attempts", 3)
        if not isinstance(attempts, int) or attempts < 1:
            raise ConfigError("[routing] max_attempts must be a whole number >= 1 (1: no fallbacks)")
        on = raw.get("fallback_on", sorted(DEFAULT_FALLBACK_ON))
        if not isinstance(on, list) or not all(isinstance(s, int) and 400 <= s <= 599 for s in on):
            raise ConfigError("[routing] fallback_on must be a list of HTTP statuses such as [429, 500, 529]")
        down = raw.get("downgrade", {})
        if not isinstance(down, Mapping):
            raise ConfigError("[routing.downgrade] must be a table: at_pct = 80, models = { ... }")
        at = down.get("at_pct", 80.0)
        if not isinstance(at, int | float) or not 0 < at <= 1000:
            raise ConfigError("[routing.downgrade] at_pct must be a percentage such as 80")
        models = _str_map(down.get("models", {}), "[routing.downgrade.models]")
        return cls(aliases, fallbacks, attempts, frozenset(on), float(at), tuple(models.items()))


def _str_map(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f'{where} must map names to model names, e.g. fast = "claude-haiku-4-5"')
    return {str(k): str(v) for k, v in raw.items()}


def add_reason(call: Call, reason: str) -> None:
    call.route_reason = f"{call.route_reason}; {reason}" if call.route_reason else reason
    if len(call.route_reason) > 200:
        call.route_reason = call.route_reason[:199] + "…"


class Router:
    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings

    def resolve_alias(self, call: Call) -> None:
        target = self.settings.aliases.get(call.model or "")
        if target and target != call.model:
            add_reason(call, f"alias {call.model}")
            call.model = target

    def downgrade(self, call: Call, spent_pct: Sequence[tuple[str, float]]) -> None:
        """`spent_pct`: (budget label, percent spent) of the budgets covering the call."""
        if not self.settings.downgrade or not call.model:
            return
        over = [(label, pct) for label, pct in spent_pct if pct >= self.settings.downgrade_at_pct]
        if not over:
            return
        for pattern, cheaper in self.settings.downgrade:
            if fnmatch.fnmatchcase(call.model, pattern) and cheaper != call.model:
                label, pct = max(over, key=lambda lp: lp[1])
                add_reason(call, f"downgrade: {label} at {pct:.0f}%")
                call.model = cheaper
                return

    def fallbacks(self, model: str | None) -> list[str]:
        """The models to try after `model`, within the retry budget."""
        if not model:
            return []
        chain = [m for m in self.settings.fallbacks.get(model, ()) if m != model]
        return chain[: max(0, self.settings.max_attempts - 1)]
