"""The tracer's durable local queue: events wait here until the server has acknowledged them.

One SQLite file, `$AGENTTRAIL_HOME/outbox.db` by default, shared by every process on the machine that
records or uploads (a running session, its background uploader, `agenttrail sync`).

Durability: WAL with `synchronous=FULL`. In WAL mode a commit is a write() to the log; NORMAL already
survives the death of the process (kill -9: the bytes are in the kernel), but not a power cut or a
kernel crash, which can lose the last commits. The outbox is the only copy of an event until the
server has it, so `put` returning means fsync'd: FULL. It costs one fsync per `put`, which is why
`put` takes a batch; `Outbox(durable=False)` selects NORMAL for callers that accept that window.

Idempotency: `event_id` is unique. A `put` of an id already queued (or already sent: acked rows stay
as bodiless tombstones until `prune`) is ignored, so re-reading the same facts never sends them twice.

Several processes: WAL lets readers run beside one writer; writers wait for each other up to
`busy_timeout`. Within a process, one connection is shared by threads under a lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from agenttrail.clock import Clock, SystemClock
from agenttrail.config import default_home
from agenttrail.events import Event
from agenttrail.redact import redact_obj

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: what "oldest first" means
        event_id   TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        body       TEXT,                               -- event JSON, NULL once sent (a tombstone)
        queued_at  TEXT NOT NULL,
        sent_at    TEXT                                -- NULL while pending
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE sent_at IS NULL",
    "CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL",
)


MAX_ID_LEN = 64  # what ingest accepts (agenttrail.server.ingest)


def default_path(env: dict[str, str] | None = None) -> Path:
    return default_home(os.environ if env is None else env) / "outbox.db"


def _set_aside(path: Path, error: sqlite3.DatabaseError) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    path.touch(mode=0o600)
    print(
        f"agenttrail: the outbox {path} could not be read ({error}); it was kept as {target} "
        "and a new one started. Events still in it were not sent.",
        file=sys.stderr,
    )
    return target


class Outbox:
    """`put` events, read them back `pending` oldest first, `ack` what the server acknowledged."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durable: bool = True,
        redact: bool = True,
        busy_timeout_ms: int = 30_000,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        # Queued events hold prompts, commands and diffs: only the owner may read them.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            self.path.touch(mode=0o600)
        self._redact = redact
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        # isolation_level=None: no implicit transactions; each write says BEGIN IMMEDIATE itself, so a
        # writer takes the lock up front instead of failing to upgrade a read lock (SQLITE_BUSY).
        self.set_aside: Path | None = None
        try:
            self._db = self._open(busy_timeout_ms, durable)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):  # locked, read-only, no space: not damage
                raise
            # Damaged (a crash on a disk that lied about fsync, or a foreign file): keep it for
            # recovery and start a new queue, so no agent run is blocked by it.
            self.set_aside = _set_aside(self.path, e)
            self._db = self._open(busy_timeout_ms, durable)

    def _open(self, busy_timeout_ms: int, durable: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _now(self) -> str:
        return self._clock.now().astimezone(UTC).isoformat()  # one zone, so the strings sort as times

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put(self, events: Iterable[Event]) -> int:
        """Queue events durably; returns how many were new. When this returns, they are on disk."""
        now = self._now()
        rows = []
        for e in events:
            if len(e.event_id) > MAX_ID_LEN or len(e.session_id) > MAX_ID_LEN:
                # Refused here, at the source, rather than by ingest later, where it would block the queue.
                raise ValueError(f"event_id and session_id are at most {MAX_ID_LEN} characters: {e.event_id!r}")
            d = e.to_dict()
            if self._redact:
                # Nothing unredacted should leave the machine, whatever the source forgot to do.
                d["payload"] = redact_obj(d["payload"])
            # ensure_ascii: payloads may carry lone surrogates (undecodable file names), which SQLite's
            # UTF-8 text cannot hold; escaped, they round-trip.
            rows.append((e.event_id, e.session_id, json.dumps(d, separators=(",", ":"), default=str), now))
        if not rows:
            return 0
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (event_id, session_id, body, queued_at) VALUES (?, ?, ?, ?)", rows
            )
            return db.total_changes - before

    def pending(self, limit: int = 500) -> list[Event]:
        """Up to `limit` unacknowledged events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (int(limit),)
            ).fetchall()
        return [Event.from_dict(json.loads(body)) for (body,) in rows]

    def ack(self, event_ids: Iterable[str]) -> int:
        """Mark events as delivered (the server has them); returns how many were pending."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return 0
        now = self._now()
        with self._write() as db:
            before = db.total_changes
            for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                chunk = ids[i : i + 500]
                db.execute(
                    f"UPDATE outbox SET sent_at = ?, body = NULL WHERE sent_at IS NULL"
                    f" AND event_id IN ({','.join('?' * len(chunk))})",
                    (now, *chunk),
                )
            return db.total_changes - before

    def count(self) -> int:
        """How many events wait to be sent."""
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return int(n)

    def prune(self, older_than: timedelta = timedelta(days=30)) -> int:
        """Forget tombstones of events sent before `older_than` ago (after that, a re-put sends again)."""
        cutoff = (self._clock.now() - older_than).astimezone(UTC).isoformat()
        with self._write() as db:
            before = db.total_changes
            db.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (cutoff,))
            return db.total_changes - before

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
