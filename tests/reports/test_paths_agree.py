"""Reports that compute on a different path per database give the same figures on the same data.

The hand-built organisation is built on SQLite and on PostgreSQL; every report, unfiltered and under
each filter, must agree (counts and names exactly, money up to float summation order). And on
PostgreSQL, where shipped's medians and p90s come from percentile_cont, the Python path on the same
database must give the same report.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from agenttrail.reports import adoption as adoption_mod
from agenttrail.reports import shipped as shipped_mod
from agenttrail.reports.base import Filters, fetch, scan_col
from agenttrail.reports.demo_org import DemoOrg
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


def _rows_same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    key = lambda r: [str(v) for v in r if not isinstance(v, float)]  # noqa: E731
    return len(a) == len(b) and all(
        len(x) == len(y) and all(same(p, q) for p, q in zip(x, y, strict=True))
        for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True)
    )


def test_the_weekly_rollup_answers_as_the_sessions_for_any_period(db_url: str) -> None:
    """Adoption and shipped's spend shares read whole weeks from session_week and the pieces of weeks at
    a period's ends from the sessions: for periods cut anywhere (mid-week, on Mondays, within one
    week, open at either end), with and without a team, the same figures as the sessions alone."""
    engine = open_engine(db_url)
    DemoOrg(engine, engineers=10, days=30, seed=3, end=date(2026, 5, 29), batch_events=3000).run()
    team = fetch(engine, "SELECT team FROM sessions GROUP BY team ORDER BY COUNT(*) DESC LIMIT 1")[1][0][0]
    rng = random.Random(5)
    start = datetime(2026, 4, 27)  # a Monday, before the first session
    periods: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    for _ in range(14):
        a = start + timedelta(days=rng.randrange(36), hours=rng.choice((0, 0, rng.randrange(24))))
        b = a + timedelta(days=rng.randrange(0, 20), hours=rng.randrange(0, 48))
        periods += [(a, b), (None, b), (a, None)]
    with engine.begin() as conn:  # NULL and '' agents, engineers and repos (the roll-up's key has no NULL)
        for i, change in enumerate(("agent = NULL", "agent = ''", "repo = NULL", "engineer = NULL, agent = NULL")):
            ids = f"SELECT session_id FROM agent_session ORDER BY session_id LIMIT 9 OFFSET {9 * i}"
            conn.execute(text(f"UPDATE agent_session SET {change} WHERE session_id IN ({ids})"))
    for since, until in periods:
        for f in (Filters(since=since, until=until), Filters(since=since, until=until, team=team)):
            where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
            got, want = adoption_mod._from_rollup(engine, f), adoption_mod.from_sessions(engine, where, params)
            assert _rows_same(got[0], want[0]) and _rows_same(got[1], want[1]), f
            split = shipped_mod._split_from_sessions(engine, where, params)
            assert _rows_same([shipped_mod.spend_split(engine, f)], [tuple(float(v or 0) for v in split)]), f
            assert want[0] or since is not None, "the organisation has sessions"
