"""Outliers in sessions without a repo are found like those of a named repo (they form one group)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.events import Event
from agenttrail.reports.base import Filters
from agenttrail.reports.outliers import outliers, repo_rule
from agenttrail.reports.stats import robust_z
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
# (session, repo, cost, lines): in each group one session spends far more per line than the rest.
SPEC = [
    *((f"a{i}", "github.com/acme/api", 1.0 + 0.1 * i, 50 + i) for i in range(6)),
    ("a-hot", "github.com/acme/api", 40.0, 10),
    *((f"n{i}", None, 2.0 + 0.1 * i, 80 - i) for i in range(6)),
    ("n-hot", None, 60.0, 5),
]


def _events(sid: str, repo: str | None, cost: float, lines: int, k: int) -> list[Event]:
    t = T0 + timedelta(hours=k)
    start = {"engineer": f"e{k % 4}@acme.test", "agent": "claude-code", **({"repo": repo} if repo else {})}
    record = {"provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": cost}
    return [
        Event(sid, "session_start", t, start),
        Event(sid, "file_write", t, {"source": "snapshot", "path": "a.py", "lines_added": lines}),
        Event(sid, "llm_call", t, {"record": record}),
        Event(sid, "session_end", t + timedelta(minutes=10), {"exit_code": 0}),
    ]


def _flagged(rows: list[tuple[str, str | None, float, int]]) -> dict[str, float]:
    xs = [math.log(cost / (lines + 1)) for _, _, cost, lines in rows]
    m = statistics.median(xs)
    mad = statistics.median([abs(x - m) for x in xs])
    return {sid: 0.6745 * (x - m) / mad for (sid, *_), x in zip(rows, xs, strict=True) if 0.6745 * (x - m) / mad > 3.5}


def test_sessions_without_a_repo_are_scored_and_flagged(db_url: str) -> None:
    engine = open_engine(db_url)
    ingest(engine, [e for k, (sid, repo, cost, lines) in enumerate(SPEC) for e in _events(sid, repo, cost, lines, k)])
    want: dict[str, float] = {}
    for repo in ("github.com/acme/api", None):
        want |= _flagged([s for s in SPEC if s[1] == repo])
    assert set(want) == {"a-hot", "n-hot"}
    got = {r[0]: r for r in outliers(engine, Filters()).sections[0].rows}
    assert got.keys() == want.keys()
    for sid, z in want.items():
        assert got[sid][-1] == pytest.approx(z)
    assert got["n-hot"][2] is None and got["a-hot"][2] == "github.com/acme/api"


def _rule_by_robust_z(xs: list[float], threshold: float) -> tuple[float, float, float | None, list[float | None]]:
    """What `repo_rule` must equal: `robust_z` over the values, every z computed, the smallest hit."""
    zs, m, spread = robust_z(xs)
    assert m is not None and spread is not None
    above = [(x, z) for x, z in zip(xs, zs, strict=True) if (x > m if threshold > 0 else True)]
    hits = [x for x, z in above if z is not None and z > threshold]
    return m, spread, (min(hits) if hits else None), zs


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-12, max_value=6, allow_nan=False),
            st.sampled_from([-3.0, -2.5, 0.0, 1.25]),  # ties, and more than half equal (MAD 0)
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([3.5, 1.0, 0.0, -0.5]),
)
def test_repo_rule_is_robust_z_exactly(xs: list[float], threshold: float) -> None:
    """The per-repo rule (one sort, MAD from the two sorted halves, the first hit by bisection) gives
    the same floats as scoring every value with `robust_z`: median, spread, each z, the bound."""
    m, z_of, spread, first = repo_rule(list(xs), threshold)
    want_m, want_spread, want_first, want_zs = _rule_by_robust_z(list(xs), threshold)
    assert (m, spread, first) == (want_m, want_spread, want_first)
    assert [z_of(x) for x in xs] == want_zs
