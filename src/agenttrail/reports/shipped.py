"""What the spend shipped: dollars per merged pull request, and where the rest went.

A PR's cost is the cost of the sessions whose commits it merged; a session that reached several PRs
is split equally between them, so PR costs add up to the spend on merged work. By team, each (PR,
team) pair counts that team's sessions' part. PRs are those merged in the period; the spend shares
are of sessions started in the period, plus calls in it that carry no session at all.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share, split_weeks, team_names
from agenttrail.reports.spend import _no_session
from agenttrail.reports.stats import quantile_sorted

_STATS_COLS = ["median_usd_per_pr", "p90_usd_per_pr"]
NO_TEAM = "(none)"


def _stats(costs: list[float]) -> tuple[float | None, float | None]:
    s = sorted(costs)
    return quantile_sorted(s, 0.5), quantile_sorted(s, 0.9)


def shipped(engine: Engine, f: Filters) -> Report:
    names = team_names(engine)
    pr_where, pr_params = f.where(time_col="merged_at", team_col=None)
    # Each (PR, team) pair's linked sessions and their cost shares, kept by the pr_team roll-up
    # (migration 0011): reading and grouping every link with its session was 3.5-4 s at a million.
    pair_where = ""
    if f.since is not None or f.until is not None or f.repo is not None:
        pair_where += f" AND pr_id IN (SELECT pr_id FROM pull_requests WHERE {pr_where})"
    if f.team is not None:
        pair_where += " AND team_id = (SELECT team_id FROM teams WHERE team = :team)"
    pairs_sql = f"""
  SELECT pr_id, NULLIF(team_id, 0) AS team_id, sessions, cost_usd FROM pr_team WHERE sessions > 0{pair_where}"""
    params = {**pr_params, **({"team": f.team} if f.team is not None else {})}
    _, prs_by_repo = fetch(
        engine, f"SELECT repo, COUNT(*) FROM pull_requests WHERE {pr_where} GROUP BY repo", pr_params
    )
    merged_counts = {r: int(n) for r, n in prs_by_repo}
    if stats_in_sql(engine):
        team_rows, repo_rows, overall_row = _stats_by_sql(engine, pairs_sql, params, names)
    else:
        team_rows, repo_rows, overall_row = _stats_by_python(engine, pairs_sql, params, names)
    by_team = Section(
        "by_team",
        "$ per merged PR by team",
        ["team", "merged_prs", "sessions", "cost_usd", *_STATS_COLS],
        sorted(team_rows, key=lambda r: -r[3]),
    )
    by_repo_stats = {r[0]: r[1:] for r in repo_rows}
    by_repo_rows = []
    for repo in sorted(set(merged_counts) | set(by_repo_stats)):
        agent_prs, cost, median_usd, p90_usd = by_repo_stats.get(repo, (0, 0, None, None))
        count = agent_prs if f.team is not None else merged_counts.get(repo, 0)
        by_repo_rows.append((repo, count, agent_prs, cost, median_usd, p90_usd))
    by_repo_rows.sort(key=lambda r: -r[3])
    by_repo = Section(
        "by_repo",
        "$ per merged PR by repo",
        ["repo", "merged_prs", "agent_prs", "cost_usd", *_STATS_COLS],
        by_repo_rows,
    )
    agent_prs, cost, median_usd, p90_usd = overall_row
    merged_prs = agent_prs if f.team is not None else sum(merged_counts.values())
    overall = Section(
        "overall",
        "$ per merged PR",
        ["merged_prs", "agent_prs", "cost_usd", *_STATS_COLS],
        [(merged_prs, agent_prs, cost, median_usd, p90_usd)],
    )

    merged_cost, unmerged_cost = spend_split(engine, f)
    buckets: list[tuple[str, float]] = [
        ("merged work", float(merged_cost or 0)),
        ("unmerged sessions", float(unmerged_cost or 0)),
    ]
    if f.repo is None:
        buckets.append(("no session", _no_session(engine, f)[-1]))
    total = sum(cost for _, cost in buckets)
    shares = Section(
        "shares", "Where the spend went", ["bucket", "cost_usd", "share"], [(b, c, share(c, total)) for b, c in buckets]
    )
    notes = [
        "a session reaching several PRs is split equally between them",
        "PRs merged in the period; spend of sessions started in the period and of calls without a session",
    ]
    return Report("shipped", f, [overall, by_team, by_repo, shares], notes)


Stats = tuple[int, float, float | None, float | None]  # PRs, cost, median, p90


def spend_split(engine: Engine, f: Filters) -> tuple[float, float]:
    """Spend of the period's sessions that reached a merged PR, and of those that did not: whole weeks
    from the weekly roll-up (migration 0011), the pieces of weeks at the period's ends from the sessions.
    Under --repo from the sessions alone (read from the repo's index)."""
    if f.repo is not None:
        where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
        merged, unmerged = _split_from_sessions(engine, where, params)
        return float(merged or 0), float(unmerged or 0)
    split = split_weeks(f.since, f.until)
    team = " AND team_id = (SELECT team_id FROM teams WHERE team = :team)" if f.team is not None else ""
    params = {"team": f.team} if f.team is not None else {}
    parts: list[tuple[Any, Any]] = []
    if split.whole:
        where, week_params = split.where()
        sql = "SELECT SUM(merged_cost_usd), SUM(unmerged_cost_usd) FROM session_week WHERE sessions > 0"
        parts += fetch(engine, f"{sql} AND {where}{team}", {**week_params, **params})[1]
    pieces = split.pieces_where(engine)
    if pieces is not None:
        parts.append(_split_from_sessions(engine, pieces[0] + team, {**pieces[1], **params}))
    return sum(float(m or 0) for m, _ in parts), sum(float(u or 0) for _, u in parts)


def _split_from_sessions(engine: Engine, where: str, params: dict[str, Any]) -> tuple[Any, Any]:
    # Two sums in one pass, not GROUP BY merged: SQLite sorted a million rows for it.
    _, split = fetch(
        engine,
        "SELECT SUM(CASE WHEN merged = 1 THEN cost_usd END), SUM(CASE WHEN merged = 0 THEN cost_usd END) "
        f"FROM sessions WHERE {where}",
        params,
    )
    return split[0][0], split[0][1]


def stats_in_sql(engine: Engine) -> bool:
    """PostgreSQL computes the medians and p90s itself (percentile_cont interpolates exactly as
    `quantile_sorted` does: lo + (hi - lo) * frac at (n - 1) q), so 400,000 (PR, team) rows at a
    million sessions stay in the database; SQLite has no percentile function."""
    return engine.dialect.name == "postgresql"


def _stats_by_python(
    engine: Engine, pairs_sql: str, params: dict[str, Any], names: dict[int, str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], Stats]:
    """Every (PR, team) pair's cost read back, grouped by team id here and named after grouping; each
    PR's cost (its pairs' sum, in the roll-up's pr_id order) read with its repo, looked up once per PR
    rather than once per pair. At a million sessions (414,000 pairs) that halved the Python loop."""
    _, pairs = fetch(engine, f"SELECT y.team_id, y.sessions, y.cost_usd FROM ({pairs_sql}\n) y", params)
    by_tid: dict[Any, list[float]] = {}
    sessions_by_tid: dict[Any, int] = defaultdict(int)
    for tid, sessions, cost in pairs:
        costs = by_tid.get(tid)
        if costs is None:
            costs = by_tid[tid] = []
        costs.append(float(cost or 0))
        sessions_by_tid[tid] += sessions
    del pairs
    team_costs: dict[str, list[float]] = defaultdict(list)
    team_sessions: dict[str, int] = defaultdict(int)
    for tid, costs in by_tid.items():
        team = names.get(tid, NO_TEAM) if tid is not None else NO_TEAM
        team_costs[team] += costs
        team_sessions[team] += int(sessions_by_tid[tid])
    teams = [(t, len(c), team_sessions[t], sum(c), *_stats(c)) for t, c in team_costs.items()]
    _, prs = fetch(
        engine,
        f"SELECT p.repo, x.cost FROM (SELECT y.pr_id, SUM(y.cost_usd) AS cost FROM ({pairs_sql}\n) y "
        "GROUP BY y.pr_id) x CROSS JOIN pull_requests p WHERE p.pr_id = x.pr_id",
        params,
    )
    repo_costs: dict[str, list[float]] = defaultdict(list)
    for repo, cost in prs:
        repo_costs[repo].append(float(cost or 0))
    repos = [(r, len(c), sum(c), *_stats(c)) for r, c in repo_costs.items()]
    all_costs = [float(cost or 0) for _, cost in prs]
    return teams, repos, (len(all_costs), sum(all_costs), *_stats(all_costs))


def _stats_by_sql(
    engine: Engine, pairs_sql: str, params: dict[str, Any], names: dict[int, str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], Stats]:
    """The same figures grouped in the database: per team over its (PR, team) pairs, per repo and
    overall over PR costs (a PR's cost is its pairs' sum). A team id not in the directory counts as
    no team, as in the Python path. Teams are grouped by id, repos in byte order (the same groups as
    the text's own collation, sorted faster), and the PRs' repos are hash-joined: the planner chose
    140,000 index lookups (1 s of the 2.4 at load 6, against 0.15 s)."""
    stats = "percentile_cont(0.5) WITHIN GROUP (ORDER BY {v}), percentile_cont(0.9) WITHIN GROUP (ORDER BY {v})"
    _, rows = fetch(
        engine,
        f"""
WITH y AS ({pairs_sql}
)
SELECT 1, CAST(z.tid AS TEXT), COUNT(*), SUM(z.sessions), SUM(z.cost_usd), {stats.format(v="z.cost_usd")} FROM (
  SELECT CASE WHEN y.team_id IN (SELECT team_id FROM teams) THEN y.team_id END AS tid, y.sessions, y.cost_usd FROM y
) z GROUP BY z.tid
UNION ALL
SELECT 2 + GROUPING(p.repo COLLATE "C"), p.repo COLLATE "C", COUNT(*), 0, SUM(pr.cost), {stats.format(v="pr.cost")}
FROM (SELECT y.pr_id, SUM(y.cost_usd) AS cost FROM y GROUP BY y.pr_id) pr JOIN pull_requests p ON p.pr_id = pr.pr_id
GROUP BY GROUPING SETS ((p.repo COLLATE "C"), ())""",
        params,
        hash_joins=True,
    )
    teams, repos = [], []
    overall: Stats = (0, 0, None, None)  # as the Python path gives for no PRs: sum([]) is 0
    for kind, key, n, sessions, cost, median_usd, p90_usd in rows:
        figures = (int(n), float(cost or 0), _float(median_usd), _float(p90_usd))
        if kind == 1:
            team = names.get(int(key), NO_TEAM) if key is not None else NO_TEAM
            teams.append((team, figures[0], int(sessions), *figures[1:]))
        elif kind == 2:
            repos.append((key, *figures))
        elif n:
            overall = figures
    return teams, repos, overall


def _float(v: Any) -> float | None:
    return float(v) if v is not None else None
