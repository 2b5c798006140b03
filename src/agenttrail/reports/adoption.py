"""Adoption: per ISO week, who used agents, how much, where, and with which agent.

The roster is the engineer directory as it is now (the team's, with --team); an engineer counts as
active in a week with at least one session that started in it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, share


def adoption(engine: Engine, f: Filters) -> Report:
    where, params = f.where(time_col="started_at")
    roster_where, roster_params = ("team = :team", {"team": f.team}) if f.team else ("1=1", {})
    _, roster_rows = fetch(engine, f"SELECT COUNT(*) FROM engineers WHERE {roster_where}", roster_params)
    roster = int(roster_rows[0][0])
    _, weeks = fetch(
        engine,
        f"""
SELECT week, COUNT(DISTINCT engineer) AS active_engineers, COUNT(*) AS sessions,
       SUM(COALESCE(duration_s, 0)) / 3600.0 AS agent_hours, COUNT(DISTINCT repo) AS repos,
       SUM(cost_usd) AS cost_usd
FROM sessions WHERE {where} GROUP BY week ORDER BY week""",
        params,
    )
    by_week = Section(
        "by_week",
        "Adoption by week",
        ["week", "active_engineers", "roster", "active_share", "sessions", "agent_hours", "repos", "cost_usd"],
        [
            (w, int(a), roster, share(int(a), roster), int(n), float(h or 0), int(r), float(c or 0))
            for w, a, n, h, r, c in weeks
        ],
    )
    _, agents = fetch(
        engine,
        f"""
SELECT week, COALESCE(agent, '(unknown)') AS agent, COUNT(DISTINCT engineer) AS engineers, COUNT(*) AS sessions,
       SUM(COALESCE(duration_s, 0)) / 3600.0 AS agent_hours, SUM(cost_usd) AS cost_usd
FROM sessions WHERE {where} GROUP BY week, COALESCE(agent, '(unknown)') ORDER BY week, sessions DESC""",
        params,
    )
    by_agent = Section(
        "by_agent",
        "Adoption by week and agent",
        ["week", "agent", "engineers", "sessions", "agent_hours", "cost_usd"],
        [(w, a, int(e), int(n), float(h or 0), float(c or 0)) for w, a, e, n, h, c in agents],
    )
    notes = [f"roster: {roster} engineers in the directory" + (f" of team {f.team}" if f.team else "")]
    return Report("adoption", f, [by_week, by_agent], notes)
