"""Adoption: per ISO week, who used agents, how much, where, and with which agent.

The roster is the engineer directory as it is now (the team's, with --team); an engineer counts as
active in a week with at least one session that started in it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share


def adoption(engine: Engine, f: Filters) -> Report:
    where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
    roster_where, roster_params = ("team = :team", {"team": f.team}) if f.team else ("1=1", {})
    _, roster_rows = fetch(engine, f"SELECT COUNT(*) FROM engineers WHERE {roster_where}", roster_params)
    roster = int(roster_rows[0][0])
    # Both read the (week, agent, engineer, repo, duration, cost) covering index in order on SQLite.
    _, weeks = fetch(
        engine,
        f"""
SELECT week, COUNT(DISTINCT engineer), COUNT(*), SUM(COALESCE(duration_s, 0)), COUNT(DISTINCT repo), SUM(cost_usd)
FROM sessions WHERE {where} GROUP BY week ORDER BY week""",
        params,
    )
    by_week = Section(
        "by_week",
        "Adoption by week",
        ["week", "active_engineers", "roster", "active_share", "sessions", "agent_hours", "repos", "cost_usd"],
        [
            (w, int(a), roster, share(int(a), roster), int(n), float(s or 0) / 3600, int(r), float(c or 0))
            for w, a, n, s, r, c in weeks
        ],
    )
    _, agents = fetch(
        engine,
        f"""
SELECT week, agent, COUNT(DISTINCT engineer), COUNT(*), SUM(COALESCE(duration_s, 0)), SUM(cost_usd)
FROM sessions WHERE {where} GROUP BY week, agent""",
        params,
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
