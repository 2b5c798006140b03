"""The order statistics the reports use, against the standard library."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.reports.stats import MAD_SCALE, mad, median, p90, quantile, robust_z

floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(floats, min_size=2, max_size=50))
def test_quantiles_match_statistics_inclusive(values: list[float]) -> None:
    assert median(values) == pytest.approx(statistics.median(values), abs=1e-6)
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    assert p90(values) == pytest.approx(deciles[8], abs=1e-6)


def test_edges() -> None:
    assert median([]) is None and p90([3.0]) == 3.0 and quantile([1, 2, 3, 4], 0.5) == 2.5
    assert p90(range(1, 11)) == pytest.approx(9.1)
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_robust_z_uses_mad_and_falls_back_when_it_is_zero() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 100.0]
    zs, m, spread = robust_z(xs)
    assert m == 3.0 and spread == mad(xs) == 1.0
    assert zs[-1] == pytest.approx(MAD_SCALE * 97)
    same = [1.0, 1.0, 1.0, 1.0, 9.0]  # MAD is 0: the mean absolute deviation stands in
    zs, m, spread = robust_z(same)
    assert spread == pytest.approx(8 / 5) and zs[-1] == pytest.approx(8 / (1.2533 * 1.6))
    assert robust_z([2.0, 2.0]) == ([None, None], 2.0, 0.0)
