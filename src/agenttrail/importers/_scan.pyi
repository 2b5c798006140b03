# The native line scanner (_scan.c), compiled at install time by hatch_build.py.
from typing import Any

def scan(
    buf: bytes,
    first_line_no: int,
    mode: int,
    skip_prefixes: tuple[bytes, ...],
    needle: bytes | None,
    keep_prefixes: tuple[bytes, ...],
    spec: dict[str, Any],
    state: list[Any] | None = None,
    start: int = 0,
) -> tuple[list[Any], int, int]: ...
def ahead(
    paths: list[bytes],
    offsets: list[int],
    mode: int,
    skip_prefixes: tuple[bytes, ...],
    needle: bytes | None,
    keep_prefixes: tuple[bytes, ...],
    window: int,
    max_bytes: int,
) -> Any: ...
def take(ahead: Any, i: int) -> tuple[int, Any, bytes, bool]: ...
def apply(job: Any, first_line_no: int, state: list[Any]) -> tuple[list[Any], int, int]: ...
def sums(records: list[Any], template: Any) -> tuple[int, ...] | None: ...

class Tally:
    """A dry run's calls without a record each (docs/importers.md, "The native reader")."""

    calls: int
    spoiled: bool
    file_has_records: bool
    def add(self, call_id: str, provider: str, model: str | None, counts: tuple[int, ...], record: bool) -> None: ...
    def has(self, call_id: str, record: bool) -> bool: ...
    def end_file(self, records: bool) -> int: ...
    def groups(
        self,
    ) -> list[tuple[str, str | None, int, tuple[int, int, int, int, int, int], tuple[int, int, int, int]]] | None: ...
    def usages(self, provider: str, model: str | None) -> list[tuple[int, int, int, int, int, int]]: ...
