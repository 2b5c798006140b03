"""seed-demo: a deterministic organisation through the real ingest and link paths; seeding twice changes nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime

from sqlalchemy import Engine, text

from agenttrail.reports.base import Filters
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.reports.registry import run_report
from agenttrail.store.database import open_engine

END = date(2026, 5, 29)


def _figures(engine: Engine) -> tuple[object, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(text(q)).scalar()
            for q in (
                "SELECT COUNT(*) FROM sessions",
                "SELECT COUNT(*) FROM events",
                "SELECT SUM(total_tokens) FROM llm_calls",
                "SELECT COUNT(*) FROM pull_requests",
                "SELECT COUNT(*) FROM pr_sessions",
                "SELECT SUM(merged) FROM sessions",
                "SELECT COUNT(*) FROM engineers",
            )
        )


def test_seed_demo_is_deterministic_and_idempotent(db_url: str, sqlite_url: str) -> None:
    engine = open_engine(db_url)
    stats = DemoOrg(engine, engineers=10, days=14, seed=7, end=END, batch_events=3000).run()
    first = _figures(engine)
    assert stats.sessions == first[0] and stats.events == first[1] and stats.pull_requests == first[3]
    assert first[0] > 50 and first[3] > 10 and first[5] > 0
    DemoOrg(engine, engineers=10, days=14, seed=7, end=END).run()
    assert _figures(engine) == first  # the same ids: nothing new

    other = open_engine(sqlite_url) if db_url != sqlite_url else None
    if other is not None:
        DemoOrg(other, engineers=10, days=14, seed=7, end=END).run()
        assert _figures(other) == first  # the same organisation on the other database

    pkgs = run_report(engine, "packages", Filters(since=datetime(2026, 3, 1)), {"name": "event-stream"})
    installs = pkgs.section("installs").records()
    assert len(installs) == 1 and installs[0]["repo"].startswith("github.com/demo-org/")
    shipped = run_report(engine, "shipped", Filters()).section("overall").records()[0]
    assert shipped["agent_prs"] > 0 and shipped["median_usd_per_pr"] > 0


def test_seed_demo_cli(sqlite_url: str, home: str) -> None:
    args = ["--engineers", "4", "--days", "3", "--end", "2026-05-29", "--db", sqlite_url]
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", "seed-demo", *args], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    assert "sessions" in p.stdout and "merged PRs" in p.stdout


def test_seed_demo_refuses_what_it_cannot_build_in_one_line(sqlite_url: str, home: str) -> None:
    cases = [
        (["--days", "1000000"], "--days"),  # before the year 1: an OverflowError traceback
        (["--end", "9999-12-31"], "--end"),  # after what the reports can read
        (["--engineers", "100000000"], "--engineers"),  # went on creating teams for hours, saying nothing
    ]
    for args, needle in cases:
        p = subprocess.run(
            [sys.executable, "-m", "agenttrail", "seed-demo", *args, "--db", sqlite_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1 and "Traceback" not in p.stderr, (args, p.stderr)
        assert p.stderr.startswith("error: ") and needle in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
