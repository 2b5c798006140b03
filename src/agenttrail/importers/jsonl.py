"""Streaming JSONL reading shared by the transcript importers.

`read_file` drives one file through a `LineParser`: it resumes where the state store says, reads complete
lines one at a time (never the whole file), parses each with orjson, and hands objects to the parser.
A line that is not JSON, not UTF-8, or not the shape the parser expects is recorded in
`ImportBatch.errors` with its file and line number, and reading goes on: damaged input never stops an
import. A last line without its newline is not consumed; it is read by the next import once complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import orjson

from agenttrail.importers.incremental import StateStore, new_state, plan_read, state_key
from agenttrail.importers.records import ImportBatch, LineError

_BUFFER = 1 << 20


class ShapeError(ValueError):
    """A JSON line whose shape is not what its `type` promises. The line is reported and skipped."""


class LineParser(Protocol):
    def start(self, path: Path, carry: dict[str, Any], batch: ImportBatch) -> None:
        """Begin (or resume, with `carry` from the last read) a file."""

    def feed(self, line_no: int, obj: Any, raw: bytes) -> None:
        """One parsed line. Raise ShapeError for a line of the wrong shape."""

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
    parser.start(path, plan.carry, batch)
    try:
        with open(path, "rb", buffering=_BUFFER) as f:
            f.seek(offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    batch.warnings.append(
                        LineError(spath, line_no + 1, "incomplete last line (no newline yet); not read")
                    )
                    break
                offset += len(raw)
                line_no += 1
                batch.lines_read += 1
                body = raw[:-1]
                if not body.strip():
                    continue
                obj, err = parse_line(body)
                if err is not None:
                    batch.errors.append(LineError(spath, line_no, err))
                    continue
                try:
                    parser.feed(line_no, obj, body)
                except ShapeError as e:
                    batch.errors.append(LineError(spath, line_no, f"unexpected shape: {e}"))
                except Exception as e:  # a parser bug must not stop an import either
                    batch.errors.append(LineError(spath, line_no, f"internal error: {type(e).__name__}: {e}"))
    except OSError as e:
        batch.errors.append(LineError(spath, line_no + 1, f"read failed: {e.strerror or e}"))
    carry = parser.finish()
    batch.bytes_read += offset - plan.start
    batch.files_read += 1
    batch.file_states.append(new_state(path, st, offset, line_no, carry))
