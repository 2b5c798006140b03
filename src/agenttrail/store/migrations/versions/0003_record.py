"""the organisation's record: session and daily roll-ups kept by triggers, PR-session links, API tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 18:00:00

Why triggers: the `sessions` view must answer a week's GROUP BY over a million sessions in well under a
second, so per-session (and per-day) aggregates are materialised. Every writer of the source tables
(ingest, the gateway's batch recorder, importers, future ones) then keeps them exact without knowing
they exist, and a re-sent batch changes nothing because only rows actually inserted fire. SQLite uses
row triggers; PostgreSQL uses statement triggers over transition tables, so one ingest batch updates
each roll-up row once. There is deliberately no DELETE trigger: purging content on a retention
schedule keeps the aggregates.

The SQL lives here, not in application code, so this migration stays what it was when it ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ---- what each roll-up adds up, as expressions over a row alias `{r}` ----------------------------------

SESSION_DIMS = ("started_at", "ended_at", "week", "team_id", "project_id", "engineer_id", "engineer", "repo", "agent")

FILE_AGG = {
    "files_created": "CASE WHEN {r}.change = 'created' THEN 1 ELSE 0 END",
    "files_modified": "CASE WHEN {r}.change = 'modified' THEN 1 ELSE 0 END",
    "files_deleted": "CASE WHEN {r}.change = 'deleted' THEN 1 ELSE 0 END",
    "files_renamed": "CASE WHEN {r}.change = 'renamed' THEN 1 ELSE 0 END",
    "files_changed": "1",
    "lines_added": "{r}.lines_added",
    "lines_removed": "{r}.lines_removed",
}

EVENT_KINDS = {
    "commands": "exec",
    "packages": "package_install",
    "connections": "net_connect",
    "prompts": "prompt",
    "tool_calls": "tool_call",
}
EVENT_AGG = {col: f"CASE WHEN {{r}}.kind = '{kind}' THEN 1 ELSE 0 END" for col, kind in EVENT_KINDS.items()}
EVENT_WHERE = "{r}.kind IN (" + ", ".join(f"'{k}'" for k in EVENT_KINDS.values()) + ")"

TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
CALL_AGG = {"calls": "1", **{t: f"{{r}}.{t}" for t in TOKENS}, "cost_usd": "{r}.cost_usd"}

MODEL_KEY = {"session_id": "{r}.session_id", "model": "COALESCE({r}.model, '')"}
MODEL_AGG = {"calls": "1", "cost_usd": "{r}.cost_usd"}


def _daily_key(dialect: str) -> dict[str, str]:
    day = "date({r}.started_at)" if dialect == "sqlite" else "to_char({r}.started_at, 'YYYY-MM-DD')"
    return {
        "day": day,
        "team_id": "COALESCE({r}.team_id, 0)",
        "project_id": "COALESCE({r}.project_id, 0)",
        "engineer_id": "COALESCE({r}.engineer_id, 0)",
        "provider": "{r}.provider",
        "model": "COALESCE({r}.model, '')",
        "in_session": "CASE WHEN {r}.session_id IS NOT NULL THEN 1 ELSE 0 END",
    }


# Columns of llm_call whose change moves a call between or within roll-up rows.
CALL_FIELDS = (
    "session_id",
    "started_at",
    "team_id",
    "project_id",
    "engineer_id",
    "provider",
    "model",
    *TOKENS,
    "cost_usd",
)
BY_SESSION = {"session_id": "{r}.session_id"}
IN_SESSION = "{r}.session_id IS NOT NULL"
INS = "INSERT REFERENCING NEW TABLE AS new_rows"
UPD = "UPDATE REFERENCING NEW TABLE AS new_rows"


def _fmt(expr: str, r: str) -> str:
    return expr.replace("{r}", r)


# ---- set-based statements: PostgreSQL triggers (over transition tables) and the backfill ----------------


def _upsert_sum(
    table: str, key: dict[str, str], agg: dict[str, str], src: str, where: str = "true", sign: int = 1
) -> str:
    keys = ", ".join(key)
    key_exprs = [_fmt(e, "x") for e in key.values()]
    sums = [f"SUM({_fmt(e, 'x')}) * {sign}" if sign != 1 else f"SUM({_fmt(e, 'x')})" for e in agg.values()]
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in agg)
    return (
        f"INSERT INTO {table} ({keys}, {', '.join(agg)}) "
        f"SELECT {', '.join(key_exprs)}, {', '.join(sums)} FROM {src} x WHERE {_fmt(where, 'x')} "
        f"GROUP BY {', '.join(key_exprs)} ORDER BY {', '.join(key_exprs)} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    )


def _session_dims_set(src: str) -> str:
    cols = ", ".join(SESSION_DIMS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in SESSION_DIMS)
    return (
        f"INSERT INTO session_rollup (session_id, {cols}) SELECT session_id, {cols} FROM {src} x WHERE true "
        f"ORDER BY session_id ON CONFLICT (session_id) DO UPDATE SET {sets}"
    )


def _primary_model_set(dialect: str, src: str) -> str:
    """The session's model is the one with the largest cost (then most calls, then name)."""
    if dialect == "postgresql":
        return (
            "UPDATE session_rollup r SET model = pm.model FROM ("
            "SELECT DISTINCT ON (sm.session_id) sm.session_id, NULLIF(sm.model, '') AS model FROM session_model sm "
            f"WHERE sm.session_id IN (SELECT y.session_id FROM {src} y WHERE y.session_id IS NOT NULL) "
            "ORDER BY sm.session_id, sm.cost_usd DESC, sm.calls DESC, sm.model) pm "
            "WHERE r.session_id = pm.session_id AND r.model IS DISTINCT FROM pm.model"
        )
    return (
        "UPDATE session_rollup SET model = (SELECT NULLIF(sm.model, '') FROM session_model sm "
        "WHERE sm.session_id = session_rollup.session_id ORDER BY sm.cost_usd DESC, sm.calls DESC, sm.model LIMIT 1) "
        f"WHERE session_id IN (SELECT y.session_id FROM {src} y WHERE y.session_id IS NOT NULL)"
    )


