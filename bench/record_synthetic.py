"""A synthetic million-session record, for the reports' plans and timings only (not seed-demo).

    python3 bench/record_synthetic.py --pg SCHEMA [--sessions 1040000] [--sqlite PATH]

Writes straight into the roll-up tables of a migrated store, in SQL, in minutes (loading seed-demo's
organisation of that size through the bulk loader took hours on the shared 2-core machine): one
`session_rollup` row per session (6,000 engineers in teams of eight, each session in one of its
team's three repos and one of three agents, 90 days from 2026-03-01, cost log-uniform between
$0.05 and $2.7 with 3% at zero, 0-350 lines), 150,000 PRs and a link for each of 40% of the sessions.
The week and PR roll-ups (0011) are kept by the triggers, or, for the links inserted with
triggers off, written as the migration's backfill writes them. No events, calls, daily roll-ups or
packages: only the reports that read sessions and links (the seed's query, adoption, shipped,
outliers, models, spend --by repo) mean anything on it. `--sqlite PATH` then
copies the same rows into a SQLite store. Measure either with `bench/record.py --measure URL`.
"""

from __future__ import annotations

import argparse
import sqlite3
import time

import psycopg

from agenttrail.store.database import open_engine

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
COLS = (
    "session_id, started_at, ended_at, week, team_id, engineer_id, engineer, repo, agent, duration_s, "
    "lines_added, lines_removed, cost_usd"
)


def build_postgresql(schema: str, n: int) -> None:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    open_engine(f"{PG_BASE}?options=-csearch_path%3D{schema}")  # the schema, migrated
    with psycopg.connect(PG_BASE, options=f"-csearch_path={schema}") as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            "INSERT INTO team (id, name, created_at) SELECT g, 'team-' || g, now() FROM generate_series(1, 940) g"
        )
        conn.execute(
            f"""
INSERT INTO session_rollup (session_id, started_at, ended_at, week, team_id, engineer_id, engineer, repo, agent,
  duration_s, lines_added, lines_removed, cost_usd, merged_prs)
SELECT 's' || lpad(g::text, 9, '0'), t, t + interval '20 minutes', to_char(t, 'IYYY-"W"IW'), e / 8 + 1, e,
  'eng' || e || '@example.com', 'git/team' || (e / 8) || '/repo' || (g % 3),
  (ARRAY['claude-code','codex','cursor'])[1 + (g % 7) / 3],
  1200 * random(), (random() * 300)::int, (random() * 50)::int,
  CASE WHEN random() < 0.03 THEN 0 ELSE exp(random() * 4 - 3) END, CASE WHEN random() < 0.4 THEN 1 ELSE 0 END
FROM (SELECT g, (g * 7919) % 6000 + 1 AS e, timestamp '2026-03-01' + (g::float / {n}) * interval '90 days' AS t
      FROM generate_series(1::bigint, {n}) g) x"""
        )
        conn.execute(
            "INSERT INTO pull_request (id, repo, number, merged_at) "
            "SELECT g, 'git/team' || (g % 750) || '/repo' || (g % 3), g, "
            "timestamp '2026-03-01' + (g::float / 150000) * interval '90 days' FROM generate_series(1, 150000) g"
        )
        conn.execute("ALTER TABLE pr_session DISABLE TRIGGER USER")  # merged_prs is already set
        conn.execute(
            "INSERT INTO pr_session (pr_id, session_id, how) SELECT 1 + (hashtext(session_id) & 1048575) % 150000, "
            "session_id, 'sha' FROM session_rollup WHERE merged_prs = 1"
        )
        conn.execute("ALTER TABLE pr_session ENABLE TRIGGER USER")
        # With its triggers off the links' pr_team rows (migration 0011) are written as its backfill does.
        conn.execute(
            "INSERT INTO pr_team (pr_id, team_id, sessions, cost_usd) SELECT ps.pr_id, COALESCE(r.team_id, 0), "
            "COUNT(*), SUM(r.cost_usd / r.merged_prs) FROM session_rollup r JOIN pr_session ps "
            "ON ps.session_id = r.session_id WHERE r.started_at IS NOT NULL AND r.merged_prs > 0 GROUP BY 1, 2"
        )
    with psycopg.connect(PG_BASE, options=f"-csearch_path={schema}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def copy_to_sqlite(schema: str, path: str) -> None:
    """The same rows into a SQLite store: sessions first with merged_prs 0, then the links, whose
    trigger counts them (SQLite cannot turn a trigger off)."""
    open_engine(f"sqlite:///{path}")
    pg = psycopg.connect(PG_BASE, options=f"-csearch_path={schema}")
    lite = sqlite3.connect(path)
    lite.execute("PRAGMA cache_size = -524288")
    lite.executemany(
        "INSERT INTO team (id, name, created_at) VALUES (?, ?, '2026-01-01 00:00:00.000000')",
        [(i, f"team-{i}") for i in range(1, 941)],
    )
    cur = pg.cursor(name="sessions")
    cur.itersize = 50_000
    times = "to_char(started_at, 'YYYY-MM-DD HH24:MI:SS.US'), to_char(ended_at, 'YYYY-MM-DD HH24:MI:SS.US')"
    cur.execute(f"SELECT {COLS.replace('started_at, ended_at', times)} FROM session_rollup")
    insert = f"INSERT INTO session_rollup ({COLS}, merged_prs) VALUES ({', '.join('?' * 13)}, 0)"
    while rows := cur.fetchmany(50_000):
        lite.executemany(insert, rows)
    prs = pg.execute("SELECT id, repo, number, to_char(merged_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM pull_request")
    lite.executemany("INSERT INTO pull_request (id, repo, number, merged_at) VALUES (?, ?, ?, ?)", prs.fetchall())
    links = pg.execute("SELECT pr_id, session_id, how FROM pr_session").fetchall()
    lite.executemany("INSERT INTO pr_session (pr_id, session_id, how) VALUES (?, ?, ?)", links)
    lite.commit()
    lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    lite.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", metavar="SCHEMA", required=True, help="PostgreSQL schema to create and fill")
    ap.add_argument("--sessions", type=int, default=1_040_000)
    ap.add_argument("--sqlite", metavar="PATH", help="Also copy the rows into a SQLite store here.")
    args = ap.parse_args()
    t0 = time.perf_counter()
    build_postgresql(args.pg, args.sessions)
    print(f"PostgreSQL {args.pg}: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.sqlite:
        copy_to_sqlite(args.pg, args.sqlite)
        print(f"SQLite {args.sqlite}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
