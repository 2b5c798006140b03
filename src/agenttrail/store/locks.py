"""Advisory locks that keep concurrent writers of the roll-ups from deadlocking (PostgreSQL).

Every writer that may upsert a session's roll-up rows in more than one statement, or whose calls move
the calls' period roll-ups, takes them in one order at the start of its transaction: its sessions in
ascending key order, then the calls' lock. Ingest (one per server request) and the gateway's recorder
both do. SQLite has one writer at a time and needs none.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Connection


def _int4(text: str) -> int:
    return zlib.crc32(text.encode()) - 2**31


def _lock_space(conn: Connection, what: str) -> int:
    """An advisory lock's first key: `what` in this store. Advisory locks are the database's, and one
    database may hold several stores (schemas): one store's ingests must not wait for another's."""
    info = conn.connection.info
    schema = info.get("agenttrail_schema")
    if schema is None:
        schema = info["agenttrail_schema"] = conn.exec_driver_sql("SELECT current_schema()").scalar()
    return _int4(f"agenttrail {what} {schema}")


def lock_sessions(conn: Connection, session_ids: set[str]) -> None:
    """PostgreSQL: take the batch's session locks, in one order for every ingest, before its first write.

    Each statement's roll-up trigger upserts its rows in key order, but one ingest writes a session's
    roll-up row in several statements (its counted events, its file changes, its calls), each holding
    the row until commit: two ingests that share sessions could each hold one the other's next statement
    needs (PostgreSQL then aborts one: "deadlock detected"). With every session of the batch locked first,
    in ascending order of key, an ingest waits for another only before it holds any of them. Ingests of
    disjoint sessions (two laptops) never wait here; a hash collision only makes two wait in turn. The
    locks end with the transaction. SQLite has one writer at a time and needs none."""
    if conn.dialect.name != "postgresql" or not session_ids:
        return
    keys = sorted({_int4(s) for s in session_ids})
    # unnest returns the array in its order; no ORDER BY (a sort could run after the calls).
    space = _lock_space(conn, "session")
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, k) FROM unnest(%s::int4[]) AS k", (space, keys))


def lock_call_periods(conn: Connection) -> None:
    """PostgreSQL: one lock for the calls' period roll-ups (`call_daily`, `call_monthly`), taken after the
    session locks and before the batch's first statement that may write calls.

    An ingest writes those rows in up to four statements (the join's calls, a gateway call gaining its
    session, the batch's calls, calls linked by agent session id), and their keys (day or month,
    attribution, provider, model, whether in a session) are not known before: a stored call that gains a
    session moves between rows. Ingests whose calls share such rows would otherwise wait on each other in
    any order, so they take turns from here to commit; the work before (redaction, the join's lookups,
    the event rows) still overlaps."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, 0)", (_lock_space(conn, "calls"),))


CALLS_TEAMS = "agenttrail.calls_teams"  # migration 0013's guards and at_calls_lock() read it


def lock_call_teams(conn: Connection, teams: set[int]) -> None:
    """PostgreSQL: the calls' period lock for `teams` only (migration 0013): the store-wide lock shared,
    then each team's lock in ascending order, and the teams named for the guards in this transaction.

    The period roll-ups key every row by team (no team is 0), so ingests of different teams write
    disjoint rows and need not take turns; ingests of one team do, on its lock. A writer that takes the
    store-wide lock exclusively (`lock_call_periods`) waits for every shared holder, so it may write any
    team's rows; a guard stops a batch that would write a team it did not name (0013)."""
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock_shared(%s, 0)", (_lock_space(conn, "calls"),))
    ordered = sorted(teams)
    conn.exec_driver_sql(
        "SELECT pg_advisory_xact_lock(%s, t) FROM unnest(%s::int4[]) AS t", (_lock_space(conn, "calls team"), ordered)
    )
    conn.exec_driver_sql("SELECT set_config(%s, %s, true)", (CALLS_TEAMS, ",".join(map(str, ordered))))
