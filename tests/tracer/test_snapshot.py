from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agenttrail.tracer.snapshot import FileChange, SnapshotConfig, WorkspaceSnapshot, take_snapshot, unified_diff


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _seed(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "mod.txt").write_text("a\nb\nc\n")
    (root / "del.txt").write_text("gone\n")
    (root / "ren.txt").write_text("".join(f"line {i}\n" for i in range(20)))
    (root / "bin.dat").write_bytes(b"\0\1\2")


def _act(root: Path) -> None:
    (root / "src" / "mod.txt").write_text("a\nB\nc\nd")  # no newline at the end
    (root / "del.txt").unlink()
    (root / "ren.txt").rename(root / "src" / "renamed.txt")
    (root / "new file.txt").write_text("hello\n")
    (root / "bin.dat").write_bytes(b"\0\3")


EXPECTED = [
    FileChange("bin.dat", "modified", binary=True, diff="Binary files a/bin.dat and b/bin.dat differ\n"),
    FileChange("del.txt", "deleted", lines_removed=1, diff="--- a/del.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"),
    FileChange(
        "new file.txt", "created", lines_added=1, diff="--- /dev/null\n+++ b/new file.txt\t\n@@ -0,0 +1 @@\n+hello\n"
    ),
    FileChange(
        "src/mod.txt",
        "modified",
        lines_added=2,
        lines_removed=1,
        diff=(
            "--- a/src/mod.txt\n+++ b/src/mod.txt\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n\\ No newline at end of file\n"
        ),
    ),
    FileChange("src/renamed.txt", "renamed", old_path="ren.txt"),
]


