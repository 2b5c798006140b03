"""Every report's figures on the hand-built organisation equal what this file computes from the spec."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from agenttrail.reports.base import Filters
from agenttrail.reports.registry import ReportError, run_report
from agenttrail.store.database import open_engine

from .handbuilt import (
    FIND,
    NO_SESSION,
    PAY,
    PRS,
    SESSIONS,
    TEAMS,
    W19,
    Org,
    build_org,
    by_sid,
    pr_costs,
    pr_sessions,
)

approx = pytest.approx


@pytest.fixture
def org(db_url: str) -> Org:
    return build_org(open_engine(db_url))


def p90(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def records(org: Org, report: str, section: str, f: Filters | None = None, **opts: object) -> list[dict[str, object]]:
    rep = run_report(org.engine, report, f or Filters(), opts)
    return rep.to_json()["sections"][section]  # type: ignore[no-any-return]


def test_seed_query_runs_as_written(org: Org) -> None:
    q = (
        "SELECT engineer, repo, SUM(cost_usd), SUM(files_changed) FROM sessions "
        "WHERE week = '2026-W19' GROUP BY engineer, repo"
    )
    with org.engine.connect() as conn:
        got = {(r[0], r[1]): (float(r[2]), int(r[3])) for r in conn.execute(text(q))}
    want: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for s in SESSIONS:
        if s.week == "2026-W19":
            want[(s.engineer, s.repo)][0] += s.cost
            want[(s.engineer, s.repo)][1] += len(s.files)
    assert got.keys() == want.keys()
    for k, (cost, files) in want.items():
        assert got[k] == (approx(cost), files)


def test_sessions_view_roll_up(org: Org) -> None:
    with org.engine.connect() as conn:
        rows = {r.session_id: r for r in conn.execute(text("SELECT * FROM sessions"))}
    assert set(rows) == {s.sid for s in SESSIONS}
    merged = {sid for sids in pr_sessions().values() for sid in sids}
    for s in SESSIONS:
        r = rows[s.sid]
        assert (r.team, r.repo, r.engineer, r.agent, r.week) == (s.team, s.repo, s.engineer, s.agent, s.week)
        assert r.cost_usd == approx(s.cost) and r.calls == len(s.calls) and r.model == s.model
        assert r.lines_changed == s.lines and r.files_changed == 2 and r.commands == s.commands
        assert r.packages == len(s.packages) and r.merged == (1 if s.sid in merged else 0)
        assert float(r.duration_s) == approx(s.minutes * 60)
        assert set(r.models.split(",")) == {m for m, _ in s.calls}


def test_adoption(org: Org) -> None:
    rows = {r["week"]: r for r in records(org, "adoption", "by_week")}
    roster = sum(len(v) for v in TEAMS.values())
    for week in ("2026-W19", "2026-W20"):
        ss = [s for s in SESSIONS if s.week == week]
        active = {s.engineer for s in ss}
        r = rows[week]
        assert r["active_engineers"] == len(active) and r["roster"] == roster
        assert r["active_share"] == approx(len(active) / roster)
        assert r["sessions"] == len(ss) and r["repos"] == len({s.repo for s in ss})
        assert r["agent_hours"] == approx(sum(s.minutes for s in ss) / 60)
    by_agent = {(r["week"], r["agent"]): r["sessions"] for r in records(org, "adoption", "by_agent")}
    assert by_agent[("2026-W19", "codex")] == len([s for s in SESSIONS if s.week == "2026-W19" and s.agent == "codex"])
    team = {r["week"]: r for r in records(org, "adoption", "by_week", Filters(team="search"))}
    assert team["2026-W19"]["roster"] == len(TEAMS["search"]) and team["2026-W19"]["active_engineers"] == 2


def test_spend_by_dimensions(org: Org) -> None:
    team = {r["team"]: r["cost_usd"] for r in records(org, "spend", "by_team", by="team")}
    want_team: dict[str, float] = defaultdict(float)
    for s in SESSIONS:
        want_team[s.team] += s.cost
    for t, c, _ in NO_SESSION:
        want_team[t] += c
    assert team == approx(dict(want_team))

    model = {r["model"]: r["cost_usd"] for r in records(org, "spend", "by_model", by="model")}
    want_model: dict[str, float] = defaultdict(float)
    for s in SESSIONS:
        for m, c in s.calls:
            want_model[m] += c
    want_model["claude-sonnet-4-5"] += sum(c for _, c, _ in NO_SESSION)
    assert model == approx(dict(want_model))

    repo = {r["repo"]: r["cost_usd"] for r in records(org, "spend", "by_repo", by="repo")}
    assert repo == approx(
        {
            PAY: sum(s.cost for s in SESSIONS if s.repo == PAY),
            FIND: sum(s.cost for s in SESSIONS if s.repo == FIND),
            "(no session)": sum(c for _, c, _ in NO_SESSION),
        }
    )
    agent = {r["agent"]: r["cost_usd"] for r in records(org, "spend", "by_agent", by="agent")}
    assert agent["codex"] == approx(sum(s.cost for s in SESSIONS if s.agent == "codex"))

    week = {r["week"]: r["cost_usd"] for r in records(org, "spend", "by_week", by="period")}
    w19 = sum(s.cost for s in SESSIONS if s.week == "2026-W19") + NO_SESSION[0][1]
    assert week["2026-W19"] == approx(w19)

    # A period that is not whole days is answered from the calls themselves, with the same figures.
    f = Filters(since=W19.replace(tzinfo=None) + timedelta(hours=0.5), until=datetime(2026, 6, 1))
    exact = {r["team"]: r["cost_usd"] for r in records(org, "spend", "by_team", f, by="team")}
    assert exact["payments"] == approx(want_team["payments"] - by_sid()["p1"].cost)

    # Filters: one team, one repo.
    only = records(org, "spend", "by_engineer", Filters(team="search", repo=FIND), by="engineer")
    assert {r["engineer"]: r["cost_usd"] for r in only} == approx({"cara@acme.test": 4.0, "dan@acme.test": 2.0})


def test_shipped(org: Org) -> None:
    costs = pr_costs()
    agent_costs = {k: v for k, v in costs.items() if pr_sessions()[k]}
    overall = records(org, "shipped", "overall")[0]
    vals = sorted(agent_costs.values())
    assert overall["merged_prs"] == len(PRS) and overall["agent_prs"] == len(agent_costs)
    assert overall["median_usd_per_pr"] == approx(statistics.median(vals))
    assert overall["p90_usd_per_pr"] == approx(p90(vals))

    by_repo = {r["repo"]: r for r in records(org, "shipped", "by_repo")}
    for repo in (PAY, FIND):
        v = [c for (r, _), c in agent_costs.items() if r == repo]
        assert by_repo[repo]["median_usd_per_pr"] == approx(statistics.median(v))
        assert by_repo[repo]["p90_usd_per_pr"] == approx(p90(v))
        assert by_repo[repo]["merged_prs"] == len([p for p in PRS if p[0] == repo])
    assert by_repo[PAY]["median_usd_per_pr"] == approx(2.5)  # 1.0 + 1.5 for #1; 2.0 + 1.2/2 for #2; 0.6 + 0.9 for #3

    by_team = {r["team"]: r for r in records(org, "shipped", "by_team")}
    team_costs = [c for (r, _), c in agent_costs.items() if r == PAY]
    assert by_team["payments"]["median_usd_per_pr"] == approx(statistics.median(team_costs))
    assert by_team["payments"]["p90_usd_per_pr"] == approx(p90(team_costs))

    shares = {r["bucket"]: r for r in records(org, "shipped", "shares")}
    merged_sids = {sid for sids in pr_sessions().values() for sid in sids}
    merged = sum(s.cost for s in SESSIONS if s.sid in merged_sids)
    unmerged = sum(s.cost for s in SESSIONS if s.sid not in merged_sids)
    none = sum(c for _, c, _ in NO_SESSION)
    total = merged + unmerged + none
    assert shares["merged work"]["cost_usd"] == approx(merged)
    assert shares["unmerged sessions"]["share"] == approx(unmerged / total)
    assert shares["no session"]["share"] == approx(none / total)

    # Only PRs merged in W20: pay #2, #3, #4.
    f = Filters(since=datetime(2026, 5, 11), until=datetime(2026, 5, 18), repo=PAY)
    w20 = records(org, "shipped", "by_repo", f)
    assert [r["merged_prs"] for r in w20] == [3]
    assert w20[0]["median_usd_per_pr"] == approx(statistics.median([costs[(PAY, 2)], costs[(PAY, 3)]]))


def test_outliers_flag_the_expensive_session(org: Org) -> None:
    def z_scores(xs: list[float]) -> list[float]:
        m = statistics.median(xs)
        mad = statistics.median([abs(x - m) for x in xs])
        return [0.6745 * (x - m) / mad for x in xs]

    pay = [s for s in SESSIONS if s.repo == PAY]
    xs = [math.log(s.cost / (s.lines + 1)) for s in pay]
    want = {s.sid: z for s, z in zip(pay, z_scores(xs), strict=True) if z > 3.5}
    assert set(want) == {"p6"}
    rows = records(org, "outliers", "sessions")
    assert [r["session_id"] for r in rows] == ["p6"]
    r = rows[0]
    assert r["robust_z"] == approx(want["p6"])
    assert r["usd_per_line"] == approx(5.0 / 5)
    assert r["repo_median_usd_per_line"] == approx(math.exp(statistics.median(xs)))
    # FIND has 3 sessions: too few to score.
    assert {b["repo"] for b in records(org, "outliers", "repos")} == {PAY}
    # The same under team and repo filters (the second pass qualifies its columns).
    scoped = records(org, "outliers", "sessions", Filters(team="payments", repo=PAY))
    assert [r["session_id"] for r in scoped] == ["p6"]


def test_models(org: Org) -> None:
    rows = {(r["repo"], r["model"]): r for r in records(org, "models", "by_repo_model")}
    merged_sids = {sid for sids in pr_sessions().values() for sid in sids}
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for s in SESSIONS:
        groups[(s.repo, s.model)].append(s)
    assert rows.keys() == groups.keys()
    for k, ss in groups.items():
        cost, lines = sum(s.cost for s in ss), sum(s.lines for s in ss)
        r = rows[k]
        assert r["sessions"] == len(ss) and r["cost_usd"] == approx(cost)
        assert r["usd_per_line"] == approx(cost / lines)
        assert r["usd_per_file"] == approx(cost / (2 * len(ss)))
        assert r["merged_share"] == approx(len([s for s in ss if s.sid in merged_sids]) / len(ss))


def test_packages_answers_event_stream(org: Org) -> None:
    f = Filters(since=datetime(2026, 5, 20) - timedelta(days=90), until=datetime(2026, 5, 20))
    rows = records(org, "packages", "installs", f, name="event-stream")
    assert len(rows) == 1
    r = rows[0]
    assert (r["engineer"], r["repo"], r["session_id"], r["version_spec"]) == ("ben@acme.test", PAY, "p3", "3.3.6")
    assert r["ts"].startswith("2026-05-04T11:00:10")
    assert records(org, "packages", "installs", Filters(since=datetime(2026, 6, 1)), name="event-stream") == []
    summary = {r["name"]: r for r in records(org, "packages", "by_package")}
    assert summary["requests"]["engineers"] == 1 and summary["event-stream"]["installs"] == 1


def test_unknown_report_and_options_are_refused(org: Org) -> None:
    with pytest.raises(ReportError, match="no report named"):
        run_report(org.engine, "vibes", Filters())
    with pytest.raises(ReportError, match="does not take"):
        run_report(org.engine, "models", Filters(), {"by": "team"})


def test_spend_over_months_and_days_matches_the_calls(org: Org) -> None:
    """Whole months come from the monthly roll-up, the days around them from the daily one."""
    from agenttrail.store.tables import llm_call

    extra = [
        ("2026-04-14 23:00", 0.5),
        ("2026-04-30 12:00", 0.25),
        ("2026-06-01 00:00", 0.125),
        ("2026-06-10 00:00", 8.0),
    ]
    with org.engine.begin() as conn:
        for i, (when, cost) in enumerate(extra):
            conn.execute(
                llm_call.insert().values(
                    call_id=f"edge-{i}",
                    started_at=datetime.fromisoformat(when),
                    team_id=org.team_ids["search"],
                    provider="openai",
                    model="gpt-5",
                    cost_usd=cost,
                    status="ok",
                )
            )
    f = Filters(since=datetime(2026, 4, 15), until=datetime(2026, 6, 10))
    with org.engine.connect() as conn:
        want = dict(
            conn.execute(
                text(
                    "SELECT team, SUM(cost_usd) FROM llm_calls WHERE started_at >= :a AND started_at < :b GROUP BY team"
                ),
                {"a": f.since, "b": f.until},
            ).all()
        )
    got = {r["team"]: r["cost_usd"] for r in records(org, "spend", "by_team", f, by="team")}
    assert got == approx(want)
    months = {r["month"]: r["cost_usd"] for r in records(org, "spend", "by_month", f, by="month")}
    assert months["2026-04"] == approx(0.25) and months["2026-06"] == approx(0.125)
    assert sum(months.values()) == approx(sum(want.values()))
