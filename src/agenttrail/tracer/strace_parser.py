"""strace lines → session events: the meaning of the calls the supervisor traces.

`TraceParser` is a pure state machine fed one line at a time (`feed`), so it runs on a live stream and
on captured text alike. It keeps, per process: its parent, its cwd (shared between threads that share
`CLONE_FS`) and the program it runs; per pid: the half of a call strace printed as `<unfinished ...>`.
It returns `Event`s as soon as it can; only reads and writes of one path wait up to
`TraceConfig.collapse_window_s` so that a burst of them becomes one event with a `count`.

See docs/tracer.md for the design (create vs write, noise rules, path resolution).
"""

from __future__ import annotations

import os.path
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agenttrail import events as ev
from agenttrail.events import Event, stable_id
from agenttrail.tracer import strace_syntax as sx
from agenttrail.tracer.strace_calls import CLONE_CALLS, HANDLERS, Call, clone_flags

# Reads here are the machinery of running programs (loaders, locales, interpreters), not work.
DEFAULT_SKIP_READ_PREFIXES: tuple[str, ...] = (
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt",
    "/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/localtime", "/etc/locale.alias", "/etc/nsswitch.conf",
    "/etc/host.conf", "/etc/gai.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/passwd", "/etc/group",
    "/etc/resolv.conf", "/etc/hosts", "/etc/mime.types", "/etc/os-release", "/etc/alternatives",
)  # fmt: skip
# Substrings of paths outside the project whose reads are package code being imported, not work.
DEFAULT_SKIP_READ_PARTS: tuple[str, ...] = (
    "/site-packages/", "/dist-packages/", "/node_modules/", "/__pycache__/", "/lib/python3",
    "/.pyenv/", "/.nvm/", "/.rustup/", "/.cargo/registry/", "/go/pkg/mod/",
)  # fmt: skip


ExistedBefore = Callable[[str], bool | None]
CwdLookup = Callable[[int], str | None]
# pid → (tgid, ppid) as the kernel reports them now (/proc/PID/status), or None once it is gone.
ProcLookup = Callable[[int], tuple[int, int] | None]
_MAX_BIRTHS = 4096  # unclaimed clones kept (silent threads never claim theirs); the oldest go first


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """What the tracer records and what it treats as noise. Paths are absolute."""

    project_dir: str
    initial_cwd: str | None = None  # cwd of the traced command; defaults to project_dir
    project_aliases: tuple[str, ...] = ()  # other spellings of project_dir (its realpath)
    skip_prefixes: tuple[str, ...] = ("/proc", "/sys", "/dev")  # never reported, any kind
    tracer_paths: tuple[str, ...] = ()  # the tracer's own files (FIFO, outbox): never reported
    skip_read_prefixes: tuple[str, ...] = DEFAULT_SKIP_READ_PREFIXES  # reads only
    skip_read_parts: tuple[str, ...] = DEFAULT_SKIP_READ_PARTS  # reads outside the project only
    reads_outside_project: bool = True
    record_dir_reads: bool = False  # opens with O_DIRECTORY (listings)
    record_failed: bool = False  # calls that returned -1; a failed open is not a read
    include_unix_sockets: bool = False
    include_udp: bool = True
    collapse_window_s: float = 2.0  # reads/writes of one path within this window → one event; 0 = off
    ignored_programs: tuple[str, ...] = ()  # basenames (e.g. "bwrap") whose own calls are setup noise
    # Basenames that only launch the agent (the sandbox's `env --default-signal=INT`): noise until the
    # agent's first exec, the agent's own commands after it.
    launcher_programs: tuple[str, ...] = ()

    def roots(self) -> tuple[str, ...]:
        return tuple(os.path.normpath(p) for p in (self.project_dir, *self.project_aliases))


@dataclass(slots=True)
class _Fs:
    cwd: str | None


@dataclass(slots=True)
class Proc:
    tgid: int
    ppid: int | None
    fs: _Fs
    program: str | None = None
    # True while the process is in strace's own pid namespace: only then is its clone's return
    # value the pid that starts the child's lines (strace runs without --pidns-translation).
    host_ns: bool = True


