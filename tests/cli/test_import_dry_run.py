"""`agenttrail import claude-code|codex --dry-run`: the totals of every file, nothing stored, no read positions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.importers.builders import ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage


def _history(root: Path, agent: str) -> None:
    if agent == "claude-code":
        for i in range(2):
            t = ClaudeTranscript(cwd=f"/home/dev/repo{i}")
            t.prompt("fix the bug")
            t.response([{"type": "text", "text": "Done."}], anthropic_usage(100 + i, 20, cache_read=50))
            t.write(root / "projects")
        (root / "projects" / "-p").mkdir()
        (root / "projects" / "-p" / "broken.jsonl").write_bytes(b'{"type":"assistant","message":{"usage":\n')
    else:
        r = CodexRollout(cwd="/home/dev/repo")
        r.meta()
        r.turn_context()
        r.user("go")
        r.token_count(codex_usage(300, 100, 40))
        r.write(root)


def _run(agent: str, root: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTTRAIL_", "CLAUDE_", "CODEX_"))}
    env.update(HOME=str(tmp / "home"), AGENTTRAIL_HOME=str(tmp / "athome"), NO_COLOR="1", COLUMNS="200")
    db = f"sqlite:///{tmp / 'store.db'}"
    cmd = [sys.executable, "-m", "agenttrail", "import", agent, str(root), "--db", db, "--no-progress", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return p


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
@pytest.mark.parametrize("usage_only", [False, True])
def test_dry_run_totals_everything_and_stores_nothing(tmp_path: Path, agent: str, usage_only: bool) -> None:
    root = tmp_path / "transcripts"
    _history(root, agent)
    extra = ["--usage-only"] if usage_only else []
    first: dict[str, Any] = json.loads(_run(agent, root, tmp_path, "--dry-run", "--json", *extra).stdout)
    assert first["dry_run"] is True
    assert first["calls"] >= 1 and first["input_tokens"] > 0 and first["cost_usd"] > 0
    assert first["stored_new"] == 0 and first["already_stored"] == 0
    assert not (tmp_path / "store.db").exists()  # no store opened: nothing stored, no read positions
    again = json.loads(_run(agent, root, tmp_path, "--dry-run", "--json", *extra).stdout)
    assert again == first  # every file read whole again
    stored = json.loads(_run(agent, root, tmp_path, "--json", *extra).stdout)  # the real import finds the same
    assert stored["dry_run"] is False
    assert {k: stored[k] for k in ("calls", "input_tokens", "output_tokens", "unreadable_lines")} == {
        k: first[k] for k in ("calls", "input_tokens", "output_tokens", "unreadable_lines")
    }
    assert stored["stored_new"] > 0


def test_dry_run_summary_says_nothing_was_stored(tmp_path: Path) -> None:
    root = tmp_path / "transcripts"
    _history(root, "claude-code")
    out = _run("claude-code", root, tmp_path, "--dry-run").stdout
    assert "nothing stored (dry run)" in out
    assert "1 unreadable lines skipped" in out
