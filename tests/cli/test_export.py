"""`agenttrail export -o FILE`: a path that cannot be written is one clear line, and no half file is left."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_org_keys_sql import at


def test_an_unwritable_output_is_one_line_and_leaves_nothing(sqlite_url: str, home: str, tmp_path: Path) -> None:
    missing = at("export", "-f", "csv", "-o", str(tmp_path / "no" / "such" / "x.csv"), db=sqlite_url, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"cannot write {tmp_path / 'no' / 'such' / 'x.csv'}: No such file or directory" in missing.stderr
    folder = at("export", "-f", "csv", "-o", str(tmp_path), db=sqlite_url, check=False)
    assert folder.returncode == 1 and "is a folder; name a file in it" in folder.stderr
    refused = at("export", "-f", "csv", "--what", "nope", "-o", str(tmp_path / "x.csv"), db=sqlite_url, check=False)
    assert refused.returncode == 1 and "cannot export 'nope'" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["home", "agenttrail.db", "agenttrail.db.lock"])
    ok = at("export", "-f", "csv", "-o", str(tmp_path / "x.csv"), db=sqlite_url)
    assert "exported 0 rows" in ok.stderr and (tmp_path / "x.csv").read_text().startswith("session_id,")


def test_a_reader_that_stops_early_is_no_error(sqlite_url: str, home: str) -> None:
    """`agenttrail export -f csv | head -1`: the pipe closes under the export. It said
    "error: cannot write None: Broken pipe"; it ends quietly, as the commands printing through rich do."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line: every write meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agenttrail", "export", "-f", "csv", "--db", sqlite_url],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1 and done.stderr == "", done.stderr
