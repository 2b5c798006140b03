"""The organisation's record at scale: ingest rate, the seed's query and every report.

    python3 bench/record.py [--engineers 7500] [--days 90] [--db sqlite|postgresql|URL]
                            [--loader bulk|ingest] [--ingest-sample-engineers 60] [--ingest-sample-days 20]
                            [--ingest-runs 3] [--skip-ingest] [--runs 3] [--keep] [--markdown]
    python3 bench/record.py --measure URL [--runs 3] [--markdown]
    python3 bench/record.py --ingest-into URL [--extra-days 3]
    python3 bench/record.py --copy SQLITE_URL --into POSTGRESQL_URL

1. Ingest: `seed-demo`'s organisation (a sample) through the real `store.ingest.ingest`, in batches
   of 20,000 events; events per second of ingest time, the median of `--ingest-runs` fresh databases.
2. Scale: the large organisation (7,500 engineers over 90 days: about 1.07 million sessions and 20
   million events), loaded by the real ingest (`--loader ingest`) or by a bench loader (`--loader
   bulk`) that writes the same rows as ingest would (events, sessions, file changes, commits, calls)
   with the store's bulk insert per table and batch; the database's triggers keep the roll-ups exactly
   as they do under ingest. PRs go through `linking.record_pull_requests` either way.
3. The seed's query, as written, for the busiest week (direct and through the read-only SQL path),
   then each report over all time and over the last 30 days, each also filtered to the busiest team
   and to the busiest repo; each figure the median of `--runs` runs.
4. `--ingest-into URL`: the real ingest into the large database, with more days of the same
   organisation before its period (what sustained ingest into a store of that size reaches).
5. `--copy SQLITE_URL --into POSTGRESQL_URL`: the same organisation on PostgreSQL without loading it
   again: every table's rows, roll-ups included, copied as they are (COPY, triggers off while copying;
   the roll-ups are those SQLite's triggers computed, which tests/store holds equal to PostgreSQL's).
   On this shared 2-core machine a load of the large organisation takes hours; a copy minutes.

Prints a JSON summary, and with --markdown the table for docs/performance.md. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.query.readonly_sql import run_sql
from agenttrail.reports.base import Filters
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.reports.registry import run_report
from agenttrail.store.bulk import insert_rows
from agenttrail.store.database import forget_engine, open_engine
from agenttrail.store.ingest import iso_week
from agenttrail.store.tables import agent_session, event, file_change, git_commit, llm_call

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
END = date(2026, 5, 29)
SEED_QUERY = (
    "SELECT engineer, repo, SUM(cost_usd), SUM(files_changed) FROM sessions WHERE week = '{week}' "
    "GROUP BY engineer, repo"
)
SNAPSHOT = {"file_create": "created", "file_write": "modified", "file_delete": "deleted", "file_rename": "renamed"}


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def _insert(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> None:
    """The store's own bulk insert (`store.bulk`, what ingest uses): one statement per table on
    PostgreSQL, so each statement trigger sees the whole batch as under ingest."""
    if rows:
        with engine.begin() as conn:
            insert_rows(conn, table, rows, ignore=True)


def bulk_load(engine: Engine, batch: Sequence[Event]) -> None:
    """The rows `store.ingest` materialises for seed-demo's events, written per table in bulk.

    Same semantics for this data (each session's start and end arrive in one batch; ids are unique),
    so the roll-ups the triggers keep are the ones ingest would give."""
    events, sessions, files, commits, calls = [], {}, [], [], []
    for e in batch:
        p = e.payload
        events.append(
            {
                "event_id": e.event_id,
                "session_id": e.session_id,
                "ts": _naive(e.ts),
                "kind": e.kind,
                "payload": orjson.dumps(p).decode(),
            }
        )
        if e.kind == "session_start":
            started = _naive(e.ts)
            sessions[e.session_id] = {
                "session_id": e.session_id,
                "started_at": started,
                "week": iso_week(started),
                "ended_at": None,
                "exit_code": None,
                "engineer": p.get("engineer"),
                "team_id": p.get("team_id"),
                "project_id": p.get("project_id"),
                "engineer_id": p.get("engineer_id"),
                "repo": p.get("repo"),
                "branch": p.get("branch"),
                "agent": p.get("agent"),
                "command": orjson.dumps(p.get("command")).decode(),
                "host": p.get("host"),
                "source": p.get("source") or "traced",
            }
        elif e.kind == "session_end":
            sessions[e.session_id].update(ended_at=_naive(e.ts), exit_code=p.get("exit_code"))
        elif e.kind in SNAPSHOT and p.get("source") == "snapshot":
            files.append(
                {
                    "session_id": e.session_id,
                    "path": p["path"],
                    "change": SNAPSHOT[e.kind],
                    "old_path": None,
                    "lines_added": p["lines_added"],
                    "lines_removed": p["lines_removed"],
                    "binary": False,
                    "diff": p.get("diff"),
                    "diff_truncated": False,
                }
            )
        elif e.kind == "commit":
            commits.append(
                {
                    "sha": p["sha"],
                    "session_id": e.session_id,
                    "repo": p.get("repo"),
                    "message": p.get("message"),
                    "author": None,
                    "committed_at": _naive(e.ts),
                    "files": "[]",
                }
            )
        elif e.kind == "llm_call":
            r = dict(p["record"])
            r.update(call_id=e.event_id, started_at=_naive(e.ts), session_id=e.session_id, status="ok")
            calls.append(r)
    _insert(engine, agent_session, list(sessions.values()))
    _insert(engine, event, events)
    _insert(engine, file_change, files)
    _insert(engine, git_commit, commits)
    _insert(engine, llm_call, calls)


def _db(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'record.db'}"
    if kind == "postgresql":
        import psycopg

        schema = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{PG_BASE}?options=-csearch_path%3D{schema}"
    return kind


def _drop(url: str) -> None:
    forget_engine(url)
    if "search_path%3Dbench_" in url:
        import psycopg

        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _vacuum(engine: Engine) -> None:
    """What autovacuum (PostgreSQL) or a checkpoint (SQLite) would have done on a live store by then:
    the roll-ups' dead row versions marked reusable and statistics fresh; the WAL folded in."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def table_sizes(engine: Engine) -> dict[str, Any]:
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND relkind = 'r' "
                "AND relname IN ('session_rollup', 'event', 'llm_call', 'call_daily', 'call_monthly')"
            )
        ).all()
    return {name: f"{size / 2**20:.0f} MB" for name, size in rows}


