"""Small helpers the importers share: finding files, timestamps, text capping, tool-result text."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_NUMBER = (int, float)  # a tuple: isinstance with `int | float` is twice as slow, and this is per line
DEFAULT_CONTENT_CAP = 16_384  # characters of a prompt, response or tool result kept in an event


def files_under(roots: Iterable[Path], pattern: str) -> list[Path]:
    """`sorted(f for root in roots if root.is_dir() for f in root.rglob(pattern) if f.is_file())`, by an
    os.scandir walk: pathlib's took 83 ms for 5,629 rollouts, this ~15 ms. The same files in the same
    order: symlinked folders are not entered (as rglob does not), symlinks to files are kept and dangling
    ones dropped, hidden names match, folders it may not read are passed over."""
    match = re.compile(fnmatch.translate(pattern)).match
    found: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        stack = [str(root)]
        while stack:
            try:
                entries = os.scandir(stack.pop())
            except OSError:
                continue
            with entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif match(e.name) and e.is_file():
                            found.append(e.path)
                    except OSError:
                        continue
    found.sort(key=_parts)
    return list(map(Path, found))


def _parts(path: str) -> list[str]:
    """`Path(path).parts` of a normalised path, without making the Path: sorting by it is Path's order."""
    parts = path.split("/")
    if not parts[0]:
        parts[0] = "/"
    return parts


def parse_ts(value: object) -> datetime | None:
    """An ISO-8601 timestamp (`2026-05-04T10:00:00.123Z`) or epoch milliseconds, as aware UTC."""
    if isinstance(value, str) and value:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None
        if ts.tzinfo is UTC:  # `…Z`, as both agents write it
            return ts
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if isinstance(value, _NUMBER) and not isinstance(value, bool) and value > 0:
        try:
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def resume_time(carry: dict[str, Any], path: Path, mtime: float | None = None) -> datetime:
    """The time a line without its own takes at the start of a read: the last one read (in `carry`),
    else the file's modification time (`mtime` when the reader has stat'ed the file already: a stat a
    file fewer, 5,629 on a Codex gigabyte)."""
    last = parse_ts(carry.get("last_ts"))
    if last is not None:
        return last
    if mtime is None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return datetime.fromtimestamp(0, UTC)
    return datetime.fromtimestamp(mtime, UTC)


def cap_text(text: str, cap: int) -> dict[str, Any]:
    """`{"text": ...}` capped at `cap` characters, with `truncated` and the original `length` when cut."""
    if len(text) <= cap:
        return {"text": text}
    return {"text": text[:cap], "truncated": True, "length": len(text)}


def cap_value(value: Any, cap: int) -> Any:
    """A JSON value with every string longer than `cap` cut to `cap` characters (tool inputs)."""
    if isinstance(value, str):
        return value if len(value) <= cap else value[:cap] + f"…[{len(value) - cap} more characters]"
    if isinstance(value, dict):
        return {k: cap_value(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [cap_value(v, cap) for v in value]
    return value


def block_text(content: object) -> str:
    """The text of a message or tool-result content: a string, or a list of blocks of which the text
    blocks are joined and others (images, documents) are named."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif isinstance(block.get("type"), str):
                    parts.append(f"[{block['type']}]")
        return "\n".join(parts)
    if content is None:
        return ""
    return str(content)


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
