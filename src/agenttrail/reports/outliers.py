"""Outliers: sessions, and engineer x repo pairs, whose spend is high for the change they made.

The measure is x = ln(cost / (lines changed + 1)) — dollars per changed line, on a log scale because
spend is heavy-tailed — and its robust z-score within the repo: 0.6745 (x - median) / MAD. Robust,
so the outliers being looked for do not hide themselves by inflating the spread. A session or pair
is flagged when z exceeds the threshold (3.5, Iglewicz & Hoaglin). Sessions that cost nothing are
left out (there is no spend to explain); repos with fewer than `min_sessions` sessions (or
`min_pairs` engineers) are not scored.
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch
from agenttrail.reports.stats import OUTLIER_Z, robust_z

MIN_SESSIONS = 5
MIN_PAIRS = 3


def usd_per_line(cost: float, lines: int) -> float:
    return cost / (lines + 1)


def outliers(
    engine: Engine,
    f: Filters,
    *,
    threshold: float = OUTLIER_Z,
    min_sessions: int = MIN_SESSIONS,
    min_pairs: int = MIN_PAIRS,
    limit: int = 200,
) -> Report:
    where, params = f.where(time_col="started_at")
    _, rows = fetch(
        engine,
        f"SELECT session_id, engineer, repo, cost_usd, lines_changed FROM sessions WHERE {where} AND cost_usd > 0",
        params,
    )
    by_repo: dict[str, list[tuple[str, str, float, int]]] = defaultdict(list)
    for sid, eng, repo, cost, lines in rows:
        by_repo[repo or "(none)"].append((sid, eng or "(unknown)", float(cost), int(lines or 0)))

    flagged, pair_flags, repo_rows = [], [], []
    for repo, sessions in by_repo.items():
        xs = [math.log(usd_per_line(c, n)) for _, _, c, n in sessions]
        if len(sessions) >= min_sessions:
            zs, m, spread = robust_z(xs)
            assert m is not None
            repo_rows.append((repo, len(sessions), math.exp(m), spread))
            for (sid, eng, cost, lines), x, z in zip(sessions, xs, zs, strict=True):
                if z is not None and z > threshold:
                    flagged.append(
                        (sid, eng, repo, cost, lines, usd_per_line(cost, lines), math.exp(m), math.exp(x - m), z)
                    )
        pairs: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for _, eng, cost, lines in sessions:
            p = pairs[eng]
            p[0] += 1
            p[1] += cost
            p[2] += lines
        if len(pairs) >= min_pairs:
            names = list(pairs)
            pxs = [math.log(usd_per_line(pairs[e][1], int(pairs[e][2]))) for e in names]
            pzs, pm, _ = robust_z(pxs)
            assert pm is not None
            for e, x, z in zip(names, pxs, pzs, strict=True):
                n, cost, lines = pairs[e]
                if z is not None and z > threshold:
                    pair_flags.append(
                        (
                            e,
                            repo,
                            int(n),
                            cost,
                            int(lines),
                            usd_per_line(cost, int(lines)),
                            math.exp(pm),
                            math.exp(x - pm),
                            z,
                        )
                    )

    flagged.sort(key=lambda r: -r[-1])
    pair_flags.sort(key=lambda r: -r[-1])
    repo_rows.sort(key=lambda r: -r[1])
    figures = ["usd_per_line", "repo_median_usd_per_line", "times_median", "robust_z"]
    sections = [
        Section(
            "sessions",
            f"Sessions with robust z > {threshold:g}",
            ["session_id", "engineer", "repo", "cost_usd", "lines_changed", *figures],
            flagged[:limit],
        ),
        Section(
            "engineer_repo",
            f"Engineer × repo pairs with robust z > {threshold:g}",
            ["engineer", "repo", "sessions", "cost_usd", "lines_changed", *figures],
            pair_flags[:limit],
        ),
        Section("repos", "Per-repo baseline", ["repo", "sessions", "median_usd_per_line", "spread_log"], repo_rows),
    ]
    notes = [
        "x = ln(cost_usd / (lines_changed + 1)); robust z = 0.6745 (x - median) / MAD within the repo",
        f"flagged when z > {threshold:g}; times_median = exp(x - median)",
    ]
    if len(flagged) > limit:
        notes.append(f"{len(flagged)} sessions flagged; the first {limit} are shown")
    return Report("outliers", f, sections, notes)
