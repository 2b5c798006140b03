"""The usage-only counting rules in the native scanner (`_scan.c`, "rules") against the parsers' Python.

With the scanner built, a usage-only read applies each parser's whole rule in C (Claude Code: the
session, the span, the dedup by request and message id, the streamed usage merge; Codex: turn
contexts, token_count deltas, repeats and warnings, usage records) and hands the parser's Python only
the lines it is not sure of. These tests generate rollouts and transcripts line by line (valid lines
in the agents' shapes and in odd ones, odd timestamps and counts, escaped and duplicate keys, damaged
and truncated lines) and check that both readers give the same calls, sessions, errors, warnings and
read positions: in one read, in 64-byte chunks, and in two incremental reads."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import need

from agenttrail.importers import ImportBatch, claude_code, codex, import_claude_code, import_codex, jsonl
from agenttrail.importers.incremental import MemoryStateStore
from agenttrail.importers.records import TranscriptCall
from agenttrail.usage import Usage

from .test_native_reader import _corpus

SID = "0f3c2b1a-0000-4000-8000-00000000000a"
MISSING = object()  # a member left out of the line
_T0 = 1_777_885_200_000_000_000  # the files' mtime (ns): 2026-05-04T09:00:00Z


@pytest.fixture(autouse=True)
def _scanner_built() -> None:
    need(jsonl._scan is not None, "the native line scanner was not built (no C compiler when installed)")


# ---------------------------------------------------------------------------------------- values

_TS = st.one_of(
    st.builds("2026-05-04T09:{:02d}:{:02d}.{:03d}Z".format, st.integers(0, 3), st.integers(0, 59), st.integers(0, 999)),
    st.builds("2026-05-04T09:00:{:02d}.{:06d}Z".format, st.integers(0, 9), st.integers(0, 999999)),
    st.builds("2024-02-29T23:59:{:02d}Z".format, st.integers(0, 59)),
    st.sampled_from(
        [
            MISSING,
            None,
            "2026-05-04T09:00:00+00:00",  # other forms parse_ts reads
            "2026-05-04T11:00:00.5+02:00",
            "2026-05-04 09:00:01",
            "2026-05-04T09:00:00.1Z",
            "2026-02-30T00:00:00Z",  # not a date: the last time seen
            "2026-05-04T24:00:00Z",
            "garbage",
            "",
            1777885200000,
            1777885200.5,
            True,
        ]
    ),
)
_COUNT = st.one_of(
    st.integers(0, 40),
    st.sampled_from([MISSING, None, -1, 1.5, 2.0, True, "7", 10**18, 10**19, 10**25, -(10**19)]),
)
_TEXT = st.sampled_from([MISSING, None, "", "gpt-5", "o3", "é/ü", "a\nb", '"q"', 5, ["x"], {"a": 1}])


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not MISSING:
        d[key] = value


@st.composite
def _codex_usage(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([MISSING, None, "x", [1], 3]))
    u: dict[str, Any] = {}
    small = kind < 6  # plain small counts: repeats, equal totals and deltas happen often
    for name in codex._FIELDS:
        _put(u, name, draw(st.integers(0, 30) if small else _COUNT))
    return u


@st.composite
def codex_line(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 15))
    if kind == 0:  # damaged or odd lines
        return draw(
            st.sampled_from(
                [
                    b'{"timestamp":"2026-05-04T09:00:00.000Z","type":"event_msg","payload":{"type":"token_count"',
                    b'{"type":"turn_context","payload":{"model":"\xff"}}',
                    b'{"type":"turn_context","payload":{"model":1e400}}',
                    b"[1,2]",
                    b'"x"',
                    b"",
                    b"  ",
                    b"{}",
                    b'{"type":"token_usage_record","payload":{"usage":{"input_tokens":1E2}}}',
                    b'{"typ\\u0065":"turn_context","payload":{"model":"escaped-key"}}',
                    b'{"type":"turn_context","payload":{"model":"a"},"payload":{"model":"b"}}',
                    b'{"type":"turn_context","payload":{"model":"a"},"payload":null}',
                    b'{"id":"bare-header","timestamp":"2026-05-04T09:00:00Z"}',
                    b'{"type":"message","role":"user","content":[]}',
                    b'{"type":"event_msg","payload":{"type":"token_\\u0063ount","info":null}}',
                ]
            )
        )
    line: dict[str, Any] = {}
    _put(line, "timestamp", draw(_TS))
    payload: dict[str, Any] = {}
    if kind <= 3:
        line["type"] = "event_msg"
        payload["type"] = "token_count"
        info = draw(st.integers(0, 6))
        if info == 0:
            payload["info"] = None
        elif info == 1:
            payload["info"] = draw(st.sampled_from(["x", [1], 5]))
        elif info != 2:
            inner: dict[str, Any] = {}
            _put(inner, "total_token_usage", draw(_codex_usage()))
            _put(inner, "last_token_usage", draw(_codex_usage()))
            payload["info"] = inner
    elif kind <= 6:
        line["type"] = "turn_context"
        _put(payload, "model", draw(_TEXT))
        _put(payload, "cwd", draw(st.sampled_from([MISSING, None, "", "/r1", "/r2", "/é"])))
    elif kind <= 8:
        line["type"] = "token_usage_record"
        _put(payload, "response_id", draw(st.sampled_from([MISSING, None, "", "resp_1", "resp_2", "r\u00e9", 3])))
        _put(payload, "usage", draw(_codex_usage()))
    elif kind == 9:
        line["type"] = "session_meta"
        _put(payload, "id", draw(st.sampled_from([SID, "0f3c2b1a-0000-4000-8000-00000000000b", "", MISSING])))
        _put(payload, "cwd", draw(st.sampled_from([MISSING, "/m"])))
        _put(payload, "cli_version", "0.169.0")
        _put(payload, "timestamp", draw(_TS))
        if draw(st.booleans()):
            payload["git"] = {"branch": "main", "commit_hash": "abc", "repository_url": "https://x/y.git"}
    elif kind == 10:
        line["type"] = "event_msg"
        payload["type"] = draw(st.sampled_from(["agent_message", "user_message", "token_count"]))
        if payload["type"] == "token_count":
            payload["info"] = None
    elif kind == 11:
        line["type"] = "response_item"
        payload.update(type="message", role="user", content=[{"type": "input_text", "text": "hi"}])
    else:
        _put(line, "type", draw(st.sampled_from([MISSING, None, 3, ["turn_context"], "unknown", "turn_context"])))
        payload = draw(st.sampled_from([MISSING, None, "x", {}, {"model": "m"}]))
    if payload is not MISSING:
        line["payload"] = payload
    return line


_BASE = {"input_tokens": 10, "cache_read_input_tokens": 20, "output_tokens": 5}


@st.composite
def _claude_usage(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([MISSING, None, "x", [1]]))
    if kind <= 4:  # a few usages, so that lines repeat one another's
        u: dict[str, Any] = dict(_BASE, output_tokens=draw(st.sampled_from([5, 5, 9, 1])))
        if draw(st.booleans()):
            w5, w1 = draw(st.integers(0, 3)), draw(st.integers(0, 3))
            u["cache_creation_input_tokens"] = w5 + w1 + draw(st.sampled_from([0, 0, 0, 1]))
            u["cache_creation"] = {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1}
        if draw(st.booleans()):
            u["service_tier"] = "standard"
        return u
    u = {}
    for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"):
        _put(u, name, draw(_COUNT))
    _put(u, "cache_creation", draw(st.sampled_from([MISSING, None, {"ephemeral_5m_input_tokens": 1}, "x"])))
    return u


@st.composite
def claude_line(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    b'{"type":"assistant","message":{"id":"m1","usage":{"input_tokens":1}',
                    b'{"type":"assistant","message":{"id":"m1","content":[],"usage":{"input_tokens":"\xff"}}}',
                    b'{"type":"assistant","message":{"id":"m1","content":[],"usage":{"input_tokens":1e400}}}',
                    b'{"type":"assistant","message":{"id":"m1","content":[],"usage":{"input_tokens":0.5}}}',
                    b'{"type":"assistant","message":{"id":"m1","content":[],"usage":{"input_tokens":1,"x":1.5}}}',
                    b'{"type":"assistant","message":{"id":"m1","content":[],"usage":{"input_tokens":1,"x":9999999999999999999}}}',
                    b'{"typ\\u0065":"assistant","message":{"id":"m9","content":[],"usage":{"input_tokens":3}}}',
                    b'{"type":"assistant","message":{"i\\u0064":"m9","content":[],"usage":{"input_tokens":3}}}',
                    b'{"type":"assistant","message":{"id":"m2","content":"","usage":{"input_tokens":3}},"message":null}',
                    b'[{"type":"assistant","usage":1}]',
                    b"",
                    b'{"type":"summary","summary":"t\\u00e9"}',
                    b'{"type":"cost-state","totalCostUSD":1.25,"startTime":"s1","sessionId":"' + SID.encode() + b'"}',
                    b'{"type":"cost-state","totalCostUSD":"x"}',
                    b'{"type":"api-request","usage":1}',
                ]
            )
        )
    other = st.sampled_from(["user", "system", 3, "summary"])
    line: dict[str, Any] = {"type": "assistant" if kind > 2 else draw(other)}
    if line["type"] == "summary":
        line["summary"] = draw(st.sampled_from(["title", 5]))
    _put(line, "sessionId", draw(st.sampled_from([SID, SID, "other-session", "", MISSING, 4])))
    _put(line, "timestamp", draw(_TS))
    _put(line, "cwd", draw(st.sampled_from([MISSING, "/p", "/q", "", None])))
    _put(line, "gitBranch", draw(st.sampled_from([MISSING, "main", "dev", ""])))
    _put(line, "version", draw(st.sampled_from([MISSING, "2.1.0", "2.2.0"])))
    _put(line, "requestId", draw(st.sampled_from(["req_1", "req_2", "req_3", "", MISSING, None, 5])))
    _put(line, "agentId", draw(st.sampled_from([MISSING, "a1", ""])))
    _put(line, "uuid", draw(st.sampled_from(["u1", "u2", MISSING])))
    message: Any = {}
    _put(message, "id", draw(st.sampled_from(["msg_1", "msg_2", "msg_3", "", MISSING, 7])))
    _put(message, "model", draw(st.sampled_from(["claude-opus-4", "claude-sonnet-4", "<synthetic>", "", MISSING, 3])))
    _put(message, "content", draw(st.sampled_from([[], [{"type": "text", "text": "x"}], "text", MISSING, 5, {}])))
    _put(message, "usage", draw(_claude_usage()))
    if draw(st.integers(0, 15)) == 0:
        message = draw(st.sampled_from([MISSING, None, "x", []]))
    _put(line, "message", message)
    return line


def _dump(line: Any, style: int) -> bytes:
    if isinstance(line, bytes):
        return line
    if style == 1:  # spaces, as some writers put them
        return json.dumps(line).encode()
    if style == 2:  # every non-ASCII character escaped
        return json.dumps(line, separators=(",", ":"), ensure_ascii=True).encode()
    if style == 3 and isinstance(line, dict) and line:  # the first member again (duplicate keys: last wins)
        key = next(iter(line))
        body = json.dumps(line, separators=(",", ":"), ensure_ascii=False)
        return (body[:-1] + "," + json.dumps(key) + ":" + json.dumps(line[key]) + "}").encode()
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode()


def _lines(agent: str, draw: Callable[..., Any]) -> list[bytes]:
    strategy = claude_line() if agent == "claude-code" else codex_line()
    items = draw(st.lists(st.tuples(strategy, st.sampled_from([0, 0, 0, 0, 1, 2, 3])), max_size=40))
    return [_dump(line, style) for line, style in items]


# ---------------------------------------------------------------------------------------- reading


def _path(root: Path, agent: str) -> Path:
    if agent == "claude-code":
        return root / "projects" / "-p" / f"{SID}.jsonl"
    return root / "sessions" / "2026" / "05" / "04" / f"rollout-2026-05-04T09-00-00-{SID}.jsonl"


def _read(agent: str, root: Path, state: MemoryStateStore | None = None) -> ImportBatch:
    importer = import_claude_code if agent == "claude-code" else import_codex
    return importer(root, with_events=False, env={}, state=state)


def _key(b: ImportBatch) -> tuple[Any, ...]:
    return (b.calls, b.sessions, b.errors, b.warnings, b.file_states, b.lines_read, b.bytes_read)


def _both_ways(monkeypatch: pytest.MonkeyPatch, agent: str, lines: list[bytes], split: int, tail: bytes) -> None:
    """Plain against native reader: whole, in 64-byte chunks, and as two incremental reads; in one file
    (read in chunks) and beside a second file that holds the first lines (the read-ahead path)."""
    with tempfile.TemporaryDirectory() as d:
        results: dict[tuple[bool, int, bool], Any] = {}
        root = Path(d)
        path = _path(root, agent)
        other = path.with_name(path.name.replace(SID[-4:], "beef"))
        path.parent.mkdir(parents=True)
        for native in (False, True):
            for chunk, two in ((1 << 20, False), (64, False), (1 << 20, True)) if native else ((1 << 20, False),):
                monkeypatch.setattr(jsonl, "NATIVE", native)
                monkeypatch.setattr(jsonl, "_CHUNK", chunk)
                for pair in (False, True) if not native else (two,):
                    # The same paths and times each way (a read's time falls back on the file's mtime).
                    if pair:
                        other.write_bytes(b"".join(x + b"\n" for x in lines[: len(lines) // 2]))
                        os.utime(other, ns=(_T0, _T0))
                    else:
                        other.unlink(missing_ok=True)
                    path.write_bytes(b"".join(x + b"\n" for x in lines[:split]) + tail)
                    os.utime(path, ns=(_T0, _T0))
                    state = MemoryStateStore()
                    first = _read(agent, root, state)
                    first.commit(state)
                    with open(path, "ab") as f:
                        f.write(b"".join(x + b"\n" for x in lines[split:]))
                    os.utime(path, ns=(_T0 + 1, _T0 + 1))
                    second = _read(agent, root, state)  # the other file is unchanged: skipped
                    path.write_bytes(b"".join(x + b"\n" for x in lines))
                    os.utime(path, ns=(_T0 + 2, _T0 + 2))
                    whole = _read(agent, root)
                    results[(native, chunk, pair)] = (_key(first), _key(second), _key(whole))
        for k, v in results.items():
            for got, want in zip(v, results[(False, 1 << 20, k[2])], strict=True):
                assert got == want, k


_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


_TAILS = {  # a last line still being written
    "codex": b'{"timestamp":"2026-05-04T09:00:00.000Z","type":"turn_co',
    "claude-code": b'{"type":"assistant","message":{"usage":{"input_tok',
}


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
@_SETTINGS
@given(data=st.data())
def test_rule_in_c_equals_the_python_rule(monkeypatch: pytest.MonkeyPatch, agent: str, data: st.DataObject) -> None:
    lines = _lines(agent, data.draw)
    split = data.draw(st.integers(0, len(lines)))
    _both_ways(monkeypatch, agent, lines, split, data.draw(st.sampled_from([b"", _TAILS[agent]])))


def test_codex_counting_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule's cases written out: a repeat, a warning, a total going down, info null, no timestamp."""

    def tc(ts: Any, total: Any, last: Any) -> bytes:
        info: dict[str, Any] | None = None
        if total is not None or last is not None:
            info = {}
            _put(info, "total_token_usage", total)
            _put(info, "last_token_usage", last)
        line = {"type": "event_msg", "payload": {"type": "token_count", "info": info}}
        _put(line, "timestamp", ts)
        return _dump(line, 0)

    u = dict.fromkeys(codex._FIELDS, 1)
    u2 = dict.fromkeys(codex._FIELDS, 2)
    u3 = dict(u2, output_tokens=7)
    lines = [
        _dump({"type": "turn_context", "timestamp": "2026-05-04T09:00:00.000Z", "payload": {"model": "gpt-5"}}, 0),
        tc("2026-05-04T09:00:01.000Z", u, u),
        tc("2026-05-04T09:00:02.000Z", u, u),  # a repeat
        tc("2026-05-04T09:00:03.000Z", None, None),
        tc(MISSING, u3, u),  # a warning; its time is the last one seen
        tc("2026-05-04T09:00:05.000Z", u2, MISSING),  # a total going down: no delta, no call
        tc("2026-05-04T09:00:06.000Z", u3, MISSING),  # the delta
    ]
    _both_ways(monkeypatch, "codex", lines, 3, b"")
    monkeypatch.setattr(jsonl, "NATIVE", True)
    with tempfile.TemporaryDirectory() as d:
        path = _path(Path(d), "codex")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"".join(x + b"\n" for x in lines))
        batch = _read("codex", Path(d))
    assert len(batch.calls) == 3 and len(batch.warnings) == 1 and not batch.errors


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
def test_usage_lines_never_reach_the_parsers_python(monkeypatch: pytest.MonkeyPatch, agent: str) -> None:
    """The point of the native rules: on the agents' usual lines the parsers' Python reads none but the
    rare kinds (Claude Code's summary and cost-state lines; for Codex, none)."""
    parser_cls: Any = claude_code.ClaudeCodeParser if agent == "claude-code" else codex.CodexParser
    fed: list[Any] = []
    real_feed = parser_cls.feed

    def feed(self: Any, line_no: int, obj: Any, raw: bytes) -> None:
        fed.append(obj.get("type"))
        real_feed(self, line_no, obj, raw)

    monkeypatch.setattr(parser_cls, "feed", feed)
    monkeypatch.setattr(jsonl, "NATIVE", True)
    with tempfile.TemporaryDirectory() as d:
        list(_corpus(Path(d)))
        batch = _read(agent, Path(d))
    assert batch.calls and not batch.errors
    rare = set() if agent == "codex" else {"summary", "cost-state"}
    assert set(fed) <= rare


