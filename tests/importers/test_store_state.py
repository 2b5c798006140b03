"""Read positions in the store's import_state: unchanged files are skipped, changed ones read again."""

from __future__ import annotations

import os
from pathlib import Path

from agenttrail.importers import import_claude_code, import_codex
from agenttrail.importers.incremental import FileState
from agenttrail.importers.store_state import SqlStateStore, state_source
from agenttrail.importers.to_events import batch_to_events
from agenttrail.pricing import Pricer
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest

from .builders import ClaudeTranscript, CodexRollout, anthropic_usage, codex_usage


def _transcript(tmp: Path) -> tuple[ClaudeTranscript, Path]:
    t = ClaudeTranscript()
    t.prompt("hi")
    t.response([{"type": "text", "text": "hello"}], anthropic_usage(100, 20))
    return t, t.write(tmp / "projects")


def test_round_trip_and_unchanged_only(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    _, path = _transcript(tmp_path)
    st = os.stat(path)
    store = SqlStateStore(engine, "claude-code")
    assert store.get(str(path)) is None
    store.put(FileState(str(path), st.st_size, st.st_mtime_ns, st.st_size, 4, "ab" * 32, 1024, {"x": 1}))

    fresh = SqlStateStore(engine, "claude-code")  # another process: reads the table
    got = fresh.get(str(path))
    assert got is not None and (got.size, got.offset, got.head_hash) == (st.st_size, st.st_size, "ab" * 32)
    assert SqlStateStore(engine, "codex").get(str(path)) is None  # positions are per source

    with path.open("ab") as f:
        f.write(b'{"type":"summary","summary":"t"}\n')
    assert SqlStateStore(engine, "claude-code").get(str(path)) is None  # changed: read again from the start
    assert fresh.forget(str(path)) == 1 and SqlStateStore(engine, "claude-code").get(str(path)) is None


def test_second_import_reads_nothing_and_growth_stores_only_what_is_new(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    pricer = Pricer()
    t, _ = _transcript(tmp_path)

    def run() -> tuple[int, int, int]:
        store = SqlStateStore(engine, state_source("claude-code"))
        batch = import_claude_code(tmp_path / "projects", state=store)
        result = ingest(engine, batch_to_events(batch, pricer))
        store.put_many(batch.file_states)
        return batch.files_read, len(batch.calls), result.accepted

    files, calls, stored = run()
    assert (files, calls) == (1, 1) and stored > 0
    assert run() == (0, 0, 0)

    t.prompt("again")
    t.response([{"type": "text", "text": "sure"}], anthropic_usage(50, 10))
    t.write(tmp_path / "projects")
    files, calls, stored = run()
    # Re-read whole (no resume without the parser context), but only the new prompt, response, call
    # and the session's new end are stored.
    assert (files, calls) == (1, 2) and stored == 4
    assert run() == (0, 0, 0)


def test_codex_growth_keeps_the_model_and_counts(db_url: str, tmp_path: Path) -> None:
    """A rollout that grew is read from the start: the model from its turn_context still applies."""
    engine = open_engine(db_url)
    r = CodexRollout(model="gpt-5")
    r.meta()
    r.turn_context()
    r.user("go")
    r.token_count(codex_usage(100, 0, 10))
    r.write(tmp_path / "codex")
    store = SqlStateStore(engine, "codex")
    first = import_codex(tmp_path / "codex", state=store)
    store.put_many(first.file_states)
    r.token_count(codex_usage(200, 100, 20))
    r.write(tmp_path / "codex")
    second = import_codex(tmp_path / "codex", state=store)
    assert {c.model for c in second.calls} == {"gpt-5"} and len(second.calls) == 2


def test_server_uploads_keep_their_own_positions() -> None:
    local = state_source("claude-code")
    a = state_source("claude-code", "http://a.example:4100")
    assert local == "claude-code" and a != local and a == state_source("claude-code", "http://a.example:4100/")
    assert len(a) <= 40 and a != state_source("claude-code", "http://b.example:4100")
