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
