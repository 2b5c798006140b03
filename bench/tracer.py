"""What tracing a session costs: wall-time ratio traced / untraced for three workloads.

    python3 bench/tracer.py [--runs 5] [--spawns 1000] [--tests 300] [--commits 100] [--only pytest,...]

Workloads, each made fresh in a temporary folder (outside /tmp, so the sandbox sees it as the host does):

- pytest: the test run of a small project (`--tests` test functions in 20 modules, plain asserts);
- git: a git-heavy session (`--commits` edit+add+commit rounds, then log, status, diff, a branch and a merge);
- spawns: `--spawns` process spawns (a bash loop of /bin/true).

Modes, each the median of `--runs` runs, measured in one process in the same minutes so they share the
machine's load:

- untraced: the command as is;
- sandbox: inside the bubblewrap sandbox `agenttrail run` builds (no tracing);
- traced: under the supervisor (strace streaming into the parser, events to an in-memory list), no sandbox;
- traced+sandbox: both, as `agenttrail run` does by default;
- agenttrail run: the whole CLI (`agenttrail run -- CMD`, local SQLite store): adds the CLI's start,
  the workspace snapshot before and after, and storing every event.

`--append-doc` appends the table to docs/performance.md under its "Tracer" heading.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agenttrail.tracer.sandbox import SandboxConfig, build_argv, probe
from agenttrail.tracer.strace_parser import TraceConfig
from agenttrail.tracer.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"


def make_pytest_project(root: Path, tests: int) -> list[str]:
    pkg = root / "shop"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "shop.py").write_text(
        textwrap.dedent(
            """
            def price(qty, unit, discount=0.0):
                total = qty * unit
                return round(total * (1 - discount), 2)

            def basket(items):
                return sum(price(q, u) for q, u in items)
            """
        )
    )
    per_module = max(tests // 20, 1)
    for m in range(20):
        body = ["import sys, os", "sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))", "import shop", ""]
        for t in range(per_module):
            body += [
                f"def test_{m}_{t}():",
                f"    assert shop.price({t + 1}, 2.5) == {round((t + 1) * 2.5, 2)}",
                f"    assert shop.basket([({t}, 1.0), (1, 0.5)]) == {t + 0.5}",
                "",
            ]
        (pkg / "tests" / f"test_m{m}.py").write_text("\n".join(body))
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]


def make_git_workload(root: Path, commits: int) -> list[str]:
    repo = root / "repo"
    repo.mkdir()
    script = f"""
set -e
git init -q -b main . && git config user.email b@example.com && git config user.name Bench
for i in $(seq 1 {commits}); do
  echo "line $i" >> notes.txt; printf 'v%s\\n' "$i" > "f$((i % 10)).txt"
  git add -A && git commit -q -m "change $i"
