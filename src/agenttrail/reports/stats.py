"""Order statistics and the robust z-score, in plain Python (no numpy at run time).

Quantiles interpolate linearly between order statistics (the "inclusive" method: numpy's default and
`statistics.quantiles(..., method="inclusive")`), so a median of an even count is the mean of the two
middle values and p90 of [1..10] is 9.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# 0.6745 is the 0.75 quantile of the standard normal: it makes MAD-based z comparable to an ordinary
# z-score for normal data (Iglewicz & Hoaglin), and 3.5 is their suggested outlier threshold.
MAD_SCALE = 0.6745
OUTLIER_Z = 3.5
# When more than half the values are equal the MAD is 0; the mean absolute deviation times
# sqrt(pi/2) estimates the same spread for normal data and is then used instead.
MEAN_AD_SCALE = 1.2533


def quantile_sorted(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of already sorted values; None for no values."""
    n = len(values)
    if n == 0:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(values[lo]) + (float(values[hi]) - float(values[lo])) * frac


def quantile(values: Iterable[float], q: float) -> float | None:
    return quantile_sorted(sorted(values), q)


def median(values: Iterable[float]) -> float | None:
    return quantile(values, 0.5)


def p90(values: Iterable[float]) -> float | None:
    return quantile(values, 0.9)


def mad(values: Sequence[float], center: float | None = None) -> float | None:
    """Median absolute deviation from the median (or from `center`)."""
    if not values:
        return None
    c = median(values) if center is None else center
    assert c is not None
    return median(abs(v - c) for v in values)


def robust_z(values: Sequence[float]) -> tuple[list[float | None], float | None, float | None]:
    """(z for each value, median, the spread used). z is None for every value when the spread is 0
    (all values equal: nothing stands out)."""
    if not values:
        return [], None, None
    m = median(values)
    assert m is not None
    spread = mad(values, m) or 0.0
    if spread > 0:
        return [MAD_SCALE * (v - m) / spread for v in values], m, spread
    mean_ad = sum(abs(v - m) for v in values) / len(values)
    if mean_ad > 0:
        # z = (v - m) / (1.2533 * meanAD), the documented fallback when MAD is 0.
        return [(v - m) / (MEAN_AD_SCALE * mean_ad) for v in values], m, mean_ad
    return [None] * len(values), m, 0.0