def timed(fn: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), result


def load_average() -> float:
    """The machine's 1-minute load average (2 shared cores: every figure is read beside it)."""
    return round(os.getloadavg()[0], 1)


def measure_ingest(kind: str, tmp: Path, engineers: int, days: int, runs: int = 3) -> dict[str, Any]:
    """The real ingest on seed-demo's sample, and the same events through the bench's batched loader
    (what materialising per table in one statement, with the same triggers, reaches), alternated on a
    fresh database each run; the median of the runs (each run's figure too: the machine is shared)."""
    out: dict[str, Any] = {}
    rates: dict[str, list[float]] = {"ingest": [], "bulk": []}
    for run in range(runs):
        for mode in ("ingest", "bulk"):
            folder = tmp / f"{mode}-{run}"
            folder.mkdir(exist_ok=True)
            url = _db(kind, folder)
            try:
                engine = open_engine(url)
                demo = DemoOrg(engine, engineers, days, seed=1, end=END, batch_events=20_000)
                if mode == "ingest":
                    stats = demo.run()
                    events, seconds = stats.events, stats.ingest_seconds
                    out.update(sessions=stats.sessions, events=events)
                else:
                    events, seconds = 0, 0.0
                    for batch in demo.events():
                        t0 = time.perf_counter()
                        bulk_load(engine, batch)
                        seconds += time.perf_counter() - t0
                        events += len(batch)
                rates[mode].append(events / seconds)
            finally:
                _drop(url)
                shutil.rmtree(folder, ignore_errors=True)
    for mode, values in rates.items():
        out[f"{mode}_events_per_s"] = round(statistics.median(values))
        out[f"{mode}_events_per_s_runs"] = [round(v) for v in values]
    return out


