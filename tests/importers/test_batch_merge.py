"""`ImportBatch.extend` and `ImportBatch.add_file` (a parser's file into its batch without a batch of its
own) against a merge written call by call: the same sessions, calls (merged by identity, first seen first)
and events, whatever the batch held before and however the calls repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agenttrail.events import Event
from agenttrail.importers import CODEX, ImportBatch, TranscriptCall, TranscriptSession
from agenttrail.usage import Usage

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def call(i: int, out: int) -> TranscriptCall:
    return TranscriptCall(f"c{i}", "s", CODEX, "openai", "gpt-5", T0 + timedelta(seconds=i), Usage(output_tokens=out))


def session(i: int, at: int) -> TranscriptSession:
    s = TranscriptSession(agent=CODEX, agent_session_id=f"s{i}")
    s.see(T0 + timedelta(seconds=at))
    return s


def event(i: int) -> Event:
    return Event(session_id="s", kind="prompt", ts=T0, payload={"text": str(i)}, event_id=f"e{i}")


def view(b: ImportBatch) -> tuple[object, ...]:
    calls = [(c.call_id, c.usage.output_tokens) for c in b.calls]
    sessions = [(s.agent_session_id, s.started_at, s.ended_at) for s in b.sessions]
    return calls, sessions, [e.event_id for e in b.events]


def reference(parts: list[tuple[list[TranscriptSession], list[Event], list[TranscriptCall]]]) -> tuple[object, ...]:
    """The merge one record at a time: a call or session seen before is merged into the first one."""
    calls: dict[str, tuple[str, int]] = {}
    sessions: dict[str, tuple[str, datetime | None, datetime | None]] = {}
    events: list[str] = []
    for ss, es, cs in parts:
        for s in ss:
            have = sessions.get(s.agent_session_id)
            if have is None:
                sessions[s.agent_session_id] = (s.agent_session_id, s.started_at, s.ended_at)
            else:
                starts = [t for t in (have[1], s.started_at) if t is not None]
                ends = [t for t in (have[2], s.ended_at) if t is not None]
                sessions[s.agent_session_id] = (have[0], min(starts), max(ends))
        for c in cs:
            had = calls.get(c.call_id)
            calls[c.call_id] = (c.call_id, max(had[1], c.usage.output_tokens) if had else c.usage.output_tokens)
        events += [e.event_id for e in es]
    return list(calls.values()), list(sessions.values()), events


# A part: sessions (ids 0-2), events, calls (ids 0-9: files repeating each other's calls, or not).
_PART = st.tuples(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), max_size=3),
    st.lists(st.integers(0, 50), max_size=3),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1000)), max_size=8),
)


def build(
    part: tuple[list[tuple[int, int]], list[int], list[tuple[int, int]]],
) -> tuple[list[TranscriptSession], list[Event], list[TranscriptCall]]:
    ss, es, cs = part
    return [session(i, at) for i, at in ss], [event(i) for i in es], [call(i, out) for i, out in cs]


@given(st.lists(_PART, max_size=6))
def test_extend_merges_as_record_by_record(
    parts: list[tuple[list[tuple[int, int]], list[int], list[tuple[int, int]]]],
) -> None:
    built = [build(p) for p in parts]
    batch = ImportBatch()
    for ss, es, cs in built:
        batch.extend(ImportBatch(sessions=ss, events=es, calls=cs))
    assert view(batch) == reference([build(p) for p in parts])


@given(st.lists(_PART, max_size=6))
def test_add_file_merges_as_extend(parts: list[tuple[list[tuple[int, int]], list[int], list[tuple[int, int]]]]) -> None:
    """A parser hands over its calls keyed by id (one each), into an empty batch or one with records."""
    batch = ImportBatch()
    for p in parts:
        ss, es, cs = build(p)
        by_id: dict[str, TranscriptCall] = {}
        for c in cs:
            if c.call_id in by_id:
                by_id[c.call_id].merge(c)
            else:
                by_id[c.call_id] = c
        batch.add_file(ss, es, by_id)
    assert view(batch) == reference([build(p) for p in parts])


def test_add_file_into_an_empty_batch_then_extend_finds_its_calls() -> None:
    """The calls taken as they are are indexed: a later batch repeating one merges, not appends."""
    file_batch = ImportBatch()
    file_batch.add_file([session(0, 1)], [], {"c1": call(1, 5), "c2": call(2, 7)})
    file_batch.extend(ImportBatch(sessions=[session(0, 9)], calls=[call(2, 9), call(3, 1)]))
    assert view(file_batch) == (
        [("c1", 5), ("c2", 9), ("c3", 1)],
        [("s0", T0 + timedelta(seconds=1), T0 + timedelta(seconds=9))],
        [],
    )
