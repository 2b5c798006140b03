"""What the agent of a session gets: its environment and the sandbox command line around it.

The environment starts from the user's, minus credentials (`scrub_env`); with a server it points every
agent at the gateway with the session-scoped key (`gateway_env`); it always carries the session id
and the trailer hooks (`hook_env`). The sandbox makes the project, `--allow-write` paths, the agent's
own config directories and the session's private folder writable, and hides agenttrail's own state
(the engineer's key in the login file, the outbox, the local store) wherever it lives.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from agenttrail.tracer.agent_env import gateway_env
from agenttrail.tracer.agents import config_paths
from agenttrail.tracer.commit_hook import hook_env
from agenttrail.tracer.sandbox import SandboxConfig, build_argv, cache_env, ensure_agent_dirs, scrub_env

# Given to the agent when the server could not hand out a session key: the gateway refuses it with a
# clear message, and the agent has no other credential to fall back on (scrub_env removed them).
OFFLINE_KEY = "sk-at-offline-no-session-key"


def agent_environment(
    env: Mapping[str, str],
    *,
    session_id: str,
    hooks_dir: str | os.PathLike[str],
    private_dir: str | os.PathLike[str],
    home: str,
    server: str | None,
    session_key: str | None,
    sandbox: bool,
    allow_env: Sequence[str] = (),
) -> dict[str, str]:
    out = scrub_env(env, allow_env)
    if server:
        gw = gateway_env(
            server_url=server,
            key=session_key or OFFLINE_KEY,
            session_id=session_id,
            private_dir=private_dir,
            env=env,
            home=home,
        )
        out = gw.apply(out)
    out["AGENTTRAIL_SESSION_ID"] = session_id
    out.update(hook_env(hooks_dir, env))
    if sandbox:
        # The home is read-only inside and /tmp is private: caches and temporary files go there.
        out.update(cache_env())
        out["TMPDIR"] = "/tmp"
    return out


@functools.cache
def _env_sets_signals() -> str | None:
    """coreutils' `env` when it can ignore and reset signals for what it runs (8.31 and later)."""
    env = shutil.which("env")
    if env is None:
        return None
    try:
        done = subprocess.run(
            [env, "--ignore-signal=INT", "--default-signal=INT", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return env if done.returncode == 0 else None


def ctrl_c_for_the_agent() -> tuple[list[str], list[str]]:
    """(what runs bwrap, what runs the agent inside): so that a Ctrl-C reaches the agent and only it.

    The terminal sends SIGINT to the whole foreground process group, bwrap included. bwrap does not
    handle it, so it died, and with it (`--die-with-parent`, then the pid namespace) the agent, which
    never had the chance to handle it: an agent that takes Ctrl-C as "stop this answer" (aider) or
    that cleans up on it was killed outright, unlike without the sandbox. So bwrap runs with SIGINT
    ignored and the agent with it back to the default (signal dispositions pass through exec).
    When agenttrail itself ignores SIGINT (started in the background), the agent keeps ignoring it."""
    env = _env_sets_signals()
    if env is None:
        return [], []
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return [env, "--ignore-signal=INT"], []
    return [env, "--ignore-signal=INT"], [env, "--default-signal=INT", "--"]


def sandbox_argv(
    command: Sequence[str],
    *,
    agent: str,
    agent_env: Mapping[str, str],
    project_dir: str,
    cwd: str,
    home: str,
    private_dir: str,
    allow_write: Sequence[str] = (),
    hidden: Sequence[str] = (),
    in_repo: bool = False,
) -> list[str]:
    dirs, files = config_paths(agent, env=agent_env, home=home)
    writable = list(allow_write)
    common = git_common_dir(project_dir) if in_repo else None
    if common and not is_under(common, project_dir):
        writable.append(common)  # a worktree's objects and refs live in the main repository's .git
    config = SandboxConfig(
        project_dir,
        home=home,
        allow_write=tuple(writable),
        agent_dirs=(*dirs, private_dir),
        agent_files=files,
        extra_hidden=tuple(hidden),
        cwd=cwd,
    )
    ensure_agent_dirs(config)
    outside, inside = ctrl_c_for_the_agent()
    return [*outside, *build_argv(config, command, launcher=inside)]


TRAILER_HOOKS = ("prepare-commit-msg", "commit-msg")


def repo_hooks_dir(root: str) -> str | None:
    """The repository's own hooks directory as git sees it (its core.hooksPath, or .git/hooks)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-path", "hooks"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def prune_hooks(hooks_dir: str | os.PathLike[str], repo_root: str | None) -> list[str]:
    """Keep only the forwarding hooks that do something: the two that add the trailer, and those the
    repository has a hook of its own for. Returns the names kept.

    Git runs `reference-transaction` and `post-index-change` on every ref update and index write; each
    forwarder is a shell plus `git rev-parse`, so the full set made a 30-commit loop 4.3x slower (2.5 s
    against 0.57 s untraced), the pruned set 2.4x. A hook the repository gains during the session is
    not forwarded for the rest of it (docs/run.md).
    """
    own_dir = repo_hooks_dir(repo_root) if repo_root else None
    own: set[str] = set()
    if own_dir and os.path.isdir(own_dir) and not is_under(own_dir, str(hooks_dir)):
        own = {n for n in os.listdir(own_dir) if os.access(os.path.join(own_dir, n), os.X_OK)}
    kept = []
    for name in sorted(os.listdir(hooks_dir)):
        if name in TRAILER_HOOKS or name in own:
            kept.append(name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(hooks_dir, name))
    return kept


def hidden_paths(agenttrail_home: str | os.PathLike[str], sqlite_db: str | None, project_dir: str) -> tuple[str, ...]:
    """agenttrail's own state: its home (login file with the key, outbox) and a local SQLite store."""
    hidden = [str(agenttrail_home)]
    if sqlite_db and not is_under(sqlite_db, project_dir):
        hidden += [sqlite_db + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    return tuple(hidden)


def sqlite_file(url: str | None) -> str | None:
    if url and url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        return os.path.abspath(path) if path and path != ":memory:" else None
    return None


def resolve_command(program: str, env: Mapping[str, str], cwd: str) -> str | None:
    if "/" in program:
        path = os.path.join(cwd, program)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


def git_common_dir(root: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def is_under(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def from_terminal() -> bool:
    """Is a SIGINT most likely Ctrl-C? The terminal sends it to the whole foreground process group,
    so the agent (in our group) has it already: forwarding it would deliver it twice, and for
    Claude Code a second Ctrl-C means "exit"."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
    return False


def keep_private_dir(private_dir: Path) -> bool:
    """Keep the session's private folder only when the agent left its own record there (Codex rollouts)."""
    return (private_dir / "codex-home" / "sessions").exists()
