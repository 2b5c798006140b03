# ruff: noqa: E501  (captured strace lines are long by nature)
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.events import Event
from agenttrail.tracer.strace_parser import PreexistingFiles, TraceConfig, TraceParser, parse_trace
from agenttrail.tracer.supervisor import strace_argv

P = "/work/proj"
CFG = TraceConfig(project_dir=P)


def trace(*lines: str, config: TraceConfig = CFG, existed: PreexistingFiles | None = None) -> list[Event]:
    """Events in time order (the parser emits collapsed reads/writes when their window closes)."""
    return in_time_order(parse_trace(list(lines), "sess", config, existed_before=existed))


def in_time_order(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.ts)


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.payload.get("path")) for e in events]


ROOT_EXEC = '100 1.000000 execve("/usr/bin/bash", ["bash", "-c", "x"], 0x7ffd /* 35 vars */) = 0'


# ---- hand-written edge cases -----------------------------------------------------------------


def test_quoted_path_with_spaces_and_escapes() -> None:
    line = r'100 1.1 openat(AT_FDCWD</work/proj>, "a b\"c\\d\303\251\n.txt", O_RDONLY) = 3</work/proj/a b\"c\\d\303\251\n.txt>'
    [e] = trace(ROOT_EXEC, line)[1:]
    assert e.kind == "file_read"
    assert e.payload["path"] == '/work/proj/a b"c\\dé\n.txt'
    assert e.payload["rel_path"] == 'a b"c\\dé\n.txt'
    assert e.payload["in_project"] is True


def test_unfinished_and_resumed_are_joined_per_pid() -> None:
    events = trace(
        ROOT_EXEC,
        "100 1.1 clone3({flags=CLONE_VM|CLONE_FS|CLONE_THREAD, exit_signal=0} <unfinished ...>",
        '101 1.2 openat(AT_FDCWD</work/proj>, "w.txt", O_WRONLY|O_CREAT|O_EXCL, 0644 <unfinished ...>',
        "100 1.3 <... clone3 resumed> => {parent_tid=[101]}, 88) = 101",
        '100 1.4 unlink("gone.txt" <unfinished ...>',
        "101 1.5 <... openat resumed>) = 4</work/proj/w.txt>",
        "100 1.6 <... unlink resumed>) = 0",
    )
    assert kinds(events) == [
        ("exec", "/usr/bin/bash"),
        ("file_create", "/work/proj/w.txt"),
        ("file_delete", "/work/proj/gone.txt"),
    ]
    # The thread's events belong to its process; the time is when the call started.
    assert events[1].payload["pid"] == 100
    assert events[1].ts.timestamp() == pytest.approx(1.2)


def test_resumed_without_its_start_is_ignored() -> None:
    assert trace(ROOT_EXEC, "100 1.6 <... unlink resumed>) = 0")[1:] == []


def test_execve_path_search_failures_make_one_exec() -> None:
    lines = [
        ROOT_EXEC,
        "100 1.1 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f) = 101",
        '101 1.2 execve("/root/.cargo/bin/npm", ["npm", "i", "x"], 0x55 /* 3 vars */) = -1 ENOENT (No such file)',
        '101 1.3 execve("/usr/local/bin/npm", ["npm", "i", "x"], 0x55 /* 3 vars */) = -1 ENOENT (No such file)',
        '101 1.4 execve("/usr/bin/npm", ["npm", "i", "x"], 0x55 /* 3 vars */) = 0',
    ]
    execs = [e for e in trace(*lines) if e.kind == "exec"]
    assert [e.payload["path"] for e in execs] == ["/usr/bin/bash", "/usr/bin/npm"]
    child = execs[1].payload
    assert (child["argv"], child["pid"], child["ppid"], child["cwd"]) == (["npm", "i", "x"], 101, 100, P)
    failed = [e for e in trace(*lines, config=TraceConfig(P, record_failed=True)) if e.kind == "exec"]
    assert [e.payload.get("ok", True) for e in failed] == [True, False, False, True]
    assert failed[1].payload["errno"] == "ENOENT"


def test_failed_open_is_not_a_read_unless_asked() -> None:
    line = '100 1.1 openat(AT_FDCWD</work/proj>, "nope", O_RDONLY) = -1 ENOENT (No such file or directory)'
    assert trace(ROOT_EXEC, line)[1:] == []
    [e] = trace(ROOT_EXEC, line, config=TraceConfig(P, record_failed=True))[1:]
    assert (e.kind, e.payload["ok"], e.payload["errno"]) == ("file_read", False, "ENOENT")


