"""Writes call records in batches from a background task, so no request waits on the database.

A stopping server flushes what it holds. If the database is briefly unavailable, records are
kept and retried; past `max_pending` the oldest are dropped and counted, because an unbounded
buffer would take the gateway down with the database. A batch the database refuses for what a row
holds (a number past its column, a duplicate id) is written row by row, and a row refused alone is
dropped, counted and logged, so it cannot hold back every record after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from anyio import to_thread
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from agenttrail.store.bulk import clipped
from agenttrail.store.locks import lock_call_periods, lock_sessions
from agenttrail.store.tables import llm_call

log = logging.getLogger("agenttrail.recorder")

Listener = Callable[[list[dict[str, Any]]], None]


class Recorder:
    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 500,
        interval_s: float = 0.5,
        max_pending: int = 200_000,
    ) -> None:
        self._engine = engine
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0
        self.written = 0
        self.listeners: list[Listener] = []

    def add(self, row: dict[str, Any]) -> None:
        """Synchronous and cheap: safe to call from a cancelled stream's cleanup."""
        self._pending.append(row)
        if len(self._pending) > self._max_pending:
            over = len(self._pending) - self._max_pending
            del self._pending[:over]
            self.dropped += over
            log.error("dropped %d call records: the database has not accepted writes", over)
        if len(self._pending) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="agenttrail-recorder")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def flush(self) -> None:
        # One writer at a time: the background loop and a shutdown (or test) flush must not both
        # take the same head of the queue while the first write is still in its thread.
        async with self._flush_lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                try:
                    await to_thread.run_sync(self._write, batch)
                except Exception as e:
                    if not _rows_at_fault(e):
                        raise  # the database is down or busy: the whole batch is tried again
                    # A row the database refuses (a number past its column) failed the batch, and the
                    # batch was retried for ever, so nothing after it was recorded: write them one by one.
                    await self._one_by_one(batch)
                    continue
                del self._pending[: len(batch)]
                self.written += len(batch)
                for listener in self.listeners:
                    listener(batch)

    async def _one_by_one(self, batch: list[dict[str, Any]]) -> None:
        for row in batch:
            try:
                await to_thread.run_sync(self._write, [row])
            except Exception as e:
                if not _rows_at_fault(e):
                    raise
                self.dropped += 1
                log.error("dropped call record %s: the database refused it: %s", row.get("call_id"), e)
            else:
                self.written += 1
                for listener in self.listeners:
                    listener([row])
            if self._pending and self._pending[0] is row:
                del self._pending[0]

    def _write(self, batch: list[dict[str, Any]]) -> None:
        with self._engine.begin() as conn:
            # Ingest's locks, in ingest's order, before the insert's triggers upsert the calls' session
            # and period roll-ups: an ingest of the same session holds its roll-up row until commit and
            # then wants the period rows, which this insert would otherwise hold while waiting for it.
            lock_sessions(conn, {r["session_id"] for r in batch if r.get("session_id")})
            lock_call_periods(conn)
            # A client's model name longer than its column is cut to it: PostgreSQL would refuse the
            # whole batch, and every retry of it, so that no later call was recorded either.
            conn.execute(llm_call.insert(), clipped(llm_call, batch))

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as e:  # the database is down or locked: keep the records, try again
                log.warning("could not write %d call records yet: %s", len(self._pending), e)
                await asyncio.sleep(min(self._interval_s * 4, 5.0))


def _rows_at_fault(e: Exception) -> bool:
    """The database refused what a row holds (a number past its column, a duplicate id), not the
    write: anything else (down, locked, no permission) is worth trying the same batch again."""
    if isinstance(e, sa_exc.StatementError) and not isinstance(e, sa_exc.DBAPIError):
        e = e.orig if isinstance(e.orig, Exception) else e
    return isinstance(e, (sa_exc.DataError, sa_exc.IntegrityError, OverflowError, ValueError, TypeError))