def _calls_set(dialect: str, src: str, sign: int) -> list[str]:
    return [
        _upsert_sum("session_rollup", BY_SESSION, CALL_AGG, src, IN_SESSION, sign),
        _upsert_sum("session_model", MODEL_KEY, MODEL_AGG, src, IN_SESSION, sign),
        _primary_model_set(dialect, src),
        _upsert_sum("call_daily", _daily_key(dialect), CALL_AGG, src, "true", sign),
    ]


def _links_from_commits(src: str) -> str:
    return (
        "INSERT INTO pr_session (pr_id, session_id, how) SELECT DISTINCT pc.pr_id, x.session_id, 'sha' "
        f"FROM {src} x JOIN pr_commit pc ON pc.sha = x.sha WHERE x.session_id IS NOT NULL ON CONFLICT DO NOTHING"
    )


def _links_from_pr_commits(src: str) -> str:
    return (
        "INSERT INTO pr_session (pr_id, session_id, how) SELECT DISTINCT x.pr_id, g.session_id, 'sha' "
        f"FROM {src} x JOIN git_commit g ON g.sha = x.sha WHERE g.session_id IS NOT NULL ON CONFLICT DO NOTHING"
    )


def _merged_set(src: str) -> str:
    return _upsert_sum("session_rollup", BY_SESSION, {"merged_prs": "1"}, src)


# ---- SQLite row triggers --------------------------------------------------------------------------------


def _upsert_row(table: str, key: dict[str, str], agg: dict[str, str], r: str, sign: int = 1) -> str:
    """Add one row's figures: UPDATE the existing roll-up row, INSERT it only when missing.

    Measured on SQLite: an UPSERT builds every index key of the would-be new row before it finds the
    conflict, so it costs twice this UPDATE-then-INSERT-if-missing pair when the row exists (the
    common case: the session's start made it)."""
    keys = ", ".join(key)
    key_vals = [_fmt(e, r) for e in key.values()]
    add = [_fmt(e, r) if sign == 1 else f"-({_fmt(e, r)})" for e in agg.values()]
    match = " AND ".join(f"{k} = {v}" for k, v in zip(key, key_vals, strict=True))
    sets = ", ".join(f"{c} = {c} + ({v})" for c, v in zip(agg, add, strict=True))
    return (
        f"UPDATE {table} SET {sets} WHERE {match}; "
        f"INSERT INTO {table} ({keys}, {', '.join(agg)}) SELECT {', '.join(key_vals + add)} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {match});"
    )


def _session_dims_row() -> str:
    cols = ", ".join(SESSION_DIMS)
    values = ", ".join(f"NEW.{c}" for c in SESSION_DIMS)
    sets = ", ".join(f"{c} = excluded.{c}" for c in SESSION_DIMS)
    return (
        f"INSERT INTO session_rollup (session_id, {cols}) VALUES (NEW.session_id, {values}) "
        f"ON CONFLICT (session_id) DO UPDATE SET {sets};"
    )


def _primary_model_row(r: str, only_if_other: bool) -> str:
    cond = f" AND (model IS NULL OR model IS NOT {r}.model)" if only_if_other else ""
    return (
        "UPDATE session_rollup SET model = (SELECT NULLIF(sm.model, '') FROM session_model sm "
        f"WHERE sm.session_id = {r}.session_id ORDER BY sm.cost_usd DESC, sm.calls DESC, sm.model LIMIT 1) "
        f"WHERE session_id = {r}.session_id{cond};"
    )