@dataclass(slots=True, eq=False)
class _Birth:
    """A clone whose child has not printed a line yet: the child's parent and cwd, kept from the
    moment of the clone (the parent may chdir or exit before the child shows up)."""

    by: int  # the pid (thread) that called clone
    parent: Proc
    flags: frozenset[str]
    fs: _Fs  # the child's: the parent's own object under CLONE_FS, else a copy of its cwd then
    returned: bool = False


@dataclass(slots=True)
class _Agg:
    seq: int
    ts: float
    payload: dict[str, Any]
    kind: str


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


class TraceParser:
    """Feed strace lines, get events. One instance per session; not thread-safe."""

    def __init__(
        self,
        session_id: str,
        config: TraceConfig,
        *,
        existed_before: ExistedBefore | None = None,
        cwd_lookup: CwdLookup | None = None,
        proc_lookup: ProcLookup | None = None,
    ) -> None:
        self.session_id = session_id
        self.config = config
        self._roots = config.roots()
        self._existed_before = existed_before
        self._cwd_lookup = cwd_lookup
        self._proc_lookup = proc_lookup
        self.procs: dict[int, Proc] = {}
        self._births: list[_Birth] = []  # oldest first
        self._pending: dict[int, tuple[float, str, str]] = {}  # pid → unfinished (ts, name, body)
        self.exists: dict[str, bool] = {}  # what this session did to a path: created/deleted
        self._aggs: dict[tuple[str, str], _Agg] = {}
        self._seq = 0
        self.root_pid: int | None = None
        self.agent_pid: int | None = None  # first exec not by an ignored program (bwrap's child)
        self.root_exit_code: int | None = None
        self.lines = 0

    # ---- public API -------------------------------------------------------------------------
    def feed(self, line: str) -> list[Event]:
        raw = sx.split_line(line)
        if raw is None:
            return []
        self.lines += 1
        out = self._expire(raw.ts)
        if raw.kind == "unfinished":
            parent = self.proc(raw.pid)
            self._pending[raw.pid] = (raw.ts, raw.name, raw.body)
            if raw.name in CLONE_CALLS:
                self.birth(raw.pid, parent, clone_flags(raw.body))
            return out
        if raw.kind == "resumed":
            pending = self._pending.pop(raw.pid, None)
            if pending is None or pending[1] != raw.name:
                return out
            ts, name, body = pending[0], raw.name, pending[2] + raw.body
        elif raw.kind == "other":
            if raw.body.startswith("+++"):
                self._on_exit(raw.pid, raw.body)
            return out
        else:
            ts, name, body = raw.ts, raw.name, raw.body
        parsed = sx.split_call(body)
        if parsed is None:
            return out
        args, rest = parsed
        handler = HANDLERS.get(name)
        if handler is not None:
            handler(self, Call(raw.pid, ts, name, args, sx.parse_ret(rest)), out)
        return out

    def feed_many(self, lines: Iterable[str]) -> list[Event]:
        out: list[Event] = []
        for line in lines:
            out.extend(self.feed(line))
        return out

    def tick(self, now: float) -> list[Event]:
        """Emit collapsed reads/writes whose window has passed (call when the stream is quiet)."""
        return self._expire(now)

    def finish(self) -> list[Event]:
        """Emit everything still held back; the stream has ended."""
        out = [self._agg_event(k) for k in list(self._aggs)]
        return out

    def live_pids(self) -> set[int]:
        return {p.tgid for p in self.procs.values()}

    # ---- process state ----------------------------------------------------------------------
    def proc(self, pid: int) -> Proc:
        p = self.procs.get(pid)
        if p is not None:
            return p
        if self.root_pid is None:
            self.root_pid = pid
            p = Proc(pid, None, _Fs(self.config.initial_cwd or self.config.project_dir))
        else:
            p = self._newcomer(pid)
        self.procs[pid] = p
        return p

    def _newcomer(self, pid: int) -> Proc:
        """The first line of a pid we have not seen born: find the clone that made it.

        Inside the sandbox's pid namespace clone returns the child's pid *there*, which says
        nothing about the pid strace prints, so the clone is found another way. strace prints a
        clone's start before any line of its child, so the child's clone is one of the open births.
        The kernel knows which (`proc_lookup`: its tgid and parent, exact while it lives); when it
        has already gone, the most recent clone still under way is taken, then the most recent
        returned one (docs/tracer.md, "Parents without pid translation").
        """
        births = self._births
        known = self._proc_lookup(pid) if self._proc_lookup else None
        if known is not None:
            tgid, ppid = known
            if tgid != pid:  # a thread: it belongs to its process, whatever clone made it
                owner = self.procs.get(tgid)
                if owner is not None:
                    b = next((b for b in births if "CLONE_THREAD" in b.flags and b.parent.tgid == tgid), None)
                    if b is not None:
                        births.remove(b)
                        return self.child_of(owner, pid, b.flags, b.fs)
                    return Proc(owner.tgid, owner.ppid, owner.fs, owner.program, owner.host_ns)
            else:
                b = next((b for b in births if "CLONE_THREAD" not in b.flags and b.parent.tgid == ppid), None)
                if b is not None:  # (a reparented orphan's ppid has no open birth: guessed below)
                    births.remove(b)
                    return self.child_of(b.parent, pid, b.flags, b.fs)
        if births:
            under_way = [b for b in births if not b.returned]
            b = (under_way or births)[-1]
            births.remove(b)
            return self.child_of(b.parent, pid, b.flags, b.fs)
        cwd = self._cwd_lookup(pid) if self._cwd_lookup else None
        return Proc(pid, None, _Fs(cwd))

    def birth(self, by: int, parent: Proc, flags: frozenset[str]) -> _Birth:
        """A clone has started: its child may print before it returns."""
        fs = parent.fs if "CLONE_FS" in flags else _Fs(parent.fs.cwd)
        b = _Birth(by, parent, flags, fs)
        self._births.append(b)
        if len(self._births) > _MAX_BIRTHS:
            del self._births[0]
        return b

    def open_birth(self, by: int) -> _Birth | None:
        """The birth a clone by `by` started and no child has claimed, if any."""
        return next((b for b in reversed(self._births) if b.by == by and not b.returned), None)

    def claim(self, birth: _Birth) -> None:
        if birth in self._births:
            self._births.remove(birth)

    @staticmethod
    def child_of(parent: Proc, pid: int, flags: frozenset[str], fs: _Fs | None = None) -> Proc:
        if fs is None:
            fs = parent.fs if "CLONE_FS" in flags else _Fs(parent.fs.cwd)
        host_ns = parent.host_ns and "CLONE_NEWPID" not in flags
        if "CLONE_THREAD" in flags:
            return Proc(parent.tgid, parent.ppid, fs, parent.program, host_ns)
        return Proc(pid, parent.tgid, fs, parent.program, host_ns)

    def _on_exit(self, pid: int, text: str) -> None:
        p = self.procs.get(pid)
        if p is not None and p.tgid == self.root_pid and self.root_exit_code is None:
            m = re.search(r"exited with (\d+)|killed by SIG(\w+)", text)
            if m and m.group(1):
                self.root_exit_code = int(m.group(1))
        self.drop(pid)

    def drop(self, pid: int) -> None:
        p = self.procs.get(pid)
        if p is None:
            return
        for q in [q for q, v in self.procs.items() if v.tgid == p.tgid]:
            self.procs.pop(q, None)
            self._pending.pop(q, None)
        # Its threads die with it; a child it forked may still print its first line, so that
        # birth stays.
        self._births = [b for b in self._births if not (b.parent.tgid == p.tgid and "CLONE_THREAD" in b.flags)]

    # ---- helpers ----------------------------------------------------------------------------
    def resolve(self, proc: Proc, dirfd: str | None, raw: str) -> str | None:
        base: str | None = proc.fs.cwd
        if dirfd is not None:
            name, deco = sx.decode_fd(dirfd)
            if name == "AT_FDCWD":
                if deco is not None and deco.startswith("/"):
                    proc.fs.cwd = base = deco  # strace tells us the cwd: trust it over our tracking
            else:
                base = deco if deco is not None and deco.startswith("/") else None
        if raw.startswith("/"):
            return os.path.normpath(raw)
        if base is None:
            return None
        return os.path.normpath(os.path.join(base, raw))

    def path_info(self, path: str) -> dict[str, Any]:
        for root in self._roots:
            if path == root or path.startswith(root + "/"):
                return {"path": path, "in_project": True, "rel_path": os.path.relpath(path, root)}
        return {"path": path, "in_project": False}

    def skipped(self, path: str) -> bool:
        return _under(path, self.config.skip_prefixes) or _under(path, self.config.tracer_paths)

    def read_is_noise(self, path: str, info: dict[str, Any]) -> bool:
        if info["in_project"]:
            return False
        if not self.config.reads_outside_project or _under(path, self.config.skip_read_prefixes):
            return True
        return any(part in path for part in self.config.skip_read_parts)

    def ignored(self, proc: Proc) -> bool:
        if proc.program is None:
            return False
        launching = self.agent_pid is None and proc.program in self.config.launcher_programs
        return launching or proc.program in self.config.ignored_programs

    def event(self, kind: str, ts: float, payload: dict[str, Any]) -> Event:
        self._seq += 1
        return Event(
            session_id=self.session_id,
            kind=kind,
            ts=datetime.fromtimestamp(ts, UTC),
            payload=payload,
            event_id=stable_id(self.session_id, "strace", self._seq),
        )

    def emit(self, out: list[Event], kind: str, ts: float, payload: dict[str, Any]) -> None:
        path = payload.get("path")
        collapsible = kind in (ev.FILE_READ, ev.FILE_WRITE) and self.config.collapse_window_s > 0
        if collapsible and isinstance(path, str) and payload.get("ok", True):
            agg = self._aggs.get((kind, path))
            if agg is not None:
                agg.payload["count"] += 1
                return
            # Another kind held back for this path happened first: emit it first to keep the order.
            out.extend(self._flush_path(path))
            payload["count"] = 1
            self._seq += 1
            self._aggs[(kind, path)] = _Agg(self._seq, ts, payload, kind)
            return
        for p in (path, payload.get("old_path")):
            if isinstance(p, str):
                out.extend(self._flush_path(p))
        out.append(self.event(kind, ts, payload))

    def _flush_path(self, path: str) -> list[Event]:
        return [self._agg_event(k) for k in list(self._aggs) if k[1] == path]

    def _agg_event(self, key: tuple[str, str]) -> Event:
        agg = self._aggs.pop(key)
        return Event(
            session_id=self.session_id,
            kind=agg.kind,
            ts=datetime.fromtimestamp(agg.ts, UTC),
            payload=agg.payload,
            event_id=stable_id(self.session_id, "strace", agg.seq),
        )

    def _expire(self, now: float) -> list[Event]:
        out: list[Event] = []
        window = self.config.collapse_window_s
        while self._aggs:
            key, agg = next(iter(self._aggs.items()))
            if now - agg.ts < window:
                break
            out.append(self._agg_event(key))
        return out

    def skip_failed(self, ret: sx.Ret, payload: dict[str, Any]) -> bool:
        """True when the call failed and must be skipped; otherwise marks the payload."""
        if ret.failed:
            if not self.config.record_failed:
                return True
            payload["ok"] = False
            payload["errno"] = ret.errno
        return False

    def existed(self, path: str) -> bool | None:
        known = self.exists.get(path)
        if known is not None:
            return known
        return self._existed_before(path) if self._existed_before else None


def parse_trace(
    text: str | Iterable[str],
    session_id: str,
    config: TraceConfig,
    *,
    existed_before: ExistedBefore | None = None,
) -> list[Event]:
    """Parse a whole captured trace (tests, re-processing)."""
    parser = TraceParser(session_id, config, existed_before=existed_before)
    lines = text.splitlines() if isinstance(text, str) else text
    return parser.feed_many(lines) + parser.finish()


@dataclass(frozen=True, slots=True)
class PreexistingFiles:
    """An `existed_before` oracle from the workspace snapshot taken before the session.

    Inside the project it answers exactly; outside it answers None (unknown).
    """

    roots: tuple[str, ...]
    rel_paths: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_snapshot(cls, root: str, rel_paths: Iterable[str]) -> PreexistingFiles:
        """Both spellings of the root: the kernel reports opened files by their real path."""
        roots = {os.path.normpath(os.path.abspath(root)), os.path.realpath(root)}
        return cls(tuple(sorted(roots)), frozenset(rel_paths))

    def __call__(self, path: str) -> bool | None:
        for root in self.roots:
            r = os.path.normpath(root)
            if path.startswith(r + "/"):
                return os.path.relpath(path, r) in self.rel_paths
        return None
