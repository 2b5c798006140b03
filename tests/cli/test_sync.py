"""`agenttrail sync` as a person runs it: what it says when it cannot send."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agenttrail.events import Event
from agenttrail.outbox import Outbox


def _sync(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "AGENTTRAIL_HOME": str(home / ".at")}
    return subprocess.run(
        [sys.executable, "-m", "agenttrail", "sync", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_what_is_missing_to_send_is_named(tmp_path: Path) -> None:
    with Outbox(tmp_path / ".at" / "outbox.db") as outbox:
        outbox.put([Event("s1", "exec", datetime(2026, 5, 1, tzinfo=UTC), {"argv": ["true"]}, "e1")])
    no_key = _sync(tmp_path, "--server", "http://127.0.0.1:9")
    assert no_key.returncode == 1 and "Traceback" not in no_key.stderr
    assert "1 events wait" in no_key.stderr and "no key" in no_key.stderr and "--key" in no_key.stderr
    assert "no server is set" not in no_key.stderr  # it was: the server was given, the key was not
    nothing = _sync(tmp_path)
    assert nothing.returncode == 1 and "no server is set" in nothing.stderr
