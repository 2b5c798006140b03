"""Opening a store that cannot be opened says why and what to do, for a person and not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agenttrail.store.database import open_engine
from agenttrail.store.engine import StoreError


@pytest.mark.parametrize("content", [b"\x00\xff" * 4096, b"SQLite format 3\x00" + b"garbage" * 100])
def test_a_damaged_sqlite_file_is_named_with_the_way_out(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "agenttrail.db"
    db.write_bytes(content)
    with pytest.raises(StoreError, match=r"not a database.*move it aside"):
        open_engine(f"sqlite:///{db}")
    assert db.read_bytes() == content  # nothing written over the user's file


def test_the_cli_prints_one_line_for_a_damaged_file_and_an_unreachable_server(tmp_path: Path) -> None:
    db = tmp_path / "agenttrail.db"
    db.write_bytes(b"\x00\xff" * 4096)
    for url in (f"sqlite:///{db}", "postgresql://postgres@127.0.0.1:9/agenttrail"):
        p = subprocess.run(
            [sys.executable, "-m", "agenttrail", "sessions", "--db", url], capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 1, url
        assert "cannot open the database" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_a_lock_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    # What a read-only folder gives; a folder in the lock file's place fails the same way, even for root.
    db = tmp_path / "agenttrail.db"
    (tmp_path / "agenttrail.db.lock").mkdir()
    with pytest.raises(StoreError, match=r"cannot open the database at .*agenttrail\.db\.lock"):
        open_engine(f"sqlite:///{db}")
