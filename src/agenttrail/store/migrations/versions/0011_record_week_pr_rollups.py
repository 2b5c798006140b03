"""the organisation's record: sessions rolled up by week (adoption, spend shares) and by PR and team (shipped)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 02:00:00

Measured on a synthetic million sessions: adoption (4-5 s) and shipped (3.5-4 s) read every session
(and shipped every PR link joined to its session) on each run. Two roll-ups now hold what they group:

- `session_week`: one row per week, agent, engineer, repo and team (about six per engineer-week at
  seed-demo's shape): sessions, agent seconds, and cost split by whether the session reached a merged
  PR. NULL agents, engineers and repos are stored as '' with a bit each in `nulls`, and no team as 0,
  so that the key has no NULL (an upsert never matches NULLs) and a real '' stays apart from NULL.
- `pr_team`: one row per merged PR and team: its linked sessions and their cost, a session split
  equally over the PRs it reached (cost / merged_prs), as the shipped report defines a PR's cost.

Both follow `session_rollup`, where everything about a session meets (its dimensions from
`agent_session`, its cost from its calls, its merged-PR count from its links): triggers on it take a
changed row's old figures out and put its new ones in, and a deleted row's out (the importers' join
deletes a session it folds into another; retention never deletes roll-up rows). So every writer that already keeps
`session_rollup` (ingest, the gateway's recorder, importers, 0010's batch roll-up on SQLite, whose
aggregated upsert fires them once per session of the batch) keeps these too. A PR link changes the
linked session's share in every PR it reached: the link trigger (0003's `at_rollup_merged`, replaced)
first adds the new link at the session's current share, then counts it in `merged_prs`, whose change
moves all of the session's links, the new one included, to the new share.

SQLite: row triggers, UPDATE-then-INSERT-if-missing (see 0003 for why not UPSERT), fired only by
updates that set a column the roll-ups read (`UPDATE OF`) and change one (WHEN). PostgreSQL:
statement triggers over transition tables, one upsert per roll-up per statement in key order; they
take the calls' period lock (`store/locks.py`, same key) before writing, because these rows are
shared between sessions that concurrent ingests lock separately: every writer that reaches them
already holds its session locks, so the order stays session locks, then the period lock. Linking
(link-prs, the webhook) holds no session locks of its own, so the link trigger takes its links'
session locks first (`at_session_lock_key` computes `store/locks.py`'s key in SQL).

The rows stored before this migration are rolled up with one INSERT … SELECT … GROUP BY per table.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agenttrail.store.migrations.siblings import load as load_migration

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


R3 = load_migration("0003_record.py")

# ---- what each roll-up adds up, as expressions over a session_rollup row alias `{r}` -------------------

WEEK_KEY = {
    "week": "COALESCE({r}.week, '')",
    "agent": "COALESCE({r}.agent, '')",
    "engineer": "COALESCE({r}.engineer, '')",
    "repo": "COALESCE({r}.repo, '')",
    "team_id": "COALESCE({r}.team_id, 0)",
    "nulls": (
        "(CASE WHEN {r}.agent IS NULL THEN 1 ELSE 0 END + CASE WHEN {r}.engineer IS NULL THEN 2 ELSE 0 END"
        " + CASE WHEN {r}.repo IS NULL THEN 4 ELSE 0 END)"
    ),
}
WEEK_AGG = {
    "sessions": "1",
    "duration_s": "COALESCE({r}.duration_s, 0)",
    "merged_cost_usd": "CASE WHEN {r}.merged_prs > 0 THEN {r}.cost_usd ELSE 0 END",
    "unmerged_cost_usd": "CASE WHEN {r}.merged_prs > 0 THEN 0 ELSE {r}.cost_usd END",
}
# The `sessions` view's rows: a roll-up row exists before its session's start arrives (calls first).
WEEK_WHERE = "{r}.started_at IS NOT NULL"
WEEK_COLS = ("started_at", "week", "agent", "engineer", "repo", "team_id", "duration_s", "cost_usd", "merged_prs")

TEAM_KEY = {"pr_id": "ps.pr_id", "team_id": "COALESCE({r}.team_id, 0)"}
TEAM_AGG = {"sessions": "1", "cost_usd": "{r}.cost_usd / {r}.merged_prs"}
TEAM_WHERE = "{r}.started_at IS NOT NULL AND {r}.merged_prs > 0"
TEAM_COLS = ("started_at", "team_id", "cost_usd", "merged_prs")


def _fmt(expr: str, r: str) -> str:
    return expr.replace("{r}", r)


# ---- set-based: PostgreSQL's statement triggers and the backfill ---------------------------------------


def _signed(cols: Sequence[str]) -> str:
    """An UPDATE's changed rows, old with sign -1 and new with +1 (rows whose columns in `cols` changed)."""
    diff = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in cols)
    join = f"old_rows o JOIN new_rows n ON n.session_id = o.session_id WHERE {diff}"
    return f"(SELECT o.*, -1 AS sign FROM {join} UNION ALL SELECT n.*, 1 AS sign FROM {join})"


