"""PostgreSQL stores a batch larger than `PG_TRANSACTION_EVENTS` in transactions of whole sessions: the
rows and roll-ups are those of the batch in one transaction, and the counts those of the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.store import ingest as ingest_module
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, IngestResult, ingest, session_parts

from .test_rollup_pause import _events, assert_rollups_exact, rollups


def test_a_large_batch_in_parts_of_whole_sessions_stores_what_one_transaction_stores(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(pg_url)
    ingest(engine, _events(7, "W", 40))  # one transaction
    monkeypatch.setattr(ingest_module, "PG_TRANSACTION_EVENTS", 25)
    parts: list[Sequence[Event]] = []
    real = ingest_module._ingest

    def counted(engine: Engine, events: Sequence[Event], who: Attribution | None) -> IngestResult:
        parts.append(events)
        return real(engine, events, who)

    monkeypatch.setattr(ingest_module, "_ingest", counted)
    batch = _events(7, "P", 40, team_base=100)
    result = ingest(engine, [*batch, *batch[:6]])  # six ids twice in the batch: the first counts
    assert (result.accepted, result.duplicates) == (len(batch), 6)
    assert len(parts) > 3
    owner: dict[str, int] = {}
    for i, part in enumerate(parts):
        for e in part:
            assert owner.setdefault(e.session_id, i) == i, "a session's events in two transactions"
    assert sorted(e.event_id for part in parts for e in part) == sorted(e.event_id for e in batch)
    assert rollups(engine, "W") == rollups(engine, "P", team_base=100)
    assert_rollups_exact(engine)
    again = ingest(engine, batch)
    assert (again.accepted, again.duplicates) == (0, len(batch))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM event WHERE session_id LIKE 'P%'")).scalar() == len(batch)


def test_parts_keep_sessions_whole_and_in_order() -> None:
    events = _events(3, "S", 12)
    parts = session_parts(events, 10)
    assert sorted(e.event_id for p in parts for e in p) == sorted(e.event_id for e in events)
    for p in parts:
        sessions = {e.session_id for e in p}
        assert len(p) <= 10 or len(sessions) == 1
        for sid in sessions:  # each session's events whole, in their order
            assert [e for e in p if e.session_id == sid] == [e for e in events if e.session_id == sid]
