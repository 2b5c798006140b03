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
from collections.abc import Sequence
from dataclasses import dataclass
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


class IngestWriter:
    def __init__(self, engine: Engine, turn_events: int = TURN_EVENTS) -> None:
        self._shared = engine
        self._turn_events = turn_events
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._turns: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    async def ingest(self, batch: Prepared, who: Attribution) -> IngestResult:
        """The batch's result once it is committed (or the error that stopped it)."""
        loop = asyncio.get_running_loop()
        job = _Job(batch, who, loop, loop.create_future())
        self._ensure_threads()
        self._jobs.put(job)
        # shield: a client that hangs up does not take the batch back (it is stored, and a resend of
        # it is a duplicate); the writer still answers into the future.
        return await asyncio.shield(job.done)

    def close(self) -> None:
        """Stop both threads once the batches already handed over are stored."""
        with self._lock:
            threads, self._threads = self._threads, []
        if not threads:
            return
        self._jobs.put(_STOP)
        for t in threads:
            t.join()
        if self._engine is not None and self._engine is not self._shared:
            self._engine.dispose()
        self._engine = None

    def _ensure_threads(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._threads = [threading.Thread(target=self._write, name="agenttrail-ingest-writer", daemon=True)]
            if self._shared.url.database in (None, "", ":memory:"):  # one database per connection
                self._engine = self._shared
                self._turns = _Discard()
            else:
                self._engine = make_engine(self._shared.url.render_as_string(hide_password=False), poolclass=StaticPool)
                event.listen(self._engine, "connect", _backstop)
                self._threads.append(
                    threading.Thread(target=self._checkpoint, name="agenttrail-ingest-checkpoint", daemon=True)
                )
            for t in self._threads:
                t.start()

    def _write(self) -> None:
        assert self._engine is not None
        while True:
            first = self._jobs.get()
            if first is _STOP:
                self._turns.put(_STOP)
                return
            turn: list[_Job] = [first]
            size = len(first.batch.events)
            stop = False
            while size < self._turn_events:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                turn.append(job)
                size += len(job.batch.events)
            try:
                results: Sequence[IngestResult | Exception] = ingest_batches(
                    self._engine, [(j.batch, j.who) for j in turn]
                )
            except Exception as e:  # every request of the turn hears it; the thread lives on
                results = [e] * len(turn)
            for job, result in zip(turn, results, strict=True):
                # RuntimeError: its loop has closed, so nobody is waiting for the answer.
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(_settle, job.done, result)
            self._turns.put(None)
            if stop:
                self._jobs.put(_STOP)

    def _checkpoint(self) -> None:
        stop = False
        while not stop:
            stop = self._turns.get() is _STOP
            while not stop:  # turns that ended meanwhile are covered by one checkpoint
                try:
                    stop = self._turns.get_nowait() is _STOP
                except queue.Empty:
                    break
            try:
                with self._shared.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the writer's backstop checkpoints instead
                log.warning("ingest: WAL checkpoint failed; the writer will checkpoint itself", exc_info=True)


class _Discard(queue.SimpleQueue[Any]):
    """The turns' queue of an in-memory database: nothing to checkpoint."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        pass


def _backstop(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.close()


def _settle(done: asyncio.Future[IngestResult], result: IngestResult | Exception) -> None:
    if done.done():  # its loop's request was cancelled and the future with it
        return
    if isinstance(result, Exception):
        done.set_exception(result)
    else:
        done.set_result(result)
