"""Adoption: per ISO week, who used agents, how much, where, and with which agent.

The roster is the engineer directory as it is now (the team's, with --team); an engineer counts as
active in a week with at least one session that started in it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, share


def adoption(engine: Engine, f: Filters) -> Report:
    where, params = f.where(time_col="started_at", team_id_col="team_id")
    roster_where, roster_params = ("team = :team", {"team": f.team}) if f.team else ("1=1", {})
    _, roster_rows = fetch(engine, f"SELECT COUNT(*) FROM engineers WHERE {roster_where}", roster_params)
    roster = int(roster_rows[0][0])
    # One pass in the order of the (week, agent, engineer, repo) index; the distinct counts are folded here.
    _, groups = fetch(
        engine,
        f"""
SELECT week, agent, engineer, repo, COUNT(*), SUM(COALESCE(duration_s, 0)), SUM(cost_usd)
FROM sessions WHERE {where} GROUP BY week, agent, engineer, repo""",
        params,
    )
    weeks: dict[str, _Acc] = defaultdict(_Acc)
    agents: dict[tuple[str, str], _Acc] = defaultdict(_Acc)
    for week, agent, engineer, repo, n, seconds, cost in groups:
        for acc in (weeks[week], agents[(week, agent or "(unknown)")]):
            acc.add(engineer, repo, int(n), float(seconds or 0), float(cost or 0))
    by_week = Section(
        "by_week",
        "Adoption by week",
        ["week", "active_engineers", "roster", "active_share", "sessions", "agent_hours", "repos", "cost_usd"],
        [
            (
                w,
                len(a.engineers),
                roster,
                share(len(a.engineers), roster),
                a.sessions,
                a.seconds / 3600,
                len(a.repos),
                a.cost,
            )
            for w, a in sorted(weeks.items())
        ],
    )
    by_agent = Section(
        "by_agent",
        "Adoption by week and agent",
        ["week", "agent", "engineers", "sessions", "agent_hours", "cost_usd"],
        [
            (w, ag, len(a.engineers), a.sessions, a.seconds / 3600, a.cost)
            for (w, ag), a in sorted(agents.items(), key=lambda kv: (kv[0][0], -kv[1].sessions))
        ],
    )
    notes = [f"roster: {roster} engineers in the directory" + (f" of team {f.team}" if f.team else "")]
    return Report("adoption", f, [by_week, by_agent], notes)


@dataclass(slots=True)
class _Acc:
    engineers: set[str | None] = field(default_factory=set)
    repos: set[str | None] = field(default_factory=set)
    sessions: int = 0
    seconds: float = 0.0
    cost: float = 0.0

    def add(self, engineer: str | None, repo: str | None, n: int, seconds: float, cost: float) -> None:
        self.engineers.add(engineer)
        self.repos.add(repo)
        self.sessions += n
        self.seconds += seconds
        self.cost += cost
