"""`agenttrail budget set|list|rm` and `agenttrail alerts` as a person runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import orjson
from sqlalchemy import insert

from agenttrail.store.database import open_engine
from agenttrail.store.tables import alert


def at(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", *args, "--db", db], capture_output=True, text=True, timeout=120
    )
    if check and p.returncode != 0:
        raise AssertionError(f"agenttrail {' '.join(args)} failed: {p.stderr}")
    return p


def test_budget_set_list_change_rm(db_url: str, home: str) -> None:
    at("team", "add", "payments", db=db_url)
    at("engineer", "add", "ana@example.com", "--team", "payments", db=db_url)
    key = at("key", "create", "--team", "payments", db=db_url).stdout.split()[0]
    out = at(
        "budget", "set", "--team", "payments", "--usd", "500", "--period", "month", "--owner", "lead@x.io", db=db_url
    )
    assert 'team "payments" monthly budget $500.00 (alerts at 50%, 80%, 100%, owner lead@x.io)' in out.stdout
    at(
        "budget",
        "set",
        "--engineer",
        "ana@example.com",
        "--usd",
        "20",
        "--period",
        "day",
        "--soft-pct",
        "90",
        db=db_url,
    )
    at("budget", "set", "--key", key[:12], "--usd", "5", "--period", "week", db=db_url)
    at("budget", "set", "--org", "--usd", "10000", "--period", "total", db=db_url)
    at("budget", "set", "--team", "payments", "--usd", "600", "--period", "month", db=db_url)  # a change, not a second
    rows = json.loads(at("budget", "list", "--format", "json", db=db_url).stdout)
    got = {(r["scope"], r["name"], r["period"], r["limit_usd"], r["alerts_pct"]) for r in rows}
    assert got == {
        ("team", "payments", "month", 600.0, "50,80,100"),
        ("engineer", "ana@example.com", "day", 20.0, "90"),
        ("key", f"{key[:12]}…", "week", 5.0, "50,80,100"),
        ("org", "(organisation)", "total", 10000.0, "50,80,100"),
    }
    team_budget = next(r for r in rows if r["scope"] == "team")
    assert team_budget["spent_usd"] == 0 and team_budget["remaining_usd"] == 600.0
    assert next(r for r in rows if r["scope"] == "org")["resets"] == "never"
    assert "removed budget" in at("budget", "rm", str(team_budget["id"]), db=db_url).stdout
    assert len(json.loads(at("budget", "list", "-f", "json", db=db_url).stdout)) == 3


def test_budget_errors_are_one_clear_line(db_url: str, home: str) -> None:
    at("team", "add", "payments", db=db_url)
    cases = [
        (["--team", "payments", "--org"], "exactly one of"),
        (["--team", "nobody"], 'no team "nobody"'),
        (["--team", "payments", "--period", "year"], "--period must be one of day, week, month, total"),
        (["--team", "payments", "--usd", "-3"], "non-negative"),
        (["--team", "payments", "--usd", "1e12"], "--usd must be at most 1,000,000,000"),
        (["--team", "payments", "--soft-pct", "50,abc"], "percentages"),
    ]
    for extra, msg in cases:
        args = ["budget", "set", "--usd", "5", "--period", "month", *extra]
        # later options win, so a case may override --usd or --period
        p = at(*args, db=db_url, check=False)
        assert p.returncode == 1 and msg in p.stderr, (extra, p.stderr)
        assert "Traceback" not in p.stderr
    p = at("budget", "rm", "42", db=db_url, check=False)
    assert p.returncode == 1 and "no budget 42" in p.stderr


def test_alerts_lists_what_was_raised(db_url: str, home: str) -> None:
    engine = open_engine(db_url)
    payload = {"budget": 'team "payments" monthly budget', "spent_usd": "400.1", "owner": "lead@x.io", "message": "m"}
    with engine.begin() as conn:
        conn.execute(
            insert(alert).values(
                budget_id=1,
                period_start=datetime(2026, 11, 1),
                threshold_pct=80,
                created_at=datetime(2026, 11, 20),
                delivered_at=datetime(2026, 11, 20),
                attempts=2,
                last_error=None,
                payload=orjson.dumps(payload).decode(),
            )
        )
    (row,) = json.loads(at("alerts", "--format", "json", db=db_url).stdout)
    assert row["budget"] == 'team "payments" monthly budget' and row["threshold_pct"] == 80
    assert row["attempts"] == 2 and row["owner"] == "lead@x.io" and row["delivered_at"].startswith("2026-11-20")
