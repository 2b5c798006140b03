"""The cost of a usage record: genai-prices, with organisation price overrides on top.

Prices are resolved once per (provider, model) and kept, so pricing a call on the gateway's
path costs a dictionary lookup plus the arithmetic. Every price says where it came from.

genai-prices is imported when a price is first resolved, not with this module: importing it (its
pydantic types, its price table, and the HTTP client of its `update_prices`) is ~0.16 s, half of the
`agenttrail import … --dry-run` command's start-up. That command totals with `Pricer.cost_of_many` and a
`rates_cache` (`_RatesCache`): the integer rates genai-prices gave for each model, kept in a file until
genai-prices' price table changes, so a second run need not import genai-prices at all.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrail.config import PriceOverride
from agenttrail.usage import Usage, sum_usages

if TYPE_CHECKING:
    from genai_prices import Usage as GPUsage
    from genai_prices.types import ModelPrice

_ATTR = {
    "input": "input_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "output": "output_mtok",
}
NANOS = Decimal(1_000_000_000)


@functools.cache
def genai_prices_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genai-prices")
    except PackageNotFoundError:  # pragma: no cover - only in a broken install
        return "unknown"


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
    from genai_prices.types import calc_unit_price

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
    from genai_prices.types import TieredPrices

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
        i, r, w5, w1 = u.input_tokens, u.cache_read_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens
        return self.cost_at(u, bisect_left(self.starts, i + r + w5 + w1) if self.starts else 0)

    def cost_at(self, u: Usage, tier: int) -> Decimal:
        """`u` (one call, or the sum of calls of one tier) priced at tier `tier`'s rates."""
        rates = self.tiers[tier]
        n = (
            rates[0] * u.input_tokens
            + rates[1] * u.cache_read_tokens
            + rates[2] * u.cache_write_5m_tokens
            + rates[3] * u.cache_write_1h_tokens
            + rates[4] * u.output_tokens
        )
        return Decimal(n).scaleb(-self.scale - 6)

    def of_many(self, usages: Sequence[Usage], total: Usage) -> Decimal:
        """The sum of `cost(u)` over `usages` (whose sum is `total`): `Pricer.cost_of_many`'s grouping by
        tier, on these rates."""
        starts = self.starts
        if not starts or sum(max(map(g, usages)) for g in _PROMPT_PARTS) <= starts[0]:
            return self.cost_at(total, 0)
        groups: dict[int, list[Usage]] = {}
        for u in usages:
            groups.setdefault(bisect_left(starts, u.prompt_tokens), []).append(u)
        return sum((self.cost_at(sum_usages(g), k) for k, g in groups.items()), Decimal(0))


def _rates(mp: ModelPrice) -> _Rates | None:
    """`mp` as `_Rates`, or None when a rate is not a Decimal (nor tiered Decimals) and `_cost` must do it."""
    from genai_prices.types import TieredPrices

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
    from genai_prices import Usage as GPUsage

    # genai-prices counts input_tokens as the whole prompt, cache reads and writes included.
    return GPUsage(
        input_tokens=u.prompt_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        cache_write_1h_tokens=u.cache_write_1h_tokens,
        output_tokens=u.output_tokens,
    )


