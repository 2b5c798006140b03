"""Claude Code transcripts: `~/.claude/projects/<project>/<session>.jsonl` and their subagents.

Where: `$CLAUDE_CONFIG_DIR/projects` when CLAUDE_CONFIG_DIR is set (several directories may be given,
separated by commas), else `~/.claude/projects`. A project folder is the session's cwd with every
non-alphanumeric character turned into `-`. Subagent (Task/Agent tool) transcripts live in
`<project>/<session>/subagents/agent-<id>.jsonl`; their lines carry the *parent's* `sessionId`,
`isSidechain: true` and `agentId`, so they are attributed to the parent session.

Lines are JSON objects with a `type`:

- `user`: `message.content` is the prompt (a string or text blocks) or a list of `tool_result` blocks
  (`tool_use_id`, `content`, `is_error`). `isMeta: true` lines are injected reminders, not prompts.
- `assistant`: one line per content block (`text`, `thinking`, `tool_use` with `id`, `name`, `input`).
  The lines of one API response share `message.id` and `requestId`, and *each repeats the response's
  usage* (`input_tokens`, `cache_read_input_tokens`, `cache_creation_input_tokens` split by TTL in
  `cache_creation.ephemeral_5m/1h_input_tokens`, `output_tokens`). Usage is therefore counted once per
  `(message.id, requestId)`, keeping the largest value of each field (the final one: early lines of a
  streamed response may carry a partial `output_tokens`). The model is `message.model`; `<synthetic>`
  messages (errors Claude Code writes itself) are not calls.
- `summary` (a title for the conversation), `cost-state` (Claude Code's own cumulative cost for one
  process run), `system`, `attachment`, `queue-operation`, … : only what is listed here is used; the
  rest only widens the session's time span. Unknown types are skipped silently (new ones appear often).

Ids are stable: an event's id derives from (session id, line `uuid`, block index), a call's from the
provider request id (so the same call from OTLP `claude_code.api_request` gets the same id), falling back
to the message id.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agenttrail.events import PROMPT, RESPONSE, TOOL_CALL, TOOL_RESULT, Event, stable_id
from agenttrail.importers.common import (
    DEFAULT_CONTENT_CAP,
    as_str,
    block_text,
    cap_text,
    cap_value,
    files_under,
    parse_ts,
    resume_time,
)
from agenttrail.importers.incremental import StateStore
from agenttrail.importers.jsonl import NativeRule, ShapeError, read_files
from agenttrail.importers.records import CLAUDE_CODE, ImportBatch, TranscriptCall, TranscriptSession
from agenttrail.usage import Usage

SYNTHETIC_MODEL = "<synthetic>"
# isinstance with a tuple: `str | list` builds a union on every line and checks it at half the speed.
_TEXT_OR_BLOCKS = (str, list)

Progress = Callable[[Path, ImportBatch], None]


def claude_projects_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """The projects folders Claude Code writes to: `$CLAUDE_CONFIG_DIR/projects` (comma-separated for
    several) or `~/.claude/projects`."""
    env = os.environ if env is None else env
    configured = env.get("CLAUDE_CONFIG_DIR", "").strip()
    if configured:
        return [Path(p.strip()).expanduser() / "projects" for p in configured.split(",") if p.strip()]
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return [base / ".claude" / "projects"]


def call_id_for(request_id: str | None, message_id: str | None, fallback: str) -> str:
    """The stable id of a Claude API call: by provider request id, else message id, else `fallback`."""
    if request_id:
        return stable_id(CLAUDE_CODE, "request", request_id)
    if message_id:
        return stable_id(CLAUDE_CODE, "message", message_id)
    return stable_id(CLAUDE_CODE, "line", fallback)


def find_claude_code_files(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> list[Path]:
    """Transcript files under `path` (a file, a projects folder, or a config folder holding `projects/`),
    or under the default projects folders. Sorted, subagent files included."""
    roots: list[Path]
    if path is None:
        roots = claude_projects_dirs(env)
    else:
        p = Path(path).expanduser()
        if p.is_file():
            return [p]
        roots = [p / "projects"] if (p / "projects").is_dir() else [p]
    return files_under(roots, "*.jsonl")


# Line types that carry nothing the importer uses (request blobs can be 100 KB each): not even parsed.
SKIP_PREFIXES = (
    b'{"type":"api-request-blob"',
    b'{"type":"api-request-shape"',
    b'{"type":"api-request"',
    b'{"type":"queue-operation"',
    b'{"type":"atis-latch"',
    b'{"type":"tools-used"',
    b'{"type":"last-prompt"',
    b'{"type":"file-history-snapshot"',
)


# Usage only: the lines that count are `assistant` lines with usage, and the session's `summary` and
# `cost-state` lines (written with their type first). Any line holding usage holds these bytes.
_USAGE = b'"usage"'
_SESSION_LINES = (b'{"type":"summary"', b'{"type":"cost-state"')


def _cannot_count(raw: bytes) -> bool:
    return _USAGE not in raw and not raw.startswith(_SESSION_LINES)


# The same checks for the native reader, and the members the usage-only parser reads (feed, _session,
# _ts, _assistant, _call, _cost_state): the message's content only as a shape, its usage whole.
_NATIVE = NativeRule(
    mode=1,
    skip_prefixes=SKIP_PREFIXES,
    needle=_USAGE,
    keep_prefixes=_SESSION_LINES,
    spec={
        **dict.fromkeys(("type", "sessionId", "timestamp", "cwd", "gitBranch", "version", "requestId", "uuid")),
        **dict.fromkeys(("agentId", "summary", "totalCostUSD", "startTime")),
        "message": {"model": None, "id": None, "content": 0, "usage": None},
    },
)


# The native rule makes call records by copying these (the fields' defaults) and setting the leading fields.
_USAGE_TEMPLATE = Usage()
_CALL_TEMPLATE = TranscriptCall("", "", CLAUDE_CODE, "anthropic", None, datetime.fromtimestamp(0, UTC), _USAGE_TEMPLATE)


class ClaudeCodeParser:
    """Parses one Claude Code transcript file into an ImportBatch (a `jsonl.LineParser`).

    With `with_events=False` (usage only) it reads `assistant`, `summary` and `cost-state` lines and
    nothing else: other lines are not even parsed, so a session's span is that of its responses."""

    skip_prefixes = SKIP_PREFIXES

    def __init__(self, *, content_cap: int = DEFAULT_CONTENT_CAP, with_events: bool = True) -> None:
        self.content_cap = content_cap
        self.with_events = with_events
        self.skip_line = None if with_events else _cannot_count
        self.native = None if with_events else _NATIVE
        self._events: list[Event] = []
        self._batch = ImportBatch()
        self._sessions: dict[str, TranscriptSession] = {}
        self._calls: dict[str, TranscriptCall] = {}
        self._seen: dict[tuple[Any, Any], tuple[TranscriptCall, dict[str, Any]]] = {}
        # The native rule's note of the usage bytes each `_seen` entry was made from (valid while the entry
        # is still that one): the same bytes again are the same usage, without building it.
        self._seen_raw: dict[tuple[Any, Any], tuple[tuple[TranscriptCall, dict[str, Any]], bytes]] = {}
        self._path = Path()
        self._subagent = False
        self._file_session = ""
        self._file_agent_id: str | None = None
        self._last_ts = datetime.fromtimestamp(0, UTC)

    # -- LineParser -----------------------------------------------------------------------------------
    def start(self, path: Path, carry: dict[str, Any], batch: ImportBatch, mtime: float | None = None) -> None:
        self._path = path
        self._batch = batch
        self._events = []
        self._sessions = {}
        self._calls = {}
        self._seen = {}
        self._seen_raw = {}
        self._subagent = path.parent.name == "subagents"
        if self._subagent:
            self._file_session = path.parent.parent.name
            self._file_agent_id = path.stem.removeprefix("agent-")
        else:
            self._file_session = path.stem
            self._file_agent_id = None
        self._last_ts = resume_time(carry, path, mtime)

    def feed(self, line_no: int, obj: Any, raw: bytes) -> None:
        if not isinstance(obj, dict):
            raise ShapeError(f"a line must be a JSON object, not {type(obj).__name__}")
        kind = obj.get("type")
        if kind == "assistant":
            self._assistant(obj)
        elif kind == "summary":
            summary = obj.get("summary")
            if isinstance(summary, str):
                self._session(obj).title = summary
        elif kind == "cost-state":
            self._cost_state(obj)
        elif not self.with_events:
            return  # usage only: no other line counts, whichever lines the byte check let through
        elif kind == "user":
            self._user(obj)
        elif isinstance(obj.get("sessionId"), str) and "timestamp" in obj:
            self._session(obj).see(self._ts(obj))

    def finish(self) -> dict[str, Any]:
        self._batch.add_file(list(self._sessions.values()), self._events, self._calls)
        return {"last_ts": self._last_ts.isoformat()}

    # -- the native rule (usage only) -----------------------------------------------------------------
    def native_state(self) -> list[Any]:
        """What the native scanner's copy of this rule (`_scan.c`, `claude_rule`; the layout is its
        `C_*` enum) reads and updates: the same dicts this parser fills, and the last time seen."""
        source = None if self._subagent else str(self._path)
        return [
            *(_CALL_TEMPLATE, _USAGE_TEMPLATE, TranscriptSession, self._sessions, self._calls, self._seen),
            *(self._seen_raw, self._file_session, self._file_agent_id, source, self._last_ts, Usage.from_anthropic),
        ]

    def native_done(self, state: list[Any]) -> None:
        self._last_ts = state[10]

    # -- lines ----------------------------------------------------------------------------------------
    def _ts(self, obj: dict[str, Any]) -> datetime:
        ts = parse_ts(obj.get("timestamp"))
        if ts is None:
            return self._last_ts
        self._last_ts = ts
        return ts

    def _session_id(self, obj: dict[str, Any]) -> str:
        sid = obj.get("sessionId")
        return sid if isinstance(sid, str) and sid else self._file_session

    def _session(self, obj: dict[str, Any]) -> TranscriptSession:
        sid = self._session_id(obj)
        s = self._sessions.get(sid)
        if s is None:
            s = TranscriptSession(agent=CLAUDE_CODE, agent_session_id=sid)
            if not self._subagent:
                s.source_path = str(self._path)
            self._sessions[sid] = s
        if s.cwd is None:
            s.cwd = as_str(obj.get("cwd"))
        branch = obj.get("gitBranch")
        if branch != s.branch and isinstance(branch, str) and branch:
            s.branch = branch
        version = obj.get("version")
        if version != s.agent_version and isinstance(version, str) and version:
            s.agent_version = version
        return s

    def _common(self, obj: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"uuid": obj.get("uuid")}
        agent_id = as_str(obj.get("agentId")) or self._file_agent_id
        if agent_id or obj.get("isSidechain") is True:
            payload["subagent_id"] = agent_id
            payload["is_sidechain"] = True
        return payload

    def _event(
        self, obj: dict[str, Any], sid: str, index: int, kind: str, ts: datetime, payload: dict[str, Any]
    ) -> None:
        uuid = obj.get("uuid")
        ident = uuid if isinstance(uuid, str) and uuid else f"{ts.isoformat()}:{kind}"
        self._events.append(
            Event(
                session_id=sid,
                kind=kind,
                ts=ts,
                payload=payload,
                event_id=stable_id(CLAUDE_CODE, sid, ident, index),
            )
        )

    def _user(self, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        if not isinstance(message, dict):
            raise ShapeError("user line without a message object")
        content = message.get("content")
        if not isinstance(content, _TEXT_OR_BLOCKS):
            raise ShapeError("user message content is neither text nor a list of blocks")
        session = self._session(obj)
        ts = self._ts(obj)
        session.see(ts)
        if obj.get("isMeta") is True:
            return
        sid = session.agent_session_id
        cap = self.content_cap
        if isinstance(content, str):
            self._event(obj, sid, 0, PROMPT, ts, self._prompt_payload(obj, content))
            return
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "tool_result":
                payload = self._common(obj)
                payload["tool_use_id"] = block.get("tool_use_id")
                payload["is_error"] = block.get("is_error") is True
                payload.update(cap_text(block_text(block.get("content")), cap))
                self._event(obj, sid, i, TOOL_RESULT, ts, payload)
            elif btype == "text" and isinstance(block.get("text"), str):
                self._event(obj, sid, i, PROMPT, ts, self._prompt_payload(obj, block["text"]))

    def _prompt_payload(self, obj: dict[str, Any], text: str) -> dict[str, Any]:
        payload = self._common(obj)
        payload.update(cap_text(text, self.content_cap))
        if isinstance(obj.get("promptId"), str):
            payload["prompt_id"] = obj["promptId"]
        source = obj.get("promptSource")
        if isinstance(source, str):
            payload["origin"] = source
        return payload

    def _assistant(self, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        if not isinstance(message, dict):
            raise ShapeError("assistant line without a message object")
        content = message.get("content")
        if not isinstance(content, _TEXT_OR_BLOCKS):
            raise ShapeError("assistant message content is neither text nor a list of blocks")
        usage_obj = message.get("usage")
        if usage_obj is not None and not isinstance(usage_obj, dict):
            raise ShapeError("assistant message usage is not an object")
        session = self._session(obj)
        ts = self._ts(obj)
        session.see(ts)
        model = as_str(message.get("model"))
        synthetic = model == SYNTHETIC_MODEL
        sid = session.agent_session_id
        if not synthetic:
            session.add_model(model)
            if usage_obj is not None:
                self._call(obj, message, sid, model, ts, usage_obj)
        if not self.with_events:
            return
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        cap = self.content_cap
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            payload = self._common(obj)
            payload["message_id"] = message.get("id")
            if synthetic:
                payload["synthetic"] = True
            if btype == "text" and isinstance(block.get("text"), str):
                payload.update(cap_text(block["text"], cap))
                self._event(obj, sid, i, RESPONSE, ts, payload)
            elif btype == "thinking" and isinstance(block.get("thinking"), str) and block["thinking"]:
                payload["block"] = "thinking"
                payload.update(cap_text(block["thinking"], cap))
                self._event(obj, sid, i, RESPONSE, ts, payload)
            elif btype in ("tool_use", "server_tool_use"):
                payload["tool_use_id"] = block.get("id")
                payload["name"] = block.get("name")
                payload["input"] = cap_value(block.get("input"), cap)
                if btype == "server_tool_use":
                    payload["server_tool"] = True
                self._event(obj, sid, i, TOOL_CALL, ts, payload)

    def _call(
        self,
        obj: dict[str, Any],
        message: dict[str, Any],
        sid: str,
        model: str | None,
        ts: datetime,
        usage_obj: dict[str, Any],
    ) -> None:
        request_id = obj.get("requestId")
        if not (request_id and isinstance(request_id, str)):
            request_id = None
        message_id = message.get("id")
        if not (message_id and isinstance(message_id, str)):
            message_id = None
        key = (request_id, message_id) if request_id or message_id else (sid, obj.get("uuid"))
        seen = self._seen.get(key)
        if seen is not None:
            if seen[1] == usage_obj:
                return  # another block of the same response repeating the same usage: nothing new
            # A later line of a known response (a streamed response's final usage): fold it into the call
            # as TranscriptCall.merge would, without building a record for it.
            call = seen[0]
            call.merge_usage(Usage.from_anthropic(usage_obj), ts)
            if call.model is None:
                call.model = model
            if call.request_id is None:
                call.request_id = request_id
            if call.message_id is None:
                call.message_id = message_id
            if call.cwd is None:
                call.cwd = as_str(obj.get("cwd"))
            if call.git_branch is None:
                call.git_branch = as_str(obj.get("gitBranch"))
            if call.subagent_id is None:
                call.subagent_id = as_str(obj.get("agentId")) or self._file_agent_id
            self._seen[key] = (call, usage_obj)
            return
        call = TranscriptCall(
            call_id_for(request_id, message_id, f"{sid}:{obj.get('uuid')}"),
            sid,
            CLAUDE_CODE,
            "anthropic",
            model,
            ts,
            Usage.from_anthropic(usage_obj),
            request_id,
            message_id,
            as_str(obj.get("cwd")),
            as_str(obj.get("gitBranch")),
            as_str(obj.get("agentId")) or self._file_agent_id,
        )
        have = self._calls.get(call.call_id)
        if have is None:
            self._calls[call.call_id] = call
        else:
            have.merge(call)
            call = have
        self._seen[key] = (call, usage_obj)

    def _cost_state(self, obj: dict[str, Any]) -> None:
        cost = obj.get("totalCostUSD")
        if not isinstance(cost, int | float) or isinstance(cost, bool):
            raise ShapeError("cost-state without a numeric totalCostUSD")
        run = obj.get("startTime")
        self._session(obj).agent_cost_by_run[str(run if run is not None else "")] = float(cost)


def iter_claude_code(
    path: str | os.PathLike[str] | None = None,
    *,
    state: StateStore | None = None,
    env: Mapping[str, str] | None = None,
    content_cap: int = DEFAULT_CONTENT_CAP,
    with_events: bool = True,
    workers: int = 1,
    files: Sequence[Path] | None = None,
    positions: bool = True,
) -> Iterator[tuple[Path, ImportBatch]]:
    """One (file, ImportBatch) per transcript file, so a caller can store and commit file by file
    without holding a whole history in memory. Calls repeated in several files (a resumed session's
    file repeats earlier responses) come out once per file with the same `call_id`: upsert them.
    `files`: the files to read, as the finder listed them for `path` already (a caller that counted them
    first), so the folders are not walked twice. `positions=False`: no read positions (`file_states`) for
    a caller that keeps none (a dry run)."""
    make_parser = functools.partial(ClaudeCodeParser, content_cap=content_cap, with_events=with_events)
    found = find_claude_code_files(path, env=env) if files is None else files
    yield from read_files(found, make_parser, state, workers, positions=positions)


def import_claude_code(
    path: str | os.PathLike[str] | None = None,
    *,
    state: StateStore | None = None,
    env: Mapping[str, str] | None = None,
    content_cap: int = DEFAULT_CONTENT_CAP,
    with_events: bool = True,
    progress: Progress | None = None,
    workers: int = 1,
) -> ImportBatch:
    """Everything new under `path` (default: the Claude Code projects folders) in one batch, sessions
    and calls merged across files. `progress(file, file_batch)` is called after each file."""
    total = ImportBatch()
    for f, batch in iter_claude_code(
        path, state=state, env=env, content_cap=content_cap, with_events=with_events, workers=workers
    ):
        total.extend(batch)
        if progress is not None:
            progress(f, batch)
    return total
