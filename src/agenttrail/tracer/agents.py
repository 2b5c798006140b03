"""Which agent a command runs, its version when that is cheap, and where it keeps its state.

Adding an agent means adding one `AgentProfile` to `PROFILES`. Recognition looks through the usual
launchers (`env X=1`, `npx`, `node …/cli.js`, `uvx`, `python -m`, `bash -c`, full paths) to the
agent's own executable or package; anything else is named by the command's basename.

Versions are read from files next to the resolved executable (npm's package.json, a Python
dist-info directory): no agent is started to ask it, because some take seconds or open a TUI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class AgentProfile:
    name: str
    executables: tuple[str, ...]  # basenames of its launcher
    npm_packages: tuple[str, ...] = ()
    python_dists: tuple[str, ...] = ()  # dist names as in *.dist-info (underscored)
    python_modules: tuple[str, ...] = ()  # `python -m MODULE`
    session_id_env: str | None = None  # set by the agent for the commands it runs
    config_dirs: tuple[str, ...] = ()  # relative to home; writable inside the sandbox
    config_files: tuple[str, ...] = ()


PROFILES: dict[str, AgentProfile] = {
    p.name: p
    for p in (
        AgentProfile(
            "claude-code",
            ("claude",),
            npm_packages=("@anthropic-ai/claude-code",),
            session_id_env="CLAUDE_CODE_SESSION_ID",
            config_dirs=(".claude",),
            config_files=(".claude.json",),
        ),
        AgentProfile(
            "codex",
            ("codex",),
            npm_packages=("@openai/codex",),
            session_id_env="CODEX_THREAD_ID",
            config_dirs=(".codex",),
        ),
        AgentProfile(
            "aider",
            ("aider",),
            python_dists=("aider_chat",),
            python_modules=("aider",),
            config_dirs=(".aider",),
        ),
        AgentProfile("gemini", ("gemini",), npm_packages=("@google/gemini-cli",), config_dirs=(".gemini",)),
        AgentProfile("cursor-agent", ("cursor-agent",), config_dirs=(".cursor", ".config/cursor")),
        AgentProfile(
            "opencode",
            ("opencode",),
            npm_packages=("opencode-ai",),
            config_dirs=(".local/share/opencode", ".config/opencode", ".local/state/opencode", ".cache/opencode"),
        ),
    )
}
_BY_EXECUTABLE = {exe: p for p in PROFILES.values() for exe in p.executables}
_BY_PACKAGE = {pkg: p for p in PROFILES.values() for pkg in p.npm_packages}
_BY_DIST = {d.replace("_", "-"): p for p in PROFILES.values() for d in p.python_dists}
_BY_MODULE = {m: p for p in PROFILES.values() for m in p.python_modules}

_ENV_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)
_PY = re.compile(r"python(\d+(\.\d+)?)?$")
# Launchers that run their first non-option argument, with the options that take a value.
_WRAPPERS: dict[str, set[str]] = {
    "env": {"-u", "--unset", "-C", "--chdir", "-S", "--split-string"},
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"},
    "nice": {"-n", "--adjustment"},
    "nohup": set(),
    "time": {"-f", "--format", "-o", "--output"},
    "stdbuf": {"-i", "-o", "-e"},
    "ionice": {"-c", "-n", "-p"},
    "timeout": {"-s", "--signal", "-k", "--kill-after"},
    "exec": set(),
}
_SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", "&", "|&"})
_PACKAGE_RUNNERS: dict[str, set[str]] = {  # run a package by name
    "npx": {"-p", "--package", "-c", "--call"},
    "bunx": {"-p", "--package"},
    "pnpx": set(),
    "uvx": {"--from", "--with", "-p", "--python"},
}


@dataclass(frozen=True, slots=True)
class AgentInfo:
    name: str  # a profile name (claude-code, codex, …) or the command's own basename
    known: bool
    argv: tuple[str, ...]  # the agent's own argv, wrappers removed
    executable: str | None = None  # the resolved program, when found
    version: str | None = None

    @property
    def profile(self) -> AgentProfile | None:
        return PROFILES.get(self.name)


def _skip_options(args: Sequence[str], takes_value: set[str]) -> int:
    """Index of the first argument that is not an option (or an option's value)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return i + 1
        if not a.startswith("-") or a == "-":
            return i
        if a in takes_value:
            i += 1
        i += 1
    return i


def _package_name(spec: str) -> str:
    at = spec.find("@", 1)
    return spec[:at] if at > 0 else spec


def _from_script(path: str) -> AgentProfile | None:
    """`…/node_modules/@openai/codex/bin/codex.js` → codex; `…/bin/claude` → claude-code."""
    parts = Path(path).parts
    if "node_modules" in parts:
        i = len(parts) - 1 - parts[::-1].index("node_modules")
        rest = parts[i + 1 :]
        pkg = "/".join(rest[:2]) if rest and rest[0].startswith("@") else (rest[0] if rest else "")
        if pkg in _BY_PACKAGE:
            return _BY_PACKAGE[pkg]
    return _BY_EXECUTABLE.get(Path(path).name)


def _from_shell_script(args: list[str], depth: int) -> tuple[tuple[str, ...], AgentProfile | None]:
    """`bash -c SCRIPT`: the first command of the script that is a known agent (`cd app && claude`);
    else the script's only command (`sh -c './my-agent.sh --x'`); else the shell itself: a script of
    several commands (`echo x > a; git commit -qam y`) is no agent called `echo`."""
    lex = shlex.shlex(args[args.index("-c") + 1], posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        words = list(lex)
    except ValueError:
        return tuple(args), None
    commands: list[list[str]] = [[]]
    for word in words:
        if word in _SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    commands = [c for c in commands if c]
    for command in commands:
        own, profile = _unwrap(command, depth)
        if own and (profile or _from_script(own[0]) or _BY_EXECUTABLE.get(os.path.basename(own[0]))):
            return own, profile
    if len(commands) == 1:
        return _unwrap(commands[0], depth)
    return tuple(args), None


def _unwrap(argv: Sequence[str], depth: int = 0) -> tuple[tuple[str, ...], AgentProfile | None]:
    """The agent's own argv, and its profile when the launcher named it by package or module."""
    args = list(argv)
    while args and depth < 8:
        depth += 1
        if _ENV_ASSIGN.fullmatch(args[0]):  # `X=1 claude` inside a `sh -c` string
            args = args[1:]
            continue
        prog = os.path.basename(args[0])
        if prog in _WRAPPERS:
            rest = args[1:]
            i = _skip_options(rest, _WRAPPERS[prog])
            if prog == "env":
                while i < len(rest) and _ENV_ASSIGN.fullmatch(rest[i]):
                    i += 1
            elif prog == "timeout" and i < len(rest):
                i += 1  # the duration
            args = rest[i:]
            continue
        if prog in ("sh", "bash", "zsh", "dash") and "-c" in args[1:] and args.index("-c") + 1 < len(args):
            return _from_shell_script(args, depth)
        runner = prog
        rest = args[1:]
        if prog in ("pnpm", "yarn") and rest[:1] == ["dlx"]:
            runner, rest = "pnpx", rest[1:]
        elif prog == "npm" and rest[:1] == ["exec"]:
            runner, rest = "npx", rest[1:]
        elif prog == "pipx" and rest[:1] == ["run"]:
            runner, rest = "uvx", rest[1:]
        if runner in _PACKAGE_RUNNERS:
            i = _skip_options(rest, _PACKAGE_RUNNERS.get(runner, set()))
            if i >= len(rest):
                return tuple(args), None
            pkg = _package_name(rest[i])
            profile = _BY_PACKAGE.get(pkg) or _BY_DIST.get(pkg) or _BY_EXECUTABLE.get(pkg)
            return tuple(rest[i:]), profile
        if prog in ("node", "bun", "deno") or _PY.fullmatch(prog):
            rest = args[1:]
            if _PY.fullmatch(prog) and "-m" in rest:
                j = rest.index("-m")
                module = rest[j + 1] if j + 1 < len(rest) else ""
                return tuple(rest[j + 1 :]), _BY_MODULE.get(module)
            i = _skip_options(rest, {"-r", "--require", "--import", "--loader", "-W", "-X"})
            if i < len(rest):
                return tuple(rest[i:]), _from_script(rest[i])
        return tuple(args), None
    return tuple(args), None


def _resolve(program: str, env: Mapping[str, str] | None, cwd: str | None) -> str | None:
    if "/" in program:
        path = os.path.join(cwd or os.getcwd(), program)
        return os.path.realpath(path) if os.path.exists(path) else None
    found = shutil.which(program, path=(env or os.environ).get("PATH"))
    return os.path.realpath(found) if found else None


def version_near(executable: str, profile: AgentProfile | None) -> str | None:
    """The version recorded next to an installed executable, without running it."""
    here = Path(executable).parent
    for parent in (here, *list(here.parents)[:6]):
        pkg = parent / "package.json"
        if pkg.is_file():
            try:
                data = json.loads(pkg.read_text())
            except (OSError, ValueError):
                continue
            name = str(data.get("name", ""))
            if profile is None or any(name == p or name.startswith(p + "-") for p in profile.npm_packages):
                version = data.get("version")
                return str(version) if version else None
    if profile is not None and profile.python_dists:
        for site in here.parent.glob("lib/python*/site-packages"):
            for dist in profile.python_dists:
                for info in sorted(site.glob(f"{dist}-*.dist-info")):
                    return info.name.removeprefix(f"{dist}-").removesuffix(".dist-info")
    return None


def version_by_running(executable: str, timeout: float = 3.0) -> str | None:
    """`EXE --version` with a hard timeout; opt-in only (see module docstring)."""
    try:
        done = subprocess.run(
            [executable, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\d+\.\d+(\.\d+)?([-.+][0-9A-Za-z.]+)?", done.stdout or done.stderr)
    return m.group(0) if m else None


def detect_agent(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None, run_version: bool = False
) -> AgentInfo:
    """Recognise the agent a command line runs."""
    own, profile = _unwrap([str(a) for a in argv])
    if not own:
        return AgentInfo(name=os.path.basename(argv[0]) if argv else "", known=False, argv=tuple(argv))
    program = own[0]
    profile = profile or _from_script(program) or _BY_EXECUTABLE.get(os.path.basename(program))
    executable = _resolve(program, env, cwd)
    if profile is None and executable is not None:
        profile = _from_script(executable)  # e.g. a symlink `ai` → …/node_modules/@openai/codex/bin/codex.js
    version = version_near(executable, profile) if executable and profile else None
    if version is None and run_version and executable:
        version = version_by_running(executable)
    name = profile.name if profile else os.path.basename(program)
    return AgentInfo(name=name, known=profile is not None, argv=own, executable=executable, version=version)


def claude_project_dir_name(cwd: str) -> str:
    """Claude Code's folder name for a project: the cwd with every non-alphanumeric character as '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


def transcript_location(agent: str, *, env: Mapping[str, str], home: str, cwd: str) -> Path | None:
    """Where the agent writes its transcript for a session started in `cwd` (a directory, or aider's file)."""
    if agent == "claude-code":
        base = env.get("CLAUDE_CONFIG_DIR") or os.path.join(home, ".claude")
        return Path(base, "projects", claude_project_dir_name(cwd))
    if agent == "codex":
        return Path(env.get("CODEX_HOME") or os.path.join(home, ".codex"), "sessions")
    if agent == "aider":
        return Path(cwd, ".aider.chat.history.md")
    if agent == "gemini":
        return Path(home, ".gemini", "tmp")
    if agent == "opencode":
        return Path(env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "opencode", "storage")
    return None


def config_paths(agent: str, *, env: Mapping[str, str], home: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories, files) the agent writes its own state to: writable inside the sandbox."""
    profile = PROFILES.get(agent)
    if profile is None:
        return (), ()
    dirs = [os.path.join(home, d) for d in profile.config_dirs]
    files = [os.path.join(home, f) for f in profile.config_files]
    if agent == "claude-code" and env.get("CLAUDE_CONFIG_DIR"):
        dirs, files = [env["CLAUDE_CONFIG_DIR"]], []  # .claude.json then lives inside it
    if agent == "codex" and env.get("CODEX_HOME"):
        dirs = [env["CODEX_HOME"]]
    return tuple(dirs), tuple(files)


def agent_session_id(agent: str, env: Mapping[str, str]) -> str | None:
    """The agent's own session id, when its environment variable is visible (e.g. to a hook it runs)."""
    profile = PROFILES.get(agent)
    return env.get(profile.session_id_env) if profile and profile.session_id_env else None