done
git log --oneline > /dev/null; git status --short > /dev/null; git diff HEAD~5 > /dev/null
git checkout -q -b feature; echo feature >> notes.txt; git commit -qam feature
git checkout -q main; git merge -q --no-edit feature; git gc -q --auto
"""
    return ["bash", "-c", script]


def make_spawns(root: Path, spawns: int) -> list[str]:
    return ["bash", "-c", f"for i in $(seq 1 {spawns}); do /bin/true; done"]


def _timed(fn: Callable[[], int]) -> float:
    t = time.perf_counter()
    code = fn()
    elapsed = time.perf_counter() - t
    if code != 0:
        raise SystemExit(f"workload failed with exit code {code}")
    return elapsed


def _plain(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def _traced(cmd: list[str], cwd: Path, env: dict[str, str], sandboxed: bool) -> int:
    config = TraceConfig(str(cwd), ignored_programs=("bwrap",) if sandboxed else ())
    events: list[object] = []
    sup = Supervisor(
        cmd,
        session_id="bench",
        config=config,
        on_event=events.append,
        cwd=str(cwd),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return sup.run().exit_code


def _runner(argv: list[str], traced: bool, sandboxed: bool, cwd: Path, env: dict[str, str]) -> Callable[[], int]:
    if traced:
        return lambda: _traced(argv, cwd, env, sandboxed)
    return lambda: _plain(argv, cwd, env)


def _sandbox_argv(cmd: list[str], cwd: Path, home: str) -> list[str]:
    return build_argv(SandboxConfig(str(cwd), home=home), cmd)


def _reset(workload: str, root: Path) -> None:
    if workload == "git":
        repo = root / "repo"
        shutil.rmtree(repo)
        repo.mkdir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--spawns", type=int, default=1000)
    ap.add_argument("--tests", type=int, default=300)
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--only", default="pytest,git,spawns")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-CLI mode")
    ap.add_argument("--append-doc", action="store_true")
    args = ap.parse_args()

    sandbox_ok = probe().ok
    base = Path(tempfile.mkdtemp(prefix="agenttrail-bench-", dir="/var/tmp"))
    home = base / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AGENTTRAIL_HOME": str(base / "at-home"),
        "AGENTTRAIL_DATABASE_URL": f"sqlite:///{base / 'bench.db'}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    makers = {
        "pytest": lambda r: make_pytest_project(r, args.tests),
        "git": lambda r: make_git_workload(r, args.commits),
        "spawns": lambda r: make_spawns(r, args.spawns),
    }
    rows = []
    try:
        for name in [w for w in args.only.split(",") if w]:
            root = base / name
            root.mkdir()
            cmd = makers[name](root)
            cwd = root / ("repo" if name == "git" else "shop" if name == "pytest" else "")
            cwd.mkdir(exist_ok=True)
            sandboxed_cmd = _sandbox_argv(cmd, cwd, str(home)) if sandbox_ok else None
            cli = [sys.executable, "-m", "agenttrail", "run", "-q", *([] if sandbox_ok else ["--no-sandbox"])]
            # mode -> (argv, traced by the supervisor, inside the sandbox)
            specs: dict[str, tuple[list[str], bool, bool]] = {"untraced": (cmd, False, False)}
            if sandboxed_cmd:
                specs["sandbox"] = (sandboxed_cmd, False, True)
            specs["traced"] = (cmd, True, False)
            if sandboxed_cmd:
                specs["traced+sandbox"] = (sandboxed_cmd, True, True)
            if not args.no_cli:
                specs["agenttrail run"] = ([*cli, "--", *cmd], False, False)
            modes = {m: _runner(argv, traced, sandboxed, cwd, env) for m, (argv, traced, sandboxed) in specs.items()}
            times: dict[str, list[float]] = {m: [] for m in modes}
            for _ in range(args.runs):
                for mode, fn in modes.items():  # interleaved, so load changes hit every mode alike
                    _reset(name, root)
                    times[mode].append(_timed(fn))
            med = {m: statistics.median(v) for m, v in times.items()}
            rows.append((name, med))
            line = "  ".join(f"{m} {v:.2f}s ({v / med['untraced']:.2f}x)" for m, v in med.items())
            print(f"{name:7s} {line}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    table = _table(rows, args, sandbox_ok)
    print()
    print(table)
    if args.append_doc:
        _append(table)


def _table(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace, sandbox_ok: bool) -> str:
    modes = ["untraced", "sandbox", "traced", "traced+sandbox", "agenttrail run"]
    labels = {
        "pytest": f"pytest of a small project ({args.tests} tests)",
        "git": f"git-heavy ({args.commits} commits, log, diff, branch, merge)",
        "spawns": f"{args.spawns} process spawns",
    }
    present = [m for m in modes if any(m in r[1] for r in rows)]
    head = "| workload | " + " | ".join(present) + " |"
    sep = "|---|" + "---|" * len(present)
    lines = [head, sep]
    for name, med in rows:
        cells = []
        for m in present:
            if m not in med:
                cells.append("—")
            elif m == "untraced":
                cells.append(f"{med[m]:.2f} s")
            else:
                cells.append(f"{med[m] / med['untraced']:.2f}× ({med[m]:.2f} s)")
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    load = os.getloadavg()[0]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    note = (
        f"\n`python3 bench/tracer.py --runs {args.runs}` on {when}: median of {args.runs} interleaved runs, "
        f"{platform.python_implementation()} {platform.python_version()}, load average {load:.1f} at the end"
        f"{'' if sandbox_ok else ', no sandbox possible here'}."
    )
    return "\n".join(lines) + "\n" + note + "\n"


def _append(table: str) -> None:
    """Add the table at the end of the "Tracer" section (made at the end of the file if missing);
    every other section is left as it is."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    heading = "\n## Tracer"
    if heading not in text:
        text = text.rstrip("\n") + "\n\n## Tracer (`bench/tracer.py`)\n"
    start = text.index(heading) + 1
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt + 1
    section = text[start:end].rstrip("\n") + "\n\n" + table
    DOC.write_text(text[:start] + section + ("\n" + text[end:] if end < len(text) else ""))


if __name__ == "__main__":
    main()
