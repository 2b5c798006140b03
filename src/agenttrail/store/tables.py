"""The stored tables (SQLAlchemy Core). Users read the views in `views.py`, never these directly.

Tables are singular (`llm_call`), the documented views plural (`llm_calls`). All times are naive UTC.
Money that budgets count is kept in integer nano-dollars (`*_nanos`) so sums are exact; reported
cost columns are floats in USD.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

team = Table(
    "team",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
)

project = Table(
    "project",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("team_id", Integer, ForeignKey("team.id"), nullable=False),
    Column("repo_url", String(500)),
    Column("created_at", DateTime, nullable=False),
)

engineer = Table(
    "engineer",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200)),
    Column("team_id", Integer, ForeignKey("team.id"), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

virtual_key = Table(
    "virtual_key",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200)),
    Column("team_id", Integer, ForeignKey("team.id"), nullable=False),
    Column("project_id", Integer, ForeignKey("project.id")),
    Column("engineer_id", Integer, ForeignKey("engineer.id")),
    Column("allowed_models", Text),  # JSON list; NULL = any model
    Column("expires_at", DateTime),
    Column("revoked_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    # A session-scoped key lives only while its tracer session does, and tags every call with it.
    Column("session_id", String(64)),
    Column("parent_key_id", Integer, ForeignKey("virtual_key.id")),
)

llm_call = Table(
    "llm_call",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("key_id", Integer),
    Column("team_id", Integer),
    Column("project_id", Integer),
    Column("engineer_id", Integer),
    Column("session_id", String(64)),
    Column("agent_session_id", String(200)),
    Column("source", String(20), nullable=False, server_default="gateway"),
    Column("provider", String(40), nullable=False),
    Column("endpoint", String(80)),
    Column("model_requested", String(200)),
    Column("model", String(200)),
    Column("route_reason", String(200)),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("cost_nanos", BigInteger, nullable=False, server_default="0"),
    Column("saved_usd", Float, nullable=False, server_default="0"),
    Column("price_source", String(200)),
    Column("status", String(40), nullable=False),
    Column("http_status", Integer),
    Column("error", Text),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("stream", Boolean, nullable=False, server_default="0"),
    Column("client", String(300)),
    Column("request_id", String(200)),
    Column("tags", Text),  # JSON object
    Column("cache_hit", Boolean, nullable=False, server_default="0"),
    Index("ix_llm_call_started_at", "started_at"),
    Index("ix_llm_call_team_started", "team_id", "started_at"),
    Index("ix_llm_call_session_id", "session_id"),
    Index("ix_llm_call_request_id", "request_id"),
)

agent_session = Table(
    "agent_session",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("engineer", String(320)),
    Column("engineer_id", Integer),
    Column("team_id", Integer),
    Column("project_id", Integer),
    Column("repo", String(500)),
    Column("repo_path", Text),
    Column("branch", String(300)),
    Column("head_before", String(64)),
    Column("head_after", String(64)),
    Column("agent", String(100)),
    Column("agent_version", String(100)),
    Column("agent_session_id", String(200)),
    Column("command", Text),  # JSON argv
    Column("cwd", Text),
    Column("host", String(300)),
    Column("source", String(20), nullable=False, server_default="traced"),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("week", String(8), nullable=False),  # ISO week of started_at, e.g. 2026-W19
    Column("exit_code", Integer),
    Column("status", String(40)),
    Column("sandboxed", Boolean),
    Index("ix_agent_session_week", "week"),
    Index("ix_agent_session_started_at", "started_at"),
    Index("ix_agent_session_agent_session_id", "agent_session_id"),
)

event = Table(
    "event",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("ts", DateTime, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_event_session_ts", "session_id", "ts"),
    Index("ix_event_kind_ts", "kind", "ts"),
)

file_change = Table(
    "file_change",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("change", String(20), nullable=False),  # created | modified | deleted | renamed
    Column("old_path", Text),
    Column("lines_added", Integer, nullable=False, server_default="0"),
    Column("lines_removed", Integer, nullable=False, server_default="0"),
    Column("binary", Boolean, nullable=False, server_default="0"),
    Column("diff", Text),
    Column("diff_truncated", Boolean, nullable=False, server_default="0"),
    Index("ix_file_change_session_id", "session_id"),
)

git_commit = Table(
    "git_commit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sha", String(64), nullable=False),
    Column("session_id", String(64)),
    Column("repo", String(500)),
    Column("message", Text),
    Column("author", String(400)),
    Column("committed_at", DateTime),
    Column("files", Text),  # JSON list
    UniqueConstraint("sha", "session_id", name="uq_git_commit_sha_session"),
    Index("ix_git_commit_sha", "sha"),
)

pull_request = Table(
    "pull_request",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("repo", String(500), nullable=False),
    Column("number", Integer, nullable=False),
    Column("title", Text),
    Column("merged_at", DateTime),
    Column("merge_sha", String(64)),
    Column("merge_kind", String(20)),  # merge | squash | rebase
    Column("source", String(20)),  # git | webhook
    UniqueConstraint("repo", "number", name="uq_pull_request_repo_number"),
)

pr_commit = Table(
    "pr_commit",
    metadata,
    Column("pr_id", Integer, ForeignKey("pull_request.id"), nullable=False),
    Column("sha", String(64), nullable=False),
    PrimaryKeyConstraint("pr_id", "sha"),
    Index("ix_pr_commit_sha", "sha"),
)

budget = Table(
    "budget",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(20), nullable=False),  # org | team | project | engineer | key
    Column("scope_id", Integer),
    Column("period", String(10), nullable=False),  # day | week | month | total
    Column("limit_nanos", BigInteger, nullable=False),
    Column("soft_pcts", String(100), nullable=False, server_default="50,80,100"),
    Column("owner", String(320)),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("scope", "scope_id", "period", name="uq_budget_scope_period"),
)

budget_spend = Table(
    "budget_spend",
    metadata,
    Column("budget_id", Integer, ForeignKey("budget.id", ondelete="CASCADE"), nullable=False),
    Column("period_start", DateTime, nullable=False),
    Column("spent_nanos", BigInteger, nullable=False, server_default="0"),
    Column("reserved_nanos", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("budget_id", "period_start"),
)

alert = Table(
    "alert",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("budget_id", Integer, nullable=False),
    Column("period_start", DateTime, nullable=False),
    Column("threshold_pct", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("payload", Text, nullable=False),
    UniqueConstraint("budget_id", "period_start", "threshold_pct", name="uq_alert_once"),
)

response_cache = Table(
    "response_cache",
    metadata,
    Column("cache_key", String(64), primary_key=True),
    Column("team_id", Integer, nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200)),
    Column("body", LargeBinary, nullable=False),
    Column("usage", Text),  # JSON of the original usage, for the cost a hit saves
    Column("cost_nanos", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

import_state = Table(
    "import_state",
    metadata,
    Column("source", String(40), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False, server_default="0"),
    Column("mtime", Float, nullable=False, server_default="0"),
    Column("offset", BigInteger, nullable=False, server_default="0"),
    Column("head_hash", String(64)),
    Column("updated_at", DateTime, nullable=False),
    PrimaryKeyConstraint("source", "path"),
)

agent_metric = Table(
    "agent_metric",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", String(200)),
    Column("name", String(200), nullable=False),
    Column("attributes", Text),
    Column("value", Float, nullable=False),
    Column("start_time", DateTime),
    Column("end_time", DateTime, nullable=False),
    Index("ix_agent_metric_session", "session_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime, nullable=False),
    Column("actor", String(320)),
    Column("action", String(100), nullable=False),
    Column("detail", Text),
)

schema_meta = Table(
    "schema_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# ---- The organisation's record (issue 5): roll-ups, PR ↔ session links, API tokens ----------------
# The roll-ups are kept exact by database triggers (migration 0003), so every writer (ingest, the
# gateway's recorder, importers) maintains them without knowing they exist, and reports read one row
# per session or per day instead of grouping millions of events. No DELETE trigger: purging content
# on a retention schedule keeps the aggregates, as DESIGN.md asks.

session_rollup = Table(
    "session_rollup",
    metadata,
    Column("session_id", String(64), primary_key=True),
    # Copied from agent_session so reports scan one table; NULL until the session's start arrives.
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("week", String(8)),
    Column("team_id", Integer),
    Column("project_id", Integer),
    Column("engineer_id", Integer),
    Column("engineer", String(320)),
    Column("repo", String(500)),
    Column("agent", String(100)),
    # The rest of the session's row (migration 0004), so the `sessions` view reads this table alone.
    Column("branch", String(300)),
    Column("agent_version", String(100)),
    Column("agent_session_id", String(200)),
    Column("head_before", String(64)),
    Column("head_after", String(64)),
    Column("exit_code", Integer),
    Column("status", String(40)),
    Column("source", String(20)),
    Column("cwd", Text),
    Column("duration_s", Float),  # written with the session's times (migration 0006), not computed per read
    Column("files_created", Integer, nullable=False, server_default="0"),
    Column("files_modified", Integer, nullable=False, server_default="0"),
    Column("files_deleted", Integer, nullable=False, server_default="0"),
    Column("files_renamed", Integer, nullable=False, server_default="0"),
    Column("files_changed", Integer, nullable=False, server_default="0"),
    Column("lines_added", BigInteger, nullable=False, server_default="0"),
    Column("lines_removed", BigInteger, nullable=False, server_default="0"),
    Column("commands", Integer, nullable=False, server_default="0"),
    Column("packages", Integer, nullable=False, server_default="0"),
    Column("connections", Integer, nullable=False, server_default="0"),
    Column("prompts", Integer, nullable=False, server_default="0"),
    Column("tool_calls", Integer, nullable=False, server_default="0"),
    Column("calls", Integer, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("model", String(200)),  # the model with the largest share of the session's cost (see session_model)
    Column("merged_prs", Integer, nullable=False, server_default="0"),  # merged PRs its commits reached
    Index("ix_session_rollup_week", "week"),
    Index("ix_session_rollup_started_at", "started_at"),
    Index("ix_session_rollup_repo_started", "repo", "started_at"),
    # On SQLite only, migration 0004 adds covering indexes in the reports' GROUP BY orders.
)

session_model = Table(
    "session_model",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("calls", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("session_id", "model"),
)

call_daily = Table(
    "call_daily",
    metadata,
    # One row per UTC day and attribution. NULL ids and models are stored as 0 and '' so that the
    # upsert's unique key matches them (NULLs never conflict); the `daily_spend` view maps them back.
    Column("day", String(10), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("engineer_id", Integer, nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("in_session", Integer, nullable=False),  # 1 when the calls carry a session id
    Column("calls", BigInteger, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("day", "team_id", "project_id", "engineer_id", "provider", "model", "in_session"),
)

call_monthly = Table(
    "call_monthly",
    metadata,
    # As call_daily, a calendar month at a time (migration 0005): a fifth of the rows, for long periods.
    Column("month", String(7), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("project_id", Integer, nullable=False),
    Column("engineer_id", Integer, nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("in_session", Integer, nullable=False),
    Column("calls", BigInteger, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("month", "team_id", "project_id", "engineer_id", "provider", "model", "in_session"),
)

pr_session = Table(
    "pr_session",
    metadata,
    Column("pr_id", Integer, ForeignKey("pull_request.id"), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("how", String(20), nullable=False),  # sha | trailer
    PrimaryKeyConstraint("pr_id", "session_id"),
    # Carries the PR id so a session's links are read from the index alone (migration 0007).
    Index("ix_pr_session_session_pr", "session_id", "pr_id"),
)

# Migration 0011: the sessions view's rows summed per ISO week x agent x engineer x repo x team (NULLs
# stored as '' / 0 with a bitmask in `nulls`, so the key can be a primary key), kept by triggers on
# session_rollup; adoption and shipped read whole weeks from here instead of a million sessions.
session_week = Table(
    "session_week",
    metadata,
    Column("week", String(8), nullable=False),
    Column("agent", String(100), nullable=False),
    Column("engineer", String(320), nullable=False),
    Column("repo", String(500), nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("nulls", Integer, nullable=False),
    Column("sessions", BigInteger, nullable=False, server_default="0"),
    Column("duration_s", Float, nullable=False, server_default="0"),
    Column("merged_cost_usd", Float, nullable=False, server_default="0"),
    Column("unmerged_cost_usd", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("week", "agent", "engineer", "repo", "team_id", "nulls"),
    sqlite_with_rowid=False,
)

# Migration 0011: per merged PR and team, the linked sessions and their cost (each session's cost split
# equally over its PRs), kept by the link and session_rollup triggers; shipped's $/merged PR reads it.
pr_team = Table(
    "pr_team",
    metadata,
    Column("pr_id", Integer, nullable=False),
    Column("team_id", Integer, nullable=False),
    Column("sessions", BigInteger, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("pr_id", "team_id"),
    sqlite_with_rowid=False,
)

# SQLite only in use (migration 0010): a row per table whose insert triggers a bulk insert has paused,
# with the table's largest rowid before it; deleting the row rolls the batch up in one statement per
# roll-up table. Empty outside a bulk insert's transaction (store/bulk.py).
rollup_pause = Table(
    "rollup_pause",
    metadata,
    Column("tbl", String(40), primary_key=True),
    Column("after_rowid", BigInteger, nullable=False),
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200)),
    Column("role", String(20), nullable=False),  # admin | finance | security | lead
    Column("team_id", Integer, ForeignKey("team.id")),  # a lead's team
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("last_used_at", DateTime),
)

# -- governance (migration 0002) ----------------------------------------------------------
# Rate-limit and concurrency counters, shaped like `budget_spend`: `spent` is what settled calls used,
# `reserved` what admitted calls (and per-process leases) still hold.
gov_counter = Table(
    "gov_counter",
    metadata,
    Column("counter", String(200), nullable=False),  # e.g. "rpm:team:3", "concurrency:key:12"
    Column("window_start", DateTime, nullable=False),
    Column("spent", BigInteger, nullable=False, server_default="0"),
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("counter", "window_start"),
)

# What each live server process holds in the `reserved` columns above and in `budget_spend`, so a
# process that dies without settling can have its holdings returned by the others.
gov_owner = Table(
    "gov_owner",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("host", String(300)),
    Column("pid", Integer),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
)

gov_hold = Table(
    "gov_hold",
    metadata,
    Column("owner", String(64), nullable=False),
    Column("tbl", String(10), nullable=False),  # budget | counter
    Column("ckey", String(200), nullable=False),  # budget id, or gov_counter.counter
    Column("window_start", DateTime, nullable=False),
    Column("held", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("owner", "tbl", "ckey", "window_start"),
)
