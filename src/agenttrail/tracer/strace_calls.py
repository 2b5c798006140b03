"""What each traced system call means: one handler per syscall family, called by `TraceParser`.

A handler gets the parser (for process state, path resolution and noise rules), the pid, the call's
start time, its name, its top-level argument texts and its parsed return value, and appends the
events it produces to `out`. Argument positions follow the kernel's signatures; strace prints them in
that order.
"""

from __future__ import annotations

import contextlib
import os.path
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.tracer import strace_syntax as sx

if TYPE_CHECKING:
    from agenttrail.tracer.strace_parser import Proc, TraceParser

CLONE_CALLS = frozenset({"clone", "clone3", "fork", "vfork"})
_FLAGS_RE = re.compile(r"flags=([A-Z0-9_|]+)")
_PORT_RE = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDR4_RE = re.compile(r'sin_addr=inet_addr\("([^"]*)"\)')
_ADDR6_RE = re.compile(r'inet_pton\(AF_INET6, "([^"]*)"')
_UNIX_RE = re.compile(r'sun_path=(@?)("(?:[^"\\]|\\.)*")')
_FAMILY_RE = re.compile(r"sa_family=(AF_[A-Z0-9]+)")


@dataclass(slots=True)
class Call:
    """One complete system call (an unfinished/resumed pair already joined)."""

    pid: int
    ts: float  # when it started
    name: str
    args: list[str]
    ret: sx.Ret


_PROTOCOLS = {"TCP": "tcp", "TCPv6": "tcp", "UDP": "udp", "UDPv6": "udp", "UDPLITE": "udp"}


def clone_flags(body: str) -> frozenset[str]:
    m = _FLAGS_RE.search(body)
    return sx.decode_flags(m.group(1)) if m else frozenset()


def _arg(args: list[str], i: int) -> str:
    return args[i] if i < len(args) else ""


def _str(args: list[str], i: int) -> str | None:
    d = sx.decode_string(_arg(args, i))
    return d[0] if d else None


# ---- handlers: (parser, pid, ts, name, args, ret, out) ----------------------------------------