def _upsert_set(table: str, key: dict[str, str], agg: dict[str, str], where: str, src: str, signed: bool) -> str:
    """Rows of `src` (alias x; with a `sign` column when `signed`) summed into `table` by key, in key order."""
    keys = [_fmt(e, "x") for e in key.values()]
    sums = [f"SUM({'x.sign * ' if signed else ''}{_fmt(e, 'x')})" for e in agg.values()]
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in agg)
    # pr_team's key is the link's PR: each session's row once per link.
    links = " JOIN pr_session ps ON ps.session_id = x.session_id" if "pr_id" in key else ""
    return (
        f"INSERT INTO {table} ({', '.join(key)}, {', '.join(agg)}) "
        f"SELECT {', '.join(keys)}, {', '.join(sums)} FROM {src} x{links} WHERE {_fmt(where, 'x')} "
        f"GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
    )


def _week_set(src: str, signed: bool) -> str:
    return _upsert_set("session_week", WEEK_KEY, WEEK_AGG, WEEK_WHERE, src, signed)


def _team_set(src: str, signed: bool) -> str:
    return _upsert_set("pr_team", TEAM_KEY, TEAM_AGG, TEAM_WHERE, src, signed)


def _new_links_set() -> str:
    """New links (a pr_session statement's rows) at their session's share before they are counted."""
    r = "r"
    return (
        "INSERT INTO pr_team (pr_id, team_id, sessions, cost_usd) "
        f"SELECT n.pr_id, {_fmt(TEAM_KEY['team_id'], r)}, COUNT(*), SUM({_fmt(TEAM_AGG['cost_usd'], r)}) "
        f"FROM new_rows n JOIN session_rollup r ON r.session_id = n.session_id WHERE {_fmt(TEAM_WHERE, r)} "
        f"GROUP BY n.pr_id, {_fmt(TEAM_KEY['team_id'], r)} ORDER BY 1, 2 "
        "ON CONFLICT (pr_id, team_id) DO UPDATE SET sessions = pr_team.sessions + excluded.sessions, "
        "cost_usd = pr_team.cost_usd + excluded.cost_usd"
    )


def _backfill() -> list[str]:
    return [_week_set("session_rollup", signed=False), _team_set("session_rollup", signed=False)]


# ---- PostgreSQL -------------------------------------------------------------------------------------------


def _lock_space(what: str) -> int:
    """`store/locks.py`'s first key for `what` in this schema (the same arithmetic, so the same locks)."""
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar()
    return zlib.crc32(f"agenttrail {what} {schema}".encode()) - 2**31


def _calls_lock() -> str:
    """The calls' period lock (`lock_call_periods`)."""
    return f"PERFORM pg_advisory_xact_lock({_lock_space('calls')}, 0)"


def _crc_table() -> str:
    """CRC-32's (zlib's, reflected 0xEDB88320) byte table, as a PostgreSQL array literal."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
        table.append(c)
    return "ARRAY[" + ",".join(map(str, table)) + "]::bigint[]"


# A session's lock key as `store/locks.py` makes it: zlib's CRC-32 of the id's UTF-8, less 2**31.
# Table-driven, a byte at a time: 13-17 µs for a 36-character id (the bit-at-a-time loop took 36).
LOCK_KEY_FUNCTION = f"""CREATE OR REPLACE FUNCTION at_session_lock_key(t text) RETURNS int4
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  b bytea := convert_to(t, 'UTF8');
  tbl bigint[] := {_crc_table()};
  crc bigint := 4294967295;