class Pricer:
    def __init__(self, overrides: tuple[PriceOverride, ...] = (), rates_cache: Path | None = None) -> None:
        """`rates_cache`: a file where `cost_of_many` keeps the models' rates between processes
        (`_RatesCache`); not used with overrides."""
        self._overrides = {(o.provider, o.model): o for o in overrides}
        self._cache: dict[tuple[str, str], _Resolved] = {}
        self._rates: dict[tuple[str, str], _Rates | None] = {}
        self._lock = threading.Lock()
        self._disk = _RatesCache(rates_cache) if rates_cache is not None and not overrides else None
        self._conditional: set[tuple[str, str]] = set()  # models whose price depends on the time

    def _override_for(self, provider: str, model: str) -> PriceOverride | None:
        return self._overrides.get((provider, model)) or self._overrides.get((None, model))

    def _resolve(self, provider: str, model: str) -> _Resolved:
        key = (provider, model)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price
        from genai_prices.types import ModelPrice

        base: ModelPrice | None = None
        source = f"unknown model {provider}/{model}"
        try:
            calc = calc_price(GPUsage(input_tokens=0, output_tokens=0), model, provider_id=provider)
        except LookupError:
            calc = None
        if calc is not None:
            base = calc.model_price
            source = f"genai-prices {genai_prices_version()} {calc.provider.id}/{calc.model.id}"
            if not isinstance(calc.model.prices, ModelPrice):  # conditional: by date or time of day
                self._conditional.add(key)
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
        if self._disk is not None:
            kept = self._disk.get(provider, model) or self._keep(provider, model)
            if kept is not None:
                return Decimal(0) if kept.rates is None else kept.rates.of_many(usages, total or sum_usages(usages))
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

    def cost_of_group(
        self,
        provider: str,
        model: str | None,
        total: Usage,
        largest: Sequence[int],
        usages: Callable[[], Sequence[Usage]],
    ) -> Decimal:
        """`cost_of_many` for calls known by their sum: `total` their summed usage, `largest` the largest
        of each prompt part over them (input, cache read, 5-minute and 1-hour cache write), and `usages`
        gives the calls' usages, asked for only when one of them might reach a price tier (a native tally
        keeps no record a call; docs/importers.md). The same Decimal as `cost_of_many`."""
        if not model:
            return Decimal(0)
        if self._disk is not None:
            kept = self._disk.get(provider, model) or self._keep(provider, model)
            if kept is not None:
                if kept.rates is None:
                    return Decimal(0)
                kept_starts = kept.rates.starts
                if not kept_starts or sum(largest) <= kept_starts[0]:
                    return kept.rates.cost_at(total, 0)
                return kept.rates.of_many(usages(), total)
        mp = self._resolve(provider, model).model_price
        if mp is None:
            return Decimal(0)
        starts = _tier_starts(mp)
        if not starts:
            return _cost(mp, total)
        if sum(largest) <= starts[0]:
            return _cost(mp, total, 0)
        return self.cost_of_many(provider, model, usages(), total)

    def _keep(self, provider: str, model: str) -> _Kept | None:
        """The model's rates, resolved by genai-prices and kept in the rates cache; None when they are not
        to be kept (a price that depends on the time, or one `_Rates` cannot hold)."""
        assert self._disk is not None
        resolved = self._resolve(provider, model)
        if resolved.model_price is None:
            return self._disk.put(provider, model, None)
        rates = _rates(resolved.model_price) if (provider, model) not in self._conditional else None
        return None if rates is None else self._disk.put(provider, model, rates)

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


@dataclass(frozen=True, slots=True)
class _Kept:
    """A model's entry in the rates cache: its rates, or None for a model genai-prices does not know."""

    rates: _Rates | None


class _RatesCache:
    """Models' integer rates (`_Rates`) as genai-prices resolved them, in a JSON file, so that a process
    pricing calls with `cost_of_many` need not import genai-prices (~0.16 s) for models it has priced
    before. The file is keyed by genai-prices' price table (its `data.py`: path, size and modification
    time): another genai-prices install or version starts it afresh. Only prices that do not depend on
    the time are kept (a conditional price, by start date or time of day, is resolved each process), and
    unknown models as unknown. An unreadable or unwritable file only means genai-prices is imported."""

    FORMAT = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = _price_table_key()
        self.entries: dict[str, Any] = {}
        try:
            with open(path, "rb") as f:
                saved = json.load(f)
            if saved.get("key") == self.key:
                self.entries = dict(saved["entries"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
        self._made: dict[str, _Kept] = {}

    def get(self, provider: str, model: str) -> _Kept | None:
        """The model's entry, None when it has none (or an unreadable one)."""
        name = f"{provider}/{model}"
        kept = self._made.get(name)
        if kept is not None or self.key is None:
            return kept
        e = self.entries.get(name)
        if e is None:
            return None
        try:
            tiers = tuple(tuple(int(r) for r in t) for t in e["tiers"]) if not e["unknown"] else ()
            if any(len(t) != 5 for t in tiers) or (not e["unknown"] and len(tiers) != len(e["starts"]) + 1):
                return None
            rates = None if e["unknown"] else _Rates(tuple(int(x) for x in e["starts"]), tiers, int(e["scale"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None
        kept = self._made[name] = _Kept(rates)
        return kept

    def put(self, provider: str, model: str, rates: _Rates | None) -> _Kept:
        """Keep a model's rates (None: unknown to genai-prices) and write the file."""
        name = f"{provider}/{model}"
        kept = self._made[name] = _Kept(rates)
        if self.key is None:
            return kept
        self.entries[name] = (
            {"unknown": True}
            if rates is None
            else {
                "unknown": False,
                "starts": list(rates.starts),
                "tiers": [list(t) for t in rates.tiers],
                "scale": rates.scale,
            }
        )
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"key": self.key, "entries": self.entries}, f)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return kept


def _price_table_key() -> list[Any] | None:
    """What identifies genai-prices' price table, found without importing genai-prices."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("genai_prices")
        where = spec.submodule_search_locations if spec is not None else None
        if not where:
            return None
        data = os.path.join(next(iter(where)), "data.py")
        st = os.stat(data)
    except (OSError, ImportError, ValueError):
        return None
    return [_RatesCache.FORMAT, data, st.st_size, st.st_mtime_ns]