def test_create_versus_write() -> None:
    existed = PreexistingFiles((P,), frozenset({"old.txt"}))
    events = trace(
        ROOT_EXEC,
        '100 1.1 openat(AT_FDCWD</work/proj>, "old.txt", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</work/proj/old.txt>',
        '100 1.2 openat(AT_FDCWD</work/proj>, "new.txt", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</work/proj/new.txt>',
        '100 1.3 openat(AT_FDCWD</work/proj>, "excl", O_RDWR|O_CREAT|O_EXCL, 0600) = 3</work/proj/excl>',
        '100 1.4 openat(AT_FDCWD</work/proj>, "plain", O_WRONLY) = 3</work/proj/plain>',
        '100 1.5 unlinkat(AT_FDCWD</work/proj>, "old.txt", 0) = 0',
        '100 1.6 creat("/work/proj/old.txt", 0644) = 3</work/proj/old.txt>',
        '100 1.7 openat(AT_FDCWD</work/proj>, "/tmp/out.log", O_WRONLY|O_CREAT|O_APPEND, 0666) = 3</tmp/out.log>',
        existed=existed,
    )[1:]
    assert [(e.kind, e.payload["path"]) for e in events] == [
        ("file_write", "/work/proj/old.txt"),
        ("file_create", "/work/proj/new.txt"),
        ("file_create", "/work/proj/excl"),
        ("file_write", "/work/proj/plain"),
        ("file_delete", "/work/proj/old.txt"),
        ("file_create", "/work/proj/old.txt"),  # deleted earlier in this session: re-created
        ("file_write", "/tmp/out.log"),
    ]
    assert events[0].payload["truncate"] is True
    assert "created" not in events[0].payload
    assert events[6].payload["created"] is None  # outside the snapshot: unknown, and said so
    assert events[6].payload["append"] is True


def test_relative_paths_follow_chdir_fchdir_and_fork() -> None:
    events = trace(
        ROOT_EXEC,
        '100 1.1 chdir("sub dir") = 0',
        '100 1.2 rename("a", "../b") = 0',
        "100 1.3 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f) = 101",
        '101 1.4 mkdir("m", 0777) = 0',
        '100 1.5 chdir("/elsewhere") = 0',
        '101 1.6 unlink("c") = 0',  # the child keeps its own cwd
        "101 1.7 fchdir(3</work/proj/x>) = 0",
        '101 1.8 rmdir("y") = 0',
        '100 1.9 chdir("nonexistent") = -1 ENOENT (No such file or directory)',
        '100 2.0 symlinkat("target", AT_FDCWD, "link") = 0',
        '100 2.1 linkat(AT_FDCWD, "h1", 5</work/proj/d>, "h2", 0) = 0',
    )[1:]
    got = [(e.kind, e.payload["path"], e.payload.get("old_path")) for e in events]
    assert got == [
        ("file_rename", "/work/proj/b", "/work/proj/sub dir/a"),
        ("file_create", "/work/proj/sub dir/m", None),
        ("file_delete", "/work/proj/sub dir/c", None),
        ("file_delete", "/work/proj/x/y", None),
        ("file_create", "/elsewhere/link", None),
        ("file_create", "/work/proj/d/h2", None),
    ]
    assert events[3].payload["is_dir"] is True
    assert events[4].payload["symlink_to"] == "target"
    assert events[4].payload["in_project"] is False
    assert events[5].payload["link_to"] == "/elsewhere/h1"


def test_at_fdcwd_decoration_corrects_the_tracked_cwd() -> None:
    events = trace(
        ROOT_EXEC,
        # A process we never saw chdir (e.g. started before we knew it): strace tells us its cwd.
        '100 1.1 openat(AT_FDCWD</work/proj/lib>, "x.py", O_RDONLY) = 3</work/proj/lib/x.py>',
        '100 1.2 unlink("y.py") = 0',
    )[1:]
    assert [e.payload["path"] for e in events] == ["/work/proj/lib/x.py", "/work/proj/lib/y.py"]


