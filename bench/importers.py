"""Import throughput on generated transcripts, against ccusage on the same files in the same run.

    python3 bench/importers.py [--mb 1024] [--agents claude-code,codex] [--ccusage PATH] [--workers 1]
                               [--store] [--workdir DIR] [--append-doc docs/performance.md] [--stages]
                               [--usage-only]

Generates Claude Code transcripts (sessions with thinking, text, tool calls and results, subagents, the
line types Claude Code skips) and Codex rollouts (turn contexts, reasoning, function calls and outputs,
`token_usage_record` and `token_count`), in the shapes the real CLIs write (tests/importers/builders.py),
`--mb` of each. Then, on the same files:

- `ccusage` (`daily --json --offline`; `codex daily` for Codex): wall time and token totals;
- agenttrail's parser, usage only (what ccusage computes): `iter_claude_code(..., with_events=False)`,
  with the native line scanner where it is built and, for comparison, with the plain line reader;
- agenttrail's parser with the dialogue events, turned into ingest events (`to_events`), nothing stored;
- with `--store`, the whole `agenttrail import` into a fresh SQLite store: `--usage-only` (sessions and
  priced calls), then everything (dialogue events too); both through ingest (redaction, the join).

`--usage-only` times only ccusage and the usage-only reads (the comparable path), the parser's and the
user's (`agenttrail import --usage-only --dry-run`: read, price and total, nothing stored).

With `--stages`, nothing of the above: the CPU seconds of each step a usage-only read can take (the line
reader's, a whole-file search's, orjson and the parsers' Python on the lines that count), which is
where docs/performance.md's "Importers" finds the floor. The load average is printed with each table.

Token totals must be equal between ccusage and agenttrail (the script says so, or says where they
differ). Throughput is the files' size over wall time. Install ccusage with
`npm install --prefix DIR ccusage@20.0.24 @ccusage/ccusage-linux-x64@20.0.24` (20.0.26's Linux binary is
missing from the registry). This is a measurement, never a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import operator
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# Only what the parser needs at the top: parallel reads spawn processes that import this module again,
# and the store and pricing (sqlalchemy, genai-prices) would cost each of them most of a second.
from agenttrail.importers import ImportBatch, iter_claude_code, iter_codex  # noqa: E402
from agenttrail.usage import Usage  # noqa: E402
from importers.builders import T0, ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage  # noqa: E402

WORDS = [
    "the",
    "agent",
    "reads",
    "the",
    "file",
    "then",
    "runs",
    "the",
    "tests",
    "and",
    "fixes",
    "what",
    "fails",
    "before",
    "it",
    "commits",
]


def prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, n // 5)))


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*.jsonl"))


# ------------------------------------------------------------------------------------------ generation


def claude_session(i: int, rng: random.Random, turns: int) -> ClaudeTranscript:
    t = ClaudeTranscript(cwd=f"/home/dev/repo{i % 40}", clock=T0 + timedelta(hours=i))
    for turn in range(turns):
        if turn % 5 == 0:
            t.noise()
        t.prompt(prose(rng, 200))
        tool_id = f"toolu_{i}_{turn}"
        u = anthropic_usage(
            rng.randint(5, 3000), rng.randint(20, 900), cache_read=rng.randint(0, 90_000),
            cache_5m=rng.randint(0, 4000), cache_1h=rng.choice((0, 0, 0, rng.randint(1, 2000))),
        )  # fmt: skip
        t.response(
            [
                {"type": "thinking", "thinking": prose(rng, 800), "signature": "c2ln" * 40},
                {"type": "text", "text": prose(rng, 400)},
                {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": prose(rng, 80)}},
            ],
            u,
            partial_output=1,
        )
        t.tool_result(tool_id, prose(rng, rng.choice((300, 2000, 6000, 20_000))))
        closing = anthropic_usage(rng.randint(5, 500), rng.randint(5, 400))
        t.response([{"type": "text", "text": prose(rng, 300)}], closing)
    t.cost_state(1.0 + i, start_time=1_795_364_981_251 + i)
    return t


def generate_claude(root: Path, target: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    projects = root / "projects"
    written, i = 0, 0
    while written < target:
        t = claude_session(i, rng, turns=30)
        p = t.write(projects)
        written += p.stat().st_size
        if i % 4 == 0:  # a subagent: its lines carry the parent's session id
            sub = ClaudeTranscript(session_id=t.session_id, cwd=t.cwd, agent_id=f"a{i}", clock=t.clock)
            for _ in range(5):
                sub.prompt(prose(rng, 100))
                sub.response([{"type": "text", "text": prose(rng, 300)}], anthropic_usage(rng.randint(5, 900), 50))
            written += sub.write(projects).stat().st_size
        i += 1
    return written


def generate_codex(root: Path, target: int, seed: int = 11) -> int:
    rng = random.Random(seed)
    written, i = 0, 0
    while written < target:
        # Distinct times per session: ccusage counts Codex events with the same time and usage once.
        r = CodexRollout(cwd=f"/home/dev/repo{i % 40}", model="gpt-5", clock=T0 + timedelta(hours=i))
        r.meta()
        for turn in range(30):
            r.turn_context()
            r.user(prose(rng, 200))
            r.reasoning(prose(rng, 500))
            call = f"call_{i}_{turn}"
            r.function_call(call, args={"cmd": prose(rng, 60)})
            r.function_output(call, "Process exited with code 0\n" + prose(rng, rng.choice((300, 2000, 6000))))
            r.assistant(prose(rng, 400))
            u = codex_usage(rng.randint(2000, 90_000), 0, rng.randint(20, 2000), rng.randint(0, 500))
            u["cached_input_tokens"] = rng.randint(0, u["input_tokens"])
            r.usage_record(f"resp_{i:06d}_{turn:03d}", u)
            r.token_count(u)
        written += r.write(root).stat().st_size
        i += 1
    return written


# -------------------------------------------------------------------------------------------- runners


@dataclass
class Run:
    name: str
    seconds: float
    tokens: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0  # CPU seconds of this process and its children (workers, ccusage) during the run
    note: str = ""


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], dict[str, int]]) -> tuple[float, dict[str, int], float]:
    """Wall seconds, the result, CPU seconds. On a shared machine the wall time depends on the other
    work; CPU time says what the run itself cost (ccusage included, as a child process)."""
    c0, t0 = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out, _cpu() - c0


def usage_tokens(u: Usage) -> dict[str, int]:
    """Totals as ccusage reports them, for both agents: input without cache reads and writes."""
    return {
        "input": u.input_tokens,
        "output": u.output_tokens,
        "cache_read": u.cache_read_tokens,
        "cache_write": u.cache_write_tokens,
    }


def agenttrail_parse(agent: str, root: Path, *, events: bool, workers: int, plain: bool = False) -> dict[str, int]:
    """`plain`: the plain line reader even where the native scanner is built (one process only)."""
    from agenttrail.importers import jsonl

    iterate = iter_claude_code if agent == "claude-code" else iter_codex
    native = jsonl.NATIVE
    jsonl.NATIVE = native and not plain
    try:
        return _parse(iterate, root, events=events, workers=workers)
    finally:
        jsonl.NATIVE = native


def _parse(iterate: Callable[..., Any], root: Path, *, events: bool, workers: int) -> dict[str, int]:
    to_events: Callable[..., Any] | None = None
    if events:  # importing and loading the prices is no part of a usage-only read (0.2-0.5 s)
        from agenttrail.importers import to_events as module
        from agenttrail.pricing import Pricer

        to_events, pricer = module.batch_to_events, Pricer()
    seen: set[str] = set()
    totals = dict.fromkeys(("input", "output", "cache_read", "cache_write"), 0)
    for _, batch in iterate(root, with_events=events, workers=workers):
        if to_events is not None:
            to_events(batch, pricer)
        new: list[Usage] = []
        for c in batch.calls:
            if c.call_id not in seen:  # a call repeated in another file (a resumed session) counts once
                seen.add(c.call_id)
                new.append(c.usage)
        for k, v in usage_totals(new).items():
            totals[k] += v
    return totals


def usage_totals(usages: list[Usage]) -> dict[str, int]:
    """usage_tokens of their sum, summed a field at a time: adding Usage records (a Python call each)
    cost 0.2 s of a 1 s Codex read, and keeping them all until the end made the collector walk them."""

    def total(name: str) -> int:
        return sum(map(operator.attrgetter(name), usages))

    return {
        "input": total("input_tokens"),
        "output": total("output_tokens"),
        "cache_read": total("cache_read_tokens"),
        "cache_write": total("cache_write_5m_tokens") + total("cache_write_1h_tokens"),
    }


def agenttrail_store(agent: str, root: Path, work: Path, *, usage_only: bool = False) -> dict[str, int]:
    from agenttrail.cli.import_ import run_import
    from agenttrail.config import load_settings
    from agenttrail.store.database import forget_engine

    db = work / f"store-{agent}-{'usage' if usage_only else 'full'}.db"
    forget_engine(f"sqlite:///{db}")  # engines are cached per URL: a deleted file would live on in it
    for p in work.glob(db.name + "*"):
        p.unlink()
    settings = load_settings(db=f"sqlite:///{db}", env={"AGENTTRAIL_HOME": str(work / "home")})
    totals = run_import(agent, str(root), settings=settings, env={}, show_progress=False, usage_only=usage_only)
    return usage_tokens(totals.usage)


def agenttrail_dry_run(agent: str, root: Path, work: Path) -> dict[str, int]:
    """`agenttrail import <agent> --usage-only --dry-run`: ccusage's work as a user runs it (read, price and
    total every file, store nothing), in this process."""
    from agenttrail.cli.import_ import run_import
    from agenttrail.config import load_settings

    settings = load_settings(db=f"sqlite:///{work / 'dry-run-never-created.db'}", env={"AGENTTRAIL_HOME": str(work)})
    totals = run_import(agent, str(root), settings=settings, env={}, show_progress=False, usage_only=True, dry_run=True)
    return usage_tokens(totals.usage)


def agenttrail_command(agent: str, root: Path, work: Path) -> dict[str, int]:
    """The same, as the user runs it: `agenttrail import <agent> ROOT --usage-only --dry-run --json`, a
    process of its own started like ccusage's (its start-up and imports are part of the time). With `work`
    as its AGENTTRAIL_HOME, whose price cache (`cache/prices.json`, pricing._RatesCache) the runs before
    filled: a user's second run. `work` a fresh folder: a user's first run, genai-prices imported."""
    # The console script beside this interpreter (not a version manager's shim, which adds its own start).
    exe = Path(sys.executable).with_name("agenttrail")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "agenttrail"]
    args = [*cmd, "import", agent, str(root), "--usage-only", "--dry-run", "--json", "--no-progress"]
    env = {**os.environ, "AGENTTRAIL_HOME": str(work), "NO_COLOR": "1"}
    p = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"agenttrail import failed: {p.stderr[-2000:]}")
    out = json.loads(p.stdout)
    return {
        "input": out["input_tokens"],
        "output": out["output_tokens"],
        "cache_read": out["cache_read_tokens"],
        "cache_write": out["cache_write_tokens"],
    }


def ccusage(exe: str, agent: str, root: Path) -> dict[str, int]:
    env = {**os.environ, "TZ": "UTC"}
    if agent == "claude-code":
        env["CLAUDE_CONFIG_DIR"] = str(root)
        args = [exe, "daily", "--json", "--offline"]
    else:
        env["CODEX_HOME"] = str(root)
        args = [exe, "codex", "daily", "--json", "--offline"]
    p = subprocess.run(args, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"ccusage failed: {p.stderr[-2000:]}")
    totals = json.loads(p.stdout)["totals"]
    return {
        "input": int(totals["inputTokens"]),
        "output": int(totals["outputTokens"]),
        "cache_read": int(totals["cacheReadTokens"]),
        "cache_write": int(totals["cacheCreationTokens"]),
    }


def bench(agent: str, root: Path, size: int, args: argparse.Namespace, work: Path) -> list[Run]:
    runs: list[Run] = []
    exe = args.ccusage or shutil.which("ccusage")
    if exe:
        runs.append(Run("ccusage 20.0.24", *timed(lambda: ccusage(exe, agent, root))))
    else:
        print("ccusage not found: pass --ccusage PATH", file=sys.stderr)
    from agenttrail.importers import jsonl

    if jsonl.NATIVE:  # the reader the native scanner replaces, for comparison
        result = timed(functools.partial(agenttrail_parse, agent, root, events=False, workers=1, plain=True))
        runs.append(Run("agenttrail, usage only, plain reader", *result))
    for workers in sorted({1, args.workers}):
        label = "" if workers == 1 else f", {workers} processes"
        result = timed(functools.partial(agenttrail_parse, agent, root, events=False, workers=workers))
        runs.append(Run(f"agenttrail, usage only{label}", *result))
    # The in-process row times the import itself, not loading its modules (the command's row has that).
    for module in ("agenttrail.cli.import_", "agenttrail.pricing"):
        importlib.import_module(module)
    result = timed(lambda: agenttrail_dry_run(agent, root, work))
    runs.append(Run("`import --usage-only --dry-run`, in this process", *result))
    with tempfile.TemporaryDirectory(prefix="at-home-") as fresh:
        result = timed(lambda: agenttrail_command(agent, root, Path(fresh)))
    runs.append(Run("the command, first run (no price cache yet)", *result))
    result = timed(lambda: agenttrail_command(agent, root, work))
    runs.append(Run("`agenttrail import … --usage-only --dry-run` (command)", *result))
    if args.usage_only:
        return runs
    result = timed(lambda: agenttrail_parse(agent, root, events=True, workers=1))
    runs.append(Run("agenttrail, with dialogue events", *result))
    if args.store:
        result = timed(lambda: agenttrail_store(agent, root, work, usage_only=True))
        runs.append(Run("`agenttrail import --usage-only` into SQLite", *result))
        result = timed(lambda: agenttrail_store(agent, root, work))
        runs.append(Run("`agenttrail import` into SQLite (dialogue too)", *result))
    return runs


def load_average() -> str:
    """The 1-minute load average: on a shared machine it says how far wall times can be trusted."""
    return f"{os.getloadavg()[0]:.1f}"


def report(agent: str, size: int, runs: list[Run], load: str = "") -> str:
    base = next((r for r in runs if r.name.startswith("ccusage")), None)
    lines = [
        f"{agent}: {size / 1e6:.0f} MB" + (f" (load average {load} on {os.cpu_count()} cores)" if load else ""),
        "",
        "| run | seconds | MB/s | vs ccusage | CPU seconds | vs ccusage (CPU) | tokens equal to ccusage |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        mbs = size / 1e6 / r.seconds
        ratio = f"{base.seconds / r.seconds:.2f}×" if base else "n/a"
        cpu_ratio = f"{base.cpu / r.cpu:.2f}×" if base and r.cpu else "n/a"
        same = "—" if r is base or base is None else ("yes" if r.tokens == base.tokens else f"NO: {r.tokens}")
        lines.append(f"| {r.name} | {r.seconds:.1f} | {mbs:.0f} | {ratio} | {r.cpu:.1f} | {cpu_ratio} | {same} |")
    if base:
        lines.append("")
        lines.append(f"ccusage totals: {base.tokens}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ where CPU goes

T = TypeVar("T")

# The lines a usage-only read needs, found by searching whole files instead of looking at every line.
_NEEDLES = {
    "claude-code": re.compile(rb'"usage"'),
    "codex": re.compile(rb'"type":"(?:turn_context|token_count|token_usage_record|session_meta)"'),
}


def stages(agent: str, root: Path, size: int) -> str:
    """CPU seconds of each step a usage-only read could take, on the generated files: the line reader's
    (iterate the lines, the per-line byte check) against a whole-file search's (read whole, count the
    newlines for line numbers and read positions, search the needles and slice their lines out), and
    what both then pay (orjson on the lines that count, the parser's Python on them)."""
    from agenttrail.importers.claude_code import ClaudeCodeParser
    from agenttrail.importers.codex import CodexParser

    files = sorted(root.rglob("*.jsonl"))
    parser = ClaudeCodeParser(with_events=False) if agent == "claude-code" else CodexParser(with_events=False)
    skip = parser.skip_line
    assert skip is not None
    rows: list[tuple[str, float]] = []

    def step(name: str, fn: Callable[[], T]) -> T:
        c0 = time.process_time()
        out = fn()
        rows.append((name, time.process_time() - c0))
        return out

    def lines(check: bool) -> list[bytes]:
        kept: list[bytes] = []
        for f in files:
            with open(f, "rb", buffering=1 << 20) as fh:
                kept.extend(raw for raw in fh if not (check and skip(raw)))
        return kept

    step("line reader: iterate the lines", lambda: lines(False))
    kept = step("line reader: iterate + per-line byte check", lambda: lines(True))
    bufs = step("whole file: read", lambda: [f.read_bytes() for f in files])
    step("whole file: count newlines", lambda: sum(b.count(b"\n") for b in bufs))

    def search() -> int:
        n = 0
        for b in bufs:
            end = -1
            for m in _NEEDLES[agent].finditer(b):
                if m.start() > end:
                    end = b.find(b"\n", m.start())
                    n += len(b[b.rfind(b"\n", 0, m.start()) + 1 : end + 1])
        return n

    step("whole file: search needles, slice their lines", search)
    import orjson

    loads = orjson.loads
    step("orjson on the lines that count", lambda: sum(1 for raw in kept if loads(raw)))

    def feed() -> None:  # parsed one at a time and dropped, as the reader does (no list of them all)
        batch = ImportBatch()
        parser.start(files[0], {}, batch)
        for raw in kept:
            with contextlib.suppress(Exception):  # lines of many files fed as one: a shape may not fit
                parser.feed(1, loads(raw), raw)
        parser.finish()

    step("orjson and the parser's Python on them (as one file)", feed)
    out = [f"{agent}: where a usage-only read's CPU goes ({size / 1e6:.0f} MB, {len(kept)} lines that count)", ""]
    out += ["| step | CPU seconds | per GB |", "|---|---|---|"]
    out += [f"| {name} | {sec:.2f} | {sec * 1e9 / size:.2f} |" for name, sec in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1024, help="size of each agent's generated transcripts")
    ap.add_argument("--agents", default="claude-code,codex")
    ap.add_argument("--ccusage", help="the ccusage executable (default: on PATH)")
    ap.add_argument("--workers", type=int, default=1, help="also time the parser over this many processes")
    ap.add_argument("--store", action="store_true", help="also time the whole import into a SQLite store")
    ap.add_argument("--workdir", help="keep generated files here (reused when present)")
    ap.add_argument("--append-doc", help="append the tables to this markdown file")
    ap.add_argument("--stages", action="store_true", help="only time the steps of a usage-only read")
    ap.add_argument(
        "--usage-only", action="store_true", help="only ccusage and the usage-only reads (no events, no store)"
    )
    args = ap.parse_args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="at-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    target = args.mb * 1_000_000
    out: list[str] = []
    for agent in args.agents.split(","):
        root = work / agent
        size = folder_size(root) if root.exists() else 0
        if size < target * 0.95:
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            size = generate_claude(root, target) if agent == "claude-code" else generate_codex(root, target)
            print(f"generated {size / 1e6:.0f} MB of {agent} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        # Read once so both tools start from a warm page cache.
        for f in root.rglob("*.jsonl"):
            f.read_bytes()
        if args.stages:
            text = stages(agent, root, size)
            print(text + "\n", flush=True)
            out.append(text)
            continue
        before = load_average()
        runs = bench(agent, root, size, args, work)
        text = report(agent, size, runs, f"{before} before, {load_average()} after")
        print(text + "\n", flush=True)
        out.append(text)
    if args.append_doc:
        with open(args.append_doc, "a") as fh:
            fh.write("\n" + "\n\n".join(out) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
