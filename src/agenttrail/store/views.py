"""The documented views: the only names `agenttrail sql`, reports and exports read.

Names are a contract (DESIGN.md); columns may grow. Views are not migrated step by step like
tables: every start drops and recreates them from this file when its text changed (see
`migrate.refresh_views`), so a view is always exactly what this file says.
"""

from __future__ import annotations

VIEW_NAMES = (
    "teams",
    "projects",
    "engineers",
    "llm_calls",
    "sessions",
    "events",
    "file_changes",
    "commits",
    "pull_requests",
    "pr_sessions",
    "session_models",
    "daily_spend",
    "monthly_spend",
    "package_installs",
)

# Views whose rows hold what people wrote or ran (prompts, responses, commands, diffs, commit messages):
# readable only by roles that may see content (see agenttrail.query.access), and each read is audited.
CONTENT_VIEWS = frozenset({"events", "file_changes", "commits"})


def _day(dialect: str, col: str) -> str:
    return f"CAST(CAST({col} AS date) AS text)" if dialect == "postgresql" else f"date({col})"


def _models(dialect: str) -> str:
    """Every model the session used, the costliest first; a scalar subquery, so computed only when read."""
    if dialect == "postgresql":
        return (
            "(SELECT string_agg(sm.model, ',' ORDER BY sm.cost_usd DESC, sm.model) FROM session_model sm "
            "WHERE sm.session_id = r.session_id AND sm.model <> '')"
        )
    return (
        "(SELECT group_concat(m.model, ',') FROM (SELECT sm.model FROM session_model sm "
        "WHERE sm.session_id = r.session_id AND sm.model <> '' ORDER BY sm.cost_usd DESC, sm.model) m)"
    )


def _name(table: str, id_col: str) -> str:
    """A directory name as a scalar subquery: looked up only for queries that read it (SQLite 3.40 keeps
    an unused LEFT JOIN and pays for it on every row)."""
    return f"(SELECT x.name FROM {table} x WHERE x.id = {id_col})"


def _spend_view(period: str, source: str) -> str:
    label = period.split(".", 1)[1]
    return f"""
SELECT {period} AS {label}, {_name("team", "NULLIF(d.team_id, 0)")} AS team,
       {_name("project", "NULLIF(d.project_id, 0)")} AS project,
       (SELECT x.email FROM engineer x WHERE x.id = NULLIF(d.engineer_id, 0)) AS engineer,
       d.provider, NULLIF(d.model, '') AS model, d.in_session, d.calls,
       d.input_tokens, d.cache_read_tokens, d.cache_write_tokens, d.output_tokens,
       d.input_tokens + d.cache_read_tokens + d.cache_write_tokens + d.output_tokens AS total_tokens,
       d.cost_usd, NULLIF(d.team_id, 0) AS team_id, NULLIF(d.project_id, 0) AS project_id,
       NULLIF(d.engineer_id, 0) AS engineer_id
FROM {source}"""


def _pr_sessions(dialect: str) -> str:
    """Links with their PR's repo, number and merge time, read only by queries that ask for them (the
    shipped report reads a million links by session). Every link's PR exists (foreign key), so this is
    the inner join: PostgreSQL drops an unused LEFT JOIN to a primary key; SQLite 3.40 does not, so
    there each column is a scalar subquery."""
    if dialect == "postgresql":
        return """
SELECT ps.pr_id, pr.repo, pr.number, pr.merged_at, ps.session_id, ps.how
FROM pr_session ps LEFT JOIN pull_request pr ON pr.id = ps.pr_id"""
    pr = {c: f"(SELECT pr.{c} FROM pull_request pr WHERE pr.id = ps.pr_id)" for c in ("repo", "number", "merged_at")}
    return f"""
SELECT ps.pr_id, {pr["repo"]} AS repo, {pr["number"]} AS number, {pr["merged_at"]} AS merged_at, ps.session_id, ps.how
FROM pr_session ps"""


def _not_an_index_term(dialect: str, col: str) -> str:
    """On SQLite, `+col`: the view's own filter must not pick an index. SQLite has no statistics, so
    for `started_at IS NOT NULL` it took the `started_at` index for any query over `sessions` whose
    own terms named no better one, and then read every row at random: the shipped report's join of
    a million sessions to their PR links went from the (session_id, …) covering index, in order, to
    random row reads. A query's own `started_at` terms still use the index."""
    return f"+{col}" if dialect == "sqlite" else col


def _json(dialect: str, key: str) -> str:
    if dialect == "postgresql":
        return f"(e.payload::jsonb ->> '{key}')"
    return f"json_extract(e.payload, '$.{key}')"


