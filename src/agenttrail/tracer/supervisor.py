"""Run a command under strace and turn its system calls into events while it runs.

strace writes to a FIFO in a private directory; a reader thread parses each line as it arrives
(`TraceParser`) and hands events to a callback at once, so events exist before the agent ends and
survive its crash. A pipe inherited by the agent would keep the stream open after strace exits and
would let the agent write into it; strace opens the FIFO itself, close-on-exec, so the agent never
holds it.

The agent's stdin, stdout and stderr are passed through untouched: interactive agents need the
terminal.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from agenttrail.events import Event
from agenttrail.tracer.strace_parser import ExistedBefore, TraceConfig, TraceParser

# Every syscall that creates a process, changes what a process runs or where it is, or touches a
# path or a peer. Reads and writes themselves (read/write) are not traced: that would stop the
# agent on every buffer, and an open already says which file was read or written.
TRACED_SYSCALLS: tuple[str, ...] = (
    "execve", "execveat",
    "open", "openat", "openat2", "creat",
    "rename", "renameat", "renameat2",
    "unlink", "unlinkat", "rmdir",
    "mkdir", "mkdirat", "link", "linkat", "symlink", "symlinkat",
    "connect",
    "chdir", "fchdir",
    "clone", "clone3", "fork", "vfork", "exit_group",
)  # fmt: skip

_POLL_S = 0.25  # how often a quiet stream checks the clock (collapsed events) and strace's liveness


def _die_with_parent() -> Callable[[], None] | None:
    """What strace's child side runs before exec: SIGKILL it when `agenttrail run` dies, even by
    SIGKILL. Otherwise the agent ran on, untraced, with a live session key; with strace gone, bubblewrap
    (`--die-with-parent`) and the sandbox's pid namespace go too. The libc is loaded here, before the
    fork, so the child only makes the one system call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # the process's own symbols: libc's prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return set_pdeathsig


_PR_SET_PDEATHSIG = 1


def strace_argv(command: Sequence[str], output: str, *, strace: str = "strace") -> list[str]:
    """The strace command line. Each option is chosen for the parser:

    -f            follow every process and thread the agent starts
    --seccomp-bpf stop the agent only on traced syscalls (untraced ones run at full speed)
    -qq           no attach/detach or exit-status chatter
    -ttt          wall-clock timestamps with microseconds (event times; the collapse window)
    -s 4096       long enough for argv elements and paths without truncation
    -yy           paths behind fds (dirfd of *at calls, `AT_FDCWD</cwd>`, the file an open returned)
                  and socket protocols (`TCP:[...]`), so relative paths resolve without guessing
    -e signal=none  no `--- SIGCHLD ---` lines
    no --pidns-translation  inside the sandbox's pid namespace clone returns the child's pid there,
                  not the one on its lines; the option would translate it, but strace 6.1 does so by
                  scanning all of /proc for every new process (~6 ms each: 1,000 spawns 5.6x slower).
                  The parser links children to the clone that made them without it (`_proc_status`).
    no -x/-xx     default C escaping keeps paths readable and small; strace_syntax decodes it exactly
    """
    return [
        strace, "-f", "-qq", "--seccomp-bpf", "-ttt", "-s", "4096", "-yy",
        "-e", "signal=none", "-e", "trace=" + ",".join(TRACED_SYSCALLS),
        "-o", output, "--", *command,
    ]  # fmt: skip


