"""The Codex counting rule's hot path (`raw_usage`, the token_count delta spelled out without generators)
against the rule as it was written before, on generated usage objects and token_count sequences."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agenttrail.importers import import_codex
from agenttrail.importers.codex import _FIELDS, raw_usage, usage_from_codex
from agenttrail.usage import Usage, token_count
from importers.builders import CodexRollout

RawUsage = tuple[int, int, int, int, int]

_ODD = st.one_of(st.integers(-5, 10**12), st.booleans(), st.floats(allow_nan=False), st.none(), st.text(max_size=3))


def reference_raw_usage(u: object) -> RawUsage | None:
    """`raw_usage` as written before its fast path: every field through `token_count`."""
    if not isinstance(u, dict):
        return None
    return tuple(token_count(u.get(f)) for f in _FIELDS)  # type: ignore[return-value]


@given(st.one_of(st.dictionaries(st.sampled_from([*_FIELDS, "total_tokens", "x"]), _ODD), _ODD))
@example({"input_tokens": float("inf"), "output_tokens": float("-inf")})  # no int: counted as 0, not a crash
def test_raw_usage_matches_the_field_by_field_rule(u: Any) -> None:
    assert raw_usage(u) == reference_raw_usage(u)


def reference_calls(events: list[tuple[RawUsage | None, RawUsage | None]]) -> tuple[list[Usage], int]:
    """Calls and the number of warnings for a file of token_count events, by the rule as it was written
    before (docs/importers.md, "Counting rule"), with generators over zip."""
    prev: RawUsage | None = None
    calls: list[Usage] = []
    warnings = 0
    for total, last in events:
        if total is None and last is None:
            continue
        if total is not None and total == prev:
            continue
        delta: RawUsage | None = None
        if total is not None:
            if prev is None:
                delta = total
            elif all(t >= q for t, q in zip(total, prev, strict=True)):
                delta = tuple(t - q for t, q in zip(total, prev, strict=True))  # type: ignore[assignment]
            before, prev = prev, total
        else:
            before = prev
        use = last if last is not None else delta
        if use is None:
            continue
        if last is not None and delta is not None and last != delta and before is not None:
            warnings += 1
        if any(use):
            calls.append(usage_from_codex(use))
    return calls, warnings


_SMALL = st.integers(0, 40)
_RAW = st.tuples(_SMALL, _SMALL, _SMALL, _SMALL, _SMALL)


def _as_dict(u: RawUsage | None) -> dict[str, int] | None:
    return None if u is None else dict(zip(_FIELDS, u, strict=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(st.none(), _RAW), st.one_of(st.none(), _RAW)), max_size=12))
def test_token_count_sequences_count_as_the_written_rule(events: list[tuple[Any, Any]]) -> None:
    """Totals that grow, repeat, shrink (a reset) or are missing; last usages that agree or not."""
    r = CodexRollout()
    r.meta()
    r.turn_context()
    for total, last in events:
        # The builder accumulates a missing total; here a missing total stays missing.
        info = {"total_token_usage": _as_dict(total), "last_token_usage": _as_dict(last)}
        r._line("event_msg", {"type": "token_count", "info": info, "rate_limits": None})
    with TemporaryDirectory() as tmp:
        r.write(Path(tmp))
        for with_events in (True, False):
            batch = import_codex(Path(tmp), with_events=with_events)
            want, warnings = reference_calls(events)
            assert sorted(map(repr, (c.usage for c in batch.calls))) == sorted(map(repr, want))
            assert len(batch.warnings) == warnings
            assert batch.errors == []