def view_sql(dialect: str) -> dict[str, str]:
    """name -> SELECT statement, for the given SQLAlchemy dialect name."""
    return {
        "teams": "SELECT t.id AS team_id, t.name AS team, t.created_at FROM team t",
        "projects": (
            "SELECT p.id AS project_id, p.name AS project, t.name AS team, p.repo_url AS repo, p.created_at "
            "FROM project p JOIN team t ON t.id = p.team_id"
        ),
        "engineers": (
            "SELECT e.id AS engineer_id, e.email AS engineer, e.name, t.name AS team, e.created_at "
            "FROM engineer e JOIN team t ON t.id = e.team_id"
        ),
        "llm_calls": f"""
SELECT c.call_id, c.started_at, c.ended_at, {_day(dialect, "c.started_at")} AS day,
       t.name AS team, p.name AS project, e.email AS engineer, k.prefix AS key_prefix,
       c.session_id, c.agent_session_id, c.source, c.provider, c.endpoint,
       c.model_requested, c.model, c.route_reason,
       c.input_tokens, c.cache_read_tokens, c.cache_write_tokens, c.cache_write_1h_tokens,
       c.output_tokens, c.reasoning_tokens,
       c.input_tokens + c.cache_read_tokens + c.cache_write_tokens + c.output_tokens AS total_tokens,
       c.cost_usd, c.saved_usd, c.price_source, c.status, c.http_status, c.error,
       c.latency_ms, c.ttft_ms, c.stream, c.client, c.request_id, c.tags, c.cache_hit
FROM llm_call c
LEFT JOIN team t ON t.id = c.team_id
LEFT JOIN project p ON p.id = c.project_id
LEFT JOIN engineer e ON e.id = c.engineer_id
LEFT JOIN virtual_key k ON k.id = c.key_id""",
        "sessions": f"""
SELECT r.session_id, r.engineer, {_name("team", "r.team_id")} AS team, {_name("project", "r.project_id")} AS project,
       r.repo, r.branch, r.agent, r.agent_version, r.agent_session_id, r.model, {_models(dialect)} AS models,
       r.started_at, r.ended_at, r.week, {_day(dialect, "r.started_at")} AS day,
       r.duration_s, r.head_before, r.head_after, r.exit_code, r.status, r.source, r.cwd,
       r.files_created, r.files_modified, r.files_deleted, r.files_renamed, r.files_changed,
       r.lines_added, r.lines_removed, r.lines_added + r.lines_removed AS lines_changed,
       r.commands, r.packages, r.connections, r.prompts, r.tool_calls,
       r.calls, r.input_tokens, r.cache_read_tokens, r.cache_write_tokens, r.output_tokens,
       r.input_tokens + r.cache_read_tokens + r.cache_write_tokens + r.output_tokens AS total_tokens,
       r.cost_usd, CASE WHEN r.merged_prs > 0 THEN 1 ELSE 0 END AS merged, r.merged_prs,
       r.team_id, r.project_id, r.engineer_id
FROM session_rollup r
WHERE {_not_an_index_term(dialect, "r.started_at")} IS NOT NULL""",
        "events": "SELECT e.event_id, e.session_id, e.ts, e.kind, e.payload FROM event e",
        "file_changes": (
            "SELECT f.session_id, f.path, f.change, f.old_path, f.lines_added, f.lines_removed, "
            "f.binary, f.diff, f.diff_truncated FROM file_change f"
        ),
        "commits": (
            "SELECT g.sha, g.session_id, g.repo, g.message, g.author, g.committed_at, g.files FROM git_commit g"
        ),
        "pull_requests": f"""
SELECT pr.id AS pr_id, pr.repo, pr.number, pr.title, pr.merged_at, {_day(dialect, "pr.merged_at")} AS merged_day,
       pr.merge_sha, pr.merge_kind, pr.source,
       (SELECT COUNT(*) FROM pr_session ps JOIN session_rollup r ON r.session_id = ps.session_id
         WHERE ps.pr_id = pr.id AND r.started_at IS NOT NULL) AS sessions,
       COALESCE((SELECT SUM(r.cost_usd / r.merged_prs) FROM pr_session ps
         JOIN session_rollup r ON r.session_id = ps.session_id
         WHERE ps.pr_id = pr.id AND r.started_at IS NOT NULL AND r.merged_prs > 0), 0) AS cost_usd
FROM pull_request pr""",
        "pr_sessions": _pr_sessions(dialect),
        "session_models": """
SELECT sm.session_id, NULLIF(sm.model, '') AS model, sm.calls, sm.cost_usd FROM session_model sm""",
        "daily_spend": _spend_view("d.day", "call_daily d"),
        "monthly_spend": _spend_view("d.month", "call_monthly d"),
        "package_installs": f"""
SELECT e.event_id, e.session_id, e.ts, {_json(dialect, "ecosystem")} AS ecosystem, {_json(dialect, "name")} AS name,
       {_json(dialect, "version_spec")} AS version_spec, {_json(dialect, "manager")} AS manager,
       r.engineer, t.name AS team, p.name AS project, r.repo, r.agent
FROM event e
LEFT JOIN session_rollup r ON r.session_id = e.session_id
LEFT JOIN team t ON t.id = r.team_id
LEFT JOIN project p ON p.id = r.project_id
WHERE e.kind = 'package_install'""",
    }
