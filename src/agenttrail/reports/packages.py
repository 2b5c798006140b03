"""Package installs: every `package_install` event with who, where and when.

Answers "did any agent install event-stream in the last 90 days, where, and who launched it?" as
`agenttrail report packages --name event-stream --since 90d`: each install with its session, the
engineer who launched the agent, the repo and the time, plus a summary per package.
"""

from __future__ import annotations

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, as_time, fetch


def packages(engine: Engine, f: Filters, *, name: str | None = None, ecosystem: str | None = None) -> Report:
    where, params = f.where(time_col="ts")
    if name:
        where += " AND name = :name"
        params["name"] = name
    if ecosystem:
        where += " AND ecosystem = :ecosystem"
        params["ecosystem"] = ecosystem
    cols, rows = fetch(
        engine,
        f"""
SELECT ts, ecosystem, name, version_spec, manager, engineer, team, repo, agent, session_id
FROM package_installs WHERE {where} ORDER BY ts DESC, name""",
        params,
    )
    _, summary = fetch(
        engine,
        f"""
SELECT ecosystem, name, COUNT(*) AS installs, COUNT(DISTINCT session_id) AS sessions,
       COUNT(DISTINCT engineer) AS engineers, COUNT(DISTINCT repo) AS repos, MIN(ts) AS first_seen,
       MAX(ts) AS last_seen
FROM package_installs WHERE {where} GROUP BY ecosystem, name ORDER BY installs DESC, name""",
        params,
    )
    rows = [(as_time(r[0]), *r[1:]) for r in rows]
    summary = [(*r[:6], as_time(r[6]), as_time(r[7])) for r in summary]
    sections = [
        Section("installs", "Package installs", cols, rows),
        Section(
            "by_package",
            "Installs by package",
            ["ecosystem", "name", "installs", "sessions", "engineers", "repos", "first_seen", "last_seen"],
            summary,
        ),
    ]
    notes = []
    if name:
        notes.append(f"{name}: {len(rows)} install(s)" + ("" if rows else " — none found in the period"))
    return Report("packages", f, sections, notes)