def test_child_that_prints_before_clone_returns_inherits_cwd_and_parent() -> None:
    events = trace(
        ROOT_EXEC,
        '100 1.1 chdir("/work/proj/src") = 0',
        "100 1.2 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>",
        '105 1.3 execve("/usr/bin/ls", ["ls"], 0x1 /* 1 vars */) = 0',
        "100 1.4 <... clone resumed>, child_tidptr=0x7f) = 105",
    )
    assert events[1].payload["cwd"] == "/work/proj/src"
    assert events[1].payload["ppid"] == 100


def test_threads_sharing_fs_share_cwd() -> None:
    events = trace(
        ROOT_EXEC,
        "100 1.1 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD, exit_signal=0} => {parent_tid=[101]}, 88) = 101",
        '101 1.2 chdir("/work/proj/t") = 0',
        '100 1.3 unlink("z") = 0',
    )
    assert events[1].payload["path"] == "/work/proj/t/z"


def test_noise_rules() -> None:
    lines = [
        ROOT_EXEC,
        '100 1.1 openat(AT_FDCWD</work/proj>, "/proc/self/maps", O_RDONLY) = 3</proc/12/maps>',
        '100 1.2 openat(AT_FDCWD</work/proj>, "/dev/null", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</dev/null<char 1:3>>',
        '100 1.3 openat(AT_FDCWD</work/proj>, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3</etc/ld.so.cache>',
        '100 1.4 openat(AT_FDCWD</work/proj>, "/usr/lib/x86_64-linux-gnu/libc.so.6", O_RDONLY) = 3</usr/lib/x86_64-linux-gnu/libc.so.6>',
        '100 1.5 openat(AT_FDCWD</work/proj>, "src", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3</work/proj/src>',
        '100 1.6 openat(AT_FDCWD</work/proj>, "/work/proj/x", O_RDONLY|O_PATH) = 3</work/proj/x>',
        '100 1.7 openat(AT_FDCWD</work/proj>, "/root/.aws/credentials", O_RDONLY) = 3</root/.aws/credentials>',
        '100 1.8 openat(AT_FDCWD</work/proj>, "/v/lib/python3.11/site-packages/x.py", O_RDONLY) = 3</v/lib/python3.11/site-packages/x.py>',
        '100 1.9 openat(AT_FDCWD</work/proj>, "/run/agenttrail/outbox.db", O_RDWR|O_CREAT, 0644) = 3</run/agenttrail/outbox.db>',
        '100 2.0 openat(AT_FDCWD</work/proj>, "node_modules/x/index.js", O_RDONLY) = 3</work/proj/node_modules/x/index.js>',
    ]
    cfg = TraceConfig(P, tracer_paths=("/run/agenttrail",))
    assert kinds(trace(*lines, config=cfg))[1:] == [
        ("file_read", "/root/.aws/credentials"),  # outside the project and not system: recorded
        ("file_read", "/work/proj/node_modules/x/index.js"),  # package parts are noise only outside
    ]
    strict = TraceConfig(P, tracer_paths=("/run/agenttrail",), reads_outside_project=False, record_dir_reads=True)
    assert kinds(trace(*lines, config=strict))[1:] == [
        ("file_read", "/work/proj/src"),
        ("file_read", "/work/proj/node_modules/x/index.js"),
    ]


def test_repeated_reads_collapse_within_the_window() -> None:
    read = '100 {ts} openat(AT_FDCWD</work/proj>, "a.py", O_RDONLY) = 3</work/proj/a.py>'
    write = '100 {ts} openat(AT_FDCWD</work/proj>, "a.py", O_WRONLY|O_TRUNC) = 3</work/proj/a.py>'
    events = trace(
        ROOT_EXEC,
        read.format(ts="1.1"),
        read.format(ts="1.2"),
        read.format(ts="1.3"),
        write.format(ts="1.4"),  # a write flushes the held reads first: order is kept
        read.format(ts="1.5"),
        read.format(ts="9.0"),  # past the 2 s window: a new event
    )[1:]
    assert [(e.kind, e.payload["count"], e.ts.timestamp()) for e in events] == [
        ("file_read", 3, pytest.approx(1.1)),
        ("file_write", 1, pytest.approx(1.4)),
        ("file_read", 1, pytest.approx(1.5)),
        ("file_read", 1, pytest.approx(9.0)),
    ]
    no_collapse = trace(
        ROOT_EXEC, read.format(ts="1.1"), read.format(ts="1.2"), config=TraceConfig(P, collapse_window_s=0)
    )
    assert len(no_collapse) == 3


