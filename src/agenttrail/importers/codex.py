"""Codex rollouts: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<session id>.jsonl`.

`CODEX_HOME` defaults to `~/.codex`; `archived_sessions/` beside `sessions/` is read too. Every line is
`{"timestamp", "type", "payload"}`:

- `session_meta`: `id` (the session id), `cwd`, `cli_version`, `originator`, `model_provider`, and
  `git` `{commit_hash, branch, repository_url}`.
- `turn_context`: `model` and `cwd` for the turn that follows.
- `response_item`: `message` (role `user` → prompt, `assistant` → response; `developer` messages and
  the injected `<environment_context>` / `<user_instructions>` / AGENTS.md user messages are skipped),
  `function_call` (`name`, `arguments` as a JSON string, `call_id`), `function_call_output`
  (`call_id`, `output`), `custom_tool_call` (`name`, e.g. `apply_patch`, with `input`) and
  `custom_tool_call_output`, `local_shell_call`, `web_search_call`, `reasoning` (its summary).
- `event_msg` with `payload.type == "token_count"`: `info.last_token_usage` (the last API response) and
  `info.total_token_usage` (cumulative for the session), each `{input_tokens, cached_input_tokens,
  output_tokens, reasoning_output_tokens, total_tokens}`; `info` is null on rate-limit-only updates.
- `token_usage_record` (newer Codex): one per API response, with the Responses `response_id` and its
  `usage`. When a file has these they are the calls (one each, keyed by response id, which is also what
  the gateway sees); `token_count` events are then only a cross-check.

Counting rule for `token_count` (files without `token_usage_record`): Codex writes the same event more
than once, so an event whose `total_token_usage` equals the previous one's is a repeat and is skipped.
Otherwise the call's usage is `last_token_usage` (or, if absent, the delta of `total_token_usage`); a
`last_token_usage` that disagrees with the total's delta is reported in `ImportBatch.warnings`. A call's
id derives from the event's timestamp and cumulative total, not the file, so copies of one rollout
count once (as ccusage does).

Codex's `input_tokens` includes `cached_input_tokens` (and `cache_write_input_tokens`, when present),
and `output_tokens` includes `reasoning_output_tokens`. In agenttrail's convention `input_tokens` is the
uncached part: `input = input_tokens - cached - cache_write`, `cache_read = cached`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

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
from agenttrail.importers.records import CODEX, ImportBatch, LineError, TranscriptCall, TranscriptSession
from agenttrail.usage import Usage, token_count

Progress = Callable[[Path, ImportBatch], None]

# (input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_output_tokens)
RawUsage = tuple[int, int, int, int, int]
_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
)

# User messages Codex injects itself: context, not prompts.
_INJECTED_PREFIXES = (
    "<environment_context>",
    "<user_instructions>",
    "<permissions instructions>",
    "<skills_instructions>",
    "# AGENTS.md instructions",
    "<turn_aborted>",
)
_EXIT_CODE = re.compile(r"(?:Process exited with code|Exit code:)\s*(-?\d+)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_UUID_TAIL = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.I)
_RESPONSE_ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "web_search_call",
        "reasoning",
    }
)


# Usage only: the lines that count are these kinds, and `event_msg` `token_count`. A line laid out as
# Codex writes them (`{"timestamp":…,["ordinal":N,]"type":…,"payload":{…`) whose type is shown to be
# something else is not even parsed; any other line is parsed, and ignored unless it counts.
_USAGE_KINDS = frozenset({"session_meta", "turn_context", "token_usage_record"})
_CANNOT_COUNT = re.compile(
    rb'\{"timestamp":"[^"\\\n]*",(?:"ordinal":\d+,)?"type":"'
    rb'(?:response_item"|event_msg","payload":\{"type":"(?!token_count")[^"\\\n]*")'
)


# The same check for the native reader, and the members the usage-only parser reads (feed and the
# session_meta, turn_context, token_usage_record and token_count readers; a bare early-Codex header's).
_HEADER = ("timestamp", "type", "id", "cwd", "cli_version", "git")
_NATIVE = NativeRule(
    mode=2,
    spec={
        **dict.fromkeys(_HEADER),
        "payload": dict.fromkeys((*_HEADER, "model", "usage", "response_id", "info")),
    },
)


_USAGE_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(Usage)))

# The native rule makes call records by copying these (the fields' defaults) and setting the leading fields.
_USAGE_TEMPLATE = Usage()
_CALL_TEMPLATE = TranscriptCall("", "", CODEX, "openai", None, datetime.fromtimestamp(0, UTC), _USAGE_TEMPLATE)


def _counts_usage(kind: object, payload: object) -> bool:
    if kind in _USAGE_KINDS:
        return True
    return kind == "event_msg" and isinstance(payload, dict) and payload.get("type") == "token_count"


def codex_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("CODEX_HOME", "").strip()
    if configured:
        return Path(configured).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".codex"


def find_codex_files(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> list[Path]:
    """Rollout files under `path` (a file, a sessions folder, or a CODEX_HOME holding `sessions/`), or
    under `$CODEX_HOME/sessions` and `$CODEX_HOME/archived_sessions`. Sorted."""
    if path is None:
        home = codex_home(env)
        roots = [home / "sessions", home / "archived_sessions"]
        pattern = "rollout-*.jsonl"
    else:
        p = Path(path).expanduser()
        if p.is_file():
            return [p]
        roots = [p / "sessions", p / "archived_sessions"] if (p / "sessions").is_dir() else [p]
        pattern = "*.jsonl"
    return files_under(roots, pattern)


def raw_usage(u: object) -> RawUsage | None:
    if not isinstance(u, dict):
        return None
    get = u.get
    a, b, c, d, e = (
        get("input_tokens", 0),
        get("cached_input_tokens", 0),
        get("cache_write_input_tokens", 0),
        get("output_tokens", 0),
        get("reasoning_output_tokens", 0),
    )
    # Plain non-negative ints, as Codex writes them (checked without a generator or min(): a hot path).
    if type(a) is type(b) is type(c) is type(d) is type(e) is int and a >= 0 <= b and c >= 0 <= d and e >= 0:
        return a, b, c, d, e
    return (
        token_count(u.get(_FIELDS[0])),
        token_count(u.get(_FIELDS[1])),
        token_count(u.get(_FIELDS[2])),
        token_count(u.get(_FIELDS[3])),
        token_count(u.get(_FIELDS[4])),
    )


def usage_from_codex(u: RawUsage) -> Usage:
    """Codex token usage in agenttrail's convention (input excludes cache reads and writes)."""
    inp, cached, cache_write, out, reasoning = u
    # Compared, not min(), and positional: one per call of a rollout (hot path).
    if cached > inp:
        cached = inp
    rest = inp - cached
    if cache_write > rest:
        cache_write = rest
    return Usage(rest - cache_write, cached, cache_write, 0, out, reasoning)


