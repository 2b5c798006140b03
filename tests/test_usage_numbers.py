"""Token counts that are numbers without an integer (infinity, NaN) count as 0 or as unreadable, never a
crash: an OTLP sender or a hand-edited transcript can carry them (OTLP/JSON and some JSON parsers accept
"Infinity"), and one such field must not stop an import or fail a request."""

from __future__ import annotations

import pytest

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
