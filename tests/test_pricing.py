"""Cost equals genai-prices for the same usage; overrides replace exactly the classes they name."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.config import PriceOverride
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage

tokens = st.integers(min_value=0, max_value=150_000)


@given(tokens, tokens, tokens, tokens, tokens)
def test_anthropic_cost_matches_genai_prices(i: int, cr: int, w5: int, w1: int, o: int) -> None:
    u = Usage(input_tokens=i, cache_read_tokens=cr, cache_write_5m_tokens=w5, cache_write_1h_tokens=w1, output_tokens=o)
    want = calc_price(
        GPUsage(
            input_tokens=i + cr + w5 + w1,
            cache_read_tokens=cr,
            cache_write_tokens=w5 + w1,
            cache_write_1h_tokens=w1,
            output_tokens=o,
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    assert Pricer().price("anthropic", "claude-sonnet-4-5", u).cost_usd == want


@given(tokens, tokens, tokens)
def test_openai_cost_matches_genai_prices(i: int, cr: int, o: int) -> None:
    want = calc_price(
        GPUsage(input_tokens=i + cr, cache_read_tokens=cr, output_tokens=o), "gpt-4o", provider_id="openai"
    ).total_price
    got = Pricer().price("openai", "gpt-4o", Usage(input_tokens=i, cache_read_tokens=cr, output_tokens=o)).cost_usd
    assert got == want


@given(tokens, tokens, tokens, tokens)
def test_models_without_a_one_hour_rate_price_all_writes_alike(i: int, w5: int, w1: int, o: int) -> None:
    u = Usage(input_tokens=i, cache_write_5m_tokens=w5, cache_write_1h_tokens=w1, output_tokens=o)
    for model in ("claude-3-5-haiku-latest", "claude-opus-4-1"):
        gp = GPUsage(input_tokens=i + w5 + w1, cache_write_tokens=w5 + w1, cache_write_1h_tokens=w1, output_tokens=o)
        assert (
            Pricer().price("anthropic", model, u).cost_usd == calc_price(gp, model, provider_id="anthropic").total_price
        )


def test_one_hour_cache_writes_cost_more_than_five_minute_ones() -> None:
    p = Pricer()
    # 100k tokens: under the 200k long-context tier, where the base rates apply.
    five = p.price("anthropic", "claude-sonnet-4-5", Usage(cache_write_5m_tokens=100_000)).cost_usd
    hour = p.price("anthropic", "claude-sonnet-4-5", Usage(cache_write_1h_tokens=100_000)).cost_usd
    assert (five, hour) == (Decimal("0.375"), Decimal("0.6"))


def test_override_changes_only_its_classes_and_says_so() -> None:
    u = Usage(input_tokens=1_000_000, cache_read_tokens=1_000_000, output_tokens=1_000_000)  # gpt-4o: no tiers
    base = Pricer().price("openai", "gpt-4o", u)
    over = Pricer((PriceOverride("gpt-4o", {"input": Decimal("1"), "output": Decimal("5")}),)).price(
        "openai", "gpt-4o", u
    )
    assert base.cost_usd == Decimal("2.5") + Decimal("1.25") + Decimal("10")
    assert over.cost_usd == Decimal("1") + Decimal("1.25") + Decimal("5")
    assert "override input,output" in over.source and over.source.startswith("genai-prices")


def test_unknown_model_is_zero_and_flagged_unless_overridden() -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    p = Pricer((PriceOverride("in-house-llm", {"input": Decimal("0.5"), "output": Decimal("1")}),))
    unknown = p.price("openai", "mystery-model", u)
    assert (unknown.cost_usd, unknown.known) == (Decimal(0), False)
    assert "unknown model" in unknown.source
    assert p.price("openai", "in-house-llm", u).cost_usd == Decimal("1.5")


def test_openai_usage_convention_subtracts_cached_tokens() -> None:
    u = Usage.from_openai(
        {
            "prompt_tokens": 1500,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 1000},
            "completion_tokens_details": {"reasoning_tokens": 120},
        }
    )
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (500, 1000, 300, 120)
    r = Usage.from_openai({"input_tokens": 10, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 4}})
    assert (r.input_tokens, r.cache_read_tokens) == (6, 4)


def test_anthropic_usage_splits_cache_writes_by_ttl() -> None:
    u = Usage.from_anthropic(
        {
            "input_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 7,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 9,
        }
    )
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.cache_write_tokens) == (100, 200, 300)


# ---------------------------------------------------------------------------------------- the rates cache

# Tiered with 1-hour writes, untiered, tiered without a 1-hour rate, unknown, and no model at all.
CACHED_MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-5"),
    ("google", "gemini-2.5-pro"),
    ("anthropic", "no-such-model-anywhere"),
    ("openai", None),
]
_AROUND_TIER = st.one_of(st.integers(0, 3_000), st.integers(0, 260_000), st.sampled_from([199_999, 200_000, 200_001]))
cache_usages = st.builds(Usage, _AROUND_TIER, _AROUND_TIER, _AROUND_TIER, st.integers(0, 70_000), _AROUND_TIER)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CACHED_MODELS), st.lists(cache_usages, max_size=30))
def test_cost_of_many_from_the_rates_cache_equals_genai_prices(model: tuple[str, str | None], us: list[Usage]) -> None:
    """Priced from rates kept by one Pricer (the file written) and read back by another (no resolve): the
    sum of genai-prices' price of each call, exactly."""
    provider, name = model
    want = sum((Pricer().price(provider, name, u).cost_usd for u in us), Decimal(0))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "prices.json"
        assert Pricer(rates_cache=path).cost_of_many(provider, name, us) == want
        later = Pricer(rates_cache=path)
        assert later.cost_of_many(provider, name, us) == want
        assert not later._cache  # from the file: genai-prices was not asked


