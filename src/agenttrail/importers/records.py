"""Neutral records the importers produce. Storing them is the store's business, not the importers'.

Three record types come out of every importer (Claude Code transcripts, Codex rollouts, OTLP):

- `TranscriptSession`: what the agent says about one of its sessions (cwd, repo, branch, span, models).
  A session record is a *partial view*: an incremental import sees only the new lines, so the store
  merges records of one `(agent, agent_session_id)` (see `TranscriptSession.merge`).
- `TranscriptCall`: one model API response, its usage counted once. `call_id` is derived from the
  provider's request id when there is one, so the same call read from a transcript and from OTLP gets
  the same id; the gateway joins on `request_id`. A call record read again later may carry a larger
  usage (the transcript was still being written): the store keeps the element-wise maximum
  (`TranscriptCall.merge`).
- `agenttrail.events.Event`: the dialogue (prompt, response, tool_call, tool_result). `Event.session_id`
  holds the *agent's own* session id; the join (issue 6, part 3) maps it to the traced session.

An `ImportBatch` carries all three, the lines that could not be read (`errors`), and the new per-file
read positions (`file_states`) which the caller commits to its state store only after it has stored
the batch, so a crash between the two re-reads rather than loses lines.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, NamedTuple

from agenttrail.events import Event
from agenttrail.importers.incremental import FileState, StateStore
from agenttrail.usage import Usage

AgentName = Literal["claude-code", "codex"]
ProviderName = Literal["anthropic", "openai"]

CLAUDE_CODE: AgentName = "claude-code"
CODEX: AgentName = "codex"


class LineError(NamedTuple):
    """A line (or OTLP record) that could not be read. `line_no` is 1-based; 0 means the whole file."""

    path: str
    line_no: int
    reason: str


@dataclass(slots=True)
class TranscriptCall:
    """One model API response as the agent recorded it, usage counted once."""

    call_id: str
    session_id: str  # the agent's own session id (Claude `sessionId`, Codex session_meta `id`)
    agent: AgentName
    provider: ProviderName
    model: str | None
    ts: datetime
    usage: Usage
    request_id: str | None = None  # provider request id: Claude `requestId`, Codex Responses `response_id`
    message_id: str | None = None  # Anthropic `message.id`
    cwd: str | None = None
    git_branch: str | None = None
    subagent_id: str | None = None  # Claude Code subagent (`agentId`) when the call was a sidechain's
    source: Literal["transcript", "otlp"] = "transcript"
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    agent_cost_usd: float | None = None  # the agent's own figure (Claude Code OTLP `cost_usd`)
    duration_ms: int | None = None
    agenttrail_session_id: str | None = None  # from OTLP resource attribute `agenttrail.session_id`

    def merge_usage(self, o: Usage, ts: datetime) -> None:
        """The usage and time half of `merge`: each token count keeps its maximum, the earliest time wins."""
        u = self.usage
        # Compared, not max(): a merge runs for every streamed response's final line (hot path).
        self.usage = Usage(
            u.input_tokens if u.input_tokens >= o.input_tokens else o.input_tokens,
            u.cache_read_tokens if u.cache_read_tokens >= o.cache_read_tokens else o.cache_read_tokens,
            u.cache_write_5m_tokens if u.cache_write_5m_tokens >= o.cache_write_5m_tokens else o.cache_write_5m_tokens,
            u.cache_write_1h_tokens if u.cache_write_1h_tokens >= o.cache_write_1h_tokens else o.cache_write_1h_tokens,
            u.output_tokens if u.output_tokens >= o.output_tokens else o.output_tokens,
            u.reasoning_tokens if u.reasoning_tokens >= o.reasoning_tokens else o.reasoning_tokens,
        )
        if ts < self.ts:
            self.ts = ts

    def merge(self, other: TranscriptCall) -> None:
        """Fold in a later reading of the same call: token counts only grow while a response streams,
        so each field keeps its maximum; the earliest timestamp wins; missing details are filled."""
        self.merge_usage(other.usage, other.ts)
        for name in (
            "model",
            "request_id",
            "message_id",
            "cwd",
            "git_branch",
            "subagent_id",
            "agent_cost_usd",
            "duration_ms",
            "agenttrail_session_id",
        ):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))


@dataclass(slots=True)
class TranscriptSession:
    """What one agent session's transcript (or telemetry) says about it. A partial view: merge them."""

    agent: AgentName
    agent_session_id: str
    cwd: str | None = None
    repo_url: str | None = None
    branch: str | None = None
    git_commit: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    models: list[str] = field(default_factory=list)
    source_path: str | None = None  # the main transcript file (not a subagent's)
    agent_version: str | None = None
    title: str | None = None  # Claude Code `summary` line, when there is one
    # The agent's own cost figure, per process run (Claude Code `cost-state` lines are cumulative per run,
    # keyed by the run's start time). Merge by dict update; the session's figure is the sum.
    agent_cost_by_run: dict[str, float] = field(default_factory=dict)
    agenttrail_session_id: str | None = None

    @property
    def agent_reported_cost_usd(self) -> float | None:
        return sum(self.agent_cost_by_run.values()) if self.agent_cost_by_run else None

    def see(self, ts: datetime | None) -> None:
        if ts is None:
            return
        if self.started_at is None or ts < self.started_at:
            self.started_at = ts
        if self.ended_at is None or ts > self.ended_at:
            self.ended_at = ts

    def add_model(self, model: str | None) -> None:
        if model and model not in self.models:
            self.models.append(model)

    def merge(self, other: TranscriptSession) -> None:
        """Fold in another partial view of the same session: span widens, models union, the later
        view's git details and title win when it has them, per-run costs update."""
        self.see(other.started_at)
        self.see(other.ended_at)
        for m in other.models:
            self.add_model(m)
        for name in ("cwd", "source_path", "agent_version"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        for name in ("repo_url", "branch", "git_commit", "title", "agenttrail_session_id"):
            if getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))
        self.agent_cost_by_run.update(other.agent_cost_by_run)