def _call_row(r: str, sign: int) -> tuple[str, str, str, str]:
    """(call_daily, session_rollup, session_model, main model) statements for one call row."""
    session = _upsert_row("session_rollup", BY_SESSION, CALL_AGG, r, sign)
    model = _upsert_row("session_model", MODEL_KEY, MODEL_AGG, r, sign)
    daily = _upsert_row("call_daily", _daily_key("sqlite"), CALL_AGG, r, sign)
    # Inserting a call of the session's main model cannot change which model is main; skip the lookup.
    primary = _primary_model_row(r, only_if_other=sign == 1)
    return daily, session, model, primary


def _sqlite_triggers() -> list[str]:
    dims = _session_dims_row()
    file_row = _upsert_row("session_rollup", BY_SESSION, FILE_AGG, "NEW")
    event_row = _upsert_row("session_rollup", BY_SESSION, EVENT_AGG, "NEW")
    ins_daily, ins_session, ins_model, ins_primary = _call_row("NEW", 1)
    old_daily, old_session, old_model, old_primary = _call_row("OLD", -1)
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in CALL_FIELDS)
    return [
        f"CREATE TRIGGER at_rollup_session_ins AFTER INSERT ON agent_session BEGIN {dims} END",
        f"CREATE TRIGGER at_rollup_session_upd AFTER UPDATE ON agent_session BEGIN {dims} END",
        f"CREATE TRIGGER at_rollup_file_change AFTER INSERT ON file_change BEGIN {file_row} END",
        f"CREATE TRIGGER at_rollup_event AFTER INSERT ON event WHEN {_fmt(EVENT_WHERE, 'NEW')} BEGIN {event_row} END",
        f"CREATE TRIGGER at_rollup_call_daily AFTER INSERT ON llm_call BEGIN {ins_daily} END",
        "CREATE TRIGGER at_rollup_call_session AFTER INSERT ON llm_call WHEN NEW.session_id IS NOT NULL "
        f"BEGIN {ins_session} {ins_model} {ins_primary} END",
        # An update that moves a call (a transcript's record giving a gateway call its session id) takes
        # it out of the old roll-up rows and puts it into the new ones.
        f"CREATE TRIGGER at_rollup_call_upd_daily AFTER UPDATE ON llm_call WHEN {changed} "
        f"BEGIN {old_daily} {ins_daily} END",
        "CREATE TRIGGER at_rollup_call_upd_old AFTER UPDATE ON llm_call "
        f"WHEN OLD.session_id IS NOT NULL AND ({changed}) BEGIN {old_session} {old_model} {old_primary} END",
        "CREATE TRIGGER at_rollup_call_upd_new AFTER UPDATE ON llm_call "
        f"WHEN NEW.session_id IS NOT NULL AND ({changed}) "
        f"BEGIN {ins_session} {ins_model} {_primary_model_row('NEW', only_if_other=False)} END",
        "CREATE TRIGGER at_link_commit AFTER INSERT ON git_commit WHEN NEW.session_id IS NOT NULL BEGIN "
        "INSERT INTO pr_session (pr_id, session_id, how) SELECT pc.pr_id, NEW.session_id, 'sha' FROM pr_commit pc "
        "WHERE pc.sha = NEW.sha ON CONFLICT DO NOTHING; END",
        "CREATE TRIGGER at_link_pr_commit AFTER INSERT ON pr_commit BEGIN "
        "INSERT INTO pr_session (pr_id, session_id, how) SELECT DISTINCT NEW.pr_id, g.session_id, 'sha' "
        "FROM git_commit g WHERE g.sha = NEW.sha AND g.session_id IS NOT NULL ON CONFLICT DO NOTHING; END",
        "CREATE TRIGGER at_rollup_merged AFTER INSERT ON pr_session BEGIN "
        + _upsert_row("session_rollup", BY_SESSION, {"merged_prs": "1"}, "NEW")
        + " END",
    ]


SQLITE_TRIGGER_NAMES = (
    "at_rollup_session_ins",
    "at_rollup_session_upd",
    "at_rollup_file_change",
    "at_rollup_event",
    "at_rollup_call_daily",
    "at_rollup_call_session",
    "at_rollup_call_upd_daily",
    "at_rollup_call_upd_old",
    "at_rollup_call_upd_new",
    "at_link_commit",
    "at_link_pr_commit",
    "at_rollup_merged",
)

# ---- PostgreSQL statement triggers ------------------------------------------------------------------


def _pg_changed_calls(alias_rows: str) -> str:
    """The rows of a transition table whose roll-up fields changed in this UPDATE."""
    diff = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in CALL_FIELDS)
    side = "o" if alias_rows == "old_rows" else "n"
    return f"(SELECT {side}.* FROM old_rows o JOIN new_rows n ON n.call_id = o.call_id WHERE {diff})"


