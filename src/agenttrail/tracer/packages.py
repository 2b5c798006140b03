"""Package installs recognised from one exec's argv: npm/pnpm/yarn/bun, pip/uv/poetry/pipx, apt, cargo,
go and gem.

Each result is a dict `{ecosystem, name, version_spec, manager, argv}`, plus `source` (`registry`,
`path`, `vcs`, `url` or `requirements`), `dev: True` for development dependencies and `resolved_path`
for local paths when the cwd is known. `version_spec` is the version text in the ecosystem's own
syntax without the name separator: `^4.17` for `lodash@^4.17`, `==2.31` for `requests==2.31`,
`1.2-1` for `curl=1.2-1`; None when no version was named.

Only the program's own argv is read. Wrappers (`sudo`, `env`, `bash -c`) and interpreter+script forms
(`node /usr/lib/node_modules/npm/bin/npm-cli.js`, which a `#!/usr/bin/env node` shebang produces) are
deliberately not unwrapped: under the tracer the wrapped command appears as its own exec, so
unwrapping would count each install twice. `python -m pip` is recognised because no second exec
follows it. This function never raises, whatever the argv.
"""

from __future__ import annotations

import os.path
import re
from collections.abc import Callable, Sequence
from typing import Any

from agenttrail import events as ev
from agenttrail.events import Event, stable_id

Record = dict[str, Any]

_PY_NAME = re.compile(r"python(\d+(\.\d+)?)?$")
_PIP_NAME = re.compile(r"pip(\d+(\.\d+)?)?$")
_PEP508 = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)", re.S)
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+", "git:", "git@", "github:", "gitlab:", "bitbucket:", "gist:")
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".whl", ".deb", ".gem", ".crate")

# Options that take a value, per tool (both `--opt value` and `--opt=value` are accepted).
_NPM_VALUES = {
    "--prefix", "-C", "--registry", "--cache", "--userconfig", "--globalconfig", "-w", "--workspace",
    "--tag", "--loglevel", "--otp", "--install-strategy", "--omit", "--include", "--save-prefix", "--before",
}  # fmt: skip
_PNPM_VALUES = {"--filter", "-F", "--dir", "-C", "--reporter", "--store-dir", "--registry", "--config", "--loglevel"}
_YARN_VALUES = {"--cwd", "--registry", "--modules-folder", "--cache-folder", "--network-timeout", "--mutex"}
_PIP_VALUES = {
    "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
    "--prefix", "--root", "--src", "--upgrade-strategy", "--python-version", "--platform", "--implementation",
    "--abi", "--only-binary", "--no-binary", "--progress-bar", "--log", "--proxy", "--retries", "--timeout",
    "--exists-action", "--trusted-host", "--cert", "--client-cert", "--cache-dir", "-C", "--config-settings",
    "--global-option", "--install-option", "--report", "-p", "--python", "--index-strategy", "--extra",
    "--group", "--optional", "--package", "--index", "--default-index", "--directory", "--project", "--tag",
    "--branch", "--rev", "--marker", "-m", "--bounds", "--source", "-G", "-E", "--extras", "--markers",
    "--keyring-provider", "--resolution", "--prerelease", "--exclude-newer", "--link-mode", "--pip-args",
}  # fmt: skip
_APT_VALUES = {"-t", "--target-release", "-o", "--option", "-c", "--config-file"}
_CARGO_VALUES = {
    "--features", "-F", "--git", "--branch", "--tag", "--rev", "--path", "--rename", "-p", "--package",
    "--registry", "--target", "--manifest-path", "--version", "--vers", "--root", "--bin", "--example",
    "--index", "--profile", "-j", "--jobs", "--target-dir", "--config", "-Z",
}  # fmt: skip
_GO_VALUES = {
    "-C", "-o", "-p", "-asmflags", "-buildmode", "-compiler", "-gccgoflags", "-gcflags", "-installsuffix",
    "-ldflags", "-mod", "-modfile", "-overlay", "-pgo", "-pkgdir", "-tags", "-toolexec",
}  # fmt: skip
_GEM_VALUES = {"-v", "--version", "-s", "--source", "-i", "--install-dir", "-n", "--bindir", "--platform", "-g"}


