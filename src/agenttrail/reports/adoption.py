"""Adoption: per ISO week, who used agents, how much, where, and with which agent.

The roster is the engineer directory as it is now (the team's, with --team); an engineer counts as
active in a week with at least one session that started in it.

Whole weeks come from the weekly roll-up `session_week` (migration 0011: one row per week, agent,
engineer, repo and team, a few per engineer-week), the pieces of weeks at a period's ends from the
sessions, grouped the same way; the distinct counts are then taken over both in one pass. Under
--repo the sessions are read directly (the repo's sessions are few, and read from an index).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share, split_weeks


def adoption(engine: Engine, f: Filters) -> Report:
    where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
    roster_where, roster_params = ("team = :team", {"team": f.team}) if f.team else ("1=1", {})
    _, roster_rows = fetch(engine, f"SELECT COUNT(*) FROM engineers WHERE {roster_where}", roster_params)
    roster = int(roster_rows[0][0])
    if f.repo is None:
        weeks, agents = _from_rollup(engine, f)
    elif engine.dialect.name == "postgresql":
        weeks, agents = _hashed(engine, where, params)
    else:
        weeks, agents = _in_index_order(engine, where, params)
    by_week = Section(
        "by_week",
        "Adoption by week",
        ["week", "active_engineers", "roster", "active_share", "sessions", "agent_hours", "repos", "cost_usd"],
        [
            (w, int(a), roster, share(int(a), roster), int(n), float(s or 0) / 3600, int(r), float(c or 0))
            for w, a, n, s, r, c in weeks
        ],
    )
    by_agent = Section(
        "by_agent",
        "Adoption by week and agent",
        ["week", "agent", "engineers", "sessions", "agent_hours", "cost_usd"],
        sorted(
            (
                (w, ag or "(unknown)", int(e), int(n), float(s or 0) / 3600, float(c or 0))
                for w, ag, e, n, s, c in agents
            ),
            key=lambda r: (r[0], -r[3]),
        ),
    )
    notes = [f"roster: {roster} engineers in the directory" + (f" of team {f.team}" if f.team else "")]
    return Report("adoption", f, [by_week, by_agent], notes)


Rows = list[tuple[Any, ...]]
# session_week stores NULL texts as '' with a bit each in `nulls` (so its key has no NULL).
_DECODED = (
    "week, CASE WHEN nulls & 1 = 0 THEN agent END, CASE WHEN nulls & 2 = 0 THEN engineer END, "
    "CASE WHEN nulls & 4 = 0 THEN repo END"
)
_TEAM_ID = "team_id = (SELECT team_id FROM teams WHERE team = :team)"


def _from_rollup(engine: Engine, f: Filters) -> tuple[Rows, Rows]:
    """Rows by (week, agent, engineer, repo): whole weeks from the roll-up, the period's end pieces from
    the sessions (on SQLite through the adoption covering index, in its order); then the figures."""
    split = split_weeks(f.since, f.until)
    team = {"team": f.team} if f.team is not None else {}
    rows: Rows = []
    if split.whole:
        where, params = split.where()
        if f.team is not None:
            where += f" AND {_TEAM_ID}"
        rows += fetch(
            engine,
            f"SELECT {_DECODED}, sessions, duration_s, merged_cost_usd + unmerged_cost_usd FROM session_week "
            f"WHERE sessions > 0 AND {where}",
            {**params, **team},
        )[1]
    pieces = split.pieces_where(engine)
    if pieces is not None:
        where, params = pieces
        if f.team is not None:
            where += f" AND {_TEAM_ID}"
        rows += fetch(
            engine,
            "SELECT week, agent, engineer, repo, COUNT(*), SUM(COALESCE(duration_s, 0)), SUM(cost_usd) "
            f"FROM sessions WHERE {where} GROUP BY week, agent, engineer, repo",
            {**params, **team},
        )[1]
    return _figures(rows)


def _figures(rows: Rows) -> tuple[Rows, Rows]:
    """(week, agent, engineer, repo, sessions, seconds, cost) rows to the weeks' and the agents' figures:
    distinct engineers and repos as COUNT(DISTINCT) counts them (NULL left out)."""
    week_sums: dict[str, list[float]] = {}
    agent_sums: dict[tuple[str, Any], list[float]] = {}
    engineers: dict[str, set[Any]] = {}
    repos: dict[str, set[Any]] = {}
    agent_engineers: dict[tuple[str, Any], set[Any]] = {}
    for week, agent, engineer, repo, n, d, c in rows:
        acc = week_sums.get(week)
        if acc is None:
            acc = week_sums[week] = [0, 0.0, 0.0]
            engineers[week], repos[week] = set(), set()
        acc[0] += n
        acc[1] += d or 0
        acc[2] += c or 0
        wa = (week, agent)
        acc = agent_sums.get(wa)
        if acc is None:
            acc = agent_sums[wa] = [0, 0.0, 0.0]
            agent_engineers[wa] = set()
        acc[0] += n
        acc[1] += d or 0
        acc[2] += c or 0
        if engineer is not None:
            engineers[week].add(engineer)
            agent_engineers[wa].add(engineer)
        if repo is not None:
            repos[week].add(repo)
    weeks = [(w, len(engineers[w]), n, d, len(repos[w]), c) for w, (n, d, c) in sorted(week_sums.items())]
    agents = [(w, a, len(agent_engineers[(w, a)]), n, d, c) for (w, a), (n, d, c) in agent_sums.items()]
    return weeks, agents


def _in_index_order(engine: Engine, where: str, params: dict[str, Any]) -> tuple[Rows, Rows]:
    """SQLite: both read the (week, agent, engineer, repo, duration, cost) covering index in order, so
    the distinct counts need no sort of their own."""
    _, weeks = fetch(
        engine,
        f"""