def loading_engine(engine: Engine) -> Engine:
    """For loading only: SQLite with a 512 MB page cache (the default 2 MB thrashes once the random
    event ids' index outgrows it). Queries are measured on the store's own engine, as configured."""
    if engine.dialect.name != "sqlite":
        return engine
    from sqlalchemy import event as sa_event

    from agenttrail.store.engine import make_engine

    loader = make_engine(engine.url.render_as_string(hide_password=False))

    @sa_event.listens_for(loader, "connect")
    def _big_cache(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA cache_size = -524288")

    return loader


def autovacuum_off(engine: Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return conn.execute(text("SHOW autovacuum")).scalar() == "off"


def autovacuum_pass(engine: Engine) -> list[str]:
    """What autovacuum would do now with its default thresholds (vacuum when dead rows pass 50 + 20% of
    the table, or rows inserted since the last vacuum pass 1,000 + 20%; analyze past 50 + 10% changed),
    for servers that run without it (a test server): the roll-ups are updated several times per
    session, and without vacuum their dead row versions pile up and every scan reads them."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, n_live_tup, n_dead_tup, n_ins_since_vacuum, n_mod_since_analyze "
                "FROM pg_stat_user_tables WHERE schemaname = current_schema()"
            )
        ).all()
    done = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name, live, dead, inserted, changed in rows:
            vacuum = dead > 50 + 0.2 * live or inserted > 1000 + 0.2 * live
            analyze = changed > 50 + 0.1 * live
            if vacuum or analyze:
                conn.execute(text(f'{"VACUUM ANALYZE" if vacuum else "ANALYZE"} "{name}"'))
                done.append(name)
    return done


def load_large(engine: Engine, engineers: int, days: int, loader: str) -> dict[str, Any]:
    engine = loading_engine(engine)
    demo = DemoOrg(engine, engineers, days, seed=42, end=END, batch_events=50_000)
    t0 = time.perf_counter()
    load_s = vacuum_s = 0.0
    last = last_vacuum = t0
    # A server without autovacuum (a test server) gets its passes from here, once a minute of loading
    # (autovacuum's default naptime), timed apart from the load.
    emulate = autovacuum_off(engine)
    for batch in demo.events():
        if emulate and time.perf_counter() - last_vacuum > 60:
            t1 = time.perf_counter()
            autovacuum_pass(engine)
            last_vacuum = time.perf_counter()
            vacuum_s += last_vacuum - t1
        t1 = time.perf_counter()
        if loader == "bulk":
            bulk_load(engine, batch)
        else:
            from agenttrail.store.ingest import Attribution, ingest

            ingest(engine, batch, Attribution())
        load_s += time.perf_counter() - t1
        demo.stats.events += len(batch)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(
                f"  … {demo.stats.sessions:,} sessions, {demo.stats.events:,} events, {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    rows = demo.unattributed_calls()
    _insert(engine, llm_call, rows)
    t1 = time.perf_counter()
    from agenttrail.linking import record_pull_requests

    record_pull_requests(engine, demo._prs)
    link_s = time.perf_counter() - t1
    return {
        "sessions": demo.stats.sessions,
        "events": demo.stats.events,
        "calls": demo.stats.calls + len(rows),
        "pull_requests": len(demo._prs),
        "load_s": round(load_s, 1),
        "autovacuum_emulated_s": round(vacuum_s, 1) if emulate else None,
        "load_events_per_s": round(demo.stats.events / load_s) if load_s else None,
        "link_s": round(link_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }


def ingest_at_scale(engine: Engine, engineers: int, days: int, extra_days: int) -> dict[str, Any]:
    """The real ingest into the large database: `extra_days` more days of the same organisation (same
    seed, so the same engineers and habits), just before its period, through `store.ingest.ingest` in
    batches of 20,000 events. Their PRs are not recorded (their numbers would collide)."""
    from agenttrail.store.ingest import Attribution, ingest

    first = END - timedelta(days=days - 1)
    demo = DemoOrg(engine, engineers, extra_days, seed=42, end=first - timedelta(days=1), batch_events=20_000)
    events, seconds, rates = 0, 0.0, []
    for batch in demo.events():
        t0 = time.perf_counter()
        ingest(engine, batch, Attribution())
        dt = time.perf_counter() - t0
        events, seconds = events + len(batch), seconds + dt
        rates.append(len(batch) / dt)
    return {
        "sessions": demo.stats.sessions,
        "events": events,
        "ingest_s": round(seconds, 1),
        "events_per_s": round(events / seconds),
        "batch_events_per_s_median": round(statistics.median(rates)),
    }


def copy_sqlite_to_postgresql(src: str, dst: str, chunk: int = 100_000) -> dict[str, Any]:
    """Every table of a SQLite store into a PostgreSQL store at the same migration, rows as they are."""
    import sqlite3

    import psycopg

    from agenttrail.store.tables import metadata

    t0 = time.perf_counter()
    engine = open_engine(dst)  # the schema, migrated
    path = src.removeprefix("sqlite:///")
    lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    have = {r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    counts: dict[str, int] = {}
    with psycopg.connect(url) as pg:
        names = [t.name for t in metadata.sorted_tables if t.name in have and t.name != "schema_meta"]
        for name in names:
            pg.execute(f'ALTER TABLE "{name}" DISABLE TRIGGER USER')
        pg.execute("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " CASCADE")
        for table in metadata.sorted_tables:
            if table.name not in names:
                continue
            cols = [c.name for c in table.columns]
            quoted = ", ".join(f'"{c}"' for c in cols)
            cur = lite.execute(f'SELECT {quoted} FROM "{table.name}"')
            n = 0
            with pg.cursor().copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as cp:
                while rows := cur.fetchmany(chunk):
                    for row in rows:
                        cp.write_row(row)
                    n += len(rows)
            counts[table.name] = n
            print(f"  copied {table.name}: {n:,} rows, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            for c in table.columns:
                if c.primary_key and c.autoincrement is not False and str(c.type) in ("INTEGER", "BIGINT"):
                    seq = pg.execute("SELECT pg_get_serial_sequence(%s, %s)", (table.name, c.name)).fetchone()
                    if seq and seq[0]:
                        pg.execute(
                            f'SELECT setval(%s, COALESCE((SELECT MAX("{c.name}") FROM "{table.name}"), 0) + 1, false)',
                            (seq[0],),
                        )
        for name in names:
            pg.execute(f'ALTER TABLE "{name}" ENABLE TRIGGER USER')
    lite.close()
    _vacuum(engine)
    return {"rows": counts, "copy_s": round(time.perf_counter() - t0, 1)}


REPORTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("adoption", {}),
    ("spend", {"by": "team"}),
    ("spend", {"by": "model"}),
    ("spend", {"by": "repo"}),
    ("shipped", {}),
    ("outliers", {}),
    ("models", {}),
    ("packages", {"name": "event-stream"}),
)
SEED_TARGET_S, REPORT_TARGET_S = 1.0, 2.0


def measure_queries(engine: Engine, runs: int = 3, only: Sequence[str] = ()) -> dict[str, Any]:
    with engine.connect() as conn:
        week = conn.execute(text("SELECT week FROM sessions GROUP BY week ORDER BY COUNT(*) DESC LIMIT 1")).scalar()
        week_sessions = conn.execute(text("SELECT COUNT(*) FROM sessions WHERE week = :w"), {"w": week}).scalar()
        team = conn.execute(text("SELECT team FROM sessions GROUP BY team ORDER BY COUNT(*) DESC LIMIT 1")).scalar()
        repo = conn.execute(text("SELECT repo FROM sessions GROUP BY repo ORDER BY COUNT(*) DESC LIMIT 1")).scalar()
    sql = SEED_QUERY.format(week=week)

    def direct() -> int:
        with engine.connect() as conn:
            return len(conn.execute(text(sql)).all())

    out: dict[str, Any] = {"week": week, "week_sessions": week_sessions, "team": team, "repo": repo}
    out["load_average_before"] = load_average()
    s, rows = timed(direct, runs)
    out["seed_query_s"] = round(s, 3)
    out["seed_query_rows"] = rows
    s, _ = timed(lambda: run_sql(engine, sql, max_rows=100_000), runs)
    out["seed_query_readonly_sql_s"] = round(s, 3)
    last30 = Filters(
        since=datetime.combine(END - timedelta(days=29), datetime.min.time()),
        until=datetime.combine(END + timedelta(days=1), datetime.min.time()),
    )
    periods = {
        "all": Filters(),
        "30d": last30,
        "all, team": Filters(team=team),
        "30d, team": dataclasses.replace(last30, team=team),
        "all, repo": Filters(repo=repo),
        "30d, repo": dataclasses.replace(last30, repo=repo),
    }
    reports: dict[str, Any] = {}
    loads: dict[str, float] = {}
    for name, opts in REPORTS:
        if only and name not in only:
            continue
        label = name + (f" --by {opts['by']}" if "by" in opts else "")
        for period, f in periods.items():
            s, _ = timed(partial(run_report, engine, name, f, opts), runs)
            reports[f"{label} [{period}]"] = round(s, 3)
            loads[f"{label} [{period}]"] = load_average()
    out["reports_s"] = reports
    out["load_average"] = loads
    out["load_average_after"] = load_average()
    return out


def markdown(result: dict[str, Any]) -> str:
    """The figures as the table in docs/performance.md: one row per query, seconds against the target."""
    q = result["queries"]

    loads = q.get("load_average", {})
    start = q.get("load_average_before", "")

    def row(what: str, seconds: float, target: float, load: Any) -> str:
        return f"| {what} | {seconds:.3f} s | < {target:g} s | {'yes' if seconds < target else '**no**'} | {load} |"

    lines = ["| query | median of runs | target | met | load average |", "|---|---|---|---|---|"]
    seed = f"seed's query ({q['week']}, {q['week_sessions']:,} sessions)"
    lines.append(row(seed, q["seed_query_s"], SEED_TARGET_S, start))
    lines.append(row("the same through `agenttrail sql`", q["seed_query_readonly_sql_s"], SEED_TARGET_S, start))
    lines += [row(f"`{name}`", s, REPORT_TARGET_S, loads.get(name, "")) for name, s in q["reports_s"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engineers", type=int, default=7500)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--db", default="sqlite", help="sqlite, postgresql, or a URL")
    ap.add_argument("--loader", choices=("bulk", "ingest"), default="bulk")
    ap.add_argument("--ingest-sample-engineers", type=int, default=60)
    ap.add_argument("--ingest-sample-days", type=int, default=20)
    ap.add_argument("--ingest-runs", type=int, default=3)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--keep", action="store_true", help="Keep the large database (SQLite: print its path).")
    ap.add_argument("--measure", metavar="URL", help="Only time the queries and reports on this database.")
    ap.add_argument("--runs", type=int, default=3, help="Runs of each query; the median is reported.")
    ap.add_argument("--markdown", action="store_true", help="Also print the figures as a Markdown table.")
    ap.add_argument("--only", metavar="REPORTS", help="With --measure: only these reports (comma-separated).")
    ap.add_argument(
        "--ingest-into",
        metavar="URL",
        help="Ingest --extra-days more days of the large organisation into this database (the real ingest).",
    )
    ap.add_argument("--extra-days", type=int, default=3)
    ap.add_argument("--copy", metavar="SQLITE_URL", help="Copy this SQLite store's rows (with --into).")
    ap.add_argument("--into", metavar="POSTGRESQL_URL", help="The PostgreSQL store --copy writes to.")
    args = ap.parse_args()
    if args.copy:
        print(json.dumps(copy_sqlite_to_postgresql(args.copy, args.into), indent=2))
        return
    if args.ingest_into:
        engine = open_engine(args.ingest_into)
        print(json.dumps(ingest_at_scale(engine, args.engineers, args.days, args.extra_days), indent=2))
        return
    if args.measure:
        engine = open_engine(args.measure)
        _vacuum(engine)
        with engine.connect() as conn:
            n = conn.execute(text("SELECT COUNT(*) FROM sessions")).scalar()
            events = conn.execute(text("SELECT COUNT(*) FROM events")).scalar()
        out = {
            "sessions": n,
            "events": events,
            "sizes": table_sizes(engine),
            "queries": measure_queries(engine, args.runs, args.only.split(",") if args.only else ()),
        }
        print(json.dumps(out, indent=2))
        if args.markdown:
            print(markdown(out))
        return
    tmp = Path(tempfile.mkdtemp(prefix="agenttrail-bench-record-"))
    result: dict[str, Any] = {"db": args.db, "engineers": args.engineers, "days": args.days, "loader": args.loader}
    if not args.skip_ingest:
        print("ingest sample …", file=sys.stderr, flush=True)
        result["ingest"] = measure_ingest(
            args.db, tmp, args.ingest_sample_engineers, args.ingest_sample_days, args.ingest_runs
        )
        print(json.dumps(result["ingest"]), file=sys.stderr, flush=True)
    url = _db(args.db, tmp)
    try:
        engine = open_engine(url)
        print(f"loading {args.engineers} engineers x {args.days} days ({args.loader}) …", file=sys.stderr, flush=True)
        result["load"] = load_large(engine, args.engineers, args.days, args.loader)
        print(json.dumps(result["load"]), file=sys.stderr, flush=True)
        _vacuum(engine)
        result["sizes"] = table_sizes(engine)
        result["queries"] = measure_queries(engine, args.runs)
    finally:
        if args.keep:
            result["kept"] = url
        else:
            _drop(url)
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.markdown and "queries" in result:
        print(markdown(result))


if __name__ == "__main__":
    main()