def test_a_second_process_prices_from_the_cache_without_importing_genai_prices(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "prices.json"
    u = Usage(input_tokens=1_000, cache_read_tokens=2_000, output_tokens=300)
    want = Pricer().price("openai", "gpt-5", u).cost_usd
    code = (
        "import sys; from decimal import Decimal; from pathlib import Path;"
        "from agenttrail.pricing import Pricer; from agenttrail.usage import Usage;"
        f"c = Pricer(rates_cache=Path({str(path)!r})).cost_of_many('openai', 'gpt-5', [Usage(1000, 2000, 0, 0, 300)]);"
        "print(c, 'genai_prices' in sys.modules)"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert (Decimal(first[0]), first[1]) == (want, "True")  # resolved by genai-prices, and kept
    assert (Decimal(second[0]), second[1]) == (want, "False")  # from the file alone
    assert json.loads(path.read_text())["entries"]["openai/gpt-5"]["unknown"] is False


def test_a_cache_of_another_price_table_is_not_used(tmp_path: Path) -> None:
    """Rates kept for another genai-prices install (another key) are ignored, and rewritten."""
    path = tmp_path / "prices.json"
    u = Usage(input_tokens=10_000, output_tokens=1_000)
    Pricer(rates_cache=path).cost_of_many("openai", "gpt-5", [u])
    saved = json.loads(path.read_text())
    saved["entries"]["openai/gpt-5"]["tiers"] = [[999_999, 0, 0, 0, 999_999]]
    saved["key"][-1] += 1  # the price table changed since
    path.write_text(json.dumps(saved))
    assert (
        Pricer(rates_cache=path).cost_of_many("openai", "gpt-5", [u]) == Pricer().price("openai", "gpt-5", u).cost_usd
    )
    assert json.loads(path.read_text())["entries"]["openai/gpt-5"]["tiers"] != [[999_999, 0, 0, 0, 999_999]]


def test_prices_that_depend_on_the_date_are_not_kept(tmp_path: Path) -> None:
    """claude-sonnet-4-6 has a price from a start date on: resolved by each process, never from the file."""
    path = tmp_path / "prices.json"
    u = Usage(input_tokens=10_000, output_tokens=1_000)
    got = Pricer(rates_cache=path).cost_of_many("anthropic", "claude-sonnet-4-6", [u])
    assert got == Pricer().price("anthropic", "claude-sonnet-4-6", u).cost_usd
    assert not path.exists() or "anthropic/claude-sonnet-4-6" not in json.loads(path.read_text())["entries"]


def test_overrides_do_not_use_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    over = (PriceOverride("gpt-5", {"output": Decimal("7")}),)
    u = Usage(output_tokens=1_000_000)
    assert Pricer(over, rates_cache=path).cost_of_many("openai", "gpt-5", [u]) == Decimal(7)
    assert not path.exists()
