"""`agenttrail run`: one traced session, from the identity of the work to the last event delivered.

The order (see the package docstring for each part):

1. check that the command exists, that strace can trace and (unless `--no-sandbox`) that bubblewrap
   can make a sandbox here: nothing has been recorded yet, so a refusal leaves no half session;
2. identity: repo (normalised remote, branch, HEAD), agent (name, version), engineer (the server's
   word for the key, else `git config user.email`);
3. with a server, ask it for a session-scoped key (the agent never sees the engineer's key);
4. snapshot the workspace, install the trailer hooks, build the agent's environment (scrubbed of
   credentials, pointed at the gateway) and the sandbox command line;
5. write `session_start` durably, then run the agent under the supervisor; every event goes to the
   sink (outbox + background uploader with a server, the local store without one) as it streams;
6. whatever happened (exit, crash, signal, our own error): revoke the session key, diff the
   workspace, record the commits, write `session_end`, and flush.

The agent's exit code is the session's; SIGINT/SIGTERM/SIGHUP sent to `agenttrail run` reach the agent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from agenttrail import events as ev
from agenttrail.events import Event, new_id, stable_id, utcnow
from agenttrail.outbox import Outbox, Uploader
from agenttrail.store.database import open_engine
from agenttrail.store.engine import StoreError
from agenttrail.store.ingest import Attribution
from agenttrail.tracer.agents import AgentInfo, agent_session_id, detect_agent
from agenttrail.tracer.argv_redact import redact_argv
from agenttrail.tracer.commit_hook import install_hooks
from agenttrail.tracer.environment import (
    agent_environment,
    from_terminal,
    hidden_paths,
    keep_private_dir,
    prune_hooks,
    resolve_command,
    sandbox_argv,
    sqlite_file,
)
from agenttrail.tracer.finalise import session_commit_events, session_status, snapshot_events, transcript_path
from agenttrail.tracer.git_identity import RepoIdentity, commits_between, engineer_email, repo_identity
from agenttrail.tracer.live import AgentSessionWatch, OwnHooks
from agenttrail.tracer.packages import package_events
from agenttrail.tracer.remote import (
    NoSessionsApi,
    RemoteError,
    RemoteSession,
    RemoteUnavailable,
    SessionsClient,
    config_path,
)
from agenttrail.tracer.sandbox import probe, removed_env_names
from agenttrail.tracer.sinks import OutboxSink, SinkReport, StoreSink, short_reason
from agenttrail.tracer.snapshot import SnapshotConfig, WorkspaceSnapshot
from agenttrail.tracer.strace_parser import PreexistingFiles, TraceConfig
from agenttrail.tracer.supervisor import Supervisor, strace_problem

EXIT_TRACER_FAILED = 125  # as `env`/`timeout`: agenttrail itself could not run the command
EXIT_NOT_FOUND = 127
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.25


class SessionError(Exception):
    """The session could not start; the message says why and what to do. Nothing was recorded."""

    def __init__(self, message: str, exit_code: int = EXIT_TRACER_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class RunOptions:
    command: tuple[str, ...]
    cwd: str
    home: Path  # AGENTTRAIL_HOME: outbox, login defaults, per-session private folders
    env: Mapping[str, str]
    sandbox: bool = True
    allow_write: tuple[str, ...] = ()
    allow_env: tuple[str, ...] = ()  # credential variables the agent may keep, by name
    server: str | None = None
    key: str | None = None  # the engineer's key: for the server only, never given to the agent
    project: str | None = None
    database_url: str | None = None  # the local store, when there is no server
    session_id: str | None = None
    quiet: bool = False
    forward_signals: bool = True
    upload_interval_s: float = 1.0
    upload_deadline_s: float = 5.0  # at the end, how long to keep trying to deliver before leaving it to sync
    leftover_grace_s: float = 2.0  # the agent has exited; its background jobs get this long before SIGTERM
    leftover_kill_s: float = 3.0  # …and this long after SIGTERM before SIGKILL


@dataclass
class SessionSummary:
    session_id: str
    exit_code: int
    status: str
    sandboxed: bool
    server: str | None
    counts: dict[str, int] = field(default_factory=dict)
    files_changed: int = 0
    commits: int = 0
    agent: str | None = None
    agent_session_id: str | None = None
    report: SinkReport | None = None
    notes: list[str] = field(default_factory=list)


class TracedSession:
    """One `agenttrail run`. `run()` does everything and returns the summary; or `prepare()`,
    `start()`, `wait()`, `finalise()` one at a time (tests)."""

    def __init__(
        self,
        opts: RunOptions,
        *,
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not opts.command:
            raise SessionError("nothing to run: give the agent's command after --", 2)
        self.opts = opts
        self.session_id = opts.session_id or new_id()
        self._stdio = (stdin, stdout, stderr)
        self._log = log or (lambda msg: None if opts.quiet else print(f"agenttrail: {msg}", file=sys.stderr))
        self.env = dict(opts.env)
        self.cwd = os.path.abspath(opts.cwd)
        self.user_home = self.env.get("HOME") or os.path.expanduser("~")
        self.counts: Counter[str] = Counter()
        self.notes: list[str] = []
        self.signals: list[tuple[int, float]] = []
        self.ident: RepoIdentity | None = None
        self.project_dir = self.cwd
        self.agent: AgentInfo | None = None
        self.engineer: str | None = None
        self.remote: RemoteSession | None = None
        self.client: SessionsClient | None = None
        self.snap: WorkspaceSnapshot | None = None
        self.private_dir = Path(opts.home) / "sessions" / self.session_id
        self.sink: OutboxSink | StoreSink | None = None
        self.sup: Supervisor | None = None
        self.watch: AgentSessionWatch | None = None
        self.agent_env: dict[str, str] = {}
        self.argv: list[str] = []
        self.start_payload: dict[str, Any] = {}
        self._prev_handlers: dict[int, Any] = {}
        self._said_finishing = False
        self._start_written = False
        self.own_hooks: OwnHooks | None = None

    # ---- before the agent ---------------------------------------------------------------------
    def prepare(self) -> None:
        opts = self.opts
        if resolve_command(opts.command[0], self.env, self.cwd) is None:
            raise SessionError(f"{opts.command[0]}: command not found", EXIT_NOT_FOUND)
        problem = strace_problem()
        if problem:
            raise SessionError(f"cannot trace the session: {problem}")
        if opts.sandbox:
            result = probe()
            if not result.ok:
                raise SessionError(result.reason or "bubblewrap cannot make a sandbox here")
        for path in opts.allow_write:
            if not os.path.exists(path):
                raise SessionError(f"--allow-write {path}: no such file or directory (create it first)")
        if opts.server and not opts.key:
            raise SessionError(f"a key for {opts.server} is needed: pass --key, or run `agenttrail login`")

        self.ident = repo_identity(self.cwd)
        self.project_dir = self.ident.root if self.ident else self.cwd
        if os.path.realpath(self.project_dir) in ("/", os.path.realpath(self.user_home)):
            raise SessionError(
                f"{self.project_dir} would be the project (writable, snapshotted): run agenttrail from the "
                "project's own directory"
            )
        self.agent = detect_agent(opts.command, env=self.env, cwd=self.cwd)
        if opts.server and opts.key:
            self._start_remote()
        try:
            self.engineer = (self.remote.engineer if self.remote else None) or engineer_email(self.cwd)
            # agenttrail's own files (the session's hooks, a local store) are not the agent's work.
            self.snap = WorkspaceSnapshot.take(self.project_dir, SnapshotConfig(skip_paths=(str(self.opts.home),)))
            self._build_environment()
            self._open_sink()
        except BaseException:
            self._abort()
            raise

    def _start_remote(self) -> None:
        assert self.opts.server and self.opts.key and self.agent is not None
        self.client = SessionsClient(self.opts.server, self.opts.key)
        info = {
            "repo": self.ident.repo if self.ident else None,
            "agent": self.agent.name,
            "host": socket.gethostname(),
        }
        try:
            self.remote = self.client.start(self.session_id, project=self.opts.project, info=info)
        except NoSessionsApi as e:
            self._note(f"{e}; the agent gets no gateway key (events are still uploaded)")
        except RemoteUnavailable as e:
            self._note(
                f"{e}. The session is recorded and uploaded when the server is back (`agenttrail sync`); "
                "the agent's model calls through the gateway will fail meanwhile"
            )
        except RemoteError as e:
            raise SessionError(str(e)) from None
        if self.remote is not None:
            self.session_id = self.remote.session_id  # the server may not take ours (it never has so far)
            self.private_dir = Path(self.opts.home) / "sessions" / self.session_id

    def _build_environment(self) -> None:
        opts = self.opts
        assert self.agent is not None
        self.private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        hooks = install_hooks(self.private_dir / "hooks", self.session_id)
        prune_hooks(hooks, self.ident.root if self.ident else None)
        self.own_hooks = OwnHooks(str(hooks))
        self.agent_env = agent_environment(
            self.env,
            session_id=self.session_id,
            hooks_dir=hooks,
            private_dir=self.private_dir,
            home=self.user_home,
            server=opts.server,
            session_key=self.remote.key if self.remote else None,
            sandbox=opts.sandbox,
            allow_env=opts.allow_env,
        )
        if not opts.sandbox:
            self.argv = list(opts.command)
            return
        db = sqlite_file(opts.database_url) if not opts.server else None
        self.argv = sandbox_argv(
            opts.command,
            agent=self.agent.name,
            agent_env=self.agent_env,
            project_dir=self.project_dir,
            cwd=self.cwd,
            home=self.user_home,
            private_dir=str(self.private_dir),
            allow_write=opts.allow_write,
            hidden=hidden_paths(opts.home, db, self.project_dir),
            in_repo=self.ident is not None,
        )

    def _open_sink(self) -> None:
        opts = self.opts
        if opts.server and opts.key:
            outbox = Outbox(Path(opts.home) / "outbox.db")
            uploader = Uploader(outbox, opts.server, opts.key)
            self.sink = OutboxSink(outbox, uploader, upload_interval_s=opts.upload_interval_s)
        else:
            if not opts.database_url:
                raise SessionError("no server and no local store: give --server, or --db")
            try:
                engine = open_engine(opts.database_url)
            except StoreError as e:
                raise SessionError(str(e)) from None
            self.sink = StoreSink(engine, Attribution(engineer=self.engineer))

    def _start_event(self) -> Event:
        assert self.agent is not None
        ident = self.ident
        payload: dict[str, Any] = {
            "engineer": self.engineer,
            "repo": ident.repo if ident else None,
            "repo_path": self.project_dir,
            "remote_url": ident.remote_url if ident else None,
            "branch": ident.branch if ident else None,
            "head_before": ident.head if ident else None,
            "agent": self.agent.name,
            "agent_known": self.agent.known,
            "agent_version": self.agent.version,
            "agent_executable": self.agent.executable,
            "agent_session_id": agent_session_id(self.agent.name, self.env),
            "command": redact_argv(self.opts.command, lenient=True),
            "cwd": self.cwd,
            "host": socket.gethostname(),
            "source": "traced",
            "sandboxed": self.opts.sandbox,
            "allow_write": list(self.opts.allow_write),
            "server": self.opts.server,
            "gateway_key": bool(self.remote),
            "team": self.remote.team if self.remote else None,
            "project": (self.remote.project if self.remote else None) or self.opts.project,
            "env_removed": removed_env_names(self.env, self.opts.allow_env),  # names only, never values
        }
        self.start_payload = payload
        return Event(
            self.session_id,
            ev.SESSION_START,
            utcnow(),
            {k: v for k, v in payload.items() if v is not None},
            stable_id(self.session_id, "session_start"),
        )

    # ---- the agent ----------------------------------------------------------------------------
    def start(self) -> None:
        assert self.sink is not None and self.snap is not None and self.agent is not None
        try:
            self.sink.write_now([self._start_event()])
            self._start_written = True
        except Exception as e:
            where = Path(self.opts.home) / "outbox.db" if isinstance(self.sink, OutboxSink) else self.opts.database_url
            raise SessionError(f"cannot record the session in {where}: {short_reason(e)}") from None
        self.watch = AgentSessionWatch(self.agent.name, self.agent_env, self.user_home, self.cwd)
        tracer_paths = [str(Path(self.opts.home) / "outbox.db"), str(config_path(self.opts.home))]
        db = sqlite_file(self.opts.database_url)
        if db:
            tracer_paths.append(db)
        config = TraceConfig(
            self.project_dir,
            initial_cwd=self.cwd,
            tracer_paths=tuple(tracer_paths),
            ignored_programs=("bwrap",) if self.opts.sandbox else (),
            launcher_programs=("env",) if self.opts.sandbox else (),
        )
        stdin, stdout, stderr = self._stdio
        self.sup = Supervisor(
            self.argv,
            session_id=self.session_id,
            config=config,
            on_event=self._on_event,
            existed_before=PreexistingFiles.for_snapshot(self.project_dir, self.snap.paths()),
            cwd=self.cwd,
            env=self.agent_env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        self._log(
            f"session {self.session_id} ({self.agent.name}; "
            f"{'sandboxed' if self.opts.sandbox else 'no sandbox'}; "
            f"{'server ' + self.opts.server if self.opts.server else 'local store'})"
        )
        self.sup.start()

    def _on_event(self, event: Event) -> None:
        # On the supervisor's reader thread: only cheap work here (the sink's add is an append). It
        # never raises: the supervisor would report that as the session's failure and lose the exit code.
        try:
            if self.own_hooks is not None and not self.own_hooks.keep(event):
                return
            batch = [event]
            if event.kind == ev.EXEC:
                if isinstance(event.payload.get("argv"), list):
                    event.payload["argv"] = redact_argv(event.payload["argv"], lenient=True)
                batch += package_events(event)
            if self.watch is not None:
                self.watch.see(event)
        except Exception as e:  # a recogniser tripped on odd input: keep the event itself
            self.counts["event_errors"] += 1
            if self.counts["event_errors"] == 1:
                self._log(f"could not interpret an event ({type(e).__name__}: {e}); it is kept as it is")
            batch = [event]
        for item in batch:
            self.counts[item.kind] += 1
        assert self.sink is not None
        self.sink.add(batch)

    def _root_gone(self) -> bool:
        assert self.sup is not None
        parser = self.sup.parser
        root = parser.root_pid
        return root is not None and root not in parser.procs

    def wait(self) -> int:
        """The agent's exit code, once it and the processes it left behind have ended.

        strace runs until every traced process has exited, so a background job the agent left
        (a dev server, `sleep 1000 &`) would keep the session open forever: once the agent itself
        has exited, such jobs get `leftover_grace_s`, then SIGTERM, then SIGKILL. (Inside the
        sandbox, the pid namespace ends them with the agent already.)
        """
        sup = self.sup
        assert sup is not None
        gone_at: float | None = None
        termed = killed = False
        while True:
            try:
                return sup.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            if gone_at is None:
                if self._root_gone():
                    gone_at = time.monotonic()
                continue
            waited = time.monotonic() - gone_at
            if not termed and waited >= self.opts.leftover_grace_s:
                self._note("the agent exited and left processes running; stopping them (SIGTERM)")
                sup.kill_tree(signal.SIGTERM)
                termed = True
            elif termed and not killed and waited >= self.opts.leftover_grace_s + self.opts.leftover_kill_s:
                sup.kill_tree(signal.SIGKILL)
                killed = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        self.signals.append((signum, now))
        sup = self.sup
        if sup is None or sup.process is None:
            raise KeyboardInterrupt  # the agent is not running yet: stop before it does
        if not (signum == signal.SIGINT and from_terminal()):
            sup.send_signal(signum)
        # Three signals within two seconds: the person wants out, whatever the agent thinks.
        if len([t for _, t in self.signals if now - t <= 2.0]) >= 3:
            sup.kill_tree(signal.SIGKILL)

    def _on_signal_while_finalising(self, signum: int, frame: FrameType | None) -> None:
        # The agent is gone; what is left is writing down what it did (seconds at most). A Ctrl-C now
        # (the impatient second one) must not throw away the session's end and its file changes.
        if not self._said_finishing:
            self._said_finishing = True
            self._log(f"{signal.Signals(signum).name} received: finishing the session's record first")

    def _install_signal_handlers(self, handler: Callable[[int, FrameType | None], None] | None = None) -> None:
        if not self.opts.forward_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in FORWARDED_SIGNALS:
            previous = signal.signal(sig, handler or self._on_signal)
            self._prev_handlers.setdefault(sig, previous)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._prev_handlers.items():
            signal.signal(sig, handler)
        self._prev_handlers.clear()

    # ---- after the agent ----------------------------------------------------------------------
    def finalise(self, exit_code: int | None, tracer_error: str | None = None) -> SessionSummary:
        """Record the end of the session, whatever ended it. Never raises for a recording problem:
        each one becomes a note, and what was recorded stays recorded."""
        assert self.sink is not None
        ended = utcnow()
        if self.client is not None and self.remote is not None:
            try:
                self.client.end(self.session_id)  # first: the key must not outlive the agent
            except RemoteError as e:
                self._note(f"could not end the session on the server ({e}); its key expires on its own")
        closing: list[Event] = []
        ident = self.ident
        after = repo_identity(ident.root) if ident else None
        head_after = after.head if after else None
        files_changed = 0
        if self.snap is not None:
            try:
                changes = self.snap.changes()
                files_changed = len(changes)
                closing += snapshot_events(self.session_id, changes, ended, self.project_dir)
            except Exception as e:
                self._note(f"could not diff the workspace: {type(e).__name__}: {e}")
        commits = []
        if ident and head_after:
            commits = commits_between(ident.root, ident.head, head_after)
            closing += session_commit_events(self.session_id, commits, ident.repo)
        agent_name = self.agent.name if self.agent else None
        agent_sid = self.start_payload.get("agent_session_id") or (self.watch.found if self.watch else None)
        received = [s for s, _ in self.signals]
        status = session_status(exit_code, received, tracer_error)
        end_payload: dict[str, Any] = {
            "exit_code": exit_code,
            "status": status,
            "head_after": head_after,
            "branch_after": after.branch if after else None,
            "agent_session_id": agent_sid,
            "transcript": transcript_path(agent_name or "", self.agent_env, self.user_home, self.cwd, agent_sid),
            "files_changed": files_changed,
            "commits": [c.sha for c in commits],
            "signals": [signal.Signals(s).name for s in received],
            "counts": dict(self.counts),
            "tracer_error": tracer_error,
            "notes": list(self.notes),
        }
        closing.append(
            Event(
                self.session_id,
                ev.SESSION_END,
                ended,
                {k: v for k, v in end_payload.items() if v is not None},
                stable_id(self.session_id, "session_end"),
            )
        )
        for event in closing:
            self.counts[event.kind] += 1
        self.sink.add(closing)
        deadline = self.opts.upload_deadline_s if (self.remote or not self.opts.server) else 1.0
        report = self.sink.close(deadline)
        if report.unwritten:
            self._note(f"{report.unwritten} events could not be written and are lost")
        if report.upload_error:
            self._note(f"upload stopped: {report.upload_error}")
        if report.left_to_upload:
            self._note(f"{report.left_to_upload} events wait in the outbox; `agenttrail sync` sends them")
        self._cleanup()
        code = exit_code if exit_code is not None else EXIT_TRACER_FAILED
        summary = SessionSummary(
            session_id=self.session_id,
            exit_code=code,
            status=status,
            sandboxed=self.opts.sandbox,
            server=self.opts.server,
            counts=dict(self.counts),
            files_changed=files_changed,
            commits=len(commits),
            agent=agent_name,
            agent_session_id=agent_sid,
            report=report,
            notes=list(self.notes),
        )
        self._log(
            f"session {self.session_id} ended: exit {code} ({status}); {self.counts[ev.EXEC]} commands, "
            f"{files_changed} files changed, {len(commits)} commits. "
            f"See it with `agenttrail session show {self.session_id}`"
            # Until then neither the server nor the local store has it: the command would say "no session".
            + (" once `agenttrail sync` has sent it" if report.left_to_upload else "")
        )
        return summary

    def _note(self, message: str) -> None:
        self.notes.append(message)
        self._log(message)

    def _abort(self) -> None:
        """The session did not start after all: give back the key, drop what was prepared."""
        if self.client is not None and self.remote is not None:
            with contextlib.suppress(RemoteError):
                self.client.end(self.session_id)
        if self.sink is not None:
            self.sink.drop()
            self.sink.close(0)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.snap is not None:
            self.snap.close()
            self.snap = None
        if self.client is not None:
            self.client.close()
        shutil.rmtree(self.private_dir / "hooks", ignore_errors=True)
        if not keep_private_dir(self.private_dir):
            shutil.rmtree(self.private_dir, ignore_errors=True)

    # ---- all of it ----------------------------------------------------------------------------
    def run(self) -> SessionSummary:
        self.prepare()
        exit_code: int | None = None
        error: str | None = None
        self._install_signal_handlers()
        try:
            self.start()
            exit_code = self.wait()
        except BaseException as e:  # our failure, or a KeyboardInterrupt before the agent ran
            if not self._start_written:  # nothing recorded: no session to finalise, the error is the answer
                self._restore_signal_handlers()
                self._abort()
                raise
            error = f"{type(e).__name__}: {e}"
            if self.sup is not None and self.sup.process is not None and self.sup.process.poll() is None:
                self.sup.kill_tree(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    exit_code = self.sup.wait(timeout=10)
        self._install_signal_handlers(self._on_signal_while_finalising)
        try:
            return self.finalise(exit_code, error)
        finally:
            self._restore_signal_handlers()
