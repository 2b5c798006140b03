"""Adoption: per ISO week, who used agents, how much, where, and with which agent.

The roster is the engineer directory as it is now (the team's, with --team); an engineer counts as
active in a week with at least one session that started in it.

Whole weeks come from the weekly roll-up `session_week` (migration 0011: one row per week, agent,
engineer, repo and team, a few per engineer-week), the pieces of weeks at a period's ends from the
sessions. A week is one or the other (a session's week is that of its start), so each week's
distinct counts come from one source. Under --repo the sessions are read directly (the repo's
sessions are few, and read from an index).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share, split_weeks


def adoption(engine: Engine, f: Filters) -> Report:
    roster_where, roster_params = ("team = :team", {"team": f.team}) if f.team else ("1=1", {})
    _, roster_rows = fetch(engine, f"SELECT COUNT(*) FROM engineers WHERE {roster_where}", roster_params)
    roster = int(roster_rows[0][0])
    if f.repo is None:
        weeks, agents = _from_rollup(engine, f)
    else:
        weeks, agents = from_sessions(engine, *f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id"))
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
_TEAM_ID = " AND team_id = (SELECT team_id FROM teams WHERE team = :team)"


def _from_rollup(engine: Engine, f: Filters) -> tuple[Rows, Rows]:
    """Whole weeks from the roll-up, the pieces of weeks at the period's ends from the sessions."""
    split = split_weeks(f.since, f.until)
    team, team_params = (_TEAM_ID, {"team": f.team}) if f.team is not None else ("", {})
    weeks: Rows = []
    agents: Rows = []
    if split.whole:
        where, params = split.where()
        where, params = f"sessions > 0 AND {where}{team}", {**params, **team_params}
        w, a = _rollup_in_key_order(engine, where, params)
        weeks += w
        agents += a
    pieces = split.pieces_where(engine)
    if pieces is not None:
        w, a = from_sessions(engine, pieces[0] + team, {**pieces[1], **team_params})
        weeks += w
        agents += a
    weeks.sort(key=lambda r: r[0])
    return weeks, agents


def from_sessions(engine: Engine, where: str, params: dict[str, Any]) -> tuple[Rows, Rows]:
    """The figures from the sessions themselves, those matching `where`."""
    if engine.dialect.name == "postgresql":
        src = f"""(SELECT week, agent, engineer, repo, 1 AS n, COALESCE(duration_s, 0) AS d, cost_usd AS c
  FROM sessions WHERE {where})"""
        return _hashed(engine, src, params)
    return _in_index_order(engine, where, params)


def _rollup_in_key_order(engine: Engine, where: str, params: dict[str, Any]) -> tuple[Rows, Rows]:
    """Both read session_week in its key's order (week, agent, engineer, …: SQLite's table, PostgreSQL's
    primary key index), so the groups need no sort. NULLs are '' with a bit in `nulls` (the key has
    no NULL): the distinct counts leave those out, and a NULL agent's figures, which share the agent
    '' group, are summed apart and given their own row. On PostgreSQL the distinct values are sorted
    bytewise (the same values are distinct under any deterministic collation): 0.4 s against 0.7 s
    for the database's C.UTF-8 at a million sessions."""
    c = ' COLLATE "C"' if engine.dialect.name == "postgresql" else ""
    _, weeks = fetch(
        engine,
        f"""
SELECT week, COUNT(DISTINCT CASE WHEN nulls & 2 = 0 THEN engineer END{c}), SUM(sessions), SUM(duration_s),
       COUNT(DISTINCT CASE WHEN nulls & 4 = 0 THEN repo END{c}), SUM(merged_cost_usd + unmerged_cost_usd)
FROM session_week WHERE {where} GROUP BY week ORDER BY week""",
        params,
    )
    per_agent = []
    for known in (0, 1):
        on = f"nulls & 1 = {known}"
        per_agent.append(
            f"COUNT(DISTINCT CASE WHEN {on} AND nulls & 2 = 0 THEN engineer END{c}), "
            f"SUM(CASE WHEN {on} THEN sessions END), SUM(CASE WHEN {on} THEN duration_s END), "
            f"SUM(CASE WHEN {on} THEN merged_cost_usd + unmerged_cost_usd END)"
        )
    _, rows = fetch(
        engine,
        f"SELECT week, agent, {', '.join(per_agent)} FROM session_week WHERE {where} GROUP BY week, agent",
        params,
    )
    agents: Rows = []
    for week, agent, *figures in rows:
        if figures[1]:
            agents.append((week, agent, *figures[:4]))
        if figures[5]:
            agents.append((week, None, *figures[4:]))
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


def _hashed(engine: Engine, src: str, params: dict[str, Any]) -> tuple[Rows, Rows]:
    """PostgreSQL: one scan of `src` (week, agent, engineer, repo, sessions n, seconds d, cost c)
    hashed into the four groupings the figures need, (week, agent) for the sums and (week, engineer),
    (week, repo), (week, agent, engineer) for the distinct counts, which are then counted (NULLs left
    out, as COUNT(DISTINCT) does). PostgreSQL 15 sorts every group's rows for a COUNT(DISTINCT): two
    such queries over a million sessions took 3.2 s."""
    _, rows = fetch(
        engine,
        f"""
SELECT week, agent, level, COUNT(engineer), COUNT(repo), SUM(n), SUM(d), SUM(c) FROM (
  SELECT week, agent, engineer, repo, GROUPING(agent, engineer, repo) AS level, SUM(n) AS n, SUM(d) AS d,
         SUM(c) AS c
  FROM {src} s
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
