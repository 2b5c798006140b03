"""The SQLite ingest writer: batches that wait while it writes are stored together in its next turn, each
request is answered with its own counts once its events are committed, a checkpoint follows the turns,
and closing it stores what was handed over."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from agenttrail.events import Event
from agenttrail.server import ingest_writer as writer_module
from agenttrail.server.ingest_writer import BACKSTOP_PAGES, IngestWriter
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, IngestResult, Prepared, prepare

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)
WHO = Attribution(engineer="ana")


def _batch(sid: str, n: int) -> Prepared:
    return prepare(
        [Event(sid, "exec", T0 + timedelta(seconds=i), {"argv": ["ls", str(i)]}, f"{sid}-{i}") for i in range(n)]
    )


def _count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT COUNT(*) FROM event")).scalar_one())


def test_waiting_batches_share_a_turn(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    turns: list[int] = []
    first_turn_started, release = threading.Event(), threading.Event()
    real = writer_module.ingest_batches

    def held(engine: Engine, batches: Any) -> Any:
        turns.append(len(batches))
        if len(turns) == 1:  # hold the first turn until the others are waiting
            first_turn_started.set()
            assert release.wait(10)
        return real(engine, batches)

    monkeypatch.setattr(writer_module, "ingest_batches", held)
    writer = IngestWriter(engine)

    async def main() -> list[IngestResult]:
        first = asyncio.create_task(writer.ingest(_batch("s0", 3), WHO))
        assert await asyncio.to_thread(first_turn_started.wait, 10)
        rest = [asyncio.create_task(writer.ingest(b, WHO)) for b in (_batch("s1", 2), _batch("s1", 4), _batch("s2", 1))]
        await asyncio.sleep(0)  # the three are queued before the first turn ends
        while writer._crew is None or writer._crew.jobs.qsize() < 3:
            await asyncio.sleep(0.001)
        release.set()
        return [await first, *[await t for t in rest]]

    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    assert turns == [1, 3]
    # s1's second batch repeats the first's two events
    assert results == [
        IngestResult(accepted=3),
        IngestResult(accepted=2),
        IngestResult(accepted=2, duplicates=2),
        IngestResult(accepted=1),
    ]
    assert _count(engine) == 8


def test_answered_after_commit_and_checkpointed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    checkpoints: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "wal_checkpoint" in statement:
            checkpoints.append(statement)

    writer = IngestWriter(engine)

    async def main() -> int:
        await writer.ingest(_batch("s1", 5), WHO)
        return _count(engine)  # another connection sees the batch as soon as it is answered

    try:
        assert asyncio.run(main()) == 5
        assert writer._crew is not None
        with writer._crew.engine.connect() as c:  # the writer's own connection, idle between turns
            assert c.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == BACKSTOP_PAGES
    finally:
        writer.close()
    assert checkpoints, "no checkpoint followed the turn"
    assert not writer.running
    with open_engine(f"sqlite:///{tmp_path}/a.db").connect() as c:
        assert c.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 1000  # others keep SQLite's default


def test_a_cancelled_request_is_still_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    writer = IngestWriter(engine)

    async def main() -> None:
        task = asyncio.create_task(writer.ingest(_batch("s1", 4), WHO))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    writer.close()  # waits for what was handed over
    assert _count(engine) == 4


class _Stop(BaseException):
    """Not an error of a batch (as KeyboardInterrupt): the writer thread ends, and another replaces it."""


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), _Stop("stop")], ids=["error", "thread ends"])
def test_a_failure_reaches_its_request_and_ingest_goes_on(tmp_path, monkeypatch, failure: BaseException) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    real = writer_module.ingest_batches
    calls = 0

    def fails_once(engine: Engine, batches: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise failure
        return real(engine, batches)

    monkeypatch.setattr(writer_module, "ingest_batches", fails_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # a thread that ends is expected here
    writer = IngestWriter(engine)

    async def main() -> tuple[Any, IngestResult]:
        failed = await asyncio.gather(writer.ingest(_batch("s1", 2), WHO), return_exceptions=True)
        return failed[0], await writer.ingest(_batch("s2", 3), WHO)

    try:
        failed, ok = asyncio.run(main())
    finally:
        writer.close()
    assert failed is failure
    assert ok == IngestResult(accepted=3)
    assert _count(engine) == 3


def test_an_idle_writer_lets_go_and_starts_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(f"sqlite:///{tmp_path}/a.db")
    writer = IngestWriter(engine, idle_s=0.05)

    async def main() -> IngestResult:
        await writer.ingest(_batch("s1", 2), WHO)
        assert writer._crew is not None
        threads = list(writer._crew.threads)
        for t in threads:  # both end by themselves once the writer has waited idle_s for a batch
            await asyncio.to_thread(t.join, 10)
        assert not any(t.is_alive() for t in threads)
        assert not writer.running
        return await writer.ingest(_batch("s2", 3), WHO)

    try:
        assert asyncio.run(main()) == IngestResult(accepted=3)
    finally:
        writer.close()
    assert _count(engine) == 5
