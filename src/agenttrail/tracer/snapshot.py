"""The workspace before and after a session, and what changed between the two.

In a git repository the snapshot is two trees written with git plumbing into a private index and a
private object directory: `GIT_INDEX_FILE` points at a copy of the user's index (its stat data lets
`git add` skip unchanged files), `GIT_OBJECT_DIRECTORY` at a temporary store, and
`GIT_ALTERNATE_OBJECT_DIRECTORIES` at the repo's own objects so existing blobs are read, not copied.
`git add -A` takes untracked files too and respects .gitignore; `git diff-tree -M` between the trees
gives renames, line counts and patches. The user's index, refs and object store are never written
(git may refresh the mtime of an object it finds in an alternate; content and count stay the same).

Outside a repository the snapshot walks the directory (skipping dependency and cache folders), keeps
a content hash per file and a private copy of each file up to `max_file_bytes`, so that a diff of
a file modified or deleted later can still be produced.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

ChangeKind = Literal["created", "modified", "deleted", "renamed"]

DEFAULT_SKIP_DIRS: tuple[str, ...] = (
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".gradle", ".cache",
)  # fmt: skip
_CHANGE_KINDS: dict[str, ChangeKind] = {"A": "created", "D": "deleted", "R": "renamed"}
_BINARY_PROBE = 8000  # git's own heuristic: a NUL byte in the first 8000 bytes means binary


@dataclass(frozen=True, slots=True)
class SnapshotConfig:
    max_diff_bytes: int = 64 * 1024  # per file; longer diffs are cut at a line end, diff_truncated set
    max_file_bytes: int = 8 * 1024 * 1024  # plain dirs: larger files are compared by hash, not diffed
    # Plain dirs: private copies stop here (a home directory or a data folder can hold far more); the
    # files after it are compared by hash, reported changed with diff_truncated, as the large ones are.
    max_kept_bytes: int = 512 * 1024 * 1024
    skip_dirs: tuple[str, ...] = DEFAULT_SKIP_DIRS  # plain dirs only; in a repo .gitignore decides
    # Plain dirs only: absolute folders left out wherever they are (agenttrail's home inside /tmp).
    skip_paths: tuple[str, ...] = ()
    use_git: bool = True
    trust_stat: bool = True  # plain dirs: same size, mtime and inode means unchanged (as git does)


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str  # relative to the snapshot root, '/'-separated
    change: ChangeKind
    old_path: str | None = None
    lines_added: int = 0
    lines_removed: int = 0
    binary: bool = False
    diff: str = ""  # unified diff from the `---`/`+++` lines on; "" for pure renames
    diff_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cap(diff: str, limit: int) -> tuple[str, bool]:
    data = diff.encode("utf-8")
    if len(data) <= limit:
        return diff, False
    cut = data[:limit]
    nl = cut.rfind(b"\n")
    if nl >= 0:
        cut = cut[: nl + 1]
    return cut.decode("utf-8", "ignore"), True


def _git_env() -> dict[str, str]:
    # The user's own GIT_DIR/GIT_INDEX_FILE/... must not redirect our plumbing.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


class WorkspaceSnapshot:
    """Take with `WorkspaceSnapshot.take(root)` before the session; call `changes()` after it."""

    mode: Literal["git", "files"]

    def __init__(self, root: Path, config: SnapshotConfig) -> None:
        self.root = root.resolve()
        self.config = config
        self._tmp = Path(tempfile.mkdtemp(prefix="agenttrail-snap-"))

    @classmethod
    def take(cls, root: str | os.PathLike[str], config: SnapshotConfig | None = None) -> WorkspaceSnapshot:
        cfg = config or SnapshotConfig()
        path = Path(root)
        if cfg.use_git and shutil.which("git") and _git_toplevel(path) is not None:
            snap: WorkspaceSnapshot = _GitSnapshot(path, cfg)
        else:
            snap = _FileSnapshot(path, cfg)
        try:
            snap._before()
        except BaseException:
            snap.close()
            raise
        return snap

    def paths(self) -> frozenset[str]:
        """Files present when the snapshot was taken, relative to the root (the create-vs-write oracle)."""
        raise NotImplementedError

    def changes(self) -> list[FileChange]:
        """Snapshot the workspace now and compare it with the one taken before."""
        raise NotImplementedError

    def _before(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> WorkspaceSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _git_toplevel(path: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            env=_git_env(),
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


class _GitSnapshot(WorkspaceSnapshot):
    mode = "git"

    def __init__(self, root: Path, config: SnapshotConfig) -> None:
        super().__init__(root, config)
        self._index = self._tmp / "index"
        objects = self._tmp / "objects"
        objects.mkdir()
        user_objects = self._rev_parse("--git-path", "objects")
        self._env = _git_env() | {
            "GIT_INDEX_FILE": str(self._index),
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": user_objects,
        }
        user_index = Path(self._rev_parse("--git-path", "index"))
        if user_index.is_file():
            shutil.copyfile(user_index, self._index)  # a copy: stat data speeds `add`, the original is untouched
        self._tree_before = ""
        self._paths: frozenset[str] | None = None

    def _rev_parse(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=_git_env(),
            check=True,
        )
        return done.stdout.strip()

    def _git(self, *args: str) -> bytes:
        done = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "-c", "gc.auto=0", "-c", "maintenance.auto=false", *args],
            cwd=self.root,
            capture_output=True,
            env=self._env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    def _write_tree(self) -> str:
        try:
            self._git("add", "-A", "--ignore-errors", "--", ".")
        except RuntimeError:
            # A copied index can be unusable on its own (split index, newer format): start empty.
            self._index.unlink(missing_ok=True)
            self._git("add", "-A", "--ignore-errors", "--", ".")
        return self._git("write-tree").decode().strip()

    def _before(self) -> None:
        self._tree_before = self._write_tree()
        listing = self._git("ls-files", "-z", "--", ".")
        # As strace's paths are decoded (strace_syntax): the existed-before oracle compares the two.
        self._paths = frozenset(p.decode("utf-8", "backslashreplace") for p in listing.split(b"\0") if p)

    def paths(self) -> frozenset[str]:
        return self._paths or frozenset()

    def changes(self) -> list[FileChange]:
        after = self._write_tree()
        if after == self._tree_before:
            return []
        base = ["diff-tree", "-r", "-M", "--relative", "--no-ext-diff", "--no-textconv", "--no-color"]
        fields = self._git(*base, "--numstat", "-z", self._tree_before, after).split(b"\0")
        statuses = self._git(*base, "--name-status", "-z", self._tree_before, after).split(b"\0")
        patch = self._git(*base, "-p", self._tree_before, after).decode("utf-8", "replace")
        chunks = re.split(r"^(?=diff --git )", patch, flags=re.M)
        chunks = [c for c in chunks if c.startswith("diff --git ")]
        out: list[FileChange] = []
        for n, (stats, status) in enumerate(zip(_numstat(fields), _name_status(statuses), strict=False)):
            added, removed, binary = stats
            code, path, old = status
            change = _CHANGE_KINDS.get(code[0], "modified")
            diff, truncated = _cap(_body(chunks[n]) if n < len(chunks) else "", self.config.max_diff_bytes)
            out.append(FileChange(path, change, old, added, removed, binary, diff, truncated))
        return out


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _numstat(fields: list[bytes]) -> Iterator[tuple[int, int, bool]]:
    """`added\\tremoved\\tpath\\0` or, for renames, `added\\tremoved\\t\\0old\\0new\\0`."""
    i = 0
    while i < len(fields) and fields[i]:
        added, removed, path = fields[i].split(b"\t", 2)
        i += 1 if path else 3
        binary = added == b"-"
        yield (0 if binary else int(added)), (0 if binary else int(removed)), binary


def _name_status(fields: list[bytes]) -> Iterator[tuple[str, str, str | None]]:
    """`M\\0path\\0` or, for renames and copies, `R100\\0old\\0new\\0`."""
    i = 0
    while i < len(fields) and fields[i]:
        code = fields[i].decode()
        if code[0] in "RC":
            yield code, _decode(fields[i + 2]), _decode(fields[i + 1])
            i += 3
        else:
            yield code, _decode(fields[i + 1]), None
            i += 2


def _body(chunk: str) -> str:
    """A file's patch without git's `diff --git`/`index`/mode headers, from `---` or `Binary files` on."""
    for marker in ("\n--- ", "\nBinary files "):
        at = chunk.find(marker)
        if at >= 0:
            return chunk[at + 1 :]
    return ""


# ---- plain directories -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    size: int
    mtime_ns: int
    ino: int
    digest: str
    kept: bool  # a private copy of the content exists (for diffs)


class _FileSnapshot(WorkspaceSnapshot):
    mode = "files"

    def __init__(self, root: Path, config: SnapshotConfig) -> None:
        super().__init__(root, config)
        self._blobs = self._tmp / "blobs"
        self._blobs.mkdir()
        self._entries: dict[str, _Entry] = {}
        self._kept_bytes = 0

    def _walk(self) -> Iterator[tuple[str, os.stat_result]]:
        skip = set(self.config.skip_dirs)
        # Our private copies too, when $TMPDIR is inside the project (`agenttrail run` in /tmp).
        own = {str(self._tmp.resolve()), *(os.path.realpath(p) for p in self.config.skip_paths)}
        for dirpath, dirnames, filenames in os.walk(self.root):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = sorted(
                d for d in dirnames if d not in skip and d not in links and os.path.join(dirpath, d) not in own
            )
            for name in sorted([*filenames, *links]):
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    yield os.path.relpath(full, self.root).replace(os.sep, "/"), st

    def _content(self, rel: str, st: os.stat_result) -> bytes | None:
        full = self.root / rel
        if stat.S_ISLNK(st.st_mode):
            return os.fsencode(os.readlink(full))  # like git: a symlink's content is its target
        if st.st_size > self.config.max_file_bytes:
            return None
        try:
            return full.read_bytes()
        except OSError:
            return None

    def _digest(self, rel: str, st: os.stat_result, data: bytes | None) -> str:
        if data is not None:
            return hashlib.sha256(data).hexdigest()
        h = hashlib.sha256()
        with open(self.root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def _before(self) -> None:
        for rel, st in self._walk():
            data = self._content(rel, st)
            digest = self._digest(rel, st, data)
            blob = self._blobs / digest
            if data is not None and not blob.exists():
                if self._kept_bytes + len(data) > self.config.max_kept_bytes:
                    data = None
                else:
                    blob.write_bytes(data)
                    self._kept_bytes += len(data)
            self._entries[rel] = _Entry(st.st_size, st.st_mtime_ns, st.st_ino, digest, data is not None)

    def paths(self) -> frozenset[str]:
        return frozenset(self._entries)

    def changes(self) -> list[FileChange]:
        now: dict[str, tuple[_Entry, bytes | None]] = {}
        for rel, st in self._walk():
            old = self._entries.get(rel)
            if (
                old
                and self.config.trust_stat
                and (old.size, old.mtime_ns, old.ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
            ):
                now[rel] = (old, None)
                continue
            data = self._content(rel, st)
            entry = _Entry(st.st_size, st.st_mtime_ns, st.st_ino, self._digest(rel, st, data), data is not None)
            now[rel] = (entry, data)
        created = sorted(set(now) - set(self._entries))
        deleted = sorted(set(self._entries) - set(now))
        out: list[FileChange] = []
        # Exact renames: a deleted path whose content reappears under a new path.
        by_digest: dict[str, list[str]] = {}
        for rel in created:
            by_digest.setdefault(now[rel][0].digest, []).append(rel)
        for rel in list(deleted):
            twins = by_digest.get(self._entries[rel].digest)
            if twins:
                new = twins.pop(0)
                created.remove(new)
                deleted.remove(rel)
                out.append(FileChange(new, "renamed", rel))
        for rel in sorted(set(now) & set(self._entries)):
            if now[rel][0].digest != self._entries[rel].digest:
                out.append(self._diff(rel, rel, "modified", self._old(rel), now[rel][1]))
        out.extend(self._diff(None, rel, "created", b"", now[rel][1]) for rel in created)
        out.extend(self._diff(rel, None, "deleted", self._old(rel), b"") for rel in deleted)
        return sorted(out, key=lambda c: c.path)

    def _old(self, rel: str) -> bytes | None:
        entry = self._entries[rel]
        return (self._blobs / entry.digest).read_bytes() if entry.kept else None

    def _diff(
        self, old_rel: str | None, new_rel: str | None, change: ChangeKind, a: bytes | None, b: bytes | None
    ) -> FileChange:
        path = new_rel or old_rel or ""
        if a is None or b is None:  # too big to have been kept or read: known changed, not diffed
            return FileChange(path, change, diff_truncated=True)
        if b"\0" in a[:_BINARY_PROBE] or b"\0" in b[:_BINARY_PROBE]:
            return FileChange(
                path,
                change,
                binary=True,
                diff=f"Binary files {_label('a', old_rel)} and {_label('b', new_rel)} differ\n",
            )
        diff, added, removed = unified_diff(a, b, old_rel, new_rel)
        text, truncated = _cap(diff, self.config.max_diff_bytes)
        return FileChange(path, change, None, added, removed, False, text, truncated)


def _label(side: str, rel: str | None, header: bool = False) -> str:
    if rel is None:
        return "/dev/null"
    # git ends a ---/+++ name that contains a space with a tab, so a reader can tell where it ends.
    return f"{side}/{rel}\t" if header and " " in rel else f"{side}/{rel}"


def unified_diff(a: bytes, b: bytes, old_rel: str | None, new_rel: str | None) -> tuple[str, int, int]:
    """A git-style unified diff of two texts (3 lines of context, `\\ No newline at end of file`),
    with the counts of added and removed lines."""
    old = a.decode("utf-8", "replace").splitlines(keepends=True)
    new = b.decode("utf-8", "replace").splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    added = removed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    lines: list[str] = [f"--- {_label('a', old_rel, True)}\n", f"+++ {_label('b', new_rel, True)}\n"]
    body = difflib.unified_diff(old, new, n=3, lineterm="\n")
    for n, line in enumerate(body):
        if n < 2:
            continue  # difflib's own ---/+++ lines; ours name the paths like git does
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return ("".join(lines) if len(lines) > 2 else ""), added, removed


def take_snapshot(root: str | os.PathLike[str], config: SnapshotConfig | None = None) -> WorkspaceSnapshot:
    """Shorthand for `WorkspaceSnapshot.take`."""
    return WorkspaceSnapshot.take(root, config)