def strace_problem(strace: str = "strace") -> str | None:
    """None when strace can trace here; otherwise why not, in words a person can act on."""
    exe = shutil.which(strace)
    if exe is None:
        return f"{strace} is not installed (Debian/Ubuntu: apt-get install strace)"
    try:
        done = subprocess.run(
            [
                exe,
                "-f",
                "-qq",
                "--seccomp-bpf",
                "-e",
                "trace=exit_group",
                "-o",
                os.devnull,
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"strace could not run: {e}"
    if done.returncode != 0:
        err = done.stderr.strip()
        if "seccomp" in err or "unrecognized option" in err:
            return f"this strace is too old (need strace >= 5.3 for --seccomp-bpf): {err}"
        if "ptrace" in err or "Operation not permitted" in err:
            return f"ptrace is not allowed here (container seccomp profile or kernel.yama.ptrace_scope): {err}"
        return f"strace failed: {err or done.returncode}"
    return None


def _proc_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _proc_status(pid: int) -> tuple[int, int] | None:
    """(tgid, ppid) of a live (or zombie) process, read where the kernel keeps them; None once gone.

    This is how a child inside the sandbox's pid namespace finds its parent: one small read per new
    process, where --pidns-translation made strace scan every process on the machine. PPid is the
    real parent (ptrace does not change it); the parser trusts it only when that parent has a clone
    whose child has not shown up yet, so a reused pid or a reparented orphan cannot mislead it.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            data = f.read(2048)  # Tgid and PPid are in the first lines
    except OSError:
        return None
    tgid = ppid = None
    for line in data.split(b"\n"):
        if line.startswith(b"Tgid:"):
            tgid = int(line[5:])
        elif line.startswith(b"PPid:"):
            ppid = int(line[5:])
            break
    return (tgid, ppid) if tgid is not None and ppid is not None else None


def _exit_code(returncode: int) -> int:
    """A shell's convention: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class TraceResult:
    exit_code: int
    events: list[Event] = field(default_factory=list)
    lines: int = 0


class Supervisor:
    """One traced command. `start()`, then `wait()`; events go to `on_event` as they are parsed.

    `on_event` runs on the reader thread: keep it quick (append to a queue or an outbox), because
    while it runs strace, and so the agent, may block on a full FIFO. Without `on_event` events are
    collected in `self.events`.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        session_id: str,
        config: TraceConfig,
        on_event: Callable[[Event], None] | None = None,
        existed_before: ExistedBefore | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        strace: str = "strace",
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> None:
        if not command:
            raise ValueError("nothing to run")
        self.command = list(command)
        self.cwd = cwd or config.initial_cwd or config.project_dir
        self.env = dict(env) if env is not None else None
        self.strace = strace
        self._stdio = (stdin, stdout, stderr)
        self.events: list[Event] = []
        self._on_event = on_event or self.events.append
        self._tmpdir = tempfile.mkdtemp(prefix="agenttrail-strace-")
        self.fifo = os.path.join(self._tmpdir, "trace")
        real = os.path.realpath(config.project_dir)
        aliases = config.project_aliases + ((real,) if real != os.path.normpath(config.project_dir) else ())
        self.config = dataclasses.replace(
            config,
            initial_cwd=os.path.abspath(self.cwd),
            project_aliases=aliases,
            tracer_paths=(*config.tracer_paths, self._tmpdir),
        )
        self.parser = TraceParser(
            session_id, self.config, existed_before=existed_before, cwd_lookup=_proc_cwd, proc_lookup=_proc_status
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._callback_error: BaseException | None = None

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        os.mkfifo(self.fifo, 0o600)
        # Opened before strace starts and non-blocking, so neither side waits for the other; a read
        # end with no writer yet simply has no data (no EOF until a writer has come and gone).
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            stdin, stdout, stderr = self._stdio
            self._proc = subprocess.Popen(
                strace_argv(self.command, self.fifo, strace=self.strace),
                cwd=self.cwd,
                env=self.env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                preexec_fn=_die_with_parent(),
            )
        except BaseException:
            os.close(fd)
            self._cleanup()
            raise
        self._reader = threading.Thread(target=self._read, args=(fd,), name="agenttrail-strace", daemon=True)
        self._reader.start()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for strace (so the whole traced tree) to end and the stream to be parsed; the exit code."""
        if self._proc is None or self._reader is None:
            raise RuntimeError("start() first")
        returncode = self._proc.wait(timeout)
        self._reader.join(timeout)
        if self._reader.is_alive():
            raise subprocess.TimeoutExpired(self.command, timeout or 0)
        self._cleanup()
        if self._callback_error is not None:
            raise RuntimeError("on_event failed; events after it were still parsed") from self._callback_error
        return _exit_code(returncode)

    def run(self) -> TraceResult:
        self.start()
        code = self.wait()
        return TraceResult(code, self.events, self.parser.lines)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        """Deliver a signal to the agent (not to strace, which blocks fatal signals while it traces)."""
        target = self.parser.agent_pid or self.parser.root_pid
        if target is not None:
            try:
                os.kill(target, sig)
                return
            except ProcessLookupError:
                pass
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def kill_tree(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process still traced (an agent's leftover background jobs at session end)."""
        for pid in self.parser.live_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    @property
    def pid(self) -> int | None:
        """strace's pid (the agent's is `parser.agent_pid` once its exec was seen)."""
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The strace process; its `stdin`/`stdout` are pipes when asked for with subprocess.PIPE."""
        return self._proc

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.kill_tree()
        if self._proc is not None:
            self.wait()

    # ---- reader thread ----------------------------------------------------------------------
    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception as e:  # keep draining: a stalled reader would freeze the agent
                if self._callback_error is None:
                    self._callback_error = e

    def _read(self, fd: int) -> None:
        parser = self.parser
        buf = b""
        writer_seen = False
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], _POLL_S)
                if ready:
                    chunk = os.read(fd, 1 << 16)
                    if chunk:
                        writer_seen = True
                        lines = (buf + chunk).split(b"\n")
                        buf = lines.pop()
                        for line in lines:
                            self._deliver(parser.feed(line.decode("utf-8", "surrogateescape")))
                        continue
                    if writer_seen:
                        break  # every writer closed: strace is done
                self._deliver(parser.tick(time.time()))
                proc = self._proc
                if not writer_seen and proc is not None and proc.poll() is not None:
                    break  # strace ended without ever opening its output (bad command line)
            if buf:
                self._deliver(parser.feed(buf.decode("utf-8", "surrogateescape")))
            self._deliver(parser.finish())
        finally:
            os.close(fd)

    def _cleanup(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def run_traced(
    command: Sequence[str],
    *,
    session_id: str,
    config: TraceConfig,
    **kwargs: Any,
) -> TraceResult:
    """Run `command` traced to the end and return its exit code and events (tests, scripts)."""
    return Supervisor(command, session_id=session_id, config=config, **kwargs).run()
