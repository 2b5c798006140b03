"""The import's pricing. A dry run's totals come straight from the records (`Totals.add_priced`,
`Pricer.cost_of_many`), not from an ingest event per call: they must equal what the events give
(`Totals.add` over `batch_to_events`), pricing each call with genai-prices, on arbitrary calls: tiered
models on both sides of a tier, cache writes by TTL, overrides, unknown models and calls without a model.
And each call's record is priced by the model's integer rates (`Pricer.price_call`), equal to
`Pricer.price`."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.cli.import_ import Totals
from agenttrail.config import PriceOverride
from agenttrail.importers import ImportBatch, TranscriptCall
from agenttrail.importers.to_events import batch_to_events
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage, sum_usages

# Tiered (200k-token tier, 1h cache writes priced apart), untiered, an override of one class, an
# override-only model (no 1h rate: both TTLs at the cache-write rate), unknown, and none at all.
MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-pro"),
    ("anthropic", "claude-3-haiku-20240307"),
    ("openai", "gpt-5"),
    ("openai", "gpt-4o"),
    ("anthropic", "negotiated-model"),
    ("anthropic", "no-such-model-anywhere"),
    ("openai", None),
]
OVERRIDES = (
    PriceOverride(model="gpt-4o", per_mtok={"output": Decimal("7.3")}),
    PriceOverride(model="negotiated-model", per_mtok={"input": Decimal("1.1"), "cache_write": Decimal("2.25")}),
)

# Around the 200k tier start, so that groups fall on both sides of it and on it exactly.
_TOKENS = st.one_of(st.integers(0, 3_000), st.integers(0, 260_000), st.sampled_from([199_999, 200_000, 200_001]))
usages = st.builds(Usage, _TOKENS, _TOKENS, _TOKENS, st.integers(0, 70_000), _TOKENS, st.integers(0, 100))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(MODELS), st.lists(usages, max_size=40))
def test_cost_of_many_equals_the_sum_of_each_calls_price(model: tuple[str, str | None], us: list[Usage]) -> None:
    pricer = Pricer(OVERRIDES)
    provider, name = model
    want = sum((pricer.price(provider, name, u).cost_usd for u in us), Decimal(0))
    assert pricer.cost_of_many(provider, name, us) == want  # exact, not close


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([*MODELS, ("openai", "gpt-5.4")]), st.lists(usages, min_size=1, max_size=40), st.booleans())
def test_cost_of_group_equals_cost_of_many(model: tuple[str, str | None], us: list[Usage], cached: bool) -> None:
    """A native tally's group: its sum and its largest prompt parts, and the usages only when asked."""
    with tempfile.TemporaryDirectory() as d:
        pricer = Pricer(OVERRIDES, rates_cache=Path(d) / "prices.json" if cached else None)
        provider, name = model
        largest = [max(u.input_tokens for u in us), max(u.cache_read_tokens for u in us)]
        largest += [max(u.cache_write_5m_tokens for u in us), max(u.cache_write_1h_tokens for u in us)]
        asked: list[bool] = []

        def usages_of() -> list[Usage]:
            asked.append(True)
            return us

        got = pricer.cost_of_group(provider, name, sum_usages(us), largest, usages_of)
        assert got == Pricer(OVERRIDES).cost_of_many(provider, name, us)  # exact, not close
        if sum(largest) <= 200_000:  # no call can reach a tier (the lowest start here is 200k)
            assert not asked


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), usages)
def test_price_call_equals_price(model: tuple[str, str | None], u: Usage) -> None:
    pricer = Pricer(OVERRIDES)
    want, got = pricer.price(model[0], model[1], u), pricer.price_call(model[0], model[1], u)
    assert (got.cost_usd, got.cost_nanos, got.source, got.known) == (
        want.cost_usd,
        want.cost_nanos,
        want.source,
        want.known,
    )
    assert float(got.cost_usd) == float(want.cost_usd)


def _call(i: int, model: tuple[str, str | None], u: Usage, session: int) -> TranscriptCall:
    provider, name = model
    agent = "claude-code" if provider == "anthropic" else "codex"
    ts = datetime(2026, 5, 4, 10, 0, i % 60, tzinfo=UTC)
    return TranscriptCall(f"call-{i}", f"session-{session}", agent, provider, name, ts, u)  # type: ignore[arg-type]


Spec = list[tuple[tuple[str, str | None], Usage, int]]  # a batch's calls: model, usage, session
calls = st.lists(st.tuples(st.sampled_from(MODELS), usages, st.integers(0, 3)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.lists(calls, min_size=1, max_size=3))
def test_add_priced_equals_the_totals_of_the_events(batches: list[Spec]) -> None:
    pricer = Pricer(OVERRIDES)
    by_events, priced = Totals(), Totals()
    exact = Decimal(0)
    n = 0
    for spec in batches:
        batch = ImportBatch()
        for model, u, session in spec:
            batch.calls.append(_call(n, model, u, session))
            exact += pricer.price(model[0], model[1], u).cost_usd
            n += 1
        by_events.add(batch, batch_to_events(batch, pricer))
        priced.add_priced(batch, pricer)
    assert priced.as_dict() | {"cost_usd": 0} == by_events.as_dict() | {"cost_usd": 0}
    assert priced.usage == by_events.usage
    # The events' cost is a float sum of each call's float; add_priced's is the exact sum, as a float.
    assert priced.cost_usd == float(exact)
    assert abs(priced.cost_usd - by_events.cost_usd) <= 1e-9
