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
