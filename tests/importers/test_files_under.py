"""`common.files_under` (an os.scandir walk) lists what pathlib's `rglob` did, in the same order: on a tree
with symlinked folders, symlinks to files, dangling links, hidden names, folders named like transcripts,
and on generated trees whose names sort differently as text than as paths (`a-b` against `a/b`)."""

from __future__ import annotations

import os
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import given, settings
from hypothesis import strategies as st

from agenttrail.importers.common import files_under


def _rglob(roots: list[Path], pattern: str) -> list[Path]:
    """The finders' listing before files_under."""
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(f for f in root.rglob(pattern) if f.is_file())
    return sorted(files)


def test_links_hidden_names_and_folders_named_like_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for name in ("a/b/x.jsonl", "a/.hidden.jsonl", "a/rollout-1.jsonl", "other/y.jsonl", "a/notes.txt"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "a" / "dir.jsonl").mkdir()
    os.symlink(tmp_path / "other", tmp_path / "a" / "link")  # a folder link: not entered
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    os.symlink(tmp_path / "other" / "y.jsonl", tmp_path / "a" / "z.jsonl")  # a file link: kept
    os.symlink(tmp_path / "missing", tmp_path / "a" / "dangling.jsonl")
    for roots in ([tmp_path / "a"], [tmp_path], [tmp_path / "a", tmp_path / "other", tmp_path / "absent"]):
        for pattern in ("*.jsonl", "rollout-*.jsonl"):
            assert files_under(roots, pattern) == _rglob(roots, pattern)
    assert tmp_path / "a" / "z.jsonl" in files_under([tmp_path / "a"], "*.jsonl")


_NAME = st.text(alphabet="ab-._ 0", min_size=1, max_size=4).filter(lambda n: n not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_NAME, min_size=1, max_size=4), max_size=25), st.sampled_from(["*.jsonl", "a*"]))
def test_same_files_in_the_same_order_as_rglob(paths: list[list[str]], pattern: str) -> None:
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        for parts in paths:
            *folders, name = parts
            folder = root.joinpath(*folders)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / (name + ".jsonl")).write_text("{}\n")
            except OSError:  # a name already taken by a file or a folder
                continue
        assert files_under([root], pattern) == _rglob([root], pattern)
        assert files_under([root, root / "a"], pattern) == _rglob([root, root / "a"], pattern)
