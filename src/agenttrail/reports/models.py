"""Model payoff: per repo and model, what the sessions cost for the change they made and how much merged.

A session counts under its main model (the one with the largest share of its cost), with its whole
cost; `session_models` has the exact per-model split for anyone who needs it.
"""

from __future__ import annotations

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col, share


def models(engine: Engine, f: Filters) -> Report:
    where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
    _, rows = fetch(
        engine,
        f"""
SELECT COALESCE(repo, '(none)') AS repo, COALESCE(model, '(none)') AS model, COUNT(*) AS sessions,
       SUM(cost_usd) AS cost_usd, SUM(lines_changed) AS lines_changed, SUM(files_changed) AS files_changed,
       SUM(merged) AS merged_sessions
FROM sessions WHERE {where}
GROUP BY repo, model""",
        params,
    )
    out = []
    for repo, model, n, cost, lines, files, merged in rows:
        cost, lines, files, n = float(cost or 0), int(lines or 0), int(files or 0), int(n)
        out.append(
            (
                repo,
                model,
                n,
                cost,
                lines,
                files,
                cost / lines if lines else None,
                cost / files if files else None,
                share(int(merged or 0), n),
            )
        )
    out.sort(key=lambda r: (r[0], -r[3]))
    section = Section(
        "by_repo_model",
        "Model payoff by repo",
        [
            "repo",
            "model",
            "sessions",
            "cost_usd",
            "lines_changed",
            "files_changed",
            "usd_per_line",
            "usd_per_file",
            "merged_share",
        ],
        out,
    )
    return Report("models", f, [section], ["a session counts under its main model (largest share of its cost)"])
