"""Incremental, idempotent reading of append-only JSONL files: where to resume, and the state protocol.

A transcript is appended to while its agent runs, so an import reads only what is new since the last
one. For every file the importer keeps a `FileState`:

- `offset`: the byte offset just past the last *complete* line consumed (a last line with no newline
  yet is left for the next import, when it is complete);
- `line_no`: how many lines that was, so line numbers in error reports stay true across imports;
- `size` and `mtime_ns` at the last read, to skip unchanged files without opening them;
- `head_hash` over the first `head_len` bytes (up to 4 KiB): if those bytes changed, or the file is now
  shorter than `offset`, the file was rewritten or rotated and is read again from the start (event and
  call ids are stable, so re-reading stores nothing twice);
- `carry`: a small JSON-serialisable dict of parser context that lines further on depend on (the Codex
  session id and current model, the last cumulative token count), so a resumed read parses like a full one.

The store behind the states is the `StateStore` protocol: `get(path)` and `put(state)`, keyed by the
file's absolute path. `MemoryStateStore` is for tests; the SQL-backed store implements the same two
methods (persist `FileState.to_dict()`, rebuild with `FileState.from_dict`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

HEAD_BYTES = 4096

ReadReason = Literal["new", "resume", "unchanged", "rewritten", "truncated"]


@dataclass(slots=True)
class FileState:
    path: str  # absolute path: the key
    size: int  # file size seen at the last read (at least `offset`)
    mtime_ns: int
    offset: int  # byte offset after the last complete line consumed
    line_no: int  # lines consumed (1-based number of the last one)
    head_hash: str  # sha256 hex of the first `head_len` bytes
    head_len: int
    carry: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "offset": self.offset,
            "line_no": self.line_no,
            "head_hash": self.head_hash,
            "head_len": self.head_len,
            "carry": self.carry,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileState:
        return cls(
            path=str(d["path"]),
            size=int(d["size"]),
            mtime_ns=int(d["mtime_ns"]),
            offset=int(d["offset"]),
            line_no=int(d["line_no"]),
            head_hash=str(d["head_hash"]),
            head_len=int(d["head_len"]),
            carry=dict(d.get("carry") or {}),
        )


@runtime_checkable
class StateStore(Protocol):
    """Where read positions live between imports. Keyed by absolute file path.

    `get` returns the last committed state or None; `put` inserts or replaces it. Implementations need
    not be thread-safe; an import calls them from one thread. States are committed (`put`) only after
    the records read with them were stored (`ImportBatch.commit`).
    """

    def get(self, path: str) -> FileState | None: ...

    def put(self, state: FileState) -> None: ...


class MemoryStateStore:
    """A `StateStore` in a dict, for tests and one-shot imports."""

    def __init__(self) -> None:
        self._states: dict[str, FileState] = {}

    def get(self, path: str) -> FileState | None:
        st = self._states.get(path)
        return None if st is None else FileState.from_dict(st.to_dict())

    def put(self, state: FileState) -> None:
        self._states[state.path] = FileState.from_dict(state.to_dict())

    def __len__(self) -> int:
        return len(self._states)


@dataclass(slots=True)
class ReadPlan:
    reason: ReadReason
    start: int  # byte offset to read from
    line_no: int  # lines before `start`
    carry: dict[str, Any]


def state_key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def head_digest(path: str | os.PathLike[str], length: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(length)).hexdigest()


def plan_read(path: str | os.PathLike[str], st: os.stat_result, prev: FileState | None) -> ReadPlan:
    """Decide where to read `path` from, given its current stat and the last committed state."""
    if prev is None:
        return ReadPlan("new", 0, 0, {})
    if st.st_size < prev.offset:
        return ReadPlan("truncated", 0, 0, {})
    if prev.head_len and head_digest(path, prev.head_len) != prev.head_hash:
        return ReadPlan("rewritten", 0, 0, {})
    if st.st_size == prev.size and st.st_mtime_ns == prev.mtime_ns:
        return ReadPlan("unchanged", prev.offset, prev.line_no, dict(prev.carry))
    return ReadPlan("resume", prev.offset, prev.line_no, dict(prev.carry))


def new_state(
    path: str | os.PathLike[str],
    st: os.stat_result,
    offset: int,
    line_no: int,
    carry: dict[str, Any],
    head: bytes = b"",
) -> FileState:
    """The state after a read that consumed up to `offset`. `head`: the file's first bytes as that read
    saw them, when it has them (the digest then needs no second open of the file)."""
    size = max(st.st_size, offset)
    head_len = min(HEAD_BYTES, offset) if offset else 0
    if not head_len:
        digest = hashlib.sha256(b"").hexdigest()
    elif len(head) >= head_len:
        digest = hashlib.sha256(head[:head_len]).hexdigest()
    else:
        digest = head_digest(path, head_len)
    return FileState(
        path=state_key(path),
        size=size,
        mtime_ns=st.st_mtime_ns,
        offset=offset,
        line_no=line_no,
        head_hash=digest,
        head_len=head_len,
        carry=carry,
    )