def _on_clone(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, args, ret = c.pid, c.args, c.ret
    parent = t.proc(pid)
    # A clone printed in one piece had no birth yet; an unfinished one opened it at its start.
    birth = t.open_birth(pid) or t.birth(pid, parent, clone_flags(", ".join(args)))
    if ret.value is None or ret.value <= 0:
        t.claim(birth)  # no child
        return
    if not parent.host_ns:
        # The value is the child's pid in the sandbox's namespace, not the one on its lines: the
        # child is found when it first prints (TraceParser._newcomer).
        birth.returned = True
        return
    t.claim(birth)
    child = t.child_of(parent, ret.value, birth.flags, birth.fs)
    known = t.procs.get(ret.value)
    if known is not None:  # printed before the clone returned: fix its provisional parent
        known.tgid, known.ppid, known.host_ns = child.tgid, child.ppid, child.host_ns
        if known.fs.cwd is None:
            known.fs = child.fs
    else:
        t.procs[ret.value] = child


def _on_exit_group(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, args = c.pid, c.args
    p = t.procs.get(pid)
    if p is not None and p.tgid == t.root_pid:
        with contextlib.suppress(ValueError):
            t.root_exit_code = int(_arg(args, 0), 0) & 0xFF
    t.drop(pid)


def _on_chdir(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, name, args, ret = c.pid, c.name, c.args, c.ret
    if ret.failed:
        return
    p = t.proc(pid)
    if name == "fchdir":
        _, deco = sx.decode_fd(_arg(args, 0))
        if deco is not None and deco.startswith("/"):
            p.fs.cwd = deco
        return
    raw = _str(args, 0)
    if raw is not None:
        p.fs.cwd = t.resolve(p, None, raw)


def _on_exec(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, ts, name, args, ret = c.pid, c.ts, c.name, c.args, c.ret
    p = t.proc(pid)
    off = 1 if name == "execveat" else 0
    raw = _str(args, off)
    decoded = sx.decode_string_array(_arg(args, off + 1))
    argv, truncated = decoded if decoded else ([], False)
    path = t.resolve(p, args[0] if off else None, raw) if raw is not None else None
    if not ret.failed:
        p.program = os.path.basename(path or (argv[0] if argv else "")) or None
    if t.ignored(p):
        return
    payload: dict[str, Any] = {
        "argv": argv,
        "path": path or raw,
        "cwd": p.fs.cwd,
        "pid": p.tgid,
        "ppid": p.ppid,
        "syscall": name,
    }
    if truncated:
        payload["argv_truncated"] = True
    if t.skip_failed(ret, payload):
        return
    if not ret.failed and t.agent_pid is None:
        t.agent_pid = p.tgid
    out.append(t.event(ev.EXEC, ts, payload))


def _on_open(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, ts, name, args, ret = c.pid, c.ts, c.name, c.args, c.ret
    p = t.proc(pid)
    if name == "creat":
        dirfd, raw, flags = None, _str(args, 0), frozenset({"O_CREAT", "O_WRONLY", "O_TRUNC"})
    elif name == "open":
        dirfd, raw, flags = None, _str(args, 0), sx.decode_flags(_arg(args, 1))
    elif name == "openat2":
        m = _FLAGS_RE.search(_arg(args, 2))
        dirfd, raw, flags = args[0], _str(args, 1), sx.decode_flags(m.group(1) if m else "")
    else:
        dirfd, raw, flags = _arg(args, 0), _str(args, 1), sx.decode_flags(_arg(args, 2))
    if raw is None or t.ignored(p) or "O_PATH" in flags:
        return
    path = t.resolve(p, dirfd, raw)
    if not ret.failed and ret.decoration and ret.decoration.startswith("/"):
        path = ret.decoration.removesuffix(" (deleted)")  # the kernel's own answer: symlinks resolved
    if path is None:
        payload: dict[str, Any] = {"path": raw, "in_project": False, "resolved": False}
    elif t.skipped(path):
        return
    else:
        payload = t.path_info(path)
    payload["pid"] = p.tgid
    payload["syscall"] = name
    writing = "O_WRONLY" in flags or "O_RDWR" in flags
    if "O_CREAT" in flags and not ret.failed:
        existed = False if "O_EXCL" in flags else t.existed(payload["path"])
        if existed is False:
            kind = ev.FILE_CREATE
        else:
            kind = ev.FILE_WRITE if writing else ev.FILE_READ
            if existed is None:
                payload["created"] = None  # unknowable here: outside the snapshot, see docs/tracer.md
    elif writing or "O_CREAT" in flags:
        kind = ev.FILE_WRITE
    else:
        if "O_DIRECTORY" in flags and not t.config.record_dir_reads:
            return
        if t.read_is_noise(payload["path"], payload):
            return
        kind = ev.FILE_READ
    if kind in (ev.FILE_WRITE, ev.FILE_CREATE):
        if "O_TRUNC" in flags:
            payload["truncate"] = True
        if "O_APPEND" in flags:
            payload["append"] = True
    if t.skip_failed(ret, payload):
        return
    if kind != ev.FILE_READ:
        t.exists[payload["path"]] = True
    t.emit(out, kind, ts, payload)


def _two_paths(t: TraceParser, p: Proc, name: str, args: list[str]) -> tuple[str | None, str | None, str]:
    """(old, new, flags text) for rename/link variants, resolved."""
    if name in ("rename", "link"):
        a, b = _str(args, 0), _str(args, 1)
        return (
            t.resolve(p, None, a) if a is not None else None,
            t.resolve(p, None, b) if b is not None else None,
            "",
        )
    a, b = _str(args, 1), _str(args, 3)
    return (
        t.resolve(p, args[0], a) if a is not None else None,
        t.resolve(p, _arg(args, 2), b) if b is not None else None,
        _arg(args, 4),
    )


def _on_rename(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, ts, name, args, ret = c.pid, c.ts, c.name, c.args, c.ret
    p = t.proc(pid)
    if t.ignored(p):
        return
    old, new, flags = _two_paths(t, p, name, args)
    if old is None or new is None or (t.skipped(old) and t.skipped(new)):
        return
    payload = t.path_info(new)
    old_info = t.path_info(old)
    payload.update(old_path=old, old_in_project=old_info["in_project"], pid=p.tgid, syscall=name)
    payload["in_project"] = payload["in_project"] or old_info["in_project"]
    if "RENAME_EXCHANGE" in flags:
        payload["exchange"] = True
    if t.skip_failed(ret, payload):
        return
    if not ret.failed:
        if "RENAME_EXCHANGE" not in flags:
            t.exists[old] = False
        t.exists[new] = True
    t.emit(out, ev.FILE_RENAME, ts, payload)


def _on_delete(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, ts, name, args, ret = c.pid, c.ts, c.name, c.args, c.ret
    p = t.proc(pid)
    if t.ignored(p):
        return
    if name == "unlinkat":
        raw, path = _str(args, 1), None
        path = t.resolve(p, args[0], raw) if raw is not None else None
        is_dir = "AT_REMOVEDIR" in _arg(args, 2)
    else:
        raw = _str(args, 0)
        path = t.resolve(p, None, raw) if raw is not None else None
        is_dir = name == "rmdir"
    if path is None or t.skipped(path):
        return
    payload = t.path_info(path)
    payload.update(pid=p.tgid, syscall=name)
    if is_dir:
        payload["is_dir"] = True
    if t.skip_failed(ret, payload):
        return
    if not ret.failed:
        t.exists[path] = False
    t.emit(out, ev.FILE_DELETE, ts, payload)


def _on_create(t: TraceParser, c: Call, out: list[Event]) -> None:
    """mkdir, link and symlink: each makes a new path."""
    pid, ts, name, args, ret = c.pid, c.ts, c.name, c.args, c.ret
    p = t.proc(pid)
    if t.ignored(p):
        return
    extra: dict[str, Any] = {}
    if name in ("mkdir", "mkdirat"):
        raw = _str(args, 1 if name == "mkdirat" else 0)
        path = t.resolve(p, args[0] if name == "mkdirat" else None, raw) if raw is not None else None
        extra["is_dir"] = True
    elif name in ("symlink", "symlinkat"):
        target = _str(args, 0)
        raw = _str(args, 2 if name == "symlinkat" else 1)
        path = t.resolve(p, args[1] if name == "symlinkat" else None, raw) if raw is not None else None
        extra["symlink_to"] = target
    else:
        old, path, _ = _two_paths(t, p, name, args)
        extra["link_to"] = old
    if path is None or t.skipped(path):
        return
    payload = t.path_info(path)
    payload.update(pid=p.tgid, syscall=name, **extra)
    if t.skip_failed(ret, payload):
        return
    if not ret.failed:
        t.exists[path] = True
    t.emit(out, ev.FILE_CREATE, ts, payload)


def _on_connect(t: TraceParser, c: Call, out: list[Event]) -> None:
    pid, ts, args, ret = c.pid, c.ts, c.args, c.ret
    p = t.proc(pid)
    if t.ignored(p):
        return
    sockaddr = _arg(args, 1)
    fam = _FAMILY_RE.search(sockaddr)
    family = fam.group(1) if fam else None
    _, deco = sx.decode_fd(_arg(args, 0))
    proto_name = deco.split(":", 1)[0] if deco else ""
    payload: dict[str, Any] = {
        "pid": p.tgid,
        "protocol": _PROTOCOLS.get(proto_name, proto_name.lower() or None),
    }
    if family in ("AF_INET", "AF_INET6"):
        addr = (_ADDR4_RE if family == "AF_INET" else _ADDR6_RE).search(sockaddr)
        port = _PORT_RE.search(sockaddr)
        payload.update(
            family="inet" if family == "AF_INET" else "inet6",
            address=addr.group(1) if addr else None,
            port=int(port.group(1)) if port else None,
        )
        if payload["protocol"] == "udp" and not t.config.include_udp:
            return
    elif family == "AF_UNIX" and t.config.include_unix_sockets:
        m = _UNIX_RE.search(sockaddr)
        decoded = sx.decode_string(m.group(2)) if m else None
        payload.update(family="unix", address=(m.group(1) + decoded[0]) if m and decoded else None, port=None)
    else:
        return
    if ret.errno == "EINPROGRESS":
        payload["in_progress"] = True  # a non-blocking connect that is under way, not a failure
    elif t.skip_failed(ret, payload):
        return
    t.emit(out, ev.NET_CONNECT, ts, payload)


Handler = Callable[["TraceParser", Call, list[Event]], None]
HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(CLONE_CALLS, _on_clone),
    "exit_group": _on_exit_group,
    "chdir": _on_chdir,
    "fchdir": _on_chdir,
    "execve": _on_exec,
    "execveat": _on_exec,
    **dict.fromkeys(("open", "openat", "openat2", "creat"), _on_open),
    **dict.fromkeys(("rename", "renameat", "renameat2"), _on_rename),
    **dict.fromkeys(("unlink", "unlinkat", "rmdir"), _on_delete),
    **dict.fromkeys(("mkdir", "mkdirat", "link", "linkat", "symlink", "symlinkat"), _on_create),
    "connect": _on_connect,
}
