"""Rate limits per key, engineer and team: requests per minute, tokens per minute, concurrent requests.

Each limit is a shared counter (`gov_counter`), so every server process enforces the same one.
Minutes are fixed one-minute windows aligned to UTC: simple to reason about and exact within a
window; a client can, as with any fixed window, make up to twice the limit across a window boundary.
Tokens per minute reserve the call's estimate (input estimate plus its output allowance) and settle
the tokens the provider reported. Concurrency holds one unit per call in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agenttrail.config import ConfigError, Settings
from agenttrail.governance.counters import COUNTER, CounterId
from agenttrail.governance.ledger import Claim
from agenttrail.governance.periods import EPOCH, Window, fixed_window
from agenttrail.store.keys import KeyInfo

KINDS = ("rpm", "tpm", "concurrency")
LIMIT_SCOPES = ("key", "engineer", "team")


@dataclass(frozen=True, slots=True)
class Limit:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def get(self, kind: str) -> int | None:
        value: int | None = getattr(self, kind)
        return value

    def merged(self, over: Limit | None) -> Limit:
        if over is None:
            return self
        return Limit(
            over.rpm if over.rpm is not None else self.rpm,
            over.tpm if over.tpm is not None else self.tpm,
            over.concurrency if over.concurrency is not None else self.concurrency,
        )


def _limit(raw: Any, where: str) -> Limit:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table such as {{ rpm = 60, tpm = 200000, concurrency = 4 }}")
    unknown = set(raw) - set(KINDS)
    if unknown:
        raise ConfigError(f"{where}: unknown {sorted(unknown)}; use {', '.join(KINDS)}")
    values: dict[str, int] = {}
    for k, v in raw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ConfigError(f"{where}.{k} must be a whole number >= 0, got {v!r}")
        values[k] = v
    return Limit(**values)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """`[limits]`: defaults per scope, and overrides for one team, engineer or key."""

    defaults: Mapping[str, Limit] = field(default_factory=dict)
    overrides: Mapping[tuple[str, str], Limit] = field(default_factory=dict)  # (scope, name or key prefix)
    lease_pct: float = 1.0
    exact_within_pct: float = 5.0

    @property
    def any(self) -> bool:
        return bool(self.defaults or self.overrides)

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitSettings:
        raw = settings.section("limits")
        defaults = {s: _limit(raw[s], f"[limits.{s}]") for s in LIMIT_SCOPES if s in raw}
        overrides: dict[tuple[str, str], Limit] = {}
        over = raw.get("overrides", {})
        if not isinstance(over, Mapping):
            raise ConfigError('[limits.overrides] must be a table such as "team:payments" = { rpm = 10 }')
        for name, value in over.items():
            scope, sep, who = str(name).partition(":")
            if not sep or scope not in LIMIT_SCOPES or not who:
                raise ConfigError(
                    f'[limits.overrides] "{name}": name a scope and who, e.g. "team:payments", '
                    '"engineer:ana@example.com" or "key:sk-at-AbC123"'
                )
            overrides[(scope, who.lower() if scope == "engineer" else who)] = _limit(
                value, f'[limits.overrides."{name}"]'
            )
        extra = set(raw) - {*LIMIT_SCOPES, "overrides", "lease_pct", "exact_within_pct"}
        if extra:
            raise ConfigError(f"[limits]: unknown {sorted(extra)}; use key, engineer, team, overrides")
        return cls(
            defaults,
            overrides,
            float(raw.get("lease_pct", 1.0)),
            float(raw.get("exact_within_pct", 5.0)),
        )


@dataclass(frozen=True, slots=True)
class LimitClaim:
    claim: Claim
    kind: str
    scope: str
    who: str
    limit: int
    window: Window | None  # None: concurrency, which has no window


class Limiter:
    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._templates: dict[int, tuple[datetime, list[LimitClaim]]] = {}

    def _for(self, scope: str, key: KeyInfo) -> tuple[int | None, str, Limit | None]:
        ident: int | None
        if scope == "key":
            ident, who = key.id, key.name or f"{key.prefix}…"
            over = self.settings.overrides.get(("key", key.prefix)) or (
                self.settings.overrides.get(("key", key.name)) if key.name else None
            )
        elif scope == "engineer":
            ident, who = key.engineer_id, key.engineer or ""
            over = self.settings.overrides.get(("engineer", (key.engineer or "").lower()))
        else:
            ident, who = key.team_id, key.team
            over = self.settings.overrides.get(("team", key.team))
        base = self.settings.defaults.get(scope)
        if base is None and over is None:
            return ident, who, None
        return ident, who, (base or Limit()).merged(over)

    def claims(self, key: KeyInfo, now: datetime, tokens: int) -> list[LimitClaim]:
        if not self.settings.any:
            return []
        minute = fixed_window(now, 60)
        cached = self._templates.get(key.id)
        if cached is None or cached[0] != minute.start:
            if len(self._templates) > 100_000:
                self._templates.clear()
            cached = (minute.start, self._build(key, minute))
            self._templates[key.id] = cached
        return [
            LimitClaim(
                replace(t.claim, amount=tokens if t.kind == "tpm" else 1), t.kind, t.scope, t.who, t.limit, t.window
            )
            for t in cached[1]
        ]

    def _build(self, key: KeyInfo, minute: Window) -> list[LimitClaim]:
        """A key's limit counters for one minute (built once per key and minute, then reused)."""
        out: list[LimitClaim] = []
        for scope in LIMIT_SCOPES:
            ident, who, lim = self._for(scope, key)
            if lim is None or ident is None:
                continue
            for kind in KINDS:
                n = lim.get(kind)
                if n is None:
                    continue
                window = None if kind == "concurrency" else minute
                lease = 0 if kind == "concurrency" else int(n * self.settings.lease_pct / 100)
                claim = Claim(
                    CounterId(COUNTER, f"{kind}:{scope}:{ident}", window.start if window else EPOCH),
                    limit=n,
                    amount=0,
                    lease=lease,
                    exact_within=int(n * self.settings.exact_within_pct / 100),
                )
                out.append(LimitClaim(claim, kind, scope, who, n, window))
        return out


def refusal_message(lc: LimitClaim, spent: int, reserved: int, now: datetime) -> tuple[str, int]:
    """The message and the retry-after seconds."""
    who = f'{lc.scope} "{lc.who}"'
    if lc.kind == "concurrency":
        return (
            f"rate limit: {who} may have {lc.limit} requests in progress at once and has {reserved}; "
            "retry when one finishes",
            1,
        )
    assert lc.window is not None
    wait = lc.window.seconds_left(now) or 60
    if lc.kind == "rpm":
        what = f"{lc.limit} requests per minute ({spent + reserved} made this minute)"
    else:
        what = f"{lc.limit} tokens per minute ({spent} used and {reserved} held this minute)"
    return f"rate limit: {who} may use {what}; the next minute starts in {wait} s", wait