BEGIN
  FOR i IN 0 .. length(b) - 1 LOOP
    crc := (crc >> 8) # tbl[((crc # get_byte(b, i)) & 255) + 1];
  END LOOP;
  RETURN ((crc # 4294967295) - 2147483648)::int4;
END
$$"""


def _links_sessions_lock() -> str:
    """The new links' session locks (`lock_sessions`), in ascending key order, before anything else.

    A link moves its session's row in session_rollup, then pr_team and session_week under the calls'
    lock. Linking (link-prs, the webhook) runs beside ingests: without these locks it could hold the
    calls' lock while waiting for a session's row that an ingest holds, and that ingest then wait for
    the calls' lock. With them it waits, holding none of those, until the ingest has committed; an
    ingest linking its own commits already holds them."""
    return (
        f"PERFORM pg_advisory_xact_lock({_lock_space('session')}, s.k) FROM "
        "(SELECT DISTINCT at_session_lock_key(session_id) AS k FROM new_rows ORDER BY 1) s"
    )


def _pg_function(name: str, body: str) -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n{body}\n  RETURN NULL;\nEND\n$$"
    )


def _pg_if(cond: str, statements: list[str]) -> str:
    return f"  IF {cond} THEN\n    " + ";\n    ".join(statements) + ";\n  END IF;"


def _pg_functions() -> dict[str, str]:
    lock = _calls_lock()
    started = _fmt(WEEK_WHERE, "x")
    week_diff = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in WEEK_COLS)
    team_diff = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in TEAM_COLS)
    changed = "EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.session_id = o.session_id WHERE {})"
    linked = "EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.session_id = o.session_id WHERE {} AND {})"
    team_changed = linked.format("(o.merged_prs > 0 OR n.merged_prs > 0)", f"({team_diff})")
    insert = _pg_if(
        f"EXISTS (SELECT 1 FROM new_rows x WHERE {started})",
        [lock, _week_set("new_rows", signed=False), _team_set("new_rows", signed=False)],
    )
    update = "\n".join(
        [
            _pg_if(changed.format(week_diff), [lock, _week_set(_signed(WEEK_COLS), signed=True)]),
            _pg_if(team_changed, [lock, _team_set(_signed(TEAM_COLS), signed=True)]),
        ]
    )
    gone = "(SELECT o.*, -1 AS sign FROM old_rows o)"
    delete = _pg_if(
        f"EXISTS (SELECT 1 FROM old_rows x WHERE {started})",
        [lock, _week_set(gone, signed=True), _team_set(gone, signed=True)],
    )
    merged = f"  {_links_sessions_lock()};\n  {lock};\n  {_new_links_set()};\n  {R3._merged_set('new_rows')};"
    return {
        "at_rollup_weeks_ins": insert,
        "at_rollup_weeks_upd": update,
        "at_rollup_weeks_del": delete,
        "at_rollup_merged": merged,
    }


PG_TRIGGERS = {  # name -> (event, transition tables); at_rollup_merged's trigger is 0003's
    "at_rollup_weeks_ins": ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    "at_rollup_weeks_upd": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "at_rollup_weeks_del": ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
}

# ---- SQLite row triggers -----------------------------------------------------------------------------


def _add_row(table: str, key: dict[str, str], agg: dict[str, str], r: str, cond: str, sign: int) -> str:
    """Add (sign 1) or take out (-1) one row's figures, when `cond` holds; the row exists when taking out."""
    key_vals = [_fmt(e, r) for e in key.values()]
    add = [_fmt(e, r) if sign == 1 else f"-({_fmt(e, r)})" for e in agg.values()]
    match = " AND ".join(f"{k} = {v}" for k, v in zip(key, key_vals, strict=True))
    sets = ", ".join(f"{c} = {c} + ({v})" for c, v in zip(agg, add, strict=True))
    update = f"UPDATE {table} SET {sets} WHERE {_fmt(cond, r)} AND {match};"
    if sign == -1:
        return update
    return (
        f"{update} INSERT INTO {table} ({', '.join(key)}, {', '.join(agg)}) SELECT {', '.join(key_vals + add)} "
        f"WHERE {_fmt(cond, r)} AND NOT EXISTS (SELECT 1 FROM {table} WHERE {match});"
    )


def _links_row(r: str, sign: int) -> str:
    """A session row's share in each PR it is linked to, added or taken out."""
    team, share = _fmt(TEAM_KEY["team_id"], r), _fmt(TEAM_AGG["cost_usd"], r)
    op_ = "+" if sign == 1 else "-"
    cond = _fmt(TEAM_WHERE, r)
    links = f"(SELECT ps.pr_id FROM pr_session ps WHERE ps.session_id = {r}.session_id)"
    update = (
        f"UPDATE pr_team SET sessions = sessions {op_} 1, cost_usd = cost_usd {op_} ({share}) "
        f"WHERE {cond} AND team_id = {team} AND pr_id IN {links};"
    )
    if sign == -1:
        return update
    return (
        f"{update} INSERT INTO pr_team (pr_id, team_id, sessions, cost_usd) SELECT ps.pr_id, {team}, 1, {share} "
        f"FROM pr_session ps WHERE ps.session_id = {r}.session_id AND {cond} "
        f"AND NOT EXISTS (SELECT 1 FROM pr_team t WHERE t.pr_id = ps.pr_id AND t.team_id = {team});"
    )


def _new_link_row() -> str:
    """The new link at its session's current share (before at_rollup_merged counts it)."""
    session = f"FROM session_rollup r WHERE r.session_id = NEW.session_id AND {_fmt(TEAM_WHERE, 'r')}"
    team, share = _fmt(TEAM_KEY["team_id"], "r"), _fmt(TEAM_AGG["cost_usd"], "r")
    return (
        f"UPDATE pr_team SET sessions = sessions + 1, cost_usd = cost_usd + (SELECT {share} {session}) "
        f"WHERE pr_id = NEW.pr_id AND team_id = (SELECT {team} {session}); "
        f"INSERT INTO pr_team (pr_id, team_id, sessions, cost_usd) SELECT NEW.pr_id, {team}, 1, {share} {session} "
        f"AND NOT EXISTS (SELECT 1 FROM pr_team t WHERE t.pr_id = NEW.pr_id AND t.team_id = {team});"
    )


def _sqlite_merged(with_links: bool) -> str:
    """0003's link trigger (counting the link in merged_prs), with the new link's share first."""
    counted = R3._upsert_row("session_rollup", R3.BY_SESSION, {"merged_prs": "1"}, "NEW")
    first = _new_link_row() if with_links else ""
    return f"CREATE TRIGGER at_rollup_merged AFTER INSERT ON pr_session BEGIN {first}{counted} END"


def _sqlite_triggers() -> list[str]:
    week_diff = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in WEEK_COLS)
    team_diff = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in TEAM_COLS)
    week_out = _add_row("session_week", WEEK_KEY, WEEK_AGG, "OLD", WEEK_WHERE, -1)
    week_in = _add_row("session_week", WEEK_KEY, WEEK_AGG, "NEW", WEEK_WHERE, 1)
    return [
        "CREATE TRIGGER at_rollup_weeks_ins AFTER INSERT ON session_rollup WHEN NEW.started_at IS NOT NULL "
        f"BEGIN {week_in} {_links_row('NEW', 1)} END",
        f"CREATE TRIGGER at_rollup_weeks_upd AFTER UPDATE OF {', '.join(WEEK_COLS)} ON session_rollup "
        f"WHEN {week_diff} BEGIN {week_out} {week_in} END",
        f"CREATE TRIGGER at_rollup_pr_team_upd AFTER UPDATE OF {', '.join(TEAM_COLS)} ON session_rollup "
        f"WHEN (OLD.merged_prs > 0 OR NEW.merged_prs > 0) AND ({team_diff}) "
        f"BEGIN {_links_row('OLD', -1)} {_links_row('NEW', 1)} END",
        # A session folded into another (importers' relink) leaves the sessions view.
        "CREATE TRIGGER at_rollup_weeks_del AFTER DELETE ON session_rollup WHEN OLD.started_at IS NOT NULL "
        f"BEGIN {week_out} {_links_row('OLD', -1)} END",
    ]


