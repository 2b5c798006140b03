"""Outliers: sessions, and engineer x repo pairs, whose spend is high for the change they made.

The measure is x = ln(cost / (lines changed + 1)) — dollars per changed line, on a log scale because
spend is heavy-tailed — and its robust z-score within the repo: 0.6745 (x - median) / MAD. Robust,
so the outliers being looked for do not hide themselves by inflating the spread. A session or pair
is flagged when z exceeds the threshold (3.5, Iglewicz & Hoaglin). Sessions that cost nothing are
left out (there is no spend to explain); repos with fewer than `min_sessions` sessions (or
`min_pairs` engineers) are not scored.
"""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections.abc import Callable
from typing import Any, cast

import orjson
from sqlalchemy import Engine

from agenttrail.reports.base import Filters, Report, Section, fetch, scan_col
from agenttrail.reports.stats import MAD_SCALE, MEAN_AD_SCALE, OUTLIER_Z, quantile_sorted, robust_z

MIN_SESSIONS = 5
MIN_PAIRS = 3
NO_REPO = "(none)"
HASH_JOIN_REPOS = 100


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
    where, params = f.where(time_col=scan_col(engine, "started_at"), team_id_col="team_id")
    where += " AND cost_usd > 0"
    # Pass 1, one scan: per repo and engineer the pair's totals and every session's x, computed by the
    # database where it can and sent as one text list per pair (a million (repo, x) rows cost more to
    # fetch than the scan; SQLite reads them in the (repo, engineer) covering index's order). Written
    # with 17 significant digits, so each x reads back as the same float.
    ln_in_sql = _sql_has_ln(engine)
    x_sql = "ln(cost_usd / (lines_changed + 1))" if ln_in_sql else "cost_usd / (lines_changed + 1)"
    if engine.dialect.name == "postgresql":
        xs_sql = f"string_agg(CAST({x_sql} AS TEXT), ',')"  # shortest text that reads back exactly
    else:
        xs_sql = f"group_concat(printf('%.17g', {x_sql}))"
    _, pair_rows = fetch(
        engine,
        f"SELECT repo, engineer, COUNT(*), SUM(cost_usd), SUM(lines_changed), {xs_sql} "
        f"FROM sessions WHERE {where} GROUP BY repo, engineer",
        params,
        hash_groups=True,
    )
    by_repo: dict[str, list[float]] = {}
    pairs: dict[str, dict[str, list[float]]] = {}
    for repo, eng, n, total, total_lines, xs_text in pair_rows:
        key = repo if repo is not None else NO_REPO
        by_repo.setdefault(key, []).extend(orjson.loads(f"[{xs_text}]"))
        pairs.setdefault(key, {})[eng or "(unknown)"] = [int(n), float(total), int(total_lines or 0)]
    del pair_rows
    if not ln_in_sql:
        by_repo = {r: [math.log(v) for v in xs] for r, xs in by_repo.items()}

    flagged: list[tuple[Any, ...]] = []
    pair_flags: list[tuple[Any, ...]] = []
    repo_rows: list[tuple[Any, ...]] = []
    rules: dict[str, tuple[float, Callable[[float], float | None], float]] = {}  # repo -> median, z rule, bound
    for repo, xs in by_repo.items():
        if len(xs) >= min_sessions:
            m, z_of, spread, first_hit = repo_rule(xs, threshold)
            repo_rows.append((repo, len(xs), math.exp(m), spread))
            if first_hit is not None:
                rules[repo] = (m, z_of, first_hit)
        eng_sums = pairs.get(repo, {})
        if len(eng_sums) >= min_pairs:
            names = list(eng_sums)
            pxs = [math.log(usd_per_line(eng_sums[e][1], int(eng_sums[e][2]))) for e in names]
            pzs, pm, _ = robust_z(pxs)
            assert pm is not None
            for e, x, z in zip(names, pxs, pzs, strict=True):
                count, cost, lines = eng_sums[e]
                if z is not None and z > threshold:
                    pair_flags.append(
                        (
                            e,
                            repo,
                            int(count),
                            cost,
                            int(lines),
                            usd_per_line(cost, int(lines)),
                            math.exp(pm),
                            math.exp(x - pm),
                            z,
                        )
                    )

    flagged = _flagged_sessions(engine, f, rules, threshold)
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
            f"Engineer x repo pairs with robust z > {threshold:g}",
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


