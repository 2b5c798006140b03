"""Streaming JSONL reading shared by the transcript importers.

`read_file` drives one file through a `LineParser`: it resumes where the state store says, reads complete
lines one at a time (never the whole file), parses each with orjson, and hands objects to the parser.
A line that is not JSON, not UTF-8, or not the shape the parser expects is recorded in
`ImportBatch.errors` with its file and line number, and reading goes on: damaged input never stops an
import. A last line without its newline is not consumed; it is read by the next import once complete.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import orjson

from agenttrail.importers.incremental import FileState, MemoryStateStore, StateStore, new_state, plan_read, state_key
from agenttrail.importers.records import ImportBatch, LineError

_BUFFER = 1 << 20


class ShapeError(ValueError):
    """A JSON line whose shape is not what its `type` promises. The line is reported and skipped."""


class LineParser(Protocol):
    def start(self, path: Path, carry: dict[str, Any], batch: ImportBatch) -> None:
        """Begin (or resume, with `carry` from the last read) a file."""

    def feed(self, line_no: int, obj: Any, raw: bytes) -> None:
        """One parsed line (`raw` still ends with its newline). Raise ShapeError for a wrong shape.
        A parser may also have a `skip_prefixes` tuple: complete lines starting with one of them (and
        ending in `}`) are line types it ignores, and are not parsed at all. And it may have a
        `skip_line(raw) -> bool` (or None): complete lines it says True for are not parsed either (the
        usage-only mode skips lines that cannot carry usage this way, with a cheap look at the bytes)."""

    def finish(self) -> dict[str, Any]:
        """End of the complete lines: flush records into the batch and return the carry to persist."""


def parse_line(raw: bytes) -> tuple[Any, str | None]:
    """orjson-parse one line; on failure say why in words a person can act on."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as e:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as ue:
            return None, f"invalid UTF-8 at byte {ue.start}"
        msg = str(e)
        return None, f"not JSON ({msg[:120]})"


def read_file(
    path: Path,
    parser: LineParser,
    batch: ImportBatch,
    state: StateStore | None = None,
) -> None:
    """Read the new complete lines of `path` into `batch` through `parser`."""
    spath = str(path)
    try:
        st = os.stat(path)
    except OSError as e:
        batch.errors.append(LineError(spath, 0, f"cannot stat: {e.strerror or e}"))
        return
    prev = state.get(state_key(path)) if state is not None else None
    try:
        plan = plan_read(path, st, prev)
    except OSError as e:
        batch.errors.append(LineError(spath, 0, f"cannot read: {e.strerror or e}"))
        return
    if plan.reason == "unchanged":
        batch.files_skipped += 1
        return
    offset, line_no = plan.start, plan.line_no
    lines = 0
    parser.start(path, plan.carry, batch)
    skip = getattr(parser, "skip_prefixes", ())
    skip_line: Callable[[bytes], bool] | None = getattr(parser, "skip_line", None)
    errors = batch.errors
    feed = parser.feed
    try:
        with open(path, "rb", buffering=_BUFFER) as f:
            f.seek(offset)
            for raw in f:
                if raw[-1:] != b"\n":
                    batch.warnings.append(
                        LineError(spath, line_no + 1, "incomplete last line (no newline yet); not read")
                    )
                    break
                offset += len(raw)
                line_no += 1
                lines += 1
                if skip and raw.startswith(skip) and raw.endswith(b"}\n"):
                    continue  # a line type the parser has no use for: not even parsed
                if skip_line is not None and skip_line(raw):
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    if raw.isspace():
                        continue
                    errors.append(LineError(spath, line_no, parse_line(raw)[1] or "not JSON"))
                    continue
                try:
                    feed(line_no, obj, raw)
                except ShapeError as e:
                    errors.append(LineError(spath, line_no, f"unexpected shape: {e}"))
                except Exception as e:  # a parser bug must not stop an import either
                    errors.append(LineError(spath, line_no, f"internal error: {type(e).__name__}: {e}"))
    except OSError as e:
        errors.append(LineError(spath, line_no + 1, f"read failed: {e.strerror or e}"))
    batch.lines_read += lines
    carry = parser.finish()
    batch.bytes_read += offset - plan.start
    batch.files_read += 1
    batch.file_states.append(new_state(path, st, offset, line_no, carry))


def _read_one(task: tuple[Path, dict[str, Any] | None, Callable[[], LineParser]]) -> tuple[Any, ...]:
    path, prev, make_parser = task
    store = MemoryStateStore()
    if prev is not None:
        store.put(FileState.from_dict(prev))
    batch = ImportBatch()
    read_file(path, make_parser(), batch, store)
    return batch.pack()  # plain rows: they cross the process boundary far cheaper than the records


def read_files(
    files: Sequence[Path],
    make_parser: Callable[[], LineParser],
    state: StateStore | None = None,
    workers: int = 1,
) -> Iterator[tuple[Path, ImportBatch]]:
    """`read_file` over many files, in order, one batch each. With `workers > 1` the files are parsed in
    that many processes (`make_parser` must then be picklable, e.g. a `functools.partial` of a parser
    class); the state store is only read here, in this process, and never written."""
    if workers <= 1 or len(files) < 2:
        parser = make_parser()
        for f in files:
            batch = ImportBatch()
            read_file(f, parser, batch, state)
            yield f, batch
        return
    tasks = []
    for f in files:
        prev = state.get(state_key(f)) if state is not None else None
        tasks.append((f, prev.to_dict() if prev is not None else None, make_parser))
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may run threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = pool.map(_read_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
        yield from ((f, ImportBatch.unpack(packed)) for f, packed in zip(files, results, strict=True))
