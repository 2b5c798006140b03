"""The native reader (`_scan.c`) against the plain one (orjson on every line the byte checks keep).

Same calls, sessions, errors (with orjson's words), warnings, read positions and line counts on
transcripts with damaged lines of every kind; and, line by line on generated JSON and mutated bytes,
the scanner keeps exactly the lines the Python byte checks keep, is sure of a line only when orjson
accepts it, and then builds exactly orjson's values for the members its spec names."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.conftest import need

from agenttrail.importers import ImportBatch, claude_code, codex, import_claude_code, import_codex, jsonl

from .builders import ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage, write_jsonl

scan_module = jsonl._scan


@pytest.fixture(autouse=True)
def _scanner_built() -> None:
    # A skip in CI (strict) would hide a build hook that stopped compiling: there it is a failure.
    need(scan_module is not None, "the native line scanner was not built (no C compiler when installed)")


CLAUDE_RULE = claude_code._NATIVE
CODEX_RULE = codex._NATIVE
SID = "0f3c2b1a-0000-4000-8000-00000000000a"

# Lines that are damaged, odd, or on the edge of what the scanner is sure of; spliced into transcripts.
_ODD_VALUES = [
    b'"\xff"',
    b'"\xed\xa0\x80"',  # an encoded surrogate
    b'"\xc0\x80"',  # overlong
    b'"\xf4\x90\x80\x80"',  # past U+10FFFF
    b"1e400",
    b"1E2",
    b"0.5",
    b"-0",
    b"9" * 400,
    b"9" * 19,
    b"18446744073709551616",
    b"-9223372036854775809",
    b'"\\ud800"',
    b'"\\udc00x"',
    b'"\\ud83d\\ude00"',
    b'"\\u00e9\\n\\t\\"\\\\\\/"',
    b'"a\x01"',
    b"01",
    b"[" * 70 + b"]" * 70,
    b"[" * 2000 + b"]" * 2000,
    b"NaN",
    b"tru",
    b'{"a":1,}',
    b"[1,]",
    b'""',
    b"null",
]


def claude_text(u: dict[str, Any]) -> list[bytes]:
    t = ClaudeTranscript(session_id=SID)
    t.prompt("go")
    t.response([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], u, partial_output=1)
    t.summary("a title")
    t.cost_state(1.25)
    return [orjson.dumps(line) for line in t.lines]


def damaged_claude_lines() -> list[bytes]:
    base = claude_text(anthropic_usage(1200, 250, cache_read=3000, cache_5m=500))
    resp = base[1].decode()
    out = list(base)
    for v in _ODD_VALUES:
        text = v.decode("utf-8", "surrogateescape")
        out.append(
            resp.replace('"output_tokens":', f'"x":{text},"output_tokens":', 1).encode("utf-8", "surrogateescape")
        )
        out.append(resp.replace('"cwd":', f'"y":{text},"cwd":', 1).encode("utf-8", "surrogateescape"))
        out.append(resp.replace('"model":', f'"model":{text},"m0":', 1).encode("utf-8", "surrogateescape"))
    out += [
        resp.replace('"requestId"', '"request\\u0049d"', 1).encode(),  # an escaped key the spec names
        resp.replace('"message":', '"message":{"id":"dup"},"message":', 1).encode(),  # duplicate: last wins
        resp.replace('"usage":{', '"usage":{"usage":1,', 1).encode(),
        resp.replace('"content":[', '"content":7,"c":[', 1).encode(),  # wrong shape: reported
        resp.replace('"message":{', '"message":[{', 1).encode(),  # damaged
        b"\xef\xbb\xbf" + base[1],  # BOM
        b"  " + base[1] + b"  \r",  # spaces around, a CR before the newline
        b"   ",
        b"",
        b'{"type":"api-request","usage":{"input_tokens":5}}',  # skipped by prefix
        b'{"type":"api-request","usage":{"input_tokens":5}} ',  # not skipped: it does not end in }
        b'{"type":"summary","summary":"t\\u00e9"}',
        b'{"type":"summary"',
        b'{"type":"cost-state","totalCostUSD":3}',
        b"[1]",
        b'"usage"',
    ]
    return out


def damaged_codex_lines() -> list[bytes]:
    r = CodexRollout(session_id=SID)
    r.meta()
    r.turn_context()
    r.user("hi")
    r.token_count(codex_usage(1500, 1000, 300, reasoning=100), repeat=2)
    r.usage_record("resp_1", codex_usage(1500, 1000, 300))
    r.rate_limit_only()
    base = [orjson.dumps(line) for line in r.lines]
    tc = next(b for b in base if b'"token_count"' in b).decode()
    out = list(base)
    for v in _ODD_VALUES:
        text = v.decode("utf-8", "surrogateescape")
        for where in ('"output_tokens":', '"info":', '"type":"event_msg"'):
            line = tc.replace(where, f'"z":{text},{where}', 1)
            out.append(line.encode("utf-8", "surrogateescape"))
    out += [
        tc.replace('"payload":{', '"payload":{"type":"x","type":', 1).encode(),
        tc.replace('"timestamp":"', '"timestamp":"\\u0032', 1).encode(),
        tc.replace('"token_count"', '"token_countx"', 1).encode(),
        tc.replace('"token_count"', '"token_\\u0063ount"', 1).encode(),
        tc.replace('"type":"event_msg"', '"ordinal":12,"type":"event_msg"', 1).encode(),
        tc.replace('"type":"event_msg"', '"ordinal":x,"type":"event_msg"', 1).encode(),
        b'{"timestamp":"t","type":"response_item","payload":{"type":"message"',
        b'{"timestamp":"t","type":"event_msg","payload":{"type":"agent_message"}}',
        b'{"timestamp":"t\\"","type":"response_item"}',
        b'{"id":"0f3c2b1a-0000-4000-8000-0000000000ff","cwd":"/w","timestamp":"2026-05-04T10:00:00Z"}',
        b'{"type":"message","role":"user","content":"x"}',
        b"\xef\xbb\xbf" + base[1],
        b"   ",
        b"null",
    ]
    return out


def _write(root: Path, agent: str, lines: list[bytes], *, last_newline: bool = True) -> Path:
    if agent == "claude-code":
        path = root / "projects" / "-p" / f"{SID}.jsonl"
    else:
        path = root / "sessions" / "2026" / "05" / "04" / f"rollout-2026-05-04T09-00-00-{SID}.jsonl"
    write_jsonl(path, lines)
    if not last_newline:
        with open(path, "ab") as f:
            f.write(b'{"type":"assistant","usage"')
    return path


def _both(monkeypatch: pytest.MonkeyPatch, agent: str, root: Path) -> tuple[ImportBatch, ImportBatch]:
    importer = import_claude_code if agent == "claude-code" else import_codex
    out = []
    for native in (False, True):
        monkeypatch.setattr(jsonl, "NATIVE", native)
        out.append(importer(root, with_events=False, env={}))
    return out[0], out[1]


def _same(plain: ImportBatch, native: ImportBatch) -> None:
    assert native.calls == plain.calls
    assert native.sessions == plain.sessions
    assert native.errors == plain.errors
    assert native.warnings == plain.warnings
    assert native.file_states == plain.file_states
    assert (native.lines_read, native.bytes_read) == (plain.lines_read, plain.bytes_read)


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
@pytest.mark.parametrize("chunk", [64, 1 << 20])  # small chunks: lines straddle every read
def test_native_reader_equals_plain_reader_on_damaged_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, agent: str, chunk: int
) -> None:
    monkeypatch.setattr(jsonl, "_CHUNK", chunk)
    lines = damaged_claude_lines() if agent == "claude-code" else damaged_codex_lines()
    _write(tmp_path, agent, lines, last_newline=False)
    plain, native = _both(monkeypatch, agent, tmp_path)
    _same(plain, native)
    assert plain.calls and plain.errors and plain.warnings  # the corpus exercises all three
    # Damaged lines are reported, not counted: every odd value that orjson rejects is an error.
    rejected = sum(1 for line in lines if not _orjson_ok(line) and not line.isspace() and line)
    assert len(native.errors) >= rejected - 2  # two rejected lines are ones the byte checks skip


def _orjson_ok(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def test_native_reader_resumes_where_the_plain_reader_would(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Incremental reads: a file read, grown, read again gives the same positions and calls either way."""
    from agenttrail.importers.incremental import MemoryStateStore

    lines = damaged_claude_lines()
    results = []
    for native in (False, True):
        monkeypatch.setattr(jsonl, "NATIVE", native)
        root = tmp_path / str(native)
        path = _write(root, "claude-code", lines[:5], last_newline=False)
        state = MemoryStateStore()
        first = import_claude_code(root, state=state, with_events=False, env={})
        first.commit(state)
        with open(path, "r+b") as f:  # complete the partial line, then more lines
            f.seek(0, os.SEEK_END)
            f.write(b':{"input_tokens":5}}\n' + b"\n".join(lines[5:]) + b"\n")
        second = import_claude_code(root, state=state, with_events=False, env={})
        results.append((first, second))
    for (p1, p2), (n1, n2) in [(results[0], results[1])]:
        assert [c.usage for c in n1.calls] == [c.usage for c in p1.calls]
        assert [c.usage for c in n2.calls] == [c.usage for c in p2.calls]
        assert [e[1:] for e in n2.errors] == [e[1:] for e in p2.errors]
        assert [s.offset for s in n2.file_states] == [s.offset for s in p2.file_states]