SELECT week, COUNT(DISTINCT engineer), COUNT(*), SUM(COALESCE(duration_s, 0)), COUNT(DISTINCT repo), SUM(cost_usd)
FROM sessions WHERE {where} GROUP BY week ORDER BY week""",
        params,
    )
    _, agents = fetch(
        engine,
        f"""
SELECT week, agent, COUNT(DISTINCT engineer), COUNT(*), SUM(COALESCE(duration_s, 0)), SUM(cost_usd)
FROM sessions WHERE {where} GROUP BY week, agent""",
        params,
    )
    return weeks, agents


# GROUPING(agent, engineer, repo) of each grouping set: a bit is set for a column grouped away.
_BY_AGENT, _BY_ENGINEER, _BY_REPO, _BY_AGENT_ENGINEER = 3, 5, 6, 1


def _hashed(engine: Engine, where: str, params: dict[str, Any]) -> tuple[Rows, Rows]:
    """PostgreSQL: one scan hashed into the four groupings the figures need, (week, agent) for the
    sums and (week, engineer), (week, repo), (week, agent, engineer) for the distinct counts, which
    are then counted (NULLs left out, as COUNT(DISTINCT) does). PostgreSQL 15 sorts every group's rows
    for a COUNT(DISTINCT): two such queries over a million sessions took 3.2 s."""
    _, rows = fetch(
        engine,
        f"""
SELECT week, agent, level, COUNT(engineer), COUNT(repo), SUM(n), SUM(d), SUM(c) FROM (
  SELECT week, agent, engineer, repo, GROUPING(agent, engineer, repo) AS level, COUNT(*) AS n,
         SUM(COALESCE(duration_s, 0)) AS d, SUM(cost_usd) AS c
  FROM sessions WHERE {where}
  GROUP BY GROUPING SETS ((week, agent), (week, engineer), (week, repo), (week, agent, engineer))
) g GROUP BY week, agent, level""",
        params,
        hash_groups=True,
    )
    week_sums: dict[str, list[float]] = {}
    counts: dict[tuple[str, Any, int], int] = {}
    agent_sums: dict[tuple[str, Any], tuple[int, float, float]] = {}
    for week, agent, level, engineers, repos, n, d, c in rows:
        if level == _BY_AGENT:
            agent_sums[(week, agent)] = (int(n), float(d or 0), float(c or 0))
            acc = week_sums.setdefault(week, [0, 0.0, 0.0])
            acc[0], acc[1], acc[2] = acc[0] + int(n), acc[1] + float(d or 0), acc[2] + float(c or 0)
        else:
            counts[(week, agent if level == _BY_AGENT_ENGINEER else None, level)] = int(
                engineers if level in (_BY_ENGINEER, _BY_AGENT_ENGINEER) else repos
            )
    weeks = [
        (w, counts.get((w, None, _BY_ENGINEER), 0), n, d, counts.get((w, None, _BY_REPO), 0), c)
        for w, (n, d, c) in sorted(week_sums.items())
    ]
    agents = [(w, a, counts.get((w, a, _BY_AGENT_ENGINEER), 0), n, d, c) for (w, a), (n, d, c) in agent_sums.items()]
    return weeks, agents
