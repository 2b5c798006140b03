"""The time a line without its own takes at the start of a read: the carried last time, else the file's
modification time, from the reader's own stat when it has one (no second stat)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from agenttrail.importers.common import resume_time

T = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def test_the_carried_time_comes_first(tmp_path: Path) -> None:
    assert resume_time({"last_ts": "2026-05-04T09:00:00Z"}, tmp_path / "gone.jsonl", 0.0) == T


def test_the_reader_s_mtime_is_used_without_a_stat(tmp_path: Path) -> None:
    # The path does not exist: a stat would fail and give the epoch.
    assert resume_time({}, tmp_path / "gone.jsonl", T.timestamp()) == T


def test_without_one_the_file_is_stat_ed(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("{}\n")
    os.utime(path, (T.timestamp(), T.timestamp()))
    assert resume_time({}, path) == T
    assert resume_time({}, tmp_path / "gone.jsonl") == datetime.fromtimestamp(0, UTC)