# Rows for `ImportBatch.pack`: a call's fields without its usage, then the usage's.
_CALL_NAMES = [f.name for f in fields(TranscriptCall)]
_USAGE_AT = _CALL_NAMES.index("usage")
_CALL_ROW = operator.attrgetter(*(n for n in _CALL_NAMES if n != "usage"))
_USAGE_ROW = operator.attrgetter(*(f.name for f in fields(Usage)))
_USAGE_SIZE = len(fields(Usage))
_CALL_ID = operator.attrgetter("call_id")
_SESSION_ROW = operator.attrgetter(*(f.name for f in fields(TranscriptSession)))
_EVENT_ROW = operator.attrgetter(*(f.name for f in fields(Event)))


def _call_from_row(row: tuple[Any, ...]) -> TranscriptCall:
    values: list[Any] = [*row[:_USAGE_AT], Usage(*row[-_USAGE_SIZE:]), *row[_USAGE_AT:-_USAGE_SIZE]]
    return TranscriptCall(*values)


@dataclass(slots=True)
class ImportBatch:
    sessions: list[TranscriptSession] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    calls: list[TranscriptCall] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    # Cross-checks that did not agree (e.g. Codex last_token_usage vs total_token_usage deltas). Not errors:
    # the import used the documented rule; these say where the agent's own figures are inconsistent.
    warnings: list[LineError] = field(default_factory=list)
    file_states: list[FileState] = field(default_factory=list)
    files_read: int = 0
    files_skipped: int = 0  # unchanged since the last import
    bytes_read: int = 0
    lines_read: int = 0

    # Indexes for merging in `extend`, kept across calls so folding many files stays linear. Rebuilt when
    # the lists were changed directly (their lengths no longer match).
    _session_index: dict[tuple[str, str], TranscriptSession] = field(default_factory=dict, repr=False, compare=False)
    _call_index: dict[str, TranscriptCall] = field(default_factory=dict, repr=False, compare=False)

    def extend(self, other: ImportBatch) -> None:
        """Append another batch; sessions and calls with the same identity are merged, not repeated."""
        sessions = self._session_index
        if len(sessions) != len(self.sessions):
            sessions.clear()
            sessions.update(((s.agent, s.agent_session_id), s) for s in self.sessions)
        for s in other.sessions:
            have = sessions.get((s.agent, s.agent_session_id))
            if have is None:
                sessions[(s.agent, s.agent_session_id)] = s
                self.sessions.append(s)
            else:
                have.merge(s)
        more: list[TranscriptCall] = other.calls
        if not self.calls:
            # Into a batch without calls (a file's calls into its own batch): no loop in Python.
            index = dict(zip(map(_CALL_ID, more), more, strict=True))
            if len(index) == len(more):  # no call twice
                self.calls, self._call_index, more = list(more), index, []
        calls = self._call_index
        if len(calls) != len(self.calls):
            calls.clear()
            calls.update((c.call_id, c) for c in self.calls)
        if more:
            # Calls not seen before, none twice (a file's calls into a running batch): no loop in Python.
            ids = list(map(_CALL_ID, more))
            if calls.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
                calls.update(zip(ids, more, strict=True))
                self.calls.extend(more)
                more = []
        for c in more:
            have_c = calls.get(c.call_id)
            if have_c is None:
                calls[c.call_id] = c
                self.calls.append(c)
            else:
                have_c.merge(c)
        self.events.extend(other.events)
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)
        self.file_states.extend(other.file_states)
        self.files_read += other.files_read
        self.files_skipped += other.files_skipped
        self.bytes_read += other.bytes_read
        self.lines_read += other.lines_read

    def add_file(
        self, sessions: list[TranscriptSession], events: list[Event], calls: dict[str, TranscriptCall]
    ) -> None:
        """`extend` with one file's records as a parser holds them (`calls` keyed by call id), without making
        a batch of them first: into a batch that holds no session nor call yet (a file's own batch, the
        usual case) the lists are taken as they are, with no merge to do (~5 µs a file of 5,629)."""
        if self.sessions or self.calls or len(sessions) > 1:
            self.extend(ImportBatch(sessions=sessions, events=events, calls=list(calls.values())))
            return
        self.sessions = sessions
        self.calls = list(calls.values())
        self._call_index = dict(calls)
        if events:
            self.events.extend(events)

    def pack(self) -> tuple[Any, ...]:
        """The batch as rows of plain values, to send between processes: pickling the records themselves
        (slotted dataclasses, a state dict each) costs as much as parsing them. `unpack` inverts it."""
        return (
            [_SESSION_ROW(x) for x in self.sessions],
            [_EVENT_ROW(e) for e in self.events],
            [_CALL_ROW(c) + _USAGE_ROW(c.usage) for c in self.calls],
            [tuple(e) for e in self.errors],
            [tuple(w) for w in self.warnings],
            self.file_states,
            (self.files_read, self.files_skipped, self.bytes_read, self.lines_read),
        )

    @classmethod
    def unpack(cls, packed: tuple[Any, ...]) -> ImportBatch:
        sessions, events, calls, errors, warnings, file_states, counts = packed
        batch = cls(
            sessions=[TranscriptSession(*row) for row in sessions],
            events=[Event(*row) for row in events],
            calls=[_call_from_row(row) for row in calls],
            errors=[LineError(*e) for e in errors],
            warnings=[LineError(*w) for w in warnings],
            file_states=file_states,
        )
        batch.files_read, batch.files_skipped, batch.bytes_read, batch.lines_read = counts
        return batch

    def total_usage(self) -> Usage:
        total = Usage()
        for c in self.calls:
            total = total + c.usage
        return total

    def commit(self, store: StateStore) -> None:
        """Record the new read positions. Call this only after the batch has been stored."""
        for st in self.file_states:
            store.put(st)
