"""Damaged transcripts: everything readable is imported, everything else is reported, nothing stops."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agenttrail.importers import ImportBatch, import_claude_code, import_codex

from .builders import ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage, write_jsonl


def _claude_lines() -> tuple[str, list[bytes]]:
    t = ClaudeTranscript(session_id="0f3c2b1a-0000-4000-8000-000000000001")
    t.prompt("Create hello.py")
    t.response(
        [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "h.py", "content": "x"}},
        ],
        anthropic_usage(1200, 250, cache_read=3000, cache_5m=500),
        partial_output=1,
    )
    t.tool_result("toolu_1", "ok")
    t.response([{"type": "text", "text": "Done — ✓ ünïcode"}], anthropic_usage(10, 5, cache_read=4200))
    return t.session_id, [orjson.dumps(line) for line in t.lines]


def _codex_lines() -> tuple[str, list[bytes]]:
    r = CodexRollout(session_id="0f3c2b1a-0000-4000-8000-000000000002")
    r.meta()
    r.turn_context()
    r.user("list files")
    r.function_call("call_1")
    r.token_count(codex_usage(1500, 1000, 300, reasoning=100), repeat=2)
    r.function_output("call_1", "Process exited with code 0\nOutput:\na\n")
    r.assistant("Done.")
    r.token_count(codex_usage(1700, 1500, 20))
    return r.session_id, [orjson.dumps(line) for line in r.lines]


CLAUDE_SID, CLAUDE_LINES = _claude_lines()
CODEX_SID, CODEX_LINES = _codex_lines()


def _claude_file(root: Path, lines: list[bytes]) -> Path:
    return write_jsonl(root / "projects" / "-p" / f"{CLAUDE_SID}.jsonl", lines)


def _codex_file(root: Path, lines: list[bytes]) -> Path:
    return write_jsonl(
        root / "sessions" / "2026" / "05" / "04" / f"rollout-2026-05-04T09-00-00-{CODEX_SID}.jsonl", lines
    )


def _summary(batch: ImportBatch) -> tuple[list[Any], list[Any]]:
    events = [(e.event_id, e.kind, e.session_id, e.ts, e.payload) for e in batch.events]
    calls = sorted((c.call_id, c.session_id, c.model, c.usage) for c in batch.calls)
    return events, calls


def test_damaged_claude_transcript_imports_what_is_readable(tmp_path: Path) -> None:
    good = CLAUDE_LINES
    clean = import_claude_code(_claude_file(tmp_path / "clean", good))
    damaged_lines = [
        good[0],
        b"this is not json",  # 2
        good[1][: len(good[1]) // 2],  # 3: truncated mid-line, then the agent went on writing
        good[1],
        b'{"type": "assistant", "message": "not an object"}',  # 5: wrong shape
        b"\xff\xfe{\x00broken utf-8",  # 6
        good[2],
        b"[1, 2, 3]",  # 8: JSON, but not an object
        b"",  # blank lines are not errors
        *good[3:],
    ]
    path = _claude_file(tmp_path / "damaged", damaged_lines)
    with path.open("ab") as f:
        f.write(good[-1][:20])  # a last line the agent was still writing

    batch = import_claude_code(path)

    assert _summary(batch) == _summary(clean)
    reasons = {e.line_no: e.reason for e in batch.errors}
    assert sorted(reasons) == [2, 3, 5, 6, 8]
    assert reasons[2].startswith("not JSON") and reasons[3].startswith("not JSON")
    assert reasons[5].startswith("unexpected shape")
    assert reasons[6].startswith("invalid UTF-8")
    assert all(e.path == str(path) for e in batch.errors)
    assert [w.line_no for w in batch.warnings] == [len(damaged_lines) + 1]


def test_damaged_codex_rollout_imports_what_is_readable(tmp_path: Path) -> None:
    good = CODEX_LINES
    clean = import_codex(_codex_file(tmp_path / "clean", good))
    damaged_lines = [
        good[0],
        b"{{{",
        good[1],
        b'{"timestamp": "x", "type": "event_msg", "payload": 7}',
        *good[2:5],
        b"\xc3\x28",
        good[5][:-3],
        *good[5:],
    ]
    path = _codex_file(tmp_path / "damaged", damaged_lines)

    batch = import_codex(path)

    assert _summary(batch) == _summary(clean)
    assert [e.line_no for e in batch.errors] == [2, 4, 8, 9]
    assert batch.sessions[0].repo_url == "https://github.com/acme/gadgets.git"


def test_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = _claude_file(tmp_path, CLAUDE_LINES)
    path.chmod(0)
    try:
        batch = import_claude_code(path)
    finally:
        path.chmod(0o644)
    # As root the file is still readable; either way nothing raises.
    assert batch.errors == [] or batch.errors[0].line_no in (0, 1)


_GARBAGE = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"null",
            b"[]",
            b"42",
            b'"str"',
            b"{}",
            b'{"type": "user"}',
            b'{"type": "assistant", "message": []}',
            b'{"type": "response_item", "payload": null}',
            b'{"type": "event_msg", "payload": {"type": "token_count", "info": "x"}}',
            b'{"type":"session_meta","payload":{}}',
            b"\xed\xa0\x80",
            b'{"a": 1e999999}',
        ]
    ),
    st.sampled_from(CLAUDE_LINES + CODEX_LINES).flatmap(
        lambda line: st.integers(1, len(line) - 1).map(lambda n: line[:n])
    ),  # truncated real lines
).map(lambda b: b.replace(b"\n", b""))


def _interleave(valid: list[bytes], garbage: list[bytes], positions: list[int]) -> tuple[list[bytes], set[int]]:
    """Insert garbage lines among the valid ones; return the lines and the 1-based numbers of garbage that
    is not JSON (and not blank), which must be reported."""
    lines = list(valid)
    for g, pos in sorted(zip(garbage, positions, strict=True), key=lambda x: x[1], reverse=True):
        lines.insert(min(pos, len(lines)), g)
    garbage_ids = {id(g) for g in garbage}
    must_report: set[int] = set()
    for n, line in enumerate(lines, 1):
        if id(line) in garbage_ids and line.strip():
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                must_report.add(n)
    return lines, must_report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage_never_raises_and_never_loses_valid_lines(data: st.DataObject) -> None:
    garbage = data.draw(st.lists(_GARBAGE, max_size=12))
    positions = data.draw(st.lists(st.integers(0, 20), min_size=len(garbage), max_size=len(garbage)))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for make, valid, importer in (
            (_claude_file, CLAUDE_LINES, import_claude_code),
            (_codex_file, CODEX_LINES, import_codex),
        ):
            clean = importer(make(root / "clean", valid))
            lines, must_report = _interleave(valid, garbage, positions)
            batch = importer(make(root / "dirty", lines))

            assert _summary(batch) == _summary(clean)
            reported = {e.line_no for e in batch.errors}
            assert must_report <= reported
            assert not any(e.reason.startswith("internal error") for e in batch.errors)