def _pg_triggers() -> list[tuple[str, str, str, list[str]]]:
    """(name, table, timing clause, body statements)."""
    new_changed, old_changed = _pg_changed_calls("new_rows"), _pg_changed_calls("old_rows")
    return [
        ("at_rollup_session_ins", "agent_session", INS, [_session_dims_set("new_rows")]),
        ("at_rollup_session_upd", "agent_session", UPD, [_session_dims_set("new_rows")]),
        (
            "at_rollup_file_change",
            "file_change",
            INS,
            [_upsert_sum("session_rollup", BY_SESSION, FILE_AGG, "new_rows")],
        ),
        (
            "at_rollup_event",
            "event",
            INS,
            [_upsert_sum("session_rollup", BY_SESSION, EVENT_AGG, "new_rows", EVENT_WHERE)],
        ),
        ("at_rollup_call_ins", "llm_call", INS, _calls_set("postgresql", "new_rows", 1)),
        (
            "at_rollup_call_upd",
            "llm_call",
            "UPDATE REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
            _calls_set("postgresql", old_changed, -1) + _calls_set("postgresql", new_changed, 1),
        ),
        ("at_link_commit", "git_commit", INS, [_links_from_commits("new_rows")]),
        ("at_link_pr_commit", "pr_commit", INS, [_links_from_pr_commits("new_rows")]),
        ("at_rollup_merged", "pr_session", INS, [_merged_set("new_rows")]),
    ]


def _backfill(dialect: str) -> list[str]:
    """The roll-ups of rows stored before this migration, computed the same way the triggers add them."""
    return [
        _session_dims_set("agent_session"),
        _upsert_sum("session_rollup", BY_SESSION, FILE_AGG, "file_change"),
        _upsert_sum("session_rollup", BY_SESSION, EVENT_AGG, "event", EVENT_WHERE),
        *_calls_set(dialect, "llm_call", 1),
        _links_from_pr_commits("pr_commit"),
        _merged_set("pr_session"),
    ]


def upgrade() -> None:
    op.create_table(
        "session_rollup",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("week", sa.String(length=8), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("engineer_id", sa.Integer(), nullable=True),
        sa.Column("engineer", sa.String(length=320), nullable=True),
        sa.Column("repo", sa.String(length=500), nullable=True),
        sa.Column("agent", sa.String(length=100), nullable=True),
        *(
            sa.Column(c, sa.Integer(), server_default="0", nullable=False)
            for c in (
                "files_created",
                "files_modified",
                "files_deleted",
                "files_renamed",
                "files_changed",
            )
        ),
        sa.Column("lines_added", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lines_removed", sa.BigInteger(), server_default="0", nullable=False),
        *(
            sa.Column(c, sa.Integer(), server_default="0", nullable=False)
            for c in ("commands", "packages", "connections", "prompts", "tool_calls", "calls")
        ),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in TOKENS),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("merged_prs", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_session_rollup")),
    )
    with op.batch_alter_table("session_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_session_rollup_week", ["week"], unique=False)
        batch_op.create_index("ix_session_rollup_started_at", ["started_at"], unique=False)
        batch_op.create_index("ix_session_rollup_repo_started", ["repo", "started_at"], unique=False)

    op.create_table(
        "session_model",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("session_id", "model", name=op.f("pk_session_model")),
    )
    op.create_table(
        "call_daily",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("engineer_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("in_session", sa.Integer(), nullable=False),
        sa.Column("calls", sa.BigInteger(), server_default="0", nullable=False),
        *(sa.Column(c, sa.BigInteger(), server_default="0", nullable=False) for c in TOKENS),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "team_id", "project_id", "engineer_id", "provider", "model", "in_session", name=op.f("pk_call_daily")
        ),
    )
    op.create_table(
        "pr_session",
        sa.Column("pr_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("how", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(["pr_id"], ["pull_request.id"], name=op.f("fk_pr_session_pr_id_pull_request")),
        sa.PrimaryKeyConstraint("pr_id", "session_id", name=op.f("pk_pr_session")),
    )
    with op.batch_alter_table("pr_session", schema=None) as batch_op:
        batch_op.create_index("ix_pr_session_session_id", ["session_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"], name=op.f("fk_api_token_team_id_team")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )

    dialect = op.get_bind().dialect.name
    for stmt in _backfill(dialect):
        op.execute(stmt)
    if dialect == "postgresql":
        for name, table, timing, body in _pg_triggers():
            statements = ";\n  ".join(body)
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  {statements};\n"
                "  RETURN NULL;\nEND\n$$"
            )
            event, referencing = timing.split(" ", 1)
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
    else:
        for stmt in _sqlite_triggers():
            op.execute(stmt)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for name, table, _timing, _body in _pg_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in ("api_token", "pr_session", "call_daily", "session_model", "session_rollup"):
        op.drop_table(table)
