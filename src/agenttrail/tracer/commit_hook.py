"""`Agent-Session: <id>` on every commit made in a session, without touching the repository's config.

The session's environment sets `core.hooksPath` through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/
`GIT_CONFIG_VALUE_n` (git >= 2.31) to a session-private directory. Every hook there forwards to the
repository's own hook of the same name, found at run time with the environment as it was before
the session (so the repo's own `core.hooksPath`, or `.git/hooks`, is respected, in whichever repo
the agent commits). `prepare-commit-msg` and `commit-msg` first add the trailer with
`git interpret-trailers --if-exists addIfDifferent`, which is idempotent; `prepare-commit-msg` too
because `git commit --no-verify` skips `commit-msg` but not it.

Not forwarded: `push-to-checkout` and `proc-receive`, whose mere presence changes what git does.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

TRAILER_KEY = "Agent-Session"
HOOK_NAMES: tuple[str, ...] = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
    "pre-push", "pre-receive", "update", "post-receive", "post-update", "reference-transaction",
    "pre-auto-gc", "post-rewrite", "sendemail-validate", "fsmonitor-watchman", "post-index-change",
    "p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit",
)  # fmt: skip
_TRAILER_HOOKS = frozenset({"prepare-commit-msg", "commit-msg"})
# Hooks git feeds on stdin: with no hook of the repo's own to read it, drain it so git never sees EPIPE.
_STDIN_HOOKS = frozenset({"pre-push", "pre-receive", "post-receive", "post-rewrite", "reference-transaction"})
ORIG_COUNT_VAR = "AGENTTRAIL_ORIG_GIT_CONFIG_COUNT"

_TEMPLATE = """#!/bin/sh
# Written by agenttrail for session {session_id_comment}. Git runs it because the session sets
# core.hooksPath through GIT_CONFIG_* variables; the repository's own config is not changed.
# It {what} then runs the repository's own {hook} hook, if there is one.
hook={hook_q}
self_dir={self_dir_q}
{trailer}
# The repository's own hooks directory, as git sees it without this session's override.
orig=$(
  if [ "${{{orig_var}:-0}}" -gt 0 ] 2>/dev/null; then
    GIT_CONFIG_COUNT=${{{orig_var}}}; export GIT_CONFIG_COUNT
  else
    unset GIT_CONFIG_COUNT
  fi
  git rev-parse --git-path hooks 2>/dev/null
)
if [ -n "$orig" ] && [ -x "$orig/$hook" ] && [ "$(cd "$orig" 2>/dev/null && pwd -P)" != "$self_dir" ]; then
  exec "$orig/$hook" "$@"
fi
{drain}exit 0
"""

_TRAILER_BLOCK = """# Idempotent: an identical trailer already there is not added again.
git interpret-trailers --in-place --if-exists addIfDifferent --trailer {trailer_q} "$1" || true
"""


def hook_script(hook: str, session_id: str, hooks_dir: str) -> str:
    trailer = ""
    what = "does nothing itself and"
    if hook in _TRAILER_HOOKS:
        trailer = _TRAILER_BLOCK.format(trailer_q=shlex.quote(f"{TRAILER_KEY}: {session_id}"))
        what = f"adds the `{TRAILER_KEY}` trailer to the message, and"
    return _TEMPLATE.format(
        session_id_comment=session_id.replace("\n", " "),
        what=what,
        hook=hook,
        hook_q=shlex.quote(hook),
        self_dir_q=shlex.quote(hooks_dir),
        trailer=trailer,
        orig_var=ORIG_COUNT_VAR,
        drain="cat >/dev/null 2>&1\n" if hook in _STDIN_HOOKS else "",
    )


def install_hooks(hooks_dir: str | os.PathLike[str], session_id: str) -> Path:
    """Write the session's hooks into `hooks_dir` (created; private to the session). Returns its real path."""
    if not session_id or any(c.isspace() for c in session_id):
        raise ValueError("a session id for a trailer must be non-empty and without whitespace")
    path = Path(hooks_dir)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    real = str(path.resolve())
    for hook in HOOK_NAMES:
        script = path / hook
        script.write_text(hook_script(hook, session_id, real))
        script.chmod(0o755)
    return Path(real)


def hook_env(hooks_dir: str | os.PathLike[str], base_env: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to the session's environment. Entries the user already has in
    GIT_CONFIG_* are kept: ours is appended after them."""
    try:
        n = max(int(base_env.get("GIT_CONFIG_COUNT", "0") or 0), 0)
    except ValueError:
        n = 0
    return {
        "GIT_CONFIG_COUNT": str(n + 1),
        f"GIT_CONFIG_KEY_{n}": "core.hooksPath",
        f"GIT_CONFIG_VALUE_{n}": str(Path(hooks_dir).resolve()),
        ORIG_COUNT_VAR: str(n),
    }
