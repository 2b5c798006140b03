"""What a session does with each event while the agent runs, besides storing it.

- `OwnHooks` drops the trailer hooks' own work. Every git command the agent runs goes through the
  session's forwarding hooks (commit_hook), and each of them runs `git rev-parse`, maybe
  `git interpret-trailers`, `cat`: tracer machinery, like bwrap's setup, not the agent's commands.
  A hook that hands over to the repository's own hook (`exec "$orig/$hook"`) is the repository's
  work again, and is kept from that exec on.
- `AgentSessionWatch` learns the agent's own session id from the transcript file it creates.

Both run on the supervisor's reader thread: constant work per event.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.tracer.agents import transcript_location

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CLAUDE_TRANSCRIPT = re.compile(rf"^({_UUID})\.jsonl$")
_CODEX_ROLLOUT = re.compile(rf"^rollout-.*-({_UUID})\.jsonl$")


class OwnHooks:
    """Tells the session's hook processes (and what they start) from the agent's."""

    def __init__(self, hooks_dir: str) -> None:
        real = os.path.realpath(hooks_dir)
        self._prefixes = tuple({os.path.normpath(hooks_dir) + "/", real + "/"})
        self._pids: set[int] = set()
        self.dropped = 0

    def keep(self, event: Event) -> bool:
        p = event.payload
        pid = p.get("pid")
        if event.kind == ev.EXEC:
            path = str(p.get("path") or "")
            argv0 = str((p.get("argv") or [""])[0])
            ours = path.startswith(self._prefixes) or argv0.startswith(self._prefixes)
            if ours or p.get("ppid") in self._pids:
                if isinstance(pid, int):
                    self._pids.add(pid)
                self.dropped += 1
                return False
            if pid in self._pids:
                self._pids.discard(pid)  # the hook exec'd the repository's own hook: that is real work
            return True
        if pid in self._pids:
            self.dropped += 1
            return False
        return True


@dataclass
class AgentSessionWatch:
    """Learns the agent's own session id from the trace: the transcript file it creates.

    Claude Code writes `<projects dir>/<session uuid>.jsonl`, Codex `sessions/…/rollout-…-<uuid>.jsonl`.
    Seeing the file opened in this session's trace is exact (another agent running at the same time
    writes its own file); a directory scan by modification time would not be.
    """

    agent: str
    env: Mapping[str, str]
    home: str
    cwd: str
    found: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        where = transcript_location(self.agent, env=self.env, home=self.home, cwd=self.cwd)
        self._dirs = tuple({os.path.normpath(str(where)), os.path.realpath(str(where))}) if where else ()

    def see(self, event: Event) -> None:
        if self.found is not None or not self._dirs or event.kind not in (ev.FILE_CREATE, ev.FILE_WRITE):
            return
        path = str(event.payload.get("path") or "")
        if not any(path.startswith(d + "/") for d in self._dirs):
            return
        name = os.path.basename(path)
        if self.agent == "claude-code":
            # Subagents write <session>/subagents/agent-<id>.jsonl: only a file directly in the folder.
            m = _CLAUDE_TRANSCRIPT.match(name) if os.path.dirname(path) in self._dirs else None
        else:
            m = _CODEX_ROLLOUT.match(name)
        if m:
            with self._lock:
                self.found = self.found or m.group(1)
