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
)


def _duration_s(dialect: str, start: str, end: str) -> str:
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


def _day(dialect: str, col: str) -> str:
    return f"CAST(CAST({col} AS date) AS text)" if dialect == "postgresql" else f"date({col})"


def _distinct_list(dialect: str, col: str) -> str:
    if dialect == "postgresql":
        return f"string_agg(DISTINCT {col}, ',')"
    return f"group_concat(DISTINCT {col})"


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
SELECT s.session_id, s.engineer, t.name AS team, p.name AS project, s.repo, s.branch,
       s.agent, s.agent_version, s.agent_session_id, c.model, c.models,
       s.started_at, s.ended_at, s.week, {_day(dialect, "s.started_at")} AS day,
       {_duration_s(dialect, "s.started_at", "s.ended_at")} AS duration_s,
       s.head_before, s.head_after, s.exit_code, s.status, s.source, s.cwd,
       COALESCE(f.files_created, 0) AS files_created,
       COALESCE(f.files_modified, 0) AS files_modified,
       COALESCE(f.files_deleted, 0) AS files_deleted,
       COALESCE(f.files_renamed, 0) AS files_renamed,
       COALESCE(f.files_changed, 0) AS files_changed,
       COALESCE(f.lines_added, 0) AS lines_added,
       COALESCE(f.lines_removed, 0) AS lines_removed,
       COALESCE(ev.commands, 0) AS commands,
       COALESCE(c.calls, 0) AS calls,
       COALESCE(c.input_tokens, 0) AS input_tokens,
       COALESCE(c.cache_read_tokens, 0) AS cache_read_tokens,
       COALESCE(c.cache_write_tokens, 0) AS cache_write_tokens,
       COALESCE(c.output_tokens, 0) AS output_tokens,
       COALESCE(c.cost_usd, 0) AS cost_usd
FROM agent_session s
LEFT JOIN team t ON t.id = s.team_id
LEFT JOIN project p ON p.id = s.project_id
LEFT JOIN (
    SELECT session_id,
           SUM(CASE WHEN change = 'created' THEN 1 ELSE 0 END) AS files_created,
           SUM(CASE WHEN change = 'modified' THEN 1 ELSE 0 END) AS files_modified,
           SUM(CASE WHEN change = 'deleted' THEN 1 ELSE 0 END) AS files_deleted,
           SUM(CASE WHEN change = 'renamed' THEN 1 ELSE 0 END) AS files_renamed,
           COUNT(*) AS files_changed,
           SUM(lines_added) AS lines_added, SUM(lines_removed) AS lines_removed
    FROM file_change GROUP BY session_id
) f ON f.session_id = s.session_id
LEFT JOIN (
    SELECT session_id, COUNT(*) AS commands FROM event WHERE kind = 'exec' GROUP BY session_id
) ev ON ev.session_id = s.session_id
LEFT JOIN (
    SELECT session_id, COUNT(*) AS calls, MAX(model) AS model, {_distinct_list(dialect, "model")} AS models,
           SUM(input_tokens) AS input_tokens, SUM(cache_read_tokens) AS cache_read_tokens,
           SUM(cache_write_tokens) AS cache_write_tokens, SUM(output_tokens) AS output_tokens,
           SUM(cost_usd) AS cost_usd
    FROM llm_call WHERE session_id IS NOT NULL GROUP BY session_id
) c ON c.session_id = s.session_id""",
        "events": "SELECT e.event_id, e.session_id, e.ts, e.kind, e.payload FROM event e",
        "file_changes": (
            "SELECT f.session_id, f.path, f.change, f.old_path, f.lines_added, f.lines_removed, "
            "f.binary, f.diff, f.diff_truncated FROM file_change f"
        ),
        "commits": (
            "SELECT g.sha, g.session_id, g.repo, g.message, g.author, g.committed_at, g.files FROM git_commit g"
        ),
        "pull_requests": """
SELECT pr.repo, pr.number, pr.title, pr.merged_at, pr.merge_sha, pr.merge_kind, pr.source,
       (SELECT COUNT(DISTINCT g.session_id) FROM pr_commit pc JOIN git_commit g ON g.sha = pc.sha
         WHERE pc.pr_id = pr.id AND g.session_id IS NOT NULL) AS sessions
FROM pull_request pr""",
    }