# ------------------------------------------------------------------------------------ line by line


def _restrict(value: Any, spec: Any) -> Any:
    """What the scanner must build for `value` (orjson's) under `spec`."""
    if spec is None:
        return value
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return value
        return {k: _restrict(v, spec[k]) for k, v in value.items() if k in spec}
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return []
    return value


def _python_keeps(rule: jsonl.NativeRule, raw: bytes) -> bool:
    if rule.mode == 1:
        if raw.startswith(claude_code.SKIP_PREFIXES) and raw.endswith(b"}\n"):
            return False
        return not claude_code._cannot_count(raw)
    return not codex._CANNOT_COUNT.match(raw)


def check_line(rule: jsonl.NativeRule, raw: bytes) -> None:
    assert scan_module is not None
    items, lines, used = scan_module.scan(
        raw, 10, rule.mode, rule.skip_prefixes, rule.needle, rule.keep_prefixes, rule.spec
    )
    complete = raw.endswith(b"\n") and raw.count(b"\n") == 1
    if not complete:
        return
    assert (lines, used) == (1, len(raw))
    if not _python_keeps(rule, raw):
        assert items == []
        return
    assert items[0] == 11
    got = items[1]
    if isinstance(got, bytes):
        assert got == raw  # unsure: orjson decides
        return
    want = orjson.loads(raw)  # sure: orjson must accept it ...
    assert got == _restrict(want, rule.spec)  # ... and give the same values
    assert _types(got) == _types(_restrict(want, rule.spec))  # 1 is not 1.0 nor True


