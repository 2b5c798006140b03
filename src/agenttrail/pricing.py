"""The cost of a usage record: genai-prices, with organisation price overrides on top.

Prices are resolved once per (provider, model) and kept, so pricing a call on the gateway's
path costs a dictionary lookup plus the arithmetic. Every price says where it came from.
"""

from __future__ import annotations

import copy
import threading
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from operator import attrgetter

from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from genai_prices.types import ModelPrice, TieredPrices, calc_unit_price

from agenttrail.config import PriceOverride
from agenttrail.usage import Usage, sum_usages

_ATTR = {
    "input": "input_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "output": "output_mtok",
}
NANOS = Decimal(1_000_000_000)

try:
    GENAI_PRICES_VERSION = version("genai-prices")
except PackageNotFoundError:  # pragma: no cover - only in a broken install
    GENAI_PRICES_VERSION = "unknown"


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: Decimal
    source: str
    known: bool = True

    @property
    def cost_nanos(self) -> int:
        return int((self.cost_usd * NANOS).to_integral_value())


@dataclass(frozen=True, slots=True)
class _Resolved:
    model_price: ModelPrice | None
    source: str


def _cost(mp: ModelPrice, u: Usage, total_input: int | None = None) -> Decimal:
    """genai-prices' own per-unit tier arithmetic, applied per token class.

    `ModelPrice.calc_price` decomposes usage through a generic unit registry and costs ~0.1 ms a
    call; this is the same arithmetic for the five classes a model call reports, ~50x cheaper.
    tests/test_pricing.py checks it equals `calc_price` on arbitrary usage. `total_input` picks the
    tier when `u` is a sum of calls (`Pricer.cost_of_many`); by default it is `u`'s own prompt.
    """
    if total_input is None:
        total_input = u.prompt_tokens
    one_hour = getattr(mp, "cache_write_1h_mtok", None)
    five_min_count = u.cache_write_5m_tokens if one_hour is not None else u.cache_write_tokens
    cost = (
        calc_unit_price(getattr(mp, "input_mtok", None), u.input_tokens, total_input, _PER)
        + calc_unit_price(getattr(mp, "cache_read_mtok", None), u.cache_read_tokens, total_input, _PER)
        + calc_unit_price(getattr(mp, "cache_write_mtok", None), five_min_count, total_input, _PER)
        + calc_unit_price(getattr(mp, "output_mtok", None), u.output_tokens, total_input, _PER)
    )
    if one_hour is not None:
        cost += calc_unit_price(one_hour, u.cache_write_1h_tokens, total_input, _PER)
    return cost


_PER = 1_000_000
_PROMPT_PARTS = tuple(
    attrgetter(n) for n in ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens")
)
_CLASSES = ("input_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok", "output_mtok")


def _tier_starts(mp: ModelPrice) -> list[int]:
    """Every prompt size at which one of the five classes' tiered rate changes, ascending."""
    starts: set[int] = set()
    for attr in _CLASSES:
        rate = getattr(mp, attr, None)
        if isinstance(rate, TieredPrices):
            starts.update(t.start for t in rate.tiers)
    return sorted(starts)


@dataclass(frozen=True, slots=True)
class _Rates:
    """A model's price as integers: per tier (0 below the first start, k above the k-th), the rates of
    input, cache read, 5-minute and 1-hour cache write and output, times 10**scale, per million tokens.
    A call's cost is then one integer dot product, exactly `_cost`'s value."""

    starts: tuple[int, ...]
    tiers: tuple[tuple[int, int, int, int, int], ...]
    scale: int

    def cost(self, u: Usage) -> Decimal:
        i, r, w5, w1, o = (
            u.input_tokens,
            u.cache_read_tokens,
            u.cache_write_5m_tokens,
            u.cache_write_1h_tokens,
            u.output_tokens,
        )
        rates = self.tiers[bisect_left(self.starts, i + r + w5 + w1)] if self.starts else self.tiers[0]
        n = rates[0] * i + rates[1] * r + rates[2] * w5 + rates[3] * w1 + rates[4] * o
        return Decimal(n).scaleb(-self.scale - 6)


def _rates(mp: ModelPrice) -> _Rates | None:
    """`mp` as `_Rates`, or None when a rate is not a Decimal (nor tiered Decimals) and `_cost` must do it."""
    starts = _tier_starts(mp)
    one_hour = getattr(mp, "cache_write_1h_mtok", None)
    # Without a 1-hour rate both TTLs are priced at the cache-write rate, as in `_cost`.
    attrs = (
        "input_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok" if one_hour is not None else "cache_write_mtok",
        "output_mtok",
    )
    tiers: list[list[Decimal]] = []
    for k in range(len(starts) + 1):
        total_input = 0 if k == 0 else starts[k - 1] + 1  # a prompt size inside tier k
        row: list[Decimal] = []
        for attr in attrs:
            rate = getattr(mp, attr, None)
            if isinstance(rate, TieredPrices):
                rate = next((t.price for t in reversed(rate.tiers) if total_input > t.start), rate.base)
            if rate is None:
                rate = Decimal(0)
            if not isinstance(rate, Decimal) or not rate.is_finite():
                return None
            row.append(rate)
        tiers.append(row)
    exponent = min(int(r.as_tuple().exponent) for row in tiers for r in row)
    scale = max(0, -exponent)
    scaled = tuple(tuple(int(r.scaleb(scale)) for r in row) for row in tiers)
    return _Rates(tuple(starts), scaled, scale)  # type: ignore[arg-type]