def _split(args: Sequence[str], takes_value: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional arguments and options (name → values; flags map to [""])."""
    positional: list[str] = []
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positional.extend(args[i + 1 :])
            break
        if a.startswith("-") and len(a) > 1:
            name, eq, value = a.partition("=")
            if not eq and name in takes_value:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            opts.setdefault(name, []).append(value)
        else:
            positional.append(a)
        i += 1
    return positional, opts


def _has(opts: dict[str, list[str]], *names: str) -> bool:
    return any(n in opts for n in names)


def _last(opts: dict[str, list[str]], *names: str) -> str | None:
    """The last value given for any of `names` (a later option wins, as in the tools themselves)."""
    for name in names:
        if opts.get(name):
            return opts[name][-1]
    return None


def _source(spec: str) -> str:
    s = spec.strip()
    if s.startswith(_VCS_PREFIXES):
        return "vcs"
    if s.startswith(("http://", "https://", "ftp://")):
        return "url"
    if s.startswith(("./", "../", "/", "~", "file:")) or s in (".", "..") or s.endswith(_ARCHIVE_SUFFIXES):
        return "path"
    return "registry"


def _record(ecosystem: str, name: str, version: str | None, manager: str, argv: Sequence[str], **extra: Any) -> Record:
    rec: Record = {
        "ecosystem": ecosystem,
        "name": name,
        "version_spec": version or None,
        "manager": manager,
        "argv": list(argv),
    }
    rec.update({k: v for k, v in extra.items() if v not in (None, False)})
    return rec


def _as_given(ecosystem: str, spec: str, manager: str, argv: Sequence[str], source: str, **extra: Any) -> Record:
    """Local paths, archives, URLs and VCS specs are recorded as written."""
    return _record(ecosystem, spec, None, manager, argv, source=source, **extra)


# ---- npm family ------------------------------------------------------------------------------


def _npm_spec(spec: str, manager: str, argv: Sequence[str], dev: bool) -> Record:
    source = _source(spec)
    if source == "registry" and re.fullmatch(r"[\w.-]+/[\w.-]+(#.*)?", spec):
        source = "vcs"  # GitHub shorthand `user/repo`
    if source != "registry":
        return _as_given("npm", spec, manager, argv, source, dev=dev)
    at = spec.find("@", 1)  # a leading @ belongs to the scope: @scope/name@range
    name, version = (spec[:at], spec[at + 1 :]) if at > 0 else (spec, None)
    return _record("npm", name, version, manager, argv, source="registry", dev=dev)


def _npm_like(
    manager: str, args: Sequence[str], argv: Sequence[str], values: set[str], verbs: set[str]
) -> list[Record]:
    pos, opts = _split(args, values)
    if manager == "yarn" and pos[:1] == ["global"]:
        pos = pos[1:]
    if manager == "yarn" and pos[:1] == ["workspace"] and len(pos) > 2:
        pos = pos[2:]
    if not pos or pos[0] not in verbs:
        return []
    dev = _has(opts, "-D", "--save-dev", "--dev", "-d")
    return [_npm_spec(p, manager, argv, dev) for p in pos[1:] if p]


_NPM_INSTALL = {"install", "i", "in", "ins", "inst", "insta", "instal", "isnt", "isnta", "isntal", "isntall", "add"}


def _npm(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _npm_like("npm", args, argv, _NPM_VALUES, _NPM_INSTALL)


def _pnpm(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _npm_like("pnpm", args, argv, _PNPM_VALUES, {"add", "install", "i"})


def _yarn(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _npm_like("yarn", args, argv, _YARN_VALUES, {"add"})


def _bun(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _npm_like("bun", args, argv, _NPM_VALUES, {"add", "install", "i"})


# ---- Python ----------------------------------------------------------------------------------


def _normalise_py(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: the index's own spelling


def _py_spec(spec: str, manager: str, argv: Sequence[str], at_version: bool, dev: bool) -> Record | None:
    spec = spec.strip()
    if not spec:
        return None
    if " @ " in spec:  # PEP 508 direct reference: name @ url
        name, _, url = spec.partition(" @ ")
        return _record("pypi", _normalise_py(name.strip()), None, manager, argv, source=_source(url), url=url, dev=dev)
    source = _source(spec)
    if source != "registry":
        return _as_given("pypi", spec, manager, argv, source, dev=dev)
    if at_version and "@" in spec:  # poetry: name@^1.2
        name, _, version = spec.partition("@")
        return _record("pypi", _normalise_py(name), version, manager, argv, source="registry", dev=dev)
    m = _PEP508.fullmatch(spec)
    if m is None:
        return _as_given("pypi", spec, manager, argv, "path" if os.sep in spec else "registry", dev=dev)
    return _record(
        "pypi", _normalise_py(m.group(1)), m.group(3).strip() or None, manager, argv, source="registry", dev=dev
    )


def _pip_install(manager: str, args: Sequence[str], argv: Sequence[str], *, verb: str = "install") -> list[Record]:
    values = _PIP_VALUES | {"-r", "--requirement", "-e", "--editable", "--with-requirements"}
    pos, opts = _split(args, values)
    if not pos or pos[0] != verb:
        return []
    if any("pip-build-env-" in a for a in args):
        return []  # pip's build isolation installing build requirements into a throwaway prefix
    dev = _has(opts, "--dev", "-D") or "dev" in opts.get("--group", []) or "dev" in opts.get("-G", [])
    at_version = manager == "poetry"
    out: list[Record] = []
    for flag in ("-r", "--requirement", "--with-requirements"):
        for req in opts.get(flag, []):
            out.append(_as_given("pypi", req, manager, argv, "requirements"))
    for flag in ("-e", "--editable"):
        for spec in opts.get(flag, []):
            out.append(_as_given("pypi", spec, manager, argv, _source(spec) if _source(spec) != "registry" else "path"))
    for spec in pos[1:]:
        rec = _py_spec(spec, manager, argv, at_version, dev)
        if rec is not None:
            out.append(rec)
    return out


def _python(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    # python [-I -u -E ...] -m pip install ...
    for i, a in enumerate(args):
        if a == "-m":
            return _pip_install("pip", args[i + 2 :], argv) if args[i + 1 : i + 2] == ["pip"] else []
        if a in ("-c", "-W", "-X", "-Q") or not a.startswith("-"):
            return []  # a script or code: not `-m pip`
    return []


def _uv(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    pos, _ = _split(args, _PIP_VALUES)
    if pos[:1] == ["pip"]:
        return _pip_install("uv", args[args.index("pip") + 1 :], argv)
    if pos[:1] == ["add"]:
        return _pip_install("uv", args, argv, verb="add")
    if pos[:2] == ["tool", "install"]:
        return _pip_install("uv", args[args.index("tool") + 1 :], argv)
    return []


def _poetry(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _pip_install("poetry", args, argv, verb="add")


def _pipx(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    return _pip_install("pipx", args, argv)


# ---- system and other languages --------------------------------------------------------------


def _apt(manager: str) -> Callable[[Sequence[str], Sequence[str]], list[Record]]:
    def parse(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
        pos, _ = _split(args, _APT_VALUES)
        if not pos or pos[0] != "install":
            return []
        out = []
        for spec in pos[1:]:
            if _source(spec) != "registry":
                out.append(_as_given("apt", spec, manager, argv, "path"))
                continue
            name, _, version = spec.partition("=")
            name, slash, release = name.partition("/")
            version = version or (slash + release if slash else "")
            out.append(_record("apt", name, version, manager, argv, source="registry"))
        return out

    return parse


def _cargo(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    args = [a for a in args if not a.startswith("+")]  # cargo +nightly ...
    pos, opts = _split(args, _CARGO_VALUES)
    if not pos or pos[0] not in ("add", "install"):
        return []
    dev = _has(opts, "--dev", "-D")
    version = _last(opts, "--version", "--vers")
    for flag, source in (("--git", "vcs"), ("--path", "path")):
        if flag in opts and not pos[1:]:
            return [_as_given("cargo", opts[flag][-1], "cargo", argv, source, dev=dev)]
    out = []
    for spec in pos[1:]:
        name, at, v = spec.partition("@")
        extra = (
            {"url": opts["--git"][-1]} if "--git" in opts else {"path": opts["--path"][-1]} if "--path" in opts else {}
        )
        source = "vcs" if "--git" in opts else "path" if "--path" in opts else "registry"
        out.append(_record("cargo", name, v if at else version, "cargo", argv, source=source, dev=dev, **extra))
    return out


def _go(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    pos, _ = _split(args, _GO_VALUES)
    if not pos or pos[0] not in ("get", "install"):
        return []
    out = []
    for spec in pos[1:]:
        module, _, version = spec.partition("@")
        if version == "none":
            continue  # `go get x@none` removes a dependency
        if _source(module) == "path":
            out.append(_as_given("go", spec, "go", argv, "path"))
        else:
            out.append(_record("go", module, version or None, "go", argv, source="registry"))
    return out


def _gem(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    pos, opts = _split(args, _GEM_VALUES)
    if not pos or pos[0] != "install":
        return []
    version = _last(opts, "-v", "--version")
    out = []
    for spec in pos[1:]:
        if _source(spec) != "registry":
            out.append(_as_given("rubygems", spec, "gem", argv, "path"))
            continue
        name, colon, v = spec.partition(":")
        out.append(_record("rubygems", name, v if colon else version, "gem", argv, source="registry"))
    return out


def _bundle(args: Sequence[str], argv: Sequence[str]) -> list[Record]:
    pos, opts = _split(args, {"--version", "-v", "--group", "-g", "--source", "-s", "--git", "--path", "--branch"})
    if not pos or pos[0] != "add":
        return []
    version = _last(opts, "--version", "-v")
    return [_record("rubygems", n, version, "bundler", argv, source="registry") for n in pos[1:]]


_MANAGERS: dict[str, Callable[[Sequence[str], Sequence[str]], list[Record]]] = {
    "npm": _npm,
    "pnpm": _pnpm,
    "yarn": _yarn,
    "bun": _bun,
    "uv": _uv,
    "poetry": _poetry,
    "pipx": _pipx,
    "apt": _apt("apt"),
    "apt-get": _apt("apt-get"),
    "cargo": _cargo,
    "go": _go,
    "gem": _gem,
    "bundle": _bundle,
}


def recognise_installs(argv: Sequence[str], cwd: str | None = None) -> list[Record]:
    """The packages one command installs; [] when it installs none. Never raises."""
    try:
        return _recognise([str(a) for a in argv], cwd)
    except Exception:  # a malformed argv must never break the trace; nothing is recognised then
        return []


def _recognise(argv: list[str], cwd: str | None) -> list[Record]:
    if not argv:
        return []
    prog = os.path.basename(argv[0])
    args = argv[1:]
    if _PIP_NAME.fullmatch(prog):
        out = _pip_install("pip", args, argv)
    elif _PY_NAME.fullmatch(prog):
        out = _python(args, argv)
    elif prog in _MANAGERS:
        out = _MANAGERS[prog](args, argv)
    else:
        return []
    if cwd:
        for rec in out:
            if rec.get("source") in ("path", "requirements"):
                rec["resolved_path"] = os.path.normpath(
                    os.path.join(cwd, os.path.expanduser(rec["name"].removeprefix("file:")))
                )
    return out


def package_events(exec_event: Event) -> list[Event]:
    """`package_install` events for an `exec` event, with ids derived from it (re-reading gives the same)."""
    if exec_event.kind != ev.EXEC:
        return []
    payload = exec_event.payload
    installs = recognise_installs(payload.get("argv") or [], payload.get("cwd"))
    return [
        Event(
            session_id=exec_event.session_id,
            kind=ev.PACKAGE_INSTALL,
            ts=exec_event.ts,
            payload={**rec, "pid": payload.get("pid")},
            event_id=stable_id(exec_event.event_id, "package", n),
        )
        for n, rec in enumerate(installs)
    ]