SQLITE_TRIGGERS = ("at_rollup_weeks_ins", "at_rollup_weeks_upd", "at_rollup_pr_team_upd", "at_rollup_weeks_del")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    sqlite = dialect == "sqlite"
    # WITHOUT ROWID on SQLite: the rows live in key order, as the reports read them.
    op.create_table(
        "session_week",
        sa.Column("week", sa.String(length=8), nullable=False),
        sa.Column("agent", sa.String(length=100), nullable=False),
        sa.Column("engineer", sa.String(length=320), nullable=False),
        sa.Column("repo", sa.String(length=500), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("nulls", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), server_default="0", nullable=False),
        *(
            sa.Column(c, sa.Float(), server_default="0", nullable=False)
            for c in ("duration_s", "merged_cost_usd", "unmerged_cost_usd")
        ),
        sa.PrimaryKeyConstraint(*WEEK_KEY, name=op.f("pk_session_week")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "pr_team",
        sa.Column("pr_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("pr_id", "team_id", name=op.f("pk_pr_team")),
        sqlite_with_rowid=False,
    )
    for stmt in _backfill():
        op.execute(stmt)
    if sqlite:
        op.execute("DROP TRIGGER at_rollup_merged")
        op.execute(_sqlite_merged(with_links=True))
        for stmt in _sqlite_triggers():
            op.execute(stmt)
        return
    op.execute(LOCK_KEY_FUNCTION)
    for name, body in _pg_functions().items():
        op.execute(_pg_function(name, body))
    for name, (event, referencing) in PG_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON session_rollup {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TRIGGER at_rollup_merged")
        op.execute(_sqlite_merged(with_links=False))
    else:
        for name in PG_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON session_rollup")
            op.execute(f"DROP FUNCTION {name}()")
        op.execute(_pg_function("at_rollup_merged", f"  {R3._merged_set('new_rows')};"))
        op.execute("DROP FUNCTION at_session_lock_key(text)")
    op.drop_table("pr_team")
    op.drop_table("session_week")
