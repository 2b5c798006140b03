"""Reports that compute on a different path per database give the same figures on the same data.

The hand-built organisation is built on SQLite and on PostgreSQL; every report, unfiltered and under
each filter, must agree (counts and names exactly, money up to float summation order). And on
PostgreSQL, where shipped's medians and p90s come from percentile_cont, the Python path on the same
database must give the same report.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest

from agenttrail.reports import shipped as shipped_mod
from agenttrail.reports.base import Filters
from agenttrail.reports.registry import run_report
from agenttrail.store.database import open_engine

from .handbuilt import FIND, PAY, W19, build_org

FILTERS = [
    Filters(),
    Filters(since=W19.replace(tzinfo=None), until=datetime(2026, 5, 11)),
    Filters(team="payments"),
    Filters(repo=PAY),
    Filters(team="search", repo=FIND),
]
REPORTS: list[tuple[str, dict[str, Any]]] = [
    ("adoption", {}),
    ("shipped", {}),
    ("outliers", {"threshold": 0.5}),
    ("outliers", {}),
    ("models", {}),
    ("spend", {"by": "team"}),
    ("spend", {"by": "repo"}),
]


def same(a: Any, b: Any) -> bool:
    """Equal, floats up to summation order (and SQLite's durations, from julianday: 1e-9 relative)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-12)
    return bool(a == b)


def assert_same_report(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["sections"].keys() == b["sections"].keys()
    for name, rows_a in a["sections"].items():
        rows_b = b["sections"][name]
        assert len(rows_a) == len(rows_b), name
        # Rows whose sort key ties may come in either order: compare them in a canonical order.
        key = lambda r: [str(v) for v in r.values() if not isinstance(v, float)]  # noqa: E731
        for ra, rb in zip(sorted(rows_a, key=key), sorted(rows_b, key=key), strict=True):
            assert ra.keys() == rb.keys(), name
            assert all(same(ra[k], rb[k]) for k in ra), (name, ra, rb)


def test_sqlite_and_postgresql_give_the_same_reports(sqlite_url: str, pg_url: str) -> None:
    lite, pg = open_engine(sqlite_url), open_engine(pg_url)
    build_org(lite)
    build_org(pg)
    for name, opts in REPORTS:
        for f in FILTERS:
            assert_same_report(run_report(lite, name, f, opts).to_json(), run_report(pg, name, f, opts).to_json())


def test_shipped_statistics_in_postgresql_equal_the_python_path(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(pg_url)
    build_org(engine)
    assert shipped_mod.stats_in_sql(engine)
    in_sql = [run_report(engine, "shipped", f, {}).to_json() for f in FILTERS]
    monkeypatch.setattr(shipped_mod, "stats_in_sql", lambda engine: False)
    in_python = [run_report(engine, "shipped", f, {}).to_json() for f in FILTERS]
    for a, b in zip(in_sql, in_python, strict=True):
        assert_same_report(a, b)
    assert any(a["sections"]["overall"][0]["agent_prs"] for a in in_sql)
