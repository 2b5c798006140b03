"""SQLite: one thread per server process writes ingest batches, taking every batch waiting at once.

SQLite lets one transaction write at a time. With a thread per request, concurrent uploads queued on
the database's busy handler, which sleeps in steps of up to 100 ms while the lock may have come free,
and each paid a transaction's fixed costs for its 2,000 events. Here requests hand their parsed
batches to one writer thread, which stores what is waiting together (`store.ingest_batches`: the
batches of one key in one transaction, each answered with its own counts) and answers each request
when its events are committed. PostgreSQL runs batches of different teams side by side, so it keeps
a thread per request.

The writer keeps one connection of its own, so its page cache stays warm between turns (a pooled
connection handed out in turn lost its cache whenever another had written). Copying the WAL back into
the database (the checkpoint, with its fsync) is done by a second thread after each turn, on the other
core while the writer takes the next turn; the writer checkpoints itself only if the WAL grows past
`BACKSTOP_PAGES` (the checkpointer fell behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.pool import StaticPool

from agenttrail.store.engine import make_engine
from agenttrail.store.ingest import Attribution, IngestResult, Prepared
from agenttrail.store.ingest_batches import ingest_batches

log = logging.getLogger(__name__)

# At most this many events in one turn of the writer, unless one batch alone is larger: enough to
# spread a transaction's costs (in-process, 2,000-event transactions cost 66 µs of CPU an event,
# 6,000 48 and 20,000 45), few enough that a request does not wait long behind others.
TURN_EVENTS = 20_000
# The writer's own checkpoint threshold (SQLite's default is 1,000 pages).
BACKSTOP_PAGES = 16_384


@dataclass(slots=True)
class _Job:
    batch: Prepared
    who: Attribution
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[IngestResult]


_STOP = object()
# A writer with nothing to do for this long lets its threads and connection go; the next batch starts
# them again (a server at rest, or an app a test made and never shut down, holds nothing).
IDLE_S = 60.0


@dataclass(slots=True)
class _Crew:
    """One writer thread, its checkpointer and its connection, from the first batch until idle or close."""

    engine: Engine
    jobs: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    turns: queue.SimpleQueue[Any] | None = None  # None: an in-memory database, nothing to checkpoint
    threads: list[threading.Thread] = field(default_factory=list)


class IngestWriter:
    def __init__(
        self,
        engine: Engine,
        turn_events: int = TURN_EVENTS,
        idle_s: float = IDLE_S,
        on_turn: Callable[[int, float], None] | None = None,
    ) -> None:
        self._on_turn = on_turn  # (batches, seconds) after each turn: the server's metrics
        self._shared = engine
        self._turn_events = turn_events
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._crew: _Crew | None = None

    async def ingest(self, batch: Prepared, who: Attribution) -> IngestResult:
        """The batch's result once it is committed (or the error that stopped it)."""
        loop = asyncio.get_running_loop()
        job = _Job(batch, who, loop, loop.create_future())
        with self._lock:  # a crew letting go takes this lock to check that nothing came meanwhile
            if self._crew is None:
                self._crew = self._start()
            self._crew.jobs.put(job)
        # shield: a client that hangs up does not take the batch back (it is stored, and a resend of
        # it is a duplicate); the writer still answers into the future.
        return await asyncio.shield(job.done)

    def close(self) -> None:
        """Stop the threads once the batches already handed over are stored."""
        with self._lock:
            crew, self._crew = self._crew, None
        if crew is not None:
            crew.jobs.put(_STOP)
            for t in crew.threads:
                t.join()

    @property
    def running(self) -> bool:
        return self._crew is not None

    def _start(self) -> _Crew:
        if self._shared.url.database in (None, "", ":memory:"):  # one database per connection
            crew = _Crew(self._shared)
        else:
            own = make_engine(self._shared.url.render_as_string(hide_password=False), poolclass=StaticPool)
            event.listen(own, "connect", _writer_pragmas)
            crew = _Crew(own, turns=queue.SimpleQueue())
            crew.threads.append(
                threading.Thread(
                    target=self._checkpoint, args=(crew,), name="agenttrail-ingest-checkpoint", daemon=True
                )
            )
        writer = threading.Thread(target=self._write, args=(crew,), name="agenttrail-ingest-writer", daemon=True)
        crew.threads.insert(0, writer)
        for t in crew.threads:
            t.start()
        return crew

    def _write(self, crew: _Crew) -> None:
        turn: list[_Job] | None = None
        died: BaseException | None = None
        try:
            while (turn := self._next_turn(crew)) is not None:
                self._store(crew, turn)
        except BaseException as e:  # not an error of the batches (those are answered): the thread ends
            died = e
            raise
        finally:
            with self._lock:  # after this, no batch reaches this crew: the next one starts another
                if self._crew is crew:
                    self._crew = None
            if died is not None and turn is not None:
                _answer(turn, [died] * len(turn))
            left = [j for j in _drain(crew.jobs) if j is not _STOP]
            _answer(left, [RuntimeError("the ingest writer stopped; send the batch again")] * len(left))
            if crew.turns is not None:
                crew.turns.put(_STOP)
            if crew.engine is not self._shared:
                crew.engine.dispose()

    def _next_turn(self, crew: _Crew) -> list[_Job] | None:
        """The batches waiting, at least one; None when closed, or idle and let go."""
        while True:
            try:
                first = crew.jobs.get(timeout=self._idle_s)
                break
            except queue.Empty:
                with self._lock:
                    if crew.jobs.empty():
                        if self._crew is crew:  # else close() took it already
                            self._crew = None
                        return None
        if first is _STOP:
            return None
        turn: list[_Job] = [first]
        size = len(first.batch.events)
        while size < self._turn_events:
            try:
                job = crew.jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                crew.jobs.put(_STOP)  # after this turn
                break
            turn.append(job)
            size += len(job.batch.events)
        return turn

    def _store(self, crew: _Crew, turn: list[_Job]) -> None:
        results: Sequence[IngestResult | BaseException]
        started = time.perf_counter()
        try:
            results = ingest_batches(crew.engine, [(j.batch, j.who) for j in turn])
        except Exception as e:  # every request of the turn hears it; the thread goes on
            results = [e] * len(turn)
        _answer(turn, results)
        if self._on_turn is not None:
            self._on_turn(len(turn), time.perf_counter() - started)
        if crew.turns is not None:
            crew.turns.put(None)

    def _checkpoint(self, crew: _Crew) -> None:
        assert crew.turns is not None
        stop = False
        while not stop:
            stop = crew.turns.get() is _STOP
            while not stop:  # turns that ended meanwhile are covered by one checkpoint
                try:
                    stop = crew.turns.get_nowait() is _STOP
                except queue.Empty:
                    break
            try:
                with self._shared.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the writer's backstop checkpoints instead
                log.warning("ingest: WAL checkpoint failed; the writer will checkpoint itself", exc_info=True)


def _drain(jobs: queue.SimpleQueue[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(jobs.get_nowait())
        except queue.Empty:
            return out


def _answer(turn: list[_Job], results: Sequence[IngestResult | BaseException]) -> None:
    for job, result in zip(turn, results, strict=True):
        # RuntimeError: its loop has closed, so nobody is waiting for the answer.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_settle, job.done, result)


def _writer_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.close()


def _settle(done: asyncio.Future[IngestResult], result: IngestResult | BaseException) -> None:
    if done.done():  # its loop's request was cancelled and the future with it
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)