def test_tick_releases_held_events_when_the_stream_is_quiet() -> None:
    parser = TraceParser("s", CFG)
    parser.feed(ROOT_EXEC)
    assert parser.feed('100 1.1 openat(AT_FDCWD</work/proj>, "a", O_RDONLY) = 3</work/proj/a>') == []
    assert parser.tick(2.0) == []
    [e] = parser.tick(3.2)
    assert e.payload["count"] == 1
    assert parser.finish() == []


def test_connect_variants() -> None:
    lines = [
        ROOT_EXEC,
        '100 1.1 connect(4<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '100 1.2 connect(4<TCPv6:[2]>, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        '100 1.3 connect(5<UDP:[3]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.1")}, 16) = 0',
        '100 1.4 connect(6<UNIX-STREAM:[4]>, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 21) = 0',
        '100 1.5 connect(7<TCP:[5]>, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)',
        '100 1.6 connect(8<TCP:[6]>, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)',
        "100 1.7 connect(9<NETLINK:[7]>, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 0",
    ]
    got = [
        (e.payload["family"], e.payload["address"], e.payload["port"], e.payload["protocol"]) for e in trace(*lines)[1:]
    ]
    assert got == [
        ("inet", "127.0.0.1", 8080, "tcp"),
        ("inet6", "::1", 443, "tcp"),
        ("inet", "10.0.0.1", 53, "udp"),
        ("inet", "127.0.0.1", 9, "tcp"),
    ]
    cfg = TraceConfig(P, include_unix_sockets=True, include_udp=False, record_failed=True)
    got2 = [
        (e.payload["family"], e.payload["address"], e.payload.get("ok", True)) for e in trace(*lines, config=cfg)[1:]
    ]
    assert got2 == [
        ("inet", "127.0.0.1", True),
        ("inet6", "::1", True),
        ("unix", "/run/x.sock", True),
        ("inet", "127.0.0.1", True),
        ("inet", "127.0.0.1", False),
    ]


def test_ignored_programs_hide_sandbox_setup() -> None:
    events = trace(
        '100 1.0 execve("/usr/bin/bwrap", ["bwrap", "--ro-bind", "/", "/"], 0x1 /* 2 vars */) = 0',
        '100 1.1 mkdir("/newroot/tmp", 0755) = 0',
        "100 1.2 clone(child_stack=NULL, flags=SIGCHLD) = 101",
        '101 1.3 execve("/usr/bin/claude", ["claude"], 0x1 /* 2 vars */) = 0',
        '101 1.4 openat(AT_FDCWD</work/proj>, "a", O_WRONLY) = 3</work/proj/a>',
        config=TraceConfig(P, ignored_programs=("bwrap",)),
    )
    assert kinds(events) == [("exec", "/usr/bin/claude"), ("file_write", "/work/proj/a")]


def test_root_exit_code_pids_and_stable_ids() -> None:
    lines = [ROOT_EXEC, "100 1.1 clone(flags=SIGCHLD) = 101", "101 1.2 exit_group(0) = ?", "100 1.3 exit_group(7) = ?"]
    parser = TraceParser("s", CFG)
    parser.feed_many(lines)
    assert (parser.root_pid, parser.agent_pid, parser.root_exit_code) == (100, 100, 7)
    assert parser.live_pids() == set()
    text = [ROOT_EXEC, '100 1.2 unlink("a") = 0', '100 1.3 unlink("b") = 0']
    ids = [e.event_id for e in trace(*text)]
    assert ids == [e.event_id for e in trace(*text)]  # the same trace gives the same ids
    assert len(set(ids)) == 3


@given(st.lists(st.text(max_size=120), max_size=20))
def test_parser_never_raises(lines: list[str]) -> None:
    parser = TraceParser("s", CFG)
    for i, text in enumerate(lines):
        parser.feed(f"{100 + i % 3} {i}.5 {text}")
        parser.feed(text)
    parser.finish()


# ---- real strace output ----------------------------------------------------------------------


def _capture(tmp_path: Path, command: list[str], cwd: Path) -> list[str]:
    out = tmp_path / "trace.txt"
    subprocess.run(strace_argv(command, str(out)), cwd=cwd, check=True, timeout=60)
    return out.read_text().splitlines()


def test_real_bash_file_operations(strace: str, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "readme.txt").write_text("hello\n")
    (proj / "old.txt").write_text("old\n")
    (proj / "doomed.txt").write_text("x\n")
    script = (
        "cat readme.txt >/dev/null; echo new > created.txt; echo more >> old.txt; rm doomed.txt;"
        " mv created.txt 'renamed file.txt'; mkdir d; ln -s readme.txt d/link; cd d && echo in > inner.txt"
    )
    before = PreexistingFiles((str(proj),), frozenset(os.listdir(proj)))
    lines = _capture(tmp_path, ["bash", "-c", script], proj)
    events = in_time_order(parse_trace(lines, "s", TraceConfig(str(proj)), existed_before=before))
    files = [(e.kind, e.payload["rel_path"]) for e in events if e.kind != "exec" and e.payload["in_project"]]
    assert files == [
        ("file_read", "readme.txt"),
        ("file_create", "created.txt"),
        ("file_write", "old.txt"),
        ("file_delete", "doomed.txt"),
        ("file_rename", "renamed file.txt"),
        ("file_create", "d"),
        ("file_create", "d/link"),
        ("file_create", "d/inner.txt"),
    ]
    execs = [e.payload["argv"][0] for e in events if e.kind == "exec"]
    assert execs == ["bash", "cat", "rm", "mv", "mkdir", "ln"]
    assert all(e.payload["cwd"] == str(proj) for e in events if e.kind == "exec")


def test_real_python_files_and_tcp_connect(strace: str, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "pkg").mkdir(parents=True)
    (proj / "pkg" / "data.txt").write_text("d")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = (
        "import os, socket\n"
        "os.chdir('pkg')\n"
        "for _ in range(5): open('data.txt').read()\n"
        "open('out.txt', 'w').write('x')\n"
        "os.rename('out.txt', '../moved.txt')\n"
        "os.unlink('../moved.txt')\n"
        f"socket.create_connection(('127.0.0.1', {port})).close()\n"
    )
    try:
        lines = _capture(tmp_path, [sys.executable, "-c", code], proj)
    finally:
        server.close()
    events = in_time_order(parse_trace(lines, "s", TraceConfig(str(proj))))
    in_proj = [
        (e.kind, e.payload.get("rel_path"), e.payload.get("count")) for e in events if e.payload.get("in_project")
    ]
    assert in_proj == [
        ("file_read", "pkg/data.txt", 5),
        ("file_write", "pkg/out.txt", 1),
        ("file_rename", "moved.txt", None),
        ("file_delete", "moved.txt", None),
    ]
    [conn] = [e for e in events if e.kind == "net_connect" and e.payload["port"] == port]
    assert (conn.payload["address"], conn.payload["protocol"]) == ("127.0.0.1", "tcp")


def test_preexisting_files_for_a_snapshot_root_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    oracle = PreexistingFiles.for_snapshot(str(link), {"a.txt"})
    assert oracle(f"{real}/a.txt") is True and oracle(f"{link}/a.txt") is True
    assert oracle(f"{real}/b.txt") is False
    assert oracle("/elsewhere/a.txt") is None


# ---- parents without pid translation (inside the sandbox's pid namespace) -----------------------

# bwrap's clone into a new pid namespace returns a pid of strace's namespace (5001); every clone
# inside it returns the child's pid there (2, 3, …), which never matches the pid on its lines.
SANDBOX_START = [
    '5000 1.00 execve("/usr/bin/bwrap", ["bwrap", "--unshare-pid", "--", "bash"], 0x7ffd /* 3 vars */) = 0',
    "5000 1.01 clone(child_stack=NULL, flags=CLONE_NEWNS|CLONE_NEWPID|SIGCHLD) = 5001",
    "5001 1.02 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 2",
    '5002 1.03 execve("/usr/bin/bash", ["bash", "-c", "x"], 0x7ffd /* 3 vars */) = 0',
]
SANDBOXED = TraceConfig(P, ignored_programs=("bwrap",))


def _parse(lines: list[str], lookup: dict[int, tuple[int, int]] | None = None) -> list[Event]:
    parser = TraceParser("s", SANDBOXED, proc_lookup=(lookup or {}).get if lookup is not None else None)
    return parser.feed_many(lines) + parser.finish()


def _execs(events: list[Event]) -> dict[str, dict[str, object]]:
    return {str(e.payload["argv"][-1]): e.payload for e in events if e.kind == "exec"}


def test_namespace_local_clone_returns_link_children_by_order() -> None:
    execs = _execs(
        _parse(
            [
                *SANDBOX_START,
                '5002 1.10 chdir("/work/proj/src") = 0',
                "5002 1.11 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f) = 3",
                '5002 1.12 chdir("/work/proj") = 0',  # after the clone: the child keeps src
                '5003 1.13 execve("/bin/ls", ["ls", "one"], 0x1 /* 1 vars */) = 0',
                "5002 1.20 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>",
                '5004 1.21 execve("/bin/ls", ["ls", "two"], 0x1 /* 1 vars */) = 0',
                "5002 1.22 <... clone resumed>, child_tidptr=0x7f) = 4",
                '5004 1.23 openat(AT_FDCWD</work/proj>, "made", O_WRONLY|O_CREAT, 0666) = 3</work/proj/made>',
            ]
        )
    )
    assert execs["x"]["ppid"] == 5001  # bwrap's clone is in strace's namespace: its value is exact
    assert (execs["one"]["ppid"], execs["one"]["cwd"]) == (5002, "/work/proj/src")
    assert (execs["two"]["ppid"], execs["two"]["cwd"]) == (5002, "/work/proj")
    parser = TraceParser("s", SANDBOXED)
    parser.feed_many([*SANDBOX_START, "5002 1.11 clone(child_stack=NULL, flags=SIGCHLD) = 3"])
    assert 3 not in parser.procs  # a namespace-local value never becomes a process of its own


def test_concurrent_parents_are_told_apart_by_the_kernel() -> None:
    # Two shells clone at the same time; their children print before either clone returns. Order
    # alone would guess; the kernel's answer (what /proc/PID/status says) is exact.
    lines = [
        *SANDBOX_START,
        "5002 1.10 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f) = 3",
        "5002 1.11 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x7f) = 4",
        '5003 1.12 chdir("/work/proj/a") = 0',
        '5004 1.13 chdir("/work/proj/b") = 0',
        "5003 1.14 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>",
        "5004 1.15 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>",
        '5006 1.16 execve("/bin/true", ["true", "b"], 0x1 /* 1 vars */) = 0',
        '5005 1.17 execve("/bin/true", ["true", "a"], 0x1 /* 1 vars */) = 0',
        "5003 1.18 <... clone resumed>, child_tidptr=0x7f) = 5",
        "5004 1.19 <... clone resumed>, child_tidptr=0x7f) = 6",
    ]
    kernel = {5003: (5003, 5002), 5004: (5004, 5002), 5005: (5005, 5003), 5006: (5006, 5004)}
    execs = _execs(_parse(lines, kernel))
    assert (execs["a"]["ppid"], execs["a"]["cwd"]) == (5003, "/work/proj/a")
    assert (execs["b"]["ppid"], execs["b"]["cwd"]) == (5004, "/work/proj/b")
    # Gone before the reader got to them: the most recent clone under way is taken. Right here,
    # wrong had "a" printed first (docs/tracer.md says when this guess is made).
    guessed = _execs(_parse(lines, {}))
    assert (guessed["a"]["ppid"], guessed["b"]["ppid"]) == (5003, 5004)
    swapped = _execs(_parse([*lines[:10], lines[11], lines[10], *lines[12:]], {}))
    assert swapped["a"]["ppid"] == 5004  # the documented limit of the guess


def test_a_thread_belongs_to_its_process_without_translation() -> None:
    lines = [
        *SANDBOX_START,
        "5002 1.10 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, exit_signal=0}, 88) = 3",
        '5003 1.11 chdir("/work/proj/t") = 0',
        '5002 1.12 unlinkat(AT_FDCWD, "z", 0) = 0',
        '5003 1.13 openat(AT_FDCWD</work/proj/t>, "w", O_WRONLY|O_CREAT, 0666) = 3</work/proj/t/w>',
    ]
    for lookup in ({5003: (5002, 5001)}, {}):
        files = [(e.kind, e.payload["path"], e.payload["pid"]) for e in _parse(lines, lookup) if e.kind != "exec"]
        assert files == [("file_delete", "/work/proj/t/z", 5002), ("file_write", "/work/proj/t/w", 5002)]
