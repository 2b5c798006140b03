"""PostgreSQL: ingests of different teams no longer take turns on the calls' period lock

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23 06:00:00

The roll-ups that sessions share (`call_daily`, `call_monthly`, `session_week`, `pr_team`) are written
under one lock for the whole store (`store/locks.py`, `lock_call_periods`), so concurrent ingests took
turns from their sessions' insert to their commit. Sampled in `pg_stat_activity` while `serve --workers
2` took four senders' 2,000-event batches: the backends were waiting on that advisory lock more often
than they were running.

Every row of those roll-ups has a team in its key (no team counts as team 0), so a lock per team is
enough when a writer knows the teams of the rows it will write. Ingest with a key (a team) now takes,
after its session locks, the store-wide lock *shared* and its teams' locks in ascending order, and
names those teams in the transaction-local setting `agenttrail.calls_teams`. Writers that do not
(the gateway's recorder, linking, a local import, ingest's retry) take the store-wide lock exclusively
as before, which waits for every shared holder and keeps them out.

What this migration adds, so that the roll-ups stay exact whatever a batch turns out to touch:

- `at_calls_lock()`: the store-wide lock, exclusive, unless the transaction named its teams. 0011's
  triggers (weeks, PR teams, links) took that lock themselves; they now call this function. The link
  trigger took it even for a statement that linked nothing, which every commit's insert is (its
  `at_link_commit` inserts the links it finds, usually none): now only when links arrive.
- Guard triggers, named to fire before the roll-up triggers of the same statement (triggers of one
  event fire in name order): on `llm_call` (insert, update), `session_rollup` (insert, update, delete:
  rows of started sessions, the ones the week and PR roll-ups read) and `pr_session` (insert: the
  linked sessions). When the transaction named its teams and a row belongs to another team, the guard
  raises SQLSTATE AT001 before any shared row is written; ingest rolls back and stores the batch again
  under the store-wide lock (a gateway call of another team claimed by the batch's session, say).

SQLite has one writer at a time and none of this. Downgrade restores 0012's functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from agenttrail.store.migrations.siblings import load as load_migration

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

R11 = load_migration("0011_record_week_pr_rollups.py")
R12 = load_migration("0012_rollup_weeks_changed_rows.py")

SETTING = "agenttrail.calls_teams"  # store/locks.py sets it
ERRCODE = "AT001"
_TEAMS = f"COALESCE(current_setting('{SETTING}', true), '')"
_OUTSIDE = "COALESCE({r}.team_id, 0) <> ALL (string_to_array(teams, ',')::int[])"

# (trigger and function name, table, event, transition tables, the rows to check: (source, alias, filter))
GUARDS: dict[str, tuple[str, str, str, list[tuple[str, str, str]]]] = {
    "at_guard_calls_ins": ("llm_call", "INSERT", "REFERENCING NEW TABLE AS new_rows", [("new_rows x", "x", "true")]),
    "at_guard_calls_upd": (
        "llm_call",
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        [("old_rows x", "x", "true"), ("new_rows x", "x", "true")],
    ),
    "at_guard_weeks_ins": (
        "session_rollup",
        "INSERT",
        "REFERENCING NEW TABLE AS new_rows",
        [("new_rows x", "x", "x.started_at IS NOT NULL")],
    ),
    "at_guard_weeks_upd": (
        "session_rollup",
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        [("old_rows x", "x", "x.started_at IS NOT NULL"), ("new_rows x", "x", "x.started_at IS NOT NULL")],
    ),
    "at_guard_weeks_del": (
        "session_rollup",
        "DELETE",
        "REFERENCING OLD TABLE AS old_rows",
        [("old_rows x", "x", "x.started_at IS NOT NULL")],
    ),
    "at_guard_links": (
        "pr_session",
        "INSERT",
        "REFERENCING NEW TABLE AS new_rows",
        [("new_rows n JOIN session_rollup r ON r.session_id = n.session_id", "r", "r.started_at IS NOT NULL")],
    ),
}


def _lock_function() -> str:
    return (
        "CREATE OR REPLACE FUNCTION at_calls_lock() RETURNS void LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  IF {_TEAMS} = '' THEN\n    PERFORM pg_advisory_xact_lock({R11._lock_space('calls')}, 0);\n"
        "  END IF;\nEND\n$$"
    )


def _guard_function(name: str, checks: list[tuple[str, str, str]]) -> str:
    outside = " OR ".join(
        f"EXISTS (SELECT 1 FROM {src} WHERE {where} AND {_OUTSIDE.format(r=alias)})" for src, alias, where in checks
    )
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE\n  teams text := {_TEAMS};\nBEGIN\n"
        f"  IF teams <> '' AND ({outside}) THEN\n"
        f"    RAISE EXCEPTION 'a roll-up row of a team this transaction did not lock' USING ERRCODE = '{ERRCODE}';\n"
        "  END IF;\n  RETURN NULL;\nEND\n$$"
    )


def _functions_0012() -> dict[str, str]:
    """0011's trigger functions as 0012 left them."""
    functions = R11._pg_functions()
    functions[R12.FUNCTION] = R12._update_body()
    return functions


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_lock_function())
    for name, body in _functions_0012().items():
        body = body.replace(R11._calls_lock(), "PERFORM at_calls_lock()")
        if name == "at_rollup_merged":  # a commit's insert links none in most batches: no lock for nothing
            body = f"  IF EXISTS (SELECT 1 FROM new_rows) THEN\n{body}\n  END IF;"
        op.execute(R11._pg_function(name, body))
    for name, (table, event, referencing, checks) in GUARDS.items():
        op.execute(_guard_function(name, checks))
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, *_rest) in GUARDS.items():
        op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute(f"DROP FUNCTION {name}()")
    for name, body in _functions_0012().items():
        op.execute(R11._pg_function(name, body))
    op.execute("DROP FUNCTION at_calls_lock()")
