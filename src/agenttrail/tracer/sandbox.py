"""The sandbox an agent runs in: a bubblewrap command line, a probe, and environment scrubbing.

Inside, the whole filesystem is visible read-only; writable are only the project directory, the
paths allowed with `--allow-write`, a private /tmp and the agent's own config directories.
Credential stores in the home directory are hidden (an empty tmpfs over a directory, /dev/null over
a file). The network is shared: agents must reach the gateway. A private pid namespace keeps the
agent from reading other processes' /proc/<pid>/environ and cmdline (where `agenttrail run`'s own
key could be).

Mount order is the policy: later mounts cover earlier ones. So the project and `--allow-write`
paths come first, hidden paths next (a credential directory inside a writable tree stays hidden),
and the agent's own directories last (they are granted explicitly, even inside a hidden tree).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HIDDEN: tuple[str, ...] = (
    ".ssh", ".aws", ".config/gh", ".gnupg", ".netrc", ".docker", ".kube", ".agenttrail",
    ".git-credentials", ".config/gcloud", ".azure", ".npmrc", ".pypirc",
)  # fmt: skip
# Names (shell patterns, case-sensitive) removed from the agent's environment unless allowed by name.
SECRET_ENV_PATTERNS: tuple[str, ...] = (
    "AWS_*", "GITHUB_TOKEN", "GH_TOKEN", "*_API_KEY", "*_TOKEN", "*_SECRET*",
    "AGENTTRAIL_KEY", "SSH_AUTH_SOCK", "GPG_AGENT_INFO",
)  # fmt: skip
NO_SANDBOX_HINT = "Run with --no-sandbox to trace the agent without the sandbox."


def scrub_env(
    env: Mapping[str, str], allow: Iterable[str] = (), patterns: Sequence[str] = SECRET_ENV_PATTERNS
) -> dict[str, str]:
    """A copy of `env` without credential variables; names in `allow` are kept as they are.

    Set the gateway's session key after scrubbing: ANTHROPIC_API_KEY matches `*_API_KEY`.
    """
    allowed = set(allow)
    return {k: v for k, v in env.items() if k in allowed or not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def removed_env_names(env: Mapping[str, str], allow: Iterable[str] = ()) -> list[str]:
    """Which variables `scrub_env` removes (for the session record; never their values)."""
    kept = scrub_env(env, allow)
    return sorted(k for k in env if k not in kept)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    project_dir: str
    home: str = field(default_factory=lambda: os.path.expanduser("~"))
    allow_write: tuple[str, ...] = ()  # must exist: a path the user named that is missing is an error
    agent_dirs: tuple[str, ...] = ()  # the agent's own config directories (see ensure_agent_dirs)
    agent_files: tuple[str, ...] = ()  # the agent's own config files (~/.claude.json); skipped when missing
    hidden: tuple[str, ...] = DEFAULT_HIDDEN  # relative to home, or absolute
    extra_hidden: tuple[str, ...] = ()
    private_tmp: bool = True
    unshare_pid: bool = True
    cwd: str | None = None  # where the agent starts; defaults to project_dir


def _abs(home: str, p: str) -> str:
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(home, p))


def _tmp_roots_of(command: Sequence[str]) -> list[str]:
    """`/tmp/<first component>` of the command's executable, as found and as resolved, if under /tmp."""
    if not command:
        return []
    found = shutil.which(command[0]) if os.sep not in command[0] else os.path.abspath(command[0])
    roots: list[str] = []
    for path in (found, os.path.realpath(found) if found else None):
        if not path:
            continue
        parts = os.path.normpath(path).split(os.sep)
        if len(parts) > 3 and parts[1] == "tmp":
            top = os.sep.join(parts[:3])
            if top not in roots:
                roots.append(top)
    return roots


