"""Streaming JSONL reading shared by the transcript importers.

`read_file` drives one file through a `LineParser`: it resumes where the state store says, reads complete
lines one at a time (never the whole file), parses each with orjson, and hands objects to the parser.
A usage-only parser may name a `NativeRule`: then, where the native scanner (`_scan.c`, built at install
time) is present, it walks the lines of each chunk, drops those the parser's byte checks would drop,
and builds only the parts of the others the parser reads; a line it is not sure of goes to orjson as
before (docs/importers.md, "The native reader").
A line that is not JSON, not UTF-8, or not the shape the parser expects is recorded in
`ImportBatch.errors` with its file and line number, and reading goes on: damaged input never stops an
import. A last line without its newline is not consumed; it is read by the next import once complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import orjson

from agenttrail.importers.incremental import (
    FileState,
    MemoryStateStore,
    ReadPlan,
    StateStore,
    new_state,
    plan_read,
    state_key,
)
from agenttrail.importers.records import ImportBatch, LineError

try:  # compiled at install time by hatch_build.py; without a C compiler the plain reader does it all
    from agenttrail.importers import _scan
except ImportError:  # pragma: no cover - depends on the machine that installed the package
    _scan = None  # type: ignore[assignment]

_BUFFER = 1 << 20
_CHUNK = 4 << 20  # the native reader's read size: a line longer than this grows the buffer
# Whether read_file uses the native scanner for parsers that name a NativeRule (tests compare both).
NATIVE = _scan is not None


@dataclass(frozen=True)
class NativeRule:
    """What the native scanner must do for a usage-only parser, the same as its Python byte checks.

    `mode` 1: skip a line starting with one of `skip_prefixes` and ending in `}` (the reader's
    `skip_prefixes` rule), then one holding neither `needle` nor a start in `keep_prefixes` (Claude
    Code's `_cannot_count`). `mode` 2: skip a line Codex's `_CANNOT_COUNT` pattern matches. `spec` names
    the members to build: `None` the whole value, a dict the named members of an object (any other
    value whole), `0` a placeholder of the value's type for a string or array (`""`, `[]`)."""

    mode: int
    spec: dict[str, Any]
    skip_prefixes: tuple[bytes, ...] = ()
    needle: bytes | None = None
    keep_prefixes: tuple[bytes, ...] = ()


class ShapeError(ValueError):
    """A JSON line whose shape is not what its `type` promises. The line is reported and skipped."""


class LineParser(Protocol):
    def start(self, path: Path, carry: dict[str, Any], batch: ImportBatch, mtime: float | None = None) -> None:
        """Begin (or resume, with `carry` from the last read) a file; `mtime`: its modification time, when
        the reader has it already."""

    def feed(self, line_no: int, obj: Any, raw: bytes) -> None:
        """One parsed line (`raw` still ends with its newline). Raise ShapeError for a wrong shape.
        A parser may also have a `skip_prefixes` tuple: complete lines starting with one of them (and
        ending in `}`) are line types it ignores, and are not parsed at all. And it may have a
        `skip_line(raw) -> bool` (or None): complete lines it says True for are not parsed either (the
        usage-only mode skips lines that cannot carry usage this way, with a cheap look at the bytes).
        A parser with a `native` NativeRule gets, for the lines the native scanner was sure of, a dict
        holding only the members the rule's spec names, and `raw` empty: it must read nothing else."""

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


class _Taken(NamedTuple):
    """A file read ahead (`_read_ahead`): its stat and plan as of then, `_scan.take`'s job and head (job
    None: not read ahead, read it the usual way with this stat and plan)."""

    st: os.stat_result
    plan: ReadPlan
    job: Any
    head: bytes
    incomplete: bool


def read_file(
    path: Path,
    parser: LineParser,
    batch: ImportBatch,
    state: StateStore | None = None,
    taken: _Taken | None = None,
    positions: bool = True,
) -> None:
    """Read the new complete lines of `path` into `batch` through `parser`. `positions=False`: the new read
    position (`batch.file_states`, its path made absolute and its head's digest) is not made."""
    spath = str(path)
    if taken is not None:
        st, plan = taken.st, taken.plan
    else:
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
    parser.start(path, plan.carry, batch, st.st_mtime)
    head = b""
    if taken is not None and taken.job is not None:  # read ahead: nothing left to read, only the rule
        offset, line_no, lines = _apply_taken(taken, spath, parser, batch, offset, line_no)
        head = taken.head
    else:
        offset, line_no, lines, head = _read(path, spath, parser, batch, offset, line_no, st.st_size)
    batch.lines_read += lines
    carry = parser.finish()
    batch.bytes_read += offset - plan.start
    batch.files_read += 1
    if positions:
        batch.file_states.append(new_state(spath, st, offset, line_no, carry, head if plan.start == 0 else b""))


def _read(
    path: Path, spath: str, parser: LineParser, batch: ImportBatch, offset: int, line_no: int, size: int
) -> tuple[int, int, int, bytes]:
    """Open `path` and read its new complete lines from `offset` (the native reader where the parser names
    a rule and the scanner is built); a failed open, seek or read is reported, what was read before counts.
    Returns the new offset, line number, lines read and the first chunk read (`_read_native`'s head)."""
    native: NativeRule | None = getattr(parser, "native", None)
    native = native if NATIVE else None
    lines = 0
    head = b""
    try:
        # The native reader reads its own chunks, sized to the file: no buffer of the file object's
        # (nor a 4 MB read into a small file, whose allocation cost more than its scan).
        with open(path, "rb", buffering=0 if native is not None else _BUFFER) as f:
            f.seek(offset)
            if native is not None:
                offset, line_no, lines, head = _read_native(f, spath, parser, native, batch, offset, line_no, size)
            else:
                offset, line_no, lines = _read_lines(f, spath, parser, batch, offset, line_no)
    except _ReadFailed as e:
        offset, line_no, lines = e.offset, e.line_no, e.lines
        batch.errors.append(LineError(spath, line_no + 1, f"read failed: {e.reason}"))
    except OSError as e:  # opening or seeking
        batch.errors.append(LineError(spath, line_no + 1, f"read failed: {e.strerror or e}"))
    return offset, line_no, lines, head


class _ReadFailed(Exception):
    """An OSError while reading, with how far the read got (what was read before it counts)."""

    def __init__(self, reason: str, offset: int, line_no: int, lines: int) -> None:
        super().__init__(reason)
        self.reason, self.offset, self.line_no, self.lines = reason, offset, line_no, lines


def _read_lines(
    f: BinaryIO, spath: str, parser: LineParser, batch: ImportBatch, offset: int, line_no: int
) -> tuple[int, int, int]:
    """The plain reader: every complete line in Python, orjson on those the byte checks keep.
    Returns the new offset, line number and the number of lines read."""
    skip = getattr(parser, "skip_prefixes", ())
    skip_line: Callable[[bytes], bool] | None = getattr(parser, "skip_line", None)
    errors = batch.errors
    feed = parser.feed
    lines = 0
    try:
        for raw in f:
            if raw[-1:] != b"\n":
                batch.warnings.append(LineError(spath, line_no + 1, "incomplete last line (no newline yet); not read"))
                break
            offset += len(raw)
            line_no += 1
            lines += 1
            if skip and raw.startswith(skip) and raw.endswith(b"}\n"):
                continue  # a line type the parser has no use for: not even parsed
            if skip_line is not None and skip_line(raw):
                continue
            _feed_raw(feed, errors, spath, line_no, raw)
    except OSError as e:
        raise _ReadFailed(str(e.strerror or e), offset, line_no, lines) from e
    return offset, line_no, lines


def _read_native(
    f: BinaryIO,
    spath: str,
    parser: LineParser,
    rule: NativeRule,
    batch: ImportBatch,
    offset: int,
    line_no: int,
    size: int,
) -> tuple[int, int, int, bytes]:
    """The native reader: chunks of the file through `_scan.scan`, which filters the lines as the byte
    checks do and builds the spec'd members of those it validated; its unsure lines (bytes) go through
    orjson exactly as in `_read_lines`. Same lines, errors, warnings and positions. Also returns the
    first chunk read (the file's head when reading from the start)."""
    assert _scan is not None
    scan = _scan.scan
    args = (rule.mode, rule.skip_prefixes, rule.needle, rule.keep_prefixes, rule.spec)
    errors = batch.errors
    feed = parser.feed
    # A parser with `native_state` has its whole usage rule applied in the scanner: it gets back only
    # the lines the rule was not sure of, one at a time, after taking the rule's state (`native_done`).
    native_state: Callable[[], list[Any]] | None = getattr(parser, "native_state", None)
    state = native_state() if native_state is not None else None
    lines = 0
    pending = head = b""
    left = size - offset  # as of the stat: a file that grew since is read on to its end all the same
    try:
        while True:
            chunk = f.read(min(_CHUNK, max(left, 1 << 16)))
            if not chunk:
                break
            left -= len(chunk)
            head = head or chunk
            buf = pending + chunk if pending else chunk
            pos = 0
            while True:
                items, n, used = scan(buf, line_no, *args, state, pos)
                offset += used - pos
                line_no += n
                lines += n
                pos = used
                if state is not None and items:
                    parser.native_done(state)  # type: ignore[attr-defined]
                for i in range(0, len(items), 2):
                    obj = items[i + 1]
                    if type(obj) is bytes:  # the scanner was not sure: orjson decides, as on the plain path
                        _feed_raw(feed, errors, spath, items[i], obj)
                    else:
                        _feed(feed, errors, spath, items[i], obj, b"")
                if state is None or not items:
                    break
                state = native_state()  # type: ignore[misc]
            pending = buf[pos:]
    except OSError as e:
        raise _ReadFailed(str(e.strerror or e), offset, line_no, lines) from e
    finally:
        if state is not None:
            parser.native_done(state)  # type: ignore[attr-defined]
    if pending:
        batch.warnings.append(LineError(spath, line_no + 1, "incomplete last line (no newline yet); not read"))
    return offset, line_no, lines, head


def _apply_taken(
    taken: _Taken, spath: str, parser: LineParser, batch: ImportBatch, offset: int, line_no: int
) -> tuple[int, int, int]:
    """`_read_native` on a file read ahead: the rule over what the reading thread noted (`_scan.apply`),
    and the lines it was not sure of through orjson and the parser's Python, one at a time, as there."""
    assert _scan is not None
    apply, job = _scan.apply, taken.job
    errors, feed = batch.errors, parser.feed
    lines = pos = 0
    state: list[Any] = parser.native_state()  # type: ignore[attr-defined]
    try:
        while True:
            items, n, used = apply(job, line_no, state)
            offset += used - pos
            line_no += n
            lines += n
            pos = used
            if not items:
                break
            parser.native_done(state)  # type: ignore[attr-defined]
            at, raw = items
            _feed_raw(feed, errors, spath, at, raw)
            state = parser.native_state()  # type: ignore[attr-defined]
    finally:
        parser.native_done(state)  # type: ignore[attr-defined]
    if taken.incomplete:
        batch.warnings.append(LineError(spath, line_no + 1, "incomplete last line (no newline yet); not read"))
    return offset, line_no, lines


def _feed_raw(feed: Callable[[int, Any, bytes], None], errors: list[LineError], spath: str, n: int, raw: bytes) -> None:
    """Line `n` through orjson, then the parser; a line orjson refuses is reported in its words (blank
    lines are not reported)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not raw.isspace():
            errors.append(LineError(spath, n, parse_line(raw)[1] or "not JSON"))
        return
    _feed(feed, errors, spath, n, obj, raw)


def _feed(
    feed: Callable[[int, Any, bytes], None], errors: list[LineError], spath: str, n: int, obj: Any, raw: bytes
) -> None:
    try:
        feed(n, obj, raw)
    except ShapeError as e:
        errors.append(LineError(spath, n, f"unexpected shape: {e}"))
    except Exception as e:  # a parser bug must not stop an import either
        errors.append(LineError(spath, n, f"internal error: {type(e).__name__}: {e}"))


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
    positions: bool = True,
) -> Iterator[tuple[Path, ImportBatch]]:
    """`read_file` over many files, in order, one batch each. With `workers > 1` the files are parsed in
    that many processes (`make_parser` must then be picklable, e.g. a `functools.partial` of a parser
    class); the state store is only read here, in this process, and never written. `positions=False`: as
    `read_file`'s, in one process (the workers' batches still carry them)."""
    if workers <= 1 or len(files) < 2:
        parser = make_parser()
        rule: NativeRule | None = getattr(parser, "native", None)
        if NATIVE and rule is not None and hasattr(parser, "native_state") and len(set(files)) == len(files) > 1:
            yield from _read_ahead(files, parser, rule, state, positions)
            return
        for f in files:
            batch = ImportBatch()
            read_file(f, parser, batch, state, positions=positions)
            yield f, batch
        return
    tasks = []
    for f in files:
        prev = state.get(state_key(f)) if state is not None else None
        tasks.append((f, prev.to_dict() if prev is not None else None, make_parser))
    # Imported here: only parallel reads need them, and every import's start-up paid ~10 ms for them.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may run threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = pool.map(_read_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
        yield from ((f, ImportBatch.unpack(packed)) for f, packed in zip(files, results, strict=True))


# How many files the reading thread may be ahead, and the largest new part it reads ahead (a larger one is
# read in chunks when its turn comes).
_AHEAD = 8
_AHEAD_MAX = 64 << 20


def _read_ahead(
    files: Sequence[Path], parser: LineParser, rule: NativeRule, state: StateStore | None, positions: bool = True
) -> Iterator[tuple[Path, ImportBatch]]:
    """`read_file` over `files` in order, while a thread of the native scanner's own (`_scan.ahead`, no
    Python in it) reads the next files and does the rule's reading part, so that reading and validating
    overlap the rule and the parser's Python where a core is free. Each file's stat, state and plan are
    taken here first, before any is read (the files are distinct: what the caller commits meanwhile is
    another file's)."""
    assert _scan is not None
    plans: list[tuple[os.stat_result, ReadPlan] | None] = []
    for f in files:
        try:
            st = os.stat(f)
            prev = state.get(state_key(f)) if state is not None else None
            plan = plan_read(f, st, prev)
        except OSError:
            plans.append(None)  # read_file says why, when its turn comes
            continue
        plans.append((st, plan) if plan.reason != "unchanged" else None)
    paths = [os.fsencode(f) if p is not None else b"" for f, p in zip(files, plans, strict=True)]
    offsets = [p[1].start if p is not None else 0 for p in plans]
    args = (rule.mode, rule.skip_prefixes, rule.needle, rule.keep_prefixes, _AHEAD, _AHEAD_MAX)
    ahead = _scan.ahead(paths, offsets, *args)
    for i, (f, p) in enumerate(zip(files, plans, strict=True)):
        err, job, head, incomplete = _scan.take(ahead, i)
        batch = ImportBatch()
        # Not read ahead (too large, or an error the usual read then reports in its words): read as ever.
        taken = _Taken(*p, None if err else job, head, incomplete) if p else None
        read_file(f, parser, batch, state, taken, positions)
        yield f, batch