def _types(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _types(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_types(x) for x in v]
    return type(v)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_names = st.sampled_from(["type", "message", "usage", "content", "model", "payload", "info", "cwd", "timestamp", "x"])


@st.composite
def json_lines(draw: st.DrawFn) -> bytes:
    """A JSON object line whose keys are often the spec's, values anything, sometimes mutated bytes."""
    keys = draw(st.lists(st.one_of(_names, st.text(max_size=5)), max_size=6))
    obj: dict[str, Any] = {}
    for k in keys:
        if k in ("message", "payload", "usage", "info") and draw(st.booleans()):
            obj[k] = draw(st.dictionaries(_names, _json, max_size=4))
        else:
            obj[k] = draw(_json)
    # json, not orjson: big integers, and lone surrogates raw (invalid UTF-8) or escaped.
    ascii_only = draw(st.booleans())
    raw = json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        prefix = draw(
            st.sampled_from(
                [b'{"type":"summary",', b'{"type":"api-request",', b'{"timestamp":"t","type":"response_item",', b"{"]
            )
        )
        raw = prefix + raw[1:] if len(raw) > 2 else raw
    if draw(st.integers(0, 3)) == 0 and raw:  # a byte mutated, inserted or dropped
        i = draw(st.integers(0, len(raw) - 1))
        b = draw(st.binary(min_size=0, max_size=2))
        raw = raw[:i] + b + raw[i + draw(st.integers(0, 1)) :]
    raw = raw.replace(b"\n", b" ")
    return raw + draw(st.sampled_from([b"\n", b" \n", b"\r\n"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_lines(), st.sampled_from(["claude", "codex"]))
@example(b'{"type":"assistant","usage":{"input_tokens":1e400}}\n', "claude")
@example(b'{"type":"assistant","message":{"usage":{"input_tokens":' + b"9" * 400 + b"}}}\n", "claude")
@example(b'{"type":"assistant","x":"\xff","usage":1}\n', "claude")
@example(b'{"type":"assistant","x":"\\ud800","usage":1}\n', "claude")
@example(b'{"timestamp":"t","type":"event_msg","payload":{"type":"token_count","info":{"a":1.5}}}\n', "codex")
def test_scanner_line_by_line_matches_orjson(raw: bytes, agent: str) -> None:
    check_line(CLAUDE_RULE if agent == "claude" else CODEX_RULE, raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(["claude", "codex"]))
def test_scanner_on_arbitrary_bytes_keeps_what_python_keeps(data: bytes, agent: str) -> None:
    raw = data.replace(b"\n", b"") + b"\n"
    check_line(CLAUDE_RULE if agent == "claude" else CODEX_RULE, raw)


def test_codex_filter_spelled_out_matches_the_pattern() -> None:
    """The C spelling of `_CANNOT_COUNT` on the shapes the pattern distinguishes."""
    cases = [
        b'{"timestamp":"2026","type":"response_item","payload":{}}\n',
        b'{"timestamp":"2026","ordinal":3,"type":"response_item"}\n',
        b'{"timestamp":"2026","ordinal":,"type":"response_item"}\n',
        b'{"timestamp":"2026","ordinal":3x,"type":"response_item"}\n',
        b'{"timestamp":"20\\"26","type":"response_item"}\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"token_count"}}\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"token_count2"}}\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"token_coun"}}\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"a\\"b"}}\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"agent_message"\n',
        b'{"timestamp":"2026","type":"event_msg","payload":{"type":"\n',
        b'{"timestamp":"2026","type":"turn_context"}\n',
        b'{"timestamp":"2026" ,"type":"response_item"}\n',
    ]
    for raw in cases:
        check_line(CODEX_RULE, raw)


# ------------------------------------------------------------------------------- generated corpora


def _corpus(root: Path) -> Iterator[str]:
    for i in range(6):
        t = ClaudeTranscript(cwd=f"/r{i}")
        for turn in range(4):
            t.prompt("p")
            u = anthropic_usage(10 + turn, 20 + i, cache_read=30, cache_5m=turn, cache_1h=i % 2)
            t.response([{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "é\n"}], u)
        t.summary(f'title {i} \\ "q"')
        t.cost_state(0.5 + i)
        t.write(root / "projects")
        r = CodexRollout(cwd=f"/r{i}")
        r.meta()
        for turn in range(4):
            r.turn_context()
            r.user("u")
            u = codex_usage(100 * (turn + 1), 10, 5 + i, reasoning=1)
            if i % 2:
                r.usage_record(f"resp_{i}_{turn}", u)
            r.token_count(u)
        r.write(root)
    yield from ("claude-code", "codex")


def test_native_reader_equals_plain_reader_on_generated_transcripts(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for agent in _corpus(root):
            plain, native = _both(monkeypatch, agent, root)
            _same(plain, native)
            assert plain.calls and not plain.errors


def test_rules_mirror_the_parsers_byte_checks() -> None:
    """The NativeRules hold the parsers' own prefixes and needle (a change to one must reach the other)."""
    assert CLAUDE_RULE.skip_prefixes == claude_code.SKIP_PREFIXES
    assert CLAUDE_RULE.needle == claude_code._USAGE
    assert CLAUDE_RULE.keep_prefixes == claude_code._SESSION_LINES
    assert re.escape("token_count") in codex._CANNOT_COUNT.pattern.decode()