def build_argv(
    config: SandboxConfig, command: Sequence[str], *, bwrap: str = "bwrap", launcher: Sequence[str] = ()
) -> list[str]:
    """The bwrap command line that runs `command` in the sandbox (through `launcher`, e.g. `env
    --default-signal=INT --`). Reads the filesystem only to decide, for each hidden path that
    exists, whether it is a directory or a file."""
    project = os.path.abspath(config.project_dir)
    argv = [bwrap, "--die-with-parent"]
    if config.unshare_pid:
        argv.append("--unshare-pid")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    if config.private_tmp:
        argv += ["--tmpfs", "/tmp"]
        # The private /tmp would hide a command installed under /tmp (a CI checkout, a venv, npx's
        # cache): give back, read-only, the top folder under /tmp its executable lives in.
        for top in _tmp_roots_of(command):
            argv += ["--ro-bind", top, top]
    for path in (project, *(os.path.abspath(p) for p in config.allow_write)):
        argv += ["--bind", path, path]
    for rel in (*config.hidden, *config.extra_hidden):
        path = _abs(config.home, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            argv += ["--tmpfs", path]
        elif os.path.lexists(path):
            # --dev-bind, not --ro-bind: a read-only bind is also nodev, so reading it would fail with
            # EACCES; /dev/null reads as an empty file (what tools expect) and swallows writes.
            argv += ["--dev-bind", "/dev/null", path]
    for p in (*config.agent_dirs, *config.agent_files):
        path = _abs(config.home, p)
        argv += ["--bind-try", path, path]
    argv += ["--chdir", os.path.abspath(config.cwd or project), "--", *launcher, *command]
    return argv


def ensure_agent_dirs(config: SandboxConfig) -> None:
    """Create missing agent directories first: inside, the home is read-only and they could not be made."""
    for p in config.agent_dirs:
        Path(_abs(config.home, p)).mkdir(parents=True, exist_ok=True)


def cache_env(tmp: str = "/tmp") -> dict[str, str]:
    """Cache locations in the private /tmp, so package managers work with a read-only home."""
    return {
        "XDG_CACHE_HOME": f"{tmp}/.cache",
        "npm_config_cache": f"{tmp}/.npm",
        "PIP_CACHE_DIR": f"{tmp}/.cache/pip",
        "UV_CACHE_DIR": f"{tmp}/.cache/uv",
        "YARN_CACHE_FOLDER": f"{tmp}/.cache/yarn",
        "GOMODCACHE": f"{tmp}/.cache/go-mod",
        "GOCACHE": f"{tmp}/.cache/go-build",
    }


@dataclass(frozen=True, slots=True)
class SandboxProbe:
    ok: bool
    reason: str | None = None  # why not, for a person, ending with the --no-sandbox hint


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _userns_cause() -> str | None:
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone=0)"
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        return "user namespaces are disabled (sysctl user.max_user_namespaces=0)"
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return (
            "AppArmor forbids unprivileged user namespaces "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns=1; allow bwrap with an AppArmor profile)"
        )
    return None


def probe(bwrap: str = "bwrap", timeout: float = 10.0) -> SandboxProbe:
    """Can a sandbox be made here? Runs `true` in the same kind of sandbox `build_argv` makes."""
    exe = shutil.which(bwrap)
    if exe is None:
        return SandboxProbe(
            False, f"bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap). {NO_SANDBOX_HINT}"
        )
    argv = [exe, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--tmpfs", "/tmp", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return SandboxProbe(False, f"bubblewrap could not run: {e}. {NO_SANDBOX_HINT}")
    if done.returncode == 0:
        return SandboxProbe(True)
    err = done.stderr.strip() or f"exit status {done.returncode}"
    cause = _userns_cause()
    if cause is None and ("Operation not permitted" in err or "Permission denied" in err):
        cause = (
            "this environment does not allow creating namespaces or mounts "
            "(typically a container without CAP_SYS_ADMIN, or a seccomp profile that blocks unshare)"
        )
    detail = f"{cause}: {err}" if cause else err
    return SandboxProbe(False, f"bubblewrap cannot create a sandbox here: {detail}. {NO_SANDBOX_HINT}")