def to_genai_usage(u: Usage) -> GPUsage:
    # genai-prices counts input_tokens as the whole prompt, cache reads and writes included.
    return GPUsage(
        input_tokens=u.prompt_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        cache_write_1h_tokens=u.cache_write_1h_tokens,
        output_tokens=u.output_tokens,
    )


class Pricer:
    def __init__(self, overrides: tuple[PriceOverride, ...] = ()) -> None:
        self._overrides = {(o.provider, o.model): o for o in overrides}
        self._cache: dict[tuple[str, str], _Resolved] = {}
        self._rates: dict[tuple[str, str], _Rates | None] = {}
        self._lock = threading.Lock()

    def _override_for(self, provider: str, model: str) -> PriceOverride | None:
        return self._overrides.get((provider, model)) or self._overrides.get((None, model))

    def _resolve(self, provider: str, model: str) -> _Resolved:
        key = (provider, model)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        base: ModelPrice | None = None
        source = f"unknown model {provider}/{model}"
        try:
            calc = calc_price(GPUsage(input_tokens=0, output_tokens=0), model, provider_id=provider)
        except LookupError:
            calc = None
        if calc is not None:
            base = calc.model_price
            source = f"genai-prices {GENAI_PRICES_VERSION} {calc.provider.id}/{calc.model.id}"
        override = self._override_for(provider, model)
        if override is not None:
            mp = copy.copy(base) if base is not None else ModelPrice()
            for cls, rate in override.per_mtok.items():
                object.__setattr__(mp, _ATTR[cls], rate)
            if base is None:
                for attr in _ATTR.values():
                    if not hasattr(mp, attr):
                        object.__setattr__(mp, attr, None)
            base = mp
            classes = ",".join(sorted(override.per_mtok))
            source = f"{source}; override {classes}" if calc is not None else f"override {classes} for {model}"
        resolved = _Resolved(base, source)
        with self._lock:
            self._cache[key] = resolved
        return resolved

    def price(self, provider: str, model: str | None, usage: Usage) -> Price:
        if not model:
            return Price(Decimal(0), "no model reported", known=False)
        resolved = self._resolve(provider, model)
        if resolved.model_price is None:
            return Price(Decimal(0), resolved.source, known=False)
        return Price(_cost(resolved.model_price, usage), resolved.source)

    def price_call(self, provider: str, model: str | None, usage: Usage) -> Price:
        """`price`, by the model's integer rates (`_Rates`): the same value, at a fraction of the cost, for
        pricing every call of a history (tests/cli/test_import_totals.py holds them equal)."""
        if not model:
            return Price(Decimal(0), "no model reported", known=False)
        key = (provider, model)
        resolved = self._cache.get(key) or self._resolve(provider, model)
        mp = resolved.model_price
        if mp is None:
            return Price(Decimal(0), resolved.source, known=False)
        if key in self._rates:
            rates = self._rates[key]
        else:
            rates = self._rates[key] = _rates(mp)
        return Price(rates.cost(usage) if rates is not None else _cost(mp, usage), resolved.source)

    def cost_of_many(
        self, provider: str, model: str | None, usages: Sequence[Usage], total: Usage | None = None
    ) -> Decimal:
        """The sum of `price(provider, model, u).cost_usd` over `usages`, exactly, without pricing each.
        `total`: their sum (`sum_usages`), when the caller has it already.

        A call's cost is linear in its token counts once its tier is known, and the tier depends only
        on its prompt size: so the calls are grouped by the tier their prompt falls in, and each group's
        summed usage is priced at that tier (one group for an untiered model). Decimal arithmetic at
        these magnitudes is exact (a count times a rate, over a million), so the result is equal, not
        close (tests/cli/test_import_totals.py)."""
        if not model or not usages:
            return Decimal(0)
        mp = self._resolve(provider, model).model_price
        if mp is None:
            return Decimal(0)
        starts = _tier_starts(mp)
        total = total or sum_usages(usages)
        if not starts:
            return _cost(mp, total)
        # No prompt above the first tier when even the largest of each part together are not: the usual
        # case, priced at the base rates without looking at each call.
        if sum(max(map(g, usages)) for g in _PROMPT_PARTS) <= starts[0]:
            return _cost(mp, total, 0)
        # A tier applies to a prompt larger than its start: the group is how many starts lie below it.
        groups: dict[int, list[Usage]] = {}
        for u in usages:
            groups.setdefault(bisect_left(starts, u.prompt_tokens), []).append(u)
        return sum((_cost(mp, sum_usages(g), g[0].prompt_tokens) for g in groups.values()), Decimal(0))

    def output_price_per_token(self, provider: str, model: str) -> Decimal:
        """The base output rate, for reserving a call's worst case before it runs."""
        mp = self._resolve(provider, model).model_price
        rate = getattr(mp, "output_mtok", None) if mp is not None else None
        base = getattr(rate, "base", rate)
        return Decimal(base or 0) / Decimal(1_000_000)

    def input_price_per_token(self, provider: str, model: str) -> Decimal:
        mp = self._resolve(provider, model).model_price
        rate = getattr(mp, "input_mtok", None) if mp is not None else None
        base = getattr(rate, "base", rate)
        return Decimal(base or 0) / Decimal(1_000_000)
