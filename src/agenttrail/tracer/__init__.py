"""The session tracer's building blocks; `agenttrail run` (session orchestration) composes them.

One module per concept, each usable and tested alone:

- `supervisor`   run a command under strace, parse its output while it streams (`Supervisor`)
- `strace_parser` strace lines → `exec`/`file_*`/`net_connect` events (`TraceParser`, `TraceConfig`);
                 `strace_calls` gives each syscall its meaning, `strace_syntax` splits the text
- `snapshot`     the workspace before/after and its `FileChange`s with diffs (`WorkspaceSnapshot`)
- `packages`     package installs recognised from an exec's argv (`recognise_installs`)
- `sandbox`      the bubblewrap command line, its probe, credential scrubbing (`build_argv`, `scrub_env`)
- `agents`       which agent, its version, transcript and config locations (`detect_agent`)
- `agent_env`    the environment pointing every agent at the gateway (`gateway_env`)
- `git_identity` repo, branch, HEAD, engineer email, commits made (`repo_identity`, `commits_between`)
- `commit_hook`  the `Agent-Session` trailer hooks, installed through GIT_CONFIG_* only

A session, in order (see docs/tracer.md):

    ident = repo_identity(project); agent = detect_agent(argv, env=env, cwd=project)
    snap = WorkspaceSnapshot.take(project)
    hooks = install_hooks(private / "hooks", session_id)
    env = gateway_env(...).apply(scrub_env(os.environ, allow)) | hook_env(hooks, os.environ)
    command = build_argv(SandboxConfig(project, agent_dirs=config_paths(...)[0], ...), argv)  # unless --no-sandbox
    sup = Supervisor(command, session_id=..., config=TraceConfig(project, ignored_programs=("bwrap",)),
                     existed_before=PreexistingFiles.for_snapshot(project, snap.paths()), on_event=outbox.put, env=env)
    for each exec event: package_events(event)
    code = sup.wait(); snap.changes(); commit_events(session_id, commits_between(project, head0, head1))

Importing this package does no work: only definitions.
"""

from __future__ import annotations

from agenttrail.tracer.agent_env import GatewayEnv, codex_config, gateway_env
from agenttrail.tracer.agents import AgentInfo, AgentProfile, config_paths, detect_agent, transcript_location
from agenttrail.tracer.commit_hook import hook_env, install_hooks
from agenttrail.tracer.git_identity import (
    CommitInfo,
    RepoIdentity,
    commit_events,
    commits_between,
    engineer_email,
    normalize_remote_url,
    repo_identity,
)
from agenttrail.tracer.packages import package_events, recognise_installs
from agenttrail.tracer.sandbox import SandboxConfig, SandboxProbe, build_argv, probe, scrub_env
from agenttrail.tracer.snapshot import FileChange, SnapshotConfig, WorkspaceSnapshot
from agenttrail.tracer.strace_parser import PreexistingFiles, TraceConfig, TraceParser, parse_trace
from agenttrail.tracer.supervisor import Supervisor, TraceResult, run_traced, strace_argv, strace_problem

__all__ = [
    "AgentInfo",
    "AgentProfile",
    "CommitInfo",
    "FileChange",
    "GatewayEnv",
    "PreexistingFiles",
    "RepoIdentity",
    "SandboxConfig",
    "SandboxProbe",
    "SnapshotConfig",
    "Supervisor",
    "TraceConfig",
    "TraceParser",
    "TraceResult",
    "WorkspaceSnapshot",
    "build_argv",
    "codex_config",
    "commit_events",
    "commits_between",
    "config_paths",
    "detect_agent",
    "engineer_email",
    "gateway_env",
    "hook_env",
    "install_hooks",
    "normalize_remote_url",
    "package_events",
    "parse_trace",
    "probe",
    "recognise_installs",
    "repo_identity",
    "run_traced",
    "scrub_env",
    "strace_argv",
    "strace_problem",
    "transcript_location",
]
