"""Where a traced session's events go while it runs: the outbox (with a server) or the local store.

The supervisor hands events to `add` on its reader thread, where a slow callback would stall strace
and so the agent. `add` only appends to a list; a writer thread takes what has gathered every
`interval_s` (or sooner when `max_batch` is reached) and writes it in one transaction: one fsync per
batch instead of one per event (docs/outbox.md asks callers to batch). An event is thus durable at
most `interval_s` after it happened, which is what a `kill -9` of `agenttrail run` can lose.

A write that fails (the outbox or the store locked past its timeout, a full disk) keeps the batch and
tries again on the next round: the session goes on, and `close` reports what could not be written.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from agenttrail.events import Event
from agenttrail.outbox import Outbox, Uploader
from agenttrail.store.event_fields import BadEvent
from agenttrail.store.ingest import Attribution, ingest

Write = Callable[[list[Event]], object]


@dataclass(frozen=True, slots=True)
class SinkReport:
    written: int  # events written to the outbox or the store
    unwritten: int  # events that could not be written (lost with this process)
    left_to_upload: int = 0  # in the outbox, not yet acknowledged by the server
    upload_error: str | None = None  # why uploading stopped (a refusal), if it did


class BatchingSink:
    """Collects events from any thread and writes them in batches on its own thread."""

    def __init__(
        self,
        write: Write,
        *,
        interval_s: float = 0.1,
        max_batch: int = 500,
        name: str = "agenttrail-sink",
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._write = write
        self._interval = interval_s
        self._max = max_batch
        self._buf: list[Event] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one writer at a time: the thread, write_now or close
        self._closing = False
        self._on_error = on_error or _warn_once()
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def add(self, events: Iterable[Event]) -> None:
        """Queue events; returns at once (safe on the supervisor's reader thread)."""
        with self._cond:
            self._buf.extend(events)
            if len(self._buf) >= self._max:
                self._cond.notify()

    def write_now(self, events: Iterable[Event]) -> None:
        """Write these events (and whatever is queued) before returning; raises if that fails.

        For the session's start: it must be on disk before the agent runs.
        """
        self.add(events)
        with self._write_lock:
            with self._cond:
                batch, self._buf = self._buf, []
            try:
                self._write(batch)
            except BaseException:
                with self._cond:
                    self._buf[:0] = batch
                raise
            self.written += len(batch)

    def _take(self) -> list[Event]:
        with self._cond:
            batch, self._buf = self._buf[: self._max], self._buf[self._max :]
            return batch

    def _flush_once(self) -> bool:
        """Write one batch; False when there was nothing to write or the write failed."""
        with self._write_lock:
            batch = self._take()
            if not batch:
                return False
            try:
                self._write(batch)
            except Exception as e:
                with self._cond:
                    self._buf[:0] = batch  # keep order: these go first next time
                self._on_error(e)
                return False
            self.written += len(batch)
            return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._closing and len(self._buf) < self._max:
                    self._cond.wait(self._interval)
                closing = self._closing
            while self._flush_once():
                pass
            if closing:
                return

    def pending(self) -> int:
        with self._cond:
            return len(self._buf)

    def drop(self) -> None:
        """Forget what is queued (a session that never started has nothing worth writing)."""
        with self._cond:
            self._buf.clear()

    def close(self, attempts: int = 3) -> int:
        """Stop the thread and write what is left; returns how many events could not be written."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        for _ in range(attempts):
            if self.pending() == 0:
                break
            while self._flush_once():
                pass
        return self.pending()


def short_reason(e: BaseException) -> str:
    """One line a person can read: a database's own refusal without the driver's dump of the statement
    and its parameters (which hold the events' content)."""
    orig = getattr(e, "orig", None)  # sqlalchemy's DBAPIError wraps the driver's exception
    text = str(orig) if orig is not None else f"{type(e).__name__}: {e}"
    return (text.strip().splitlines() or [type(e).__name__])[0]


def _warn_once() -> Callable[[BaseException], None]:
    said: set[str] = set()

    def warn(e: BaseException) -> None:
        text = short_reason(e)
        if text not in said:
            said.add(text)
            print(f"agenttrail: could not record events yet ({text}); retrying", file=sys.stderr)

    return warn


class _Batched:
    """What both sinks do the same way: hand events to their `BatchingSink`."""

    _batches: BatchingSink

    def add(self, events: Iterable[Event]) -> None:
        self._batches.add(events)

    def write_now(self, events: Iterable[Event]) -> None:
        self._batches.write_now(events)

    def drop(self) -> None:
        self._batches.drop()


class OutboxSink(_Batched):
    """Events to the outbox; an uploader sends them to the server during the session and at its end."""

    def __init__(
        self, outbox: Outbox, uploader: Uploader | None, *, interval_s: float = 0.1, upload_interval_s: float = 1.0
    ) -> None:
        self.outbox = outbox
        self.uploader = uploader
        self._batches = BatchingSink(self._write, interval_s=interval_s, name="agenttrail-outbox")
        if uploader is not None:
            uploader.start(upload_interval_s)

    def _write(self, batch: list[Event]) -> None:
        self.outbox.put(batch)
        if self.uploader is not None:
            self.uploader.wake()

    def close(self, upload_deadline_s: float = 5.0) -> SinkReport:
        unwritten = self._batches.close()
        left = self.outbox.count()
        error = None
        if self.uploader is not None:
            left = self.uploader.stop(upload_deadline_s)
            error = str(self.uploader.error) if self.uploader.error else None
            self.uploader.close()
        return SinkReport(self._batches.written, unwritten, left, error)


class StoreSink(_Batched):
    """Events straight into a store with the same `ingest` the server uses (no server configured)."""

    def __init__(self, engine: Engine, who: Attribution | None = None, *, interval_s: float = 0.1) -> None:
        self.engine = engine
        self.who = who or Attribution()
        self.left_out: list[str] = []  # events the store cannot hold, each with why
        self._batches = BatchingSink(self._write, interval_s=interval_s, name="agenttrail-store")

    def _write(self, batch: list[Event]) -> None:
        # One event no column can hold (a damaged name, an id too long) must not take the batch with
        # it: the batch is retried without it, for ever otherwise, and the session's end was in it.
        while batch:
            try:
                ingest(self.engine, batch, self.who)
                return
            except BadEvent as e:
                if not 0 <= e.index < len(batch):
                    raise
                self.left_out.append(str(e))
                print(f"agenttrail: left out {e}", file=sys.stderr)
                batch = batch[: e.index] + batch[e.index + 1 :]

    def close(self, upload_deadline_s: float = 0.0) -> SinkReport:
        unwritten = self._batches.close()
        return SinkReport(self._batches.written - len(self.left_out), unwritten + len(self.left_out))
