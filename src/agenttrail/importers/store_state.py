"""Read positions of imported files, kept in the store's `import_state` table (a `StateStore`).

`import_state` holds, per `(source, path)`, the file's `size`, `mtime` (seconds, a float), the `offset`
read up to and the `head_hash`. That is enough to know a file is **unchanged** since the last import,
which is what makes a second import of the same folder read nothing. It is not enough to *resume* a
changed file in the middle: the parser context a resumed read needs (`FileState.carry`: the Codex
session id, current model and last cumulative token count) and the line count have no column. Resuming
without them would attribute Codex calls to no model and could count a repeated `token_count` twice.

So this store answers `get(path)` with a state only while the file is unchanged (same size and mtime as
recorded); a file that changed in any way is read again from its start. That costs a re-read of a
transcript that grew (a few MB at most), never a wrong figure: event and call ids are stable, so the
re-read stores only what is new. (A `carry` column would let changed files resume; see docs/importers.md.)

`source` names the importer and, for uploads, the destination: a file imported into the local store is
still new for a server it was never sent to, so `agenttrail import --server URL` keeps its own positions
(`claude-code>` plus a hash of the URL).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenttrail.importers.incremental import FileState, state_key
from agenttrail.store.tables import import_state

SOURCE_MAX = 40  # import_state.source is String(40)


def state_source(agent: str, server_url: str | None = None) -> str:
    """The `import_state.source` for an importer, per destination (None: the local store)."""
    if not server_url:
        return agent[:SOURCE_MAX]
    digest = hashlib.sha256(server_url.rstrip("/").encode()).hexdigest()
    return f"{agent}>{digest}"[:SOURCE_MAX]


def mtime_seconds(mtime_ns: int) -> float:
    # The column is a float; compute it one way everywhere so equality round-trips exactly.
    return mtime_ns / 1e9


@dataclass(slots=True)
class _Row:
    size: int
    mtime: float
    offset: int
    head_hash: str | None


class SqlStateStore:
    """A `StateStore` on `import_state`. Rows of `source` are loaded once, on the first `get`."""

    def __init__(self, engine: Engine, source: str) -> None:
        self.engine = engine
        self.source = source[:SOURCE_MAX]
        self._rows: dict[str, _Row] | None = None

    def _load(self) -> dict[str, _Row]:
        if self._rows is None:
            t = import_state.c
            with self.engine.connect() as conn:
                result = conn.execute(
                    select(t.path, t.size, t.mtime, t.offset, t.head_hash).where(t.source == self.source)
                )
                self._rows = {r.path: _Row(int(r.size), float(r.mtime), int(r.offset), r.head_hash) for r in result}
        return self._rows

    def get(self, path: str) -> FileState | None:
        key = state_key(path)
        row = self._load().get(key)
        if row is None:
            return None
        try:
            st = os.stat(key)
        except OSError:
            return None
        if st.st_size != row.size or mtime_seconds(st.st_mtime_ns) != row.mtime:
            return None  # changed: read again from the start (see the module docstring)
        # head_len 0: the head need not be hashed again to call an untouched file unchanged.
        return FileState(
            path=key,
            size=row.size,
            mtime_ns=st.st_mtime_ns,
            offset=row.offset,
            line_no=0,
            head_hash=row.head_hash or "",
            head_len=0,
        )

    def put(self, state: FileState) -> None:
        self.put_many([state])

    def put_many(self, states: Iterable[FileState]) -> int:
        """Record many positions in one transaction (one fsync, not one per file)."""
        now = datetime.now(UTC).replace(tzinfo=None)
        values: list[dict[str, Any]] = [
            {
                "source": self.source,
                "path": state_key(s.path),
                "size": s.size,
                "mtime": mtime_seconds(s.mtime_ns),
                "offset": s.offset,
                "head_hash": s.head_hash[:64] if s.head_hash else None,
                "updated_at": now,
            }
            for s in states
        ]
        if not values:
            return 0
        # One row per path: the last state of a path in this call wins.
        values = list({v["path"]: v for v in values}.values())
        with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(import_state)
            stmt = stmt.on_conflict_do_update(
                index_elements=["source", "path"],
                set_={k: stmt.excluded[k] for k in ("size", "mtime", "offset", "head_hash", "updated_at")},
            )
            for i in range(0, len(values), 500):
                conn.execute(stmt, values[i : i + 500])
        rows = self._load()
        for v in values:
            rows[v["path"]] = _Row(v["size"], v["mtime"], v["offset"], v["head_hash"])
        return len(values)

    def forget(self, path: str | None = None) -> int:
        """Drop the positions of one file (or of every file of this source): the next import reads it again."""
        t = import_state.c
        stmt = import_state.delete().where(t.source == self.source)
        if path is not None:
            stmt = stmt.where(t.path == state_key(path))
        with self.engine.begin() as conn:
            n = conn.execute(stmt).rowcount
        self._rows = None
        return int(n or 0)