def test_record_templates_are_what_the_scanner_copies() -> None:
    """The scanner makes TranscriptCall and Usage records by filling their slots in field order from a
    template: that is their __init__ only while they are slotted dataclasses without __post_init__."""
    for cls in (TranscriptCall, Usage):
        assert cls.__slots__ == tuple(f.name for f in dataclasses.fields(cls))
        assert not hasattr(cls, "__post_init__")
    for template in (claude_code._CALL_TEMPLATE, codex._CALL_TEMPLATE):
        defaults = [f.default for f in dataclasses.fields(TranscriptCall)[7:]]
        assert [getattr(template, f.name) for f in dataclasses.fields(TranscriptCall)[7:]] == defaults


def test_codex_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The header the rule reads (the file's first line that counts) and the ones it leaves to Python."""

    def meta(sid: str, ts: Any, **payload: Any) -> bytes:
        line = {"type": "session_meta", "payload": {"id": sid, **payload}}
        _put(line, "timestamp", ts)
        return _dump(line, 0)

    git = {"branch": "feature/x", "commit_hash": "abc", "repository_url": "https://x/y.git"}
    turn = _dump({"type": "turn_context", "timestamp": "2026-05-04T09:00:02.000Z", "payload": {"cwd": "/t"}}, 0)
    for lines in (
        [
            meta(
                SID,
                "2026-05-04T09:00:01.000Z",
                cwd="/m",
                cli_version="0.169.0",
                git=git,
                timestamp="2026-05-04T08:00:00Z",
            ),
            turn,
        ],
        [meta(SID, MISSING, git={"branch": ""}, timestamp="2026-05-04T08:00:00+00:00"), turn],
        [turn, meta("0f3c2b1a-0000-4000-8000-00000000000b", "2026-05-04T09:00:03.000Z", cwd="/n"), turn],
        [meta(SID, "2026-05-04T09:00:01.000Z"), meta("0f3c2b1a-0000-4000-8000-00000000000b", None, git=git), turn],
    ):
        for split in range(len(lines) + 1):
            _both_ways(monkeypatch, "codex", lines, split, b"")


def test_read_ahead_reads_what_read_file_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The read-ahead path (several files) against the plain reader, with a file gone after the plan, an
    unchanged file, an empty one and one too large to read ahead among them."""
    from .test_native_reader import _corpus

    list(_corpus(tmp_path))
    files = codex.find_codex_files(tmp_path)
    files[1].write_bytes(b"")
    for f in files:
        os.utime(f, ns=(_T0, _T0))
    monkeypatch.setattr(jsonl, "_AHEAD_MAX", 600)  # the first rollouts are larger: read the usual way
    state = MemoryStateStore()
    import_codex(files[2], with_events=False, env={}, state=state).commit(state)  # unchanged next time
    results = []
    for native in (False, True):
        monkeypatch.setattr(jsonl, "NATIVE", native)
        real_plan = jsonl.plan_read
        saved: list[bytes] = []

        def plan_then_remove(path: Any, st: Any, prev: Any, real_plan: Any = real_plan, saved: Any = saved) -> Any:
            plan = real_plan(path, st, prev)
            if Path(path) == files[3]:
                saved.append(files[3].read_bytes())
                files[3].unlink()  # gone between the plan and the read
            return plan

        monkeypatch.setattr(jsonl, "plan_read", plan_then_remove)
        batches = list(jsonl.read_files(files, lambda: codex.CodexParser(with_events=False), state))
        monkeypatch.setattr(jsonl, "plan_read", real_plan)
        files[3].write_bytes(saved[0])
        os.utime(files[3], ns=(_T0, _T0))  # as before the next run
        results.append([(f, _key(b)) for f, b in batches])
    assert results[0] == results[1]
    assert any(b[2] for _, b in results[1])  # the vanished file is reported
