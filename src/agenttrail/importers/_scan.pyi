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