def session_id_from_name(path: Path) -> str:
    stem = path.stem
    tail = stem[-36:]  # the usual name ends in the uuid: matched there, not searched for from each place
    if _UUID.fullmatch(tail):
        return tail
    m = _UUID_TAIL.search(stem)
    return m.group(1) if m else path.stem


class CodexParser:
    """Parses one Codex rollout file into an ImportBatch (a `jsonl.LineParser`).

    With `with_events=False` (usage only) only `session_meta`, `turn_context`, `token_count` and
    `token_usage_record` lines count; response items are not even parsed, so a session's span is that
    of those lines."""

    def __init__(self, *, content_cap: int = DEFAULT_CONTENT_CAP, with_events: bool = True, tally: Any = None) -> None:
        self.content_cap = content_cap
        self.with_events = with_events
        # A dry run's `_scan.Tally`: the calls go there (by id, provider, model and usage) instead of
        # becoming records; the batches then hold none. Only for a run that stores nothing.
        self._tally = tally
        self.skip_line = None if with_events else _CANNOT_COUNT.match
        self.native = None if with_events else _NATIVE
        self._batch = ImportBatch()
        self._sessions: list[TranscriptSession] = []  # sessions this file ended (a second header)
        self._events: list[Event] = []
        self._path = Path()
        self._sid = ""
        self._session: TranscriptSession | None = None
        self._model: str | None = None
        self._cwd: str | None = None
        self._branch: str | None = None
        self._prev_total: RawUsage | None = None
        self._has_records = False
        self._record_calls: dict[str, TranscriptCall] = {}
        self._count_calls: dict[str, TranscriptCall] = {}
        self._last_ts = datetime.fromtimestamp(0, UTC)

    # -- LineParser -----------------------------------------------------------------------------------
    def start(self, path: Path, carry: dict[str, Any], batch: ImportBatch, mtime: float | None = None) -> None:
        self._path = path
        self._batch = batch
        self._sessions = []
        self._events = []
        self._session = None
        self._record_calls = {}
        self._count_calls = {}
        if not carry and mtime is not None:  # a file read from its start (the usual case): nothing carried
            self._sid = session_id_from_name(path)
            self._model = self._cwd = self._branch = self._prev_total = None
            self._has_records = False
            self._last_ts = datetime.fromtimestamp(mtime, UTC)
            return
        self._sid = as_str(carry.get("session_id")) or session_id_from_name(path)
        self._model = as_str(carry.get("model"))
        self._cwd = as_str(carry.get("cwd"))
        self._branch = as_str(carry.get("branch"))
        prev = carry.get("prev_total")
        self._prev_total = (
            tuple(token_count(x) for x in prev)  # type: ignore[assignment]
            if isinstance(prev, list) and len(prev) == 5
            else None
        )
        self._has_records = carry.get("has_usage_records") is True
        self._last_ts = resume_time(carry, path, mtime)

    def feed(self, line_no: int, obj: Any, raw: bytes) -> None:
        if not isinstance(obj, dict):
            raise ShapeError(f"a line must be a JSON object, not {type(obj).__name__}")
        kind = obj.get("type")
        payload = obj.get("payload")
        if payload is None:
            if "timestamp" not in obj and kind in _RESPONSE_ITEM_TYPES:
                kind, payload = "response_item", obj  # early Codex: bare response items
            elif kind is None and isinstance(obj.get("id"), str):
                kind, payload = "session_meta", obj  # early Codex: a bare session header first
        if not self.with_events and kind not in _USAGE_KINDS and not _counts_usage(kind, payload):
            return  # usage only: no other line counts, whichever lines the byte check let through
        raw_ts = obj.get("timestamp")
        ts = parse_ts(raw_ts)
        if ts is None:
            ts = self._last_ts
        else:
            self._last_ts = ts
        # The kinds are exclusive: the most frequent are tested first.
        if kind == "event_msg":
            p = _obj(payload, kind)
            if p.get("type") == "token_count":
                self._token_count(p, ts, raw_ts, line_no)
            else:
                self._sess().see(ts)
        elif kind == "response_item":
            self._response_item(_obj(payload, kind), ts, raw)
        elif kind == "turn_context":
            self._turn_context(_obj(payload, kind), ts)
        elif kind == "token_usage_record":
            self._usage_record(_obj(payload, kind), ts)
        elif kind == "session_meta":
            self._session_meta(_obj(payload, kind), ts)
        elif kind is not None:
            self._sess().see(ts)

    def finish(self) -> dict[str, Any]:
        has_records = self._has_records or bool(self._record_calls)
        if self._tally is not None:  # the file's calls into the run's tally, by the same choice
            has_records = has_records or self._tally.file_has_records
            self._tally.end_file(has_records)
        calls = self._record_calls if has_records else self._count_calls
        if self._session is not None:
            self._sessions.append(self._session)
        self._batch.add_file(self._sessions, self._events, calls)
        return {
            "session_id": self._sid,
            "model": self._model,
            "cwd": self._cwd,
            "branch": self._branch,
            "prev_total": list(self._prev_total) if self._prev_total is not None else None,
            "has_usage_records": has_records,
            "last_ts": self._last_ts.isoformat(),
        }

    # -- the native rule (usage only) -----------------------------------------------------------------
    def native_state(self) -> list[Any]:
        """What the native scanner's copy of this rule (`_scan.c`, `codex_rule`; the layout is its `X_*`
        enum) reads and updates, and, from index 14, what it saw since: whether a line counted, the
        first and latest times, the new models, the first turn's cwd, whether the session is open and
        the header's fields (applied by `native_done`)."""
        return [
            *(_CALL_TEMPLATE, _USAGE_TEMPLATE, LineError, self._batch.warnings, str(self._path), self._sid),
            *(self._model, self._cwd, self._branch, self._prev_total, self._has_records, self._last_ts),
            *(self._record_calls, self._count_calls, False, None, None, [], None, self._session is not None, None),
            self._tally,
        ]

    def native_done(self, state: list[Any]) -> None:
        if state[20] is not None:  # the file's header, read by the rule
            sid, cwd, version, repo_url, commit, branch = state[20]
            self._sid = sid
            s = self._sess()  # with the cwd and branch of before the header, as _session_meta makes it
            s.source_path = str(self._path)
            if cwd:
                s.cwd = cwd
            s.agent_version = version or s.agent_version
            s.repo_url = repo_url or s.repo_url
            s.git_commit = commit or s.git_commit
            if branch:
                s.branch = branch
        if state[14]:
            # Created now as the first line that counted would have: the rule changes the cwd only after.
            s = self._sess()
            if s.cwd is None and state[18]:
                s.cwd = state[18]
            s.see(state[15])
            s.see(state[16])
            for model in state[17]:
                s.add_model(model)
        self._model, self._cwd, self._branch = state[6], state[7], state[8]
        self._prev_total, self._last_ts = state[9], state[11]

    # -- records --------------------------------------------------------------------------------------
    def _sess(self) -> TranscriptSession:
        if self._session is None:
            self._session = TranscriptSession(
                agent=CODEX, agent_session_id=self._sid, cwd=self._cwd, branch=self._branch
            )
        return self._session

    def _session_meta(self, p: dict[str, Any], ts: datetime) -> None:
        sid = as_str(p.get("id"))
        if sid is None:
            raise ShapeError("session_meta without an id")
        if sid != self._sid and self._session is not None:
            # A second header with a new id (e.g. a fork written into this file): start that session.
            self._sessions.append(self._session)
            self._session = None
        self._sid = sid
        s = self._sess()
        s.source_path = str(self._path)
        s.see(parse_ts(p.get("timestamp")) or ts)
        cwd = as_str(p.get("cwd"))
        if cwd:
            self._cwd = cwd
            s.cwd = cwd
        s.agent_version = as_str(p.get("cli_version")) or s.agent_version
        git = p.get("git")
        if isinstance(git, dict):
            s.repo_url = as_str(git.get("repository_url")) or s.repo_url
            s.git_commit = as_str(git.get("commit_hash")) or s.git_commit
            branch = as_str(git.get("branch"))
            if branch:
                s.branch = self._branch = branch

    def _turn_context(self, p: dict[str, Any], ts: datetime) -> None:
        s = self._sess()
        s.see(ts)
        model = as_str(p.get("model"))
        if model:
            self._model = model
            s.add_model(model)
        cwd = as_str(p.get("cwd"))
        if cwd:
            self._cwd = cwd
            if s.cwd is None:
                s.cwd = cwd

    def _new_call(self, call_id: str, ts: datetime, usage: Usage, request_id: str | None) -> TranscriptCall:
        # Positional, in TranscriptCall's field order (message_id is None for OpenAI): one per call.
        return TranscriptCall(
            call_id, self._sid, CODEX, "openai", self._model, ts, usage, request_id, None, self._cwd, self._branch
        )

    def _usage_record(self, p: dict[str, Any], ts: datetime) -> None:
        u = raw_usage(p.get("usage"))
        if u is None:
            raise ShapeError("token_usage_record without a usage object")
        self._sess().see(ts)
        response_id = as_str(p.get("response_id"))
        call_id = (
            stable_id(CODEX, "response", response_id)
            if response_id
            else stable_id(CODEX, "usage_record", ts.isoformat(), *u)
        )
        if self._tally is not None:  # merged there as below: each count's maximum, a missing model filled
            self._tally.add(call_id, "openai", self._model, _USAGE_FIELDS(usage_from_codex(u)), True)
            return
        call = self._new_call(call_id, ts, usage_from_codex(u), response_id)
        have = self._record_calls.get(call_id)
        if have is None:
            self._record_calls[call_id] = call
        else:
            have.merge(call)

    def _token_count(self, p: dict[str, Any], ts: datetime, raw_ts: object, line_no: int) -> None:
        self._sess().see(ts)
        info = p.get("info")
        if info is None:
            return  # a rate-limit-only update
        if not isinstance(info, dict):
            raise ShapeError("token_count info is not an object")
        total = raw_usage(info.get("total_token_usage"))
        last = raw_usage(info.get("last_token_usage"))
        if total is None and last is None:
            return
        prev = self._prev_total
        if total is not None and total == prev:
            return  # the same event written again
        delta: RawUsage | None = None
        if total is not None:
            if prev is None:
                delta = total
            else:  # spelled out: generators over zip cost more than the rest of the line (hot path)
                a, b, c, d, e = total
                qa, qb, qc, qd, qe = prev
                if a >= qa and b >= qb and c >= qc and d >= qd and e >= qe:
                    delta = (a - qa, b - qb, c - qc, d - qd, e - qe)
            self._prev_total = total
        use = last if last is not None else delta
        if use is None:
            return
        if last is not None and delta is not None and last != delta and prev is not None:
            self._batch.warnings.append(
                LineError(
                    str(self._path),
                    line_no,
                    f"token_count last_token_usage {list(last)} differs from the total_token_usage delta "
                    f"{list(delta)}; used last_token_usage",
                )
            )
        tally = self._tally
        if not any(use) or self._has_records or self._record_calls or (tally is not None and tally.file_has_records):
            return  # with usage records in the file, they are its calls (see finish)
        call_id = stable_id(CODEX, "token_count", str(raw_ts), *(total if total is not None else use))
        if tally is not None:  # the first reading of an id stays, as below
            tally.add(call_id, "openai", self._model, _USAGE_FIELDS(usage_from_codex(use)), False)
        elif call_id not in self._count_calls:
            self._count_calls[call_id] = self._new_call(call_id, ts, usage_from_codex(use), None)

    # -- dialogue -------------------------------------------------------------------------------------
    def _event(self, kind: str, ts: datetime, payload: dict[str, Any], raw: bytes) -> None:
        digest = hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=16).hexdigest()
        self._events.append(
            Event(
                session_id=self._sid,
                kind=kind,
                ts=ts,
                payload=payload,
                event_id=stable_id(CODEX, self._sid, digest),
            )
        )

    def _response_item(self, p: dict[str, Any], ts: datetime, raw: bytes) -> None:
        self._sess().see(ts)
        if not self.with_events:
            return
        itype = p.get("type")
        cap = self.content_cap
        payload: dict[str, Any]
        if itype == "message":
            role = p.get("role")
            content = p.get("content")
            if not isinstance(content, (list, str)):
                raise ShapeError("message content is neither text nor a list")
            text = block_text(content)
            if role == "user":
                if text.lstrip().startswith(_INJECTED_PREFIXES):
                    return
                self._event(PROMPT, ts, cap_text(text, cap), raw)
            elif role == "assistant":
                payload = cap_text(text, cap)
                payload["model"] = self._model
                self._event(RESPONSE, ts, payload, raw)
        elif itype in ("function_call", "custom_tool_call", "local_shell_call", "web_search_call"):
            payload = {"tool_use_id": p.get("call_id") or p.get("id")}
            if itype == "function_call":
                payload["name"] = p.get("name")
                payload["input"] = cap_value(_maybe_json(p.get("arguments")), cap)
            elif itype == "custom_tool_call":
                payload["name"] = p.get("name")
                payload["input"] = cap_value(p.get("input"), cap)
                payload["custom"] = True
            elif itype == "local_shell_call":
                payload["name"] = "local_shell"
                payload["input"] = cap_value(p.get("action"), cap)
            else:
                payload["name"] = "web_search"
                payload["input"] = cap_value(p.get("action"), cap)
            self._event(TOOL_CALL, ts, payload, raw)
        elif itype in ("function_call_output", "custom_tool_call_output"):
            text, is_error = _tool_output(p.get("output"))
            payload = {"tool_use_id": p.get("call_id"), "is_error": is_error}
            payload.update(cap_text(text, cap))
            self._event(TOOL_RESULT, ts, payload, raw)
        elif itype == "reasoning":
            summary = p.get("summary")
            text = block_text(summary) if isinstance(summary, list) else ""
            if text:
                payload = {"block": "reasoning", "model": self._model}
                payload.update(cap_text(text, cap))
                self._event(RESPONSE, ts, payload, raw)