@pytest.fixture
def repo(git: str, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "T")
    _seed(root)
    (root / ".gitignore").write_text("*.log\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return root


def _object_count(repo: Path) -> tuple[str, str]:
    stats = dict(line.split(": ") for line in _git(repo, "count-objects", "-v").splitlines())
    return stats["count"], stats["in-pack"]


def _user_state(repo: Path) -> tuple[object, ...]:
    index = repo / ".git" / "index"
    return (
        index.read_bytes(),
        index.stat().st_mtime_ns,
        _object_count(repo),
        sorted(os.listdir(repo / ".git" / "objects")),
        (repo / ".git" / "config").read_bytes(),
    )


def test_git_repo_exact_changes_and_user_state_untouched(repo: Path) -> None:
    (repo / "untracked.txt").write_text("u\n")  # untracked before: part of the baseline
    status_before = _git(repo, "status", "--porcelain")  # may refresh the user's index: state after it
    state = _user_state(repo)
    with take_snapshot(repo) as snap:
        assert snap.mode == "git"
        assert snap.paths() == {".gitignore", "bin.dat", "del.txt", "ren.txt", "src/mod.txt", "untracked.txt"}
        assert _user_state(repo) == state
        _act(repo)
        (repo / "debug.log").write_text("ignored by .gitignore\n")
        status_mid = _git(repo, "status", "--porcelain")
        assert status_mid != status_before
        state = _user_state(repo)
        assert snap.changes() == EXPECTED
        assert snap.changes() == EXPECTED  # asking twice gives the same answer
        assert _user_state(repo) == state
    assert _git(repo, "status", "--porcelain") == status_mid
    assert not (repo / ".git" / "index.lock").exists()


def test_git_snapshot_writes_nothing_into_the_repo(repo: Path) -> None:
    index = repo / ".git" / "index"
    state = (index.read_bytes(), index.stat().st_mtime_ns, _object_count(repo), (repo / ".git" / "config").read_bytes())
    with take_snapshot(repo) as snap:
        _act(repo)
        assert len(snap.changes()) == 5
    assert state == (
        index.read_bytes(),
        index.stat().st_mtime_ns,
        _object_count(repo),
        (repo / ".git" / "config").read_bytes(),
    )
    assert not (repo / ".git" / "index.lock").exists()


def test_git_rename_with_edit_and_subdirectory_root(repo: Path) -> None:
    with take_snapshot(repo / "src") as snap:
        text = (repo / "ren.txt").read_text()
        (repo / "ren.txt").unlink()  # outside the snapshot root: not reported
        (repo / "src" / "mod.txt").rename(repo / "src" / "moved.txt")
        (repo / "src" / "big.txt").write_text(text)
        [created, change] = snap.changes()
    assert (change.path, change.change, change.old_path) == ("moved.txt", "renamed", "mod.txt")
    assert (created.path, created.change, created.lines_added) == ("big.txt", "created", 20)


def test_git_rename_with_small_edit_is_a_rename_with_a_diff(repo: Path) -> None:
    with take_snapshot(repo) as snap:
        text = (repo / "ren.txt").read_text().replace("line 3\n", "line three\n")
        (repo / "ren.txt").unlink()
        (repo / "ren2.txt").write_text(text)
        [change] = snap.changes()
    assert (change.change, change.old_path, change.lines_added, change.lines_removed) == ("renamed", "ren.txt", 1, 1)
    assert "-line 3\n+line three\n" in change.diff


def test_plain_directory_exact_changes(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    _seed(root)
    (root / "node_modules").mkdir()
    (root / "node_modules" / "dep.js").write_text("1")
    with take_snapshot(root) as snap:
        assert snap.mode == "files"
        assert snap.paths() == {"bin.dat", "del.txt", "ren.txt", "src/mod.txt"}
        _act(root)
        (root / "node_modules" / "dep.js").write_text("2")  # skipped by config
        assert snap.changes() == EXPECTED


def test_a_project_holding_the_temporary_folder_does_not_see_our_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `agenttrail run` in /tmp: the private copies went into the project and came out as 1,664 files
    # the agent "created".
    root = tmp_path / "plain"
    root.mkdir()
    _seed(root)
    monkeypatch.setattr("tempfile.tempdir", str(root))
    home = root / "qa" / "agenttrail-home"  # AGENTTRAIL_HOME under /tmp: the session's hooks, a store
    home.mkdir(parents=True)
    with take_snapshot(root, SnapshotConfig(skip_paths=(str(home),))) as snap:
        assert snap.mode == "files" and any(p.name.startswith("agenttrail-snap-") for p in root.iterdir())
        assert snap.paths() == {"bin.dat", "del.txt", "ren.txt", "src/mod.txt"}
        _act(root)
        (home / "agenttrail.db-wal").write_bytes(b"wal")
        assert snap.changes() == EXPECTED


def test_plain_directory_without_git_config(repo: Path) -> None:
    # use_git=False treats even a repo as a plain directory; .git itself is skipped.
    with take_snapshot(repo, SnapshotConfig(use_git=False)) as snap:
        assert snap.mode == "files"
        _act(repo)
        assert snap.changes() == EXPECTED


@pytest.mark.parametrize("use_git", [True, False])
def test_diff_is_capped(repo: Path, use_git: bool) -> None:
    cfg = SnapshotConfig(max_diff_bytes=200, use_git=use_git)
    with take_snapshot(repo, cfg) as snap:
        (repo / "long.txt").write_text("".join(f"row {i}\n" for i in range(100)))
        [change] = [c for c in snap.changes() if c.path == "long.txt"]
    assert change.diff_truncated is True
    assert len(change.diff.encode()) <= 200
    assert change.diff.endswith("\n")
    assert change.lines_added == 100  # counts are of the whole change, not of the capped text


def test_big_file_in_plain_dir_is_known_changed_but_not_diffed(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_text("x" * 100)
    with take_snapshot(tmp_path, SnapshotConfig(max_file_bytes=10)) as snap:
        (tmp_path / "big.bin").write_text("y" * 100)
        [change] = snap.changes()
    assert (change.change, change.diff, change.diff_truncated) == ("modified", "", True)


def test_private_copies_stop_at_the_budget_and_the_rest_is_still_compared(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):  # walked in name order: a and b fit in 20 bytes, c does not
        (tmp_path / name).write_text(f"{name} v1\n")
    with take_snapshot(tmp_path, SnapshotConfig(max_kept_bytes=20)) as snap:
        kept = sum(f.stat().st_size for f in snap._tmp.rglob("*") if f.is_file())
        for name in ("a.txt", "c.txt"):
            (tmp_path / name).write_text(f"{name} v2\n")
        changes = {c.path: c for c in snap.changes()}
    assert kept <= 20
    assert set(changes) == {"a.txt", "c.txt"}
    assert changes["a.txt"].diff_truncated is False and changes["a.txt"].lines_added == 1
    assert (changes["c.txt"].change, changes["c.txt"].diff, changes["c.txt"].diff_truncated) == ("modified", "", True)


def test_close_removes_private_state(tmp_path: Path) -> None:
    snap = WorkspaceSnapshot.take(tmp_path)
    private = snap._tmp
    assert private.exists()
    snap.close()
    assert not private.exists()


def test_unified_diff_counts_and_format() -> None:
    diff, added, removed = unified_diff(b"1\n2\n3\n", b"1\n3\n4\n", "f", "f")
    assert (added, removed) == (1, 1)
    assert diff == "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n 1\n-2\n 3\n+4\n"
    assert unified_diff(b"same\n", b"same\n", "f", "f") == ("", 0, 0)