def _flagged_sessions(
    engine: Engine,
    f: Filters,
    rules: dict[str, tuple[float, Callable[[float], float | None], float]],
    threshold: float,
) -> list[tuple[Any, ...]]:
    """Pass 2, one query: the sessions of the repos with outliers whose cost per line passes that repo's
    bound (its smallest flagged x, a hair lower so rounding loses none), then scored exactly here.

    The repos join by plain equality (sessions without a repo are a query of their own), so PostgreSQL
    can hash the bounds and scan once; an `OR repo IS NULL` in the join made it probe every repo's
    sessions one repo at a time (3 s for 700 repos over a million sessions)."""
    if not rules:
        return []
    where, params = f.where(time_col="s.started_at", team_id_col="s.team_id", repo_col="s.repo")
    where += " AND s.cost_usd > 0"
    values: list[str] = []
    bounds: dict[str, Any] = {}
    for i, (repo, (_m, _rule, bound)) in enumerate(rules.items()):
        bounds[f"o_b{i}"] = math.exp(bound) * (1 - 1e-9)
        if repo != NO_REPO:
            bounds[f"o_r{i}"] = repo
            values.append(f"(CAST(:o_r{i} AS TEXT), CAST(:o_b{i} AS DOUBLE PRECISION))")
    cols = "s.session_id, s.engineer, s.repo, s.cost_usd, s.lines_changed"
    parts = []
    if values:
        parts.append(
            f"SELECT {cols} FROM sessions s JOIN bound b ON b.repo = s.repo "
            f"WHERE {where} AND s.cost_usd >= b.k * (s.lines_changed + 1)"
        )
    if NO_REPO in rules:
        i = list(rules).index(NO_REPO)
        parts.append(
            f"SELECT {cols} FROM sessions s WHERE {where} AND s.repo IS NULL "
            f"AND s.cost_usd >= CAST(:o_b{i} AS DOUBLE PRECISION) * (s.lines_changed + 1)"
        )
    sql = " UNION ALL ".join(parts)
    if values:
        sql = f"WITH bound(repo, k) AS (VALUES {', '.join(values)}) {sql}"
    # Many repos: one hash join over a scan of the sessions. The planner (random_page_cost 1.1, as
    # fetch sets it) otherwise looks each repo's sessions up by index: at a million sessions and 681
    # repos 0.76 s of random heap reads against 0.30 s. A few repos (a --repo or --team report) are
    # cheaper looked up.
    _, rows = fetch(engine, sql, {**params, **bounds}, hash_joins=len(values) > HASH_JOIN_REPOS)
    out = []
    for sid, eng, r, cost, lines in rows:
        m, z_of, _ = rules[r if r is not None else NO_REPO]
        cost, lines = float(cost), int(lines or 0)
        x = math.log(usd_per_line(cost, lines))
        z = z_of(x)
        if z is not None and z > threshold:
            out.append(
                (sid, eng or "(unknown)", r, cost, lines, usd_per_line(cost, lines), math.exp(m), math.exp(x - m), z)
            )
    return out


_LN: dict[str, bool] = {}


def _sql_has_ln(engine: Engine) -> bool:
    """SQLite has ln() only when built with its math functions (Python's bundled 3.40 is)."""
    key = str(engine.url)
    if key not in _LN:
        try:
            fetch(engine, "SELECT ln(1.0)")
            _LN[key] = True
        except sqlite3.Error:  # no such function: ln
            _LN[key] = False
    return _LN[key]


def repo_rule(xs: list[float], threshold: float) -> tuple[float, Callable[[float], float | None], float, float | None]:
    """A repo's median, its z rule and spread (as `robust_z` scores these values: the same arithmetic,
    so the same floats), and the smallest value whose z passes the threshold (None if none does).

    One sort of the values; the rest without touching each value in Python again. The absolute
    deviations are the values below the median, mirrored, and those above it: two ascending runs,
    which a sort merges in one pass (abs(v - m) is m - v exactly for v < m: rounding is symmetric).
    z grows with the value (a subtraction, a positive scale: both monotone in floating point), so
    the values that pass are a tail of the sorted values, found by bisection."""
    s = sorted(xs)
    m = quantile_sorted(s, 0.5)
    assert m is not None
    split = bisect.bisect_left(s, m)
    devs = [m - v for v in reversed(s[:split])]
    devs += [v - m for v in s[split:]]
    devs.sort()
    spread = quantile_sorted(devs, 0.5) or 0.0
    z_of, spread = _z_rule(xs, m, spread)
    if z_of(m) is None:  # every value equal: nothing stands out
        return m, z_of, spread, None
    z = cast(Callable[[float], float], z_of)
    # With a positive threshold only values above the median can pass it.
    start = bisect.bisect_right(s, m) if threshold > 0 else 0
    first = bisect.bisect_right(s, threshold, lo=start, key=z)
    return m, z_of, spread, (s[first] if first < len(s) else None)


def _z_rule(xs: list[float], m: float, spread: float) -> tuple[Callable[[float], float | None], float]:
    """z of a value by the rule `robust_z` uses for these values given their MAD (or the mean-deviation
    fallback, summed in the values' own order as `robust_z` sums it), and the spread it divides by."""
    if spread > 0:
        return (lambda x: MAD_SCALE * (x - m) / spread), spread
    mean_ad = sum(abs(v - m) for v in xs) / len(xs)
    if mean_ad > 0:
        return (lambda x: (x - m) / (MEAN_AD_SCALE * mean_ad)), mean_ad
    return (lambda x: None), 0.0
