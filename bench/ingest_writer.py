"""The SQLite ingest writer's work, counted in instructions: a figure the machine's load does not move.

    python3 bench/ingest_writer.py [--engineers 40] [--days 15] [--batch 2000] [--turn 4]
                                   [--baseline /tmp/at-base/src] [--db sqlite|postgresql]

What the server's one writer thread does (docs/store.md, "Ingest on SQLite"): seed-demo's events, cut
into batches of `--batch` events, each prepared as a request's thread prepares it
(`store.ingest.prepare`), are stored `--turn` batches a turn with `store.ingest_batches.ingest_batches`
into a fresh SQLite database. Each tree (this checkout, and `--baseline`, another checkout's `src`) runs
twice under `valgrind --tool=callgrind`: once up to the prepared batches, once storing them too; the
difference is the writer's instructions, reported per event and as a ratio to the baseline.

On two shared cores the wall-clock figures of `bench/ingest_http.py` move by ±25% between identical
runs; callgrind counts the same instructions for the same code and input whatever else runs. It does
not see what instructions cost (cache misses, I/O, the GIL), so it is a guide to CPU work, not a
throughput. Prints JSON. Never a pass/fail test.

`--db postgresql`: PostgreSQL has no writer thread; a request's thread parses the body and stores it
(`server.ingest._parse`, then `store.ingest.ingest`). The batches are encoded as request bodies, and the
difference counted is that Python's work (the server's CPU an event); the database's own work is in its
backend process, which callgrind does not see. Each run stores into a fresh schema, dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run inside each measured process: only this checkout's or the baseline's agenttrail is imported.
CHILD = """
import inspect, sys, tempfile
from datetime import date
from agenttrail.reports.demo_org import DemoOrg
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, prepare
from agenttrail.store.ingest_batches import ingest_batches

mode, engineers, days, batch, turn = sys.argv[1], *map(int, sys.argv[2:6])
pg = sys.argv[6] if len(sys.argv) > 6 else ""
folder = tempfile.mkdtemp()
made = open_engine(f"sqlite:///{folder}/made.db")
org = DemoOrg(made, engineers, days, seed=1, end=date(2026, 5, 20), batch_events=batch)
events = [e for part in org.events() for e in part]
who = Attribution()
if pg:
    import orjson
    from sqlalchemy import text
    from agenttrail.server.ingest import _parse
    from agenttrail.store.ingest import ingest
    cuts = range(0, len(events), batch)
    bodies = [orjson.dumps({"events": [e.to_dict() for e in events[i : i + batch]]}) for i in cuts]
    admin = open_engine(pg)
    schema = f"bench_writer_{mode}_{__import__('os').getpid()}"
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        engine = open_engine(f"{pg}?options=-csearch_path%3D{schema}")
        if mode == "store":
            for body in bodies:
                ingest(engine, _parse(body), who)
        engine.dispose()
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    print(len(events))
    raise SystemExit(0)
engine = open_engine(f"sqlite:///{folder}/store.db")
# Older trees have no `sqlite` flag: their writer formats the times itself.
flag = {"sqlite": True} if "sqlite" in inspect.signature(prepare).parameters else {}
prepared = [prepare(events[i : i + batch], **flag) for i in range(0, len(events), batch)]
if mode == "store":
    for i in range(0, len(prepared), turn):
        ingest_batches(engine, [(p, who) for p in prepared[i : i + turn]])
print(len(events))
"""


def _instructions(python: str, src: str, mode: str, args: argparse.Namespace, folder: Path) -> tuple[int, int]:
    out = folder / f"cg.{mode}.{os.getpid()}.{abs(hash(src))}"
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        python,
        "-c",
        CHILD,
        mode,
        *map(str, (args.engineers, args.days, args.batch, args.turn)),
        *([args.pg_url] if args.pg_url else []),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"the measured run failed ({mode}, {src}):\n{done.stderr[-2000:]}")
    out.unlink(missing_ok=True)
    return int(found.group(1)), int(done.stdout.split()[-1])


def _tree(python: str, src: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    # Compiled first: a module imported only while storing would otherwise count its compilation.
    subprocess.run([python, "-m", "compileall", "-q", src], check=False, capture_output=True)
    # The two runs side by side: callgrind counts are the same either way.
    with ThreadPoolExecutor(2) as pool:
        prepared, stored = pool.map(lambda m: _instructions(python, src, m, args, folder), ("prepare", "store"))
    events = stored[1]
    writer = stored[0] - prepared[0]
    return {"events": events, "writer_instructions": writer, "per_event": round(writer / events)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engineers", type=int, default=40)
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--batch", type=int, default=2000, help="events per request")
    ap.add_argument("--turn", type=int, default=4, help="batches per writer turn")
    ap.add_argument("--baseline", default=None, help="another checkout's src directory, measured the same way")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="postgresql: a request's Python")
    args = ap.parse_args()
    pg = os.environ.get("AGENTTRAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args.pg_url = pg if args.db == "postgresql" else ""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    # The interpreter itself, not a wrapper script (pyenv's shims are shell scripts valgrind would trace).
    python = os.path.realpath(sys.executable)
    result: dict[str, object] = {
        "db": args.db,
        "engineers": args.engineers,
        "days": args.days,
        "batch": args.batch,
        "turn": args.turn,
    }
    with tempfile.TemporaryDirectory() as d:
        here = _tree(python, str(Path(__file__).resolve().parents[1] / "src"), args, Path(d))
        result["this_checkout"] = here
        if args.baseline:
            base = _tree(python, args.baseline, args, Path(d))
            result["baseline"] = {"src": args.baseline, **base}
            result["ratio_to_baseline"] = round(here["per_event"] / base["per_event"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
