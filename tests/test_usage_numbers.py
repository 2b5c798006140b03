"""Token counts that are numbers without an integer (infinity, NaN) count as 0 or as unreadable, never a
crash: an OTLP sender or a hand-edited transcript can carry them (OTLP/JSON and some JSON parsers accept
"Infinity"), and one such field must not stop an import or fail a request."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agenttrail.importers import otlp
from agenttrail.usage import Usage

NO_INT = [float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize("v", [*NO_INT, "inf", "NaN", "-Infinity"])
def test_an_otlp_number_without_an_int_is_unreadable(v: object) -> None:
    assert otlp._int(v) is None


def test_otlp_numbers_still_read() -> None:
    assert [otlp._int(v) for v in (7, 7.9, "12", "1e3", True, "x")] == [7, 7, 12, 1000, 1, None]


@pytest.mark.parametrize("v", NO_INT)
def test_a_usage_field_without_an_int_counts_zero(v: float) -> None:
    u = Usage.from_anthropic({"input_tokens": v, "output_tokens": 5, "cache_read_input_tokens": 3})
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens) == (0, 5, 3)
    o = Usage.from_openai({"prompt_tokens": 10, "completion_tokens": v})
    assert o.output_tokens == 0


# ------------------------------------------------------------------ from_anthropic's fast path


def reference_from_anthropic(u: dict[str, object] | None) -> Usage:
    """`Usage.from_anthropic` as written before its fast path: every field through `token_count`."""
    from agenttrail.usage import token_count

    u = u or {}
    write_total = token_count(u.get("cache_creation_input_tokens"))
    detail = u.get("cache_creation")
    w5 = w1 = 0
    if isinstance(detail, dict):
        w5 = token_count(detail.get("ephemeral_5m_input_tokens"))
        w1 = token_count(detail.get("ephemeral_1h_input_tokens"))
    if w5 + w1 != write_total:
        w5, w1 = write_total, 0
    return Usage(
        input_tokens=token_count(u.get("input_tokens")),
        cache_read_tokens=token_count(u.get("cache_read_input_tokens")),
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
        output_tokens=token_count(u.get("output_tokens")),
    )


_ODD_NUMBER = st.one_of(
    st.integers(-3, 50), st.integers(), st.booleans(), st.none(), st.floats(), st.text(max_size=2), st.just([])
)
_ANTHROPIC_FIELDS = ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens", "x"]
_TTL_FIELDS = ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "y"]


@st.composite
def anthropic_usages(draw: st.DrawFn) -> object:
    u: dict[str, object] = draw(st.dictionaries(st.sampled_from(_ANTHROPIC_FIELDS), _ODD_NUMBER))
    if draw(st.booleans()):
        detail = draw(st.dictionaries(st.sampled_from(_TTL_FIELDS), _ODD_NUMBER))
        if draw(st.booleans()) and all(type(detail.get(k, 0)) is int for k in _TTL_FIELDS[:2]):
            u["cache_creation_input_tokens"] = sum(int(detail.get(k, 0)) for k in _TTL_FIELDS[:2])  # type: ignore[call-overload]
        u["cache_creation"] = detail
    elif draw(st.booleans()):
        u["cache_creation"] = draw(_ODD_NUMBER)
    return draw(st.one_of(st.just(u), st.none()))


@settings(max_examples=500)
@given(anthropic_usages())
@example({"input_tokens": 5, "cache_creation_input_tokens": -4, "output_tokens": 1})
@example({"input_tokens": 5, "cache_creation_input_tokens": 4, "cache_creation": {"ephemeral_5m_input_tokens": 4}})
@example({"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_creation": {"ephemeral_1h_input_tokens": -1}})
@example({"input_tokens": 5, "cache_creation_input_tokens": None, "cache_creation": None})
def test_from_anthropic_fast_path_matches_the_field_by_field_rule(u: dict[str, object] | None) -> None:
    assert Usage.from_anthropic(u) == reference_from_anthropic(u)
