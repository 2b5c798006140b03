"""`_scan.sums`, the dry run's one-pass totalling of Usage records (`cli.import_._sum`): the same sums as
`sum_usages`, or None (and `sum_usages` then) for whatever it does not handle: another type, a field that
is not an int, a sum past 64 bits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.cli.import_ import _sum
from agenttrail.importers.jsonl import _scan
from agenttrail.usage import Usage, sum_usages

pytestmark = pytest.mark.skipif(_scan is None, reason="the native scanner is not built")

_COUNT = st.one_of(st.integers(0, 10**7), st.integers(-(2**63), 2**64), st.sampled_from([2**63 - 1, 2**63, -1]))
usages = st.builds(Usage, _COUNT, _COUNT, _COUNT, _COUNT, _COUNT, _COUNT)


class Sub(Usage):
    __slots__ = ()


@given(st.lists(usages, max_size=30))
def test_sums_equal_sum_usages_or_decline(us: list[Usage]) -> None:
    got = _scan.sums(us, Usage())
    want = sum_usages(us)
    if got is None:  # only past 64 bits
        assert any(not -(2**63) <= getattr(u, f) < 2**63 for u in us for f in Usage.__slots__) or any(
            not -(2**63) <= sum(getattr(u, f) for u in us[:k]) < 2**63
            for f in Usage.__slots__
            for k in range(len(us) + 1)
        )
    else:
        assert Usage(*got) == want
    assert _sum(us) == want


def test_sums_of_ordinary_records() -> None:
    us = [Usage(1, 2, 3, 4, 5, 6), Usage(10, 20, 30, 40, 50, 60)]
    assert _scan.sums(us, Usage()) == (11, 22, 33, 44, 55, 66)
    assert _scan.sums([], Usage()) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "us",
    [
        [Usage(1), Usage(1.5)],  # type: ignore[arg-type]
        [Usage(1), Sub(2)],
        [Usage(True)],
        [Usage(2**63 - 1), Usage(1)],
    ],
)
def test_sums_decline_what_they_do_not_handle_and_sum_falls_back(us: list[Usage]) -> None:
    assert _scan.sums(us, Usage()) is None
    assert _sum(us) == sum_usages(us)
