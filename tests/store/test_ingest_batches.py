"""Waiting batches stored together: the same rows and per-batch counts as storing them one after another;
one key's batches in one transaction; a batch that fails fails alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.store import ingest as ingest_module
from agenttrail.store import ingest_batches as batches_module
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, IngestResult, Prepared, ingest, prepare
from agenttrail.store.ingest_batches import ingest_batches
from agenttrail.store.org import add_team

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


def _session(sid: str, n: int, *, cost: float = 0.01) -> list[Event]:
    evs = [Event(sid, "session_start", T0, {"repo": "pay", "agent": "claude-code"}, f"{sid}-start")]
    for i in range(n):
        record = {"call_id": f"{sid}-c{i}", "provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": cost}
        evs.append(Event(sid, "llm_call", T0 + timedelta(seconds=i + 1), {"record": record}, f"{sid}-call{i}"))
        evs.append(Event(sid, "exec", T0 + timedelta(seconds=i + 1), {"argv": ["ls"]}, f"{sid}-exec{i}"))
    evs.append(Event(sid, "session_end", T0 + timedelta(minutes=5), {"exit_code": 0}, f"{sid}-end"))
    return evs


def _store(url: str) -> tuple[Engine, Attribution, Attribution]:
    engine = open_engine(url)
    a, b = add_team(engine, "payments").id, add_team(engine, "search").id
    return engine, Attribution(team_id=a, engineer="ana"), Attribution(team_id=b, engineer="bo")


def _state(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return [
            c.execute(text("SELECT event_id, session_id, kind FROM event ORDER BY event_id")).all(),
            c.execute(text("SELECT session_id, team_id, engineer, calls, cost_usd FROM sessions ORDER BY 1")).all(),
            c.execute(text("SELECT call_id, team_id, session_id FROM llm_call ORDER BY call_id")).all(),
        ]


def _batches(ana: Attribution, bo: Attribution) -> list[tuple[list[Event], Attribution]]:
    s1, s2, s3 = _session("s1", 4), _session("s2", 3), _session("s3", 2)
    return [
        (s1[:5], ana),
        (s2, bo),
        # a repeat of the first batch's last event, a repeat inside the batch, and new events
        (s1[4:] + s1[-1:], ana),
        (s3, ana),
        (s1[:2], ana),  # stored already: all duplicates
    ]


def test_same_rows_and_counts_as_one_after_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    together, ana, bo = _store(f"sqlite:///{tmp_path}/together.db")
    in_turn, ana2, bo2 = _store(f"sqlite:///{tmp_path}/in_turn.db")
    assert (ana, bo) == (ana2, bo2)
    batches = _batches(ana, bo)

    got = ingest_batches(together, [(prepare(events), who) for events, who in batches])
    expected = [ingest(in_turn, events, who) for events, who in batches]

    assert got == expected
    assert expected[2] == IngestResult(accepted=len(batches[2][0]) - 2, duplicates=2)
    assert expected[4] == IngestResult(accepted=0, duplicates=2)
    assert _state(together) == _state(in_turn)
    sessions = {row[0]: row[1:3] for row in _state(together)[1]}
    assert sessions["s2"] == (bo.team_id, "bo") and sessions["s3"] == (ana.team_id, "ana")


def test_one_transaction_per_key(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, ana, bo = _store(f"sqlite:///{tmp_path}/a.db")
    calls: list[int] = []
    real = batches_module.ingest_ids

    def counting(engine: Engine, batch: Prepared, who: Attribution) -> set[str]:
        calls.append(len(batch.events))
        return real(engine, batch, who)

    monkeypatch.setattr(batches_module, "ingest_ids", counting)  # a group's
    monkeypatch.setattr(ingest_module, "ingest_ids", counting)  # a batch alone's (through ingest_prepared)
    batches = _batches(ana, bo)
    ingest_batches(engine, [(prepare(events), who) for events, who in batches])
    # ana's four batches in one ingest, then bo's one batch
    assert calls == [sum(len(events) for events, who in batches if who == ana), len(batches[1][0])]


def test_a_failing_batch_fails_alone(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, ana, _bo = _store(f"sqlite:///{tmp_path}/a.db")
    good, bad, also = _session("g1", 2), _session("b1", 2), _session("g2", 1)
    real = ingest_module._store

    def refuse_b1(engine: Engine, rows: list[dict[str, Any]], *args: Any, **kw: Any) -> set[str]:
        if any(r["session_id"] == "b1" for r in rows):
            raise RuntimeError("the database refused b1")
        return real(engine, rows, *args, **kw)

    monkeypatch.setattr(ingest_module, "_store", refuse_b1)
    got = ingest_batches(engine, [(prepare(good), ana), (prepare(bad), ana), (prepare(also), ana)])

    assert got[0] == IngestResult(accepted=len(good)) and got[2] == IngestResult(accepted=len(also))
    assert isinstance(got[1], RuntimeError) and "b1" in str(got[1])
    stored = {row[1] for row in _state(engine)[0]}
    assert stored == {"g1", "g2"}


@pytest.mark.parametrize("n", [0, 1])
def test_nothing_or_one_batch(tmp_path, n: int) -> None:  # type: ignore[no-untyped-def]
    engine, ana, _bo = _store(f"sqlite:///{tmp_path}/a.db")
    events = _session("s1", 1)
    got = ingest_batches(engine, [(prepare(events), ana)] * n)
    assert got == [IngestResult(accepted=len(events))] * n