def _obj(payload: object, kind: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ShapeError(f"{kind} line without a payload object")
    return payload


def _maybe_json(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _tool_output(output: object) -> tuple[str, bool]:
    """The text of a tool output and whether it failed. Output is a string (newer Codex), a JSON string
    `{"output", "metadata": {"exit_code"}}` (older), or an object `{"content", "success"}`."""
    exit_code: int | None = None
    success: object = None
    if isinstance(output, str) and output.startswith("{"):
        parsed = _maybe_json(output)
        if isinstance(parsed, dict) and "output" in parsed:
            meta = parsed.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("exit_code"), int):
                exit_code = meta["exit_code"]
            output = parsed["output"]
    if isinstance(output, dict):
        success = output.get("success")
        output = output.get("content", output.get("output"))
    text = block_text(output)
    if exit_code is None:
        m = _EXIT_CODE.search(text[:400])
        if m:
            exit_code = int(m.group(1))
    return text, success is False or (exit_code is not None and exit_code != 0)


def iter_codex(
    path: str | os.PathLike[str] | None = None,
    *,
    state: StateStore | None = None,
    env: Mapping[str, str] | None = None,
    content_cap: int = DEFAULT_CONTENT_CAP,
    with_events: bool = True,
    workers: int = 1,
    files: Sequence[Path] | None = None,
    tally: Any = None,
    positions: bool = True,
) -> Iterator[tuple[Path, ImportBatch]]:
    """One (file, ImportBatch) per rollout file, so a caller can store and commit file by file.
    `files`: the files to read, as the finder listed them for `path` already (a caller that counted them
    first), so the folders are not walked twice. `tally`: a `_scan.Tally` that takes the calls instead of
    the batches (a dry run's totals; one process only). `positions=False`: no read positions (`file_states`)
    for a caller that keeps none (a dry run)."""
    if tally is not None and workers > 1:
        raise ValueError("a tally counts in this process: workers must be 1")
    make_parser = functools.partial(CodexParser, content_cap=content_cap, with_events=with_events, tally=tally)
    found = find_codex_files(path, env=env) if files is None else files
    yield from read_files(found, make_parser, state, workers, positions=positions)


def import_codex(
    path: str | os.PathLike[str] | None = None,
    *,
    state: StateStore | None = None,
    env: Mapping[str, str] | None = None,
    content_cap: int = DEFAULT_CONTENT_CAP,
    with_events: bool = True,
    progress: Progress | None = None,
    workers: int = 1,
) -> ImportBatch:
    """Everything new under `path` (default: `$CODEX_HOME/sessions`) in one batch, sessions and calls
    merged across files (copies of a rollout count once). `progress(file, file_batch)` after each file."""
    total = ImportBatch()
    for f, batch in iter_codex(
        path, state=state, env=env, content_cap=content_cap, with_events=with_events, workers=workers
    ):
        total.extend(batch)
        if progress is not None:
            progress(f, batch)
    return total
