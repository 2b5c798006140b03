from __future__ import annotations

import os
import pickle
from pathlib import Path

import orjson

from agenttrail.importers import FileState, ImportBatch, MemoryStateStore, StateStore, import_claude_code
from agenttrail.importers.incremental import HEAD_BYTES, plan_read

from .builders import ClaudeTranscript, anthropic_usage


def _append(path: Path, *lines: dict | bytes) -> None:
    with path.open("ab") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line) + b"\n")


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_memory_store_implements_the_protocol() -> None:
    store = MemoryStateStore()
    assert isinstance(store, StateStore)
    st = FileState(
        path="/x", size=10, mtime_ns=5, offset=10, line_no=2, head_hash="ab", head_len=10, carry={"model": "gpt-5"}
    )
    store.put(st)
    got = store.get("/x")
    assert got == st and got is not st
    assert FileState.from_dict(orjson.loads(orjson.dumps(st.to_dict()))) == st
    assert store.get("/missing") is None


def test_only_new_lines_are_read(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("one")
    t.response([{"type": "text", "text": "1"}], anthropic_usage(10, 1))
    path = t.write(tmp_path)
    store = MemoryStateStore()
    first = import_claude_code(tmp_path, state=store)
    first.commit(store)
    size_after_first = path.stat().st_size

    before = len(t.lines)
    t.prompt("two")
    t.response([{"type": "text", "text": "2"}], anthropic_usage(20, 2))
    _append(path, *t.lines[before:], b"not json\n")
    second = import_claude_code(tmp_path, state=store)
    second.commit(store)
    third = import_claude_code(tmp_path, state=store)

    assert [e.payload["text"] for e in first.events] == ["one", "1"]
    assert [e.payload["text"] for e in second.events] == ["two", "2"]
    assert [c.usage.input_tokens for c in second.calls] == [20]
    assert second.bytes_read == path.stat().st_size - size_after_first
    # Line numbers keep counting from where the last import stopped.
    assert [(e.line_no, e.reason.split(" (")[0]) for e in second.errors] == [(5, "not JSON")]
    assert third.files_skipped == 1 and third.events == [] and third.errors == []


def test_uncommitted_state_rereads_with_the_same_ids(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("one")
    t.write(tmp_path)
    store = MemoryStateStore()

    first = import_claude_code(tmp_path, state=store)  # not committed: as if storing it failed
    again = import_claude_code(tmp_path, state=store)

    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]


def test_incomplete_last_line_waits_until_completed(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("one")
    path = t.write(tmp_path)
    t.prompt("two")
    line = orjson.dumps(t.lines[-1])
    _append(path, line[:40])
    store = MemoryStateStore()

    first = import_claude_code(tmp_path, state=store)
    first.commit(store)
    _append(path, line[40:] + b"\n")
    _bump_mtime(path)
    second = import_claude_code(tmp_path, state=store)

    assert [e.payload["text"] for e in first.events] == ["one"]
    assert first.errors == []
    assert [(w.line_no, w.reason.startswith("incomplete last line")) for w in first.warnings] == [(2, True)]
    assert [e.payload["text"] for e in second.events] == ["two"]
    assert second.errors == [] and second.warnings == []


def test_response_split_across_imports_keeps_the_final_usage(tmp_path: Path) -> None:
    """The lines of one response were being written when the first import ran."""
    t = ClaudeTranscript()
    t.prompt("go")
    t.response(
        [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ],
        anthropic_usage(100, 80, cache_read=50),
        partial_output=3,
    )
    lines = list(t.lines)
    path = tmp_path / "-p" / f"{t.session_id}.jsonl"
    path.parent.mkdir()
    _append(path, *lines[:2])
    store = MemoryStateStore()
    first = import_claude_code(tmp_path, state=store)
    first.commit(store)
    _append(path, lines[2])
    second = import_claude_code(tmp_path, state=store)

    (early,) = first.calls
    (late,) = second.calls
    assert early.call_id == late.call_id
    assert early.usage.output_tokens == 3 and late.usage.output_tokens == 80
    early.merge(late)  # what the store does on upsert
    assert early.usage.output_tokens == 80 and early.usage.cache_read_tokens == 50


def test_rewritten_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("one")
    t.prompt("two")
    path = t.write(tmp_path)
    store = MemoryStateStore()
    first = import_claude_code(tmp_path, state=store)
    first.commit(store)

    other = ClaudeTranscript(session_id=t.session_id)
    other.prompt("replaced, and longer than before " * 30)
    other.write(tmp_path)
    assert path.stat().st_size > first.file_states[0].offset
    prev = store.get(str(path))
    assert prev is not None and plan_read(path, path.stat(), prev).reason == "rewritten"
    second = import_claude_code(tmp_path, state=store)

    assert [e.payload["text"][:8] for e in second.events] == ["replaced"]
    assert second.file_states[0].line_no == 1


def test_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    for i in range(3):
        t.prompt(f"p{i}")
    path = t.write(tmp_path)
    store = MemoryStateStore()
    import_claude_code(tmp_path, state=store).commit(store)

    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"\n") + 1])
    prev = store.get(str(path))
    assert prev is not None and plan_read(path, path.stat(), prev).reason == "truncated"
    again = import_claude_code(tmp_path, state=store)

    assert [e.payload["text"] for e in again.events] == ["p0"]


def test_head_hash_covers_at_most_4k(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    for i in range(40):
        t.prompt(f"prompt {i} " + "x" * 200)
    t.write(tmp_path)

    batch = import_claude_code(tmp_path)

    (st,) = batch.file_states
    assert st.head_len == HEAD_BYTES
    assert st.offset == st.size
    assert st.line_no == 40


def test_parallel_workers_read_the_same_as_one_process(tmp_path: Path) -> None:
    for i in range(4):
        t = ClaudeTranscript()
        t.prompt(f"task {i}")
        t.response([{"type": "text", "text": "ok"}], anthropic_usage(10 * (i + 1), 1))
        t.write(tmp_path)
    store = MemoryStateStore()
    one = import_claude_code(tmp_path, state=store)
    one.commit(store)
    t = ClaudeTranscript()
    t.prompt("new")
    t.write(tmp_path)

    serial = import_claude_code(tmp_path, state=store)
    parallel = import_claude_code(tmp_path, state=store, workers=2)

    assert [e.event_id for e in parallel.events] == [e.event_id for e in serial.events]
    assert parallel.files_skipped == serial.files_skipped == 4
    assert [s.to_dict() for s in parallel.file_states] == [s.to_dict() for s in serial.file_states]
    assert one.total_usage().input_tokens == 100


def test_a_packed_batch_unpacks_to_the_same_records(tmp_path: Path) -> None:
    # What workers send back: plain rows, pickled (the records themselves pickle slowly).
    t = ClaudeTranscript()
    t.prompt("look")
    t.response([{"type": "text", "text": "ok"}], anthropic_usage(10, 4, cache_read=7, cache_1h=3), partial_output=1)
    t.summary("a title")
    path = t.write(tmp_path)
    with path.open("ab") as f:
        f.write(b'not json\n{"incomplete": ')
    batch = import_claude_code(tmp_path)
    assert batch.calls and batch.events and batch.errors and batch.warnings and batch.sessions

    back = ImportBatch.unpack(pickle.loads(pickle.dumps(batch.pack())))

    assert back == batch
    assert (back.files_read, back.bytes_read, back.lines_read) == (1, batch.bytes_read, batch.lines_read)
