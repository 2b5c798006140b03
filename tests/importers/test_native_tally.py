"""A usage-only dry run of Codex counts its calls in the native scanner's tally (`_scan.Tally`), with no
record a call: its totals must equal those the records give (`run_import(..., tally=False)`: the calls
as records, `Totals.add_priced`), exactly, cost included. Generated rollouts: the agents' shapes and odd
ones (lines the rule hands to the parser's Python, damaged and truncated lines, counts past 64 bits),
copies of a file in `archived_sessions/`, files sharing calls, a tiered model on both sides of its tier;
read by the native reader (read ahead and in chunks) and by the plain one (the tally through the
parser's Python)."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import need

import agenttrail.cli.import_ as imp
from agenttrail.config import load_settings
from agenttrail.importers import CODEX, jsonl
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage

from .builders import CodexRollout, codex_usage
from .test_native_rules import _T0, _dump, codex_line

_SIDS = [f"0f3c2b1a-0000-4000-8000-0000000000{i:02x}" for i in range(4)]


@pytest.fixture(autouse=True)
def _scanner_built() -> None:
    need(jsonl._scan is not None, "the native line scanner was not built (no C compiler when installed)")


def _dry_run(root: Path, home: Path, *, tally: bool) -> imp.Totals:
    settings = load_settings(db=f"sqlite:///{home / 'never.db'}", env={"AGENTTRAIL_HOME": str(home)})
    return imp.run_import(
        CODEX, str(root), settings=settings, env={}, show_progress=False, usage_only=True, dry_run=True, tally=tally
    )


def _key(t: imp.Totals) -> tuple[Any, ...]:
    return (t.calls, t.usage, t._cost, t.cost_usd, t.sessions, t.errors, t.warnings, t.lines, t.files_read)


@st.composite
def _priced_line(draw: st.DrawFn) -> Any:
    """Lines that make calls of priced models, some past gpt-5.4's 272,000-token tier."""
    ts = f"2026-05-04T09:{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}.000Z"
    kind = draw(st.integers(0, 2))
    if kind == 0:
        model = draw(st.sampled_from(["gpt-5.4", "gpt-5", "o3", "no-such-model"]))
        return {"timestamp": ts, "type": "turn_context", "payload": {"model": model}}
    big = st.one_of(st.integers(0, 300_000), st.sampled_from([271_999, 272_000, 272_001]))
    u = codex_usage(draw(big), draw(st.integers(0, 200_000)), draw(st.integers(0, 9_000)), draw(st.integers(0, 50)))
    if kind == 1:
        rid = draw(st.sampled_from(["resp_a", "resp_b", "resp_c", "resp_d"]))
        return {"timestamp": ts, "type": "token_usage_record", "payload": {"response_id": rid, "usage": u}}
    info = {"total_token_usage": u, "last_token_usage": draw(st.sampled_from([u, None]))}
    return {"timestamp": ts, "type": "event_msg", "payload": {"type": "token_count", "info": info}}


def _write(path: Path, lines: list[bytes], tail: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(x + b"\n" for x in lines) + tail)
    os.utime(path, ns=(_T0, _T0))


_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(data=st.data())
def test_the_tally_equals_the_records_totals(monkeypatch: pytest.MonkeyPatch, data: st.DataObject) -> None:
    line = st.one_of(codex_line(), _priced_line())
    files = data.draw(st.lists(st.lists(st.tuples(line, st.sampled_from([0, 0, 0, 1, 2, 3])), max_size=25), max_size=3))
    copy = data.draw(st.sampled_from([None, 0, 1]))  # a file copied into archived_sessions/
    shared = data.draw(st.booleans())  # the next file begins with the previous file's lines
    tail = data.draw(st.sampled_from([b"", b'{"timestamp":"2026-05-04T09:00:00.000Z","type":"token_usage_rec']))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "codex"
        (root / "sessions").mkdir(parents=True)
        written: list[Path] = []
        previous: list[bytes] = []
        for i, items in enumerate(files):
            lines = [_dump(x, style) for x, style in items]
            if shared and previous:
                lines = previous[: len(previous) // 2] + lines
            path = root / "sessions" / "2026" / "05" / "04" / f"rollout-2026-05-04T09-00-0{i}-{_SIDS[i]}.jsonl"
            _write(path, lines, tail if i == len(files) - 1 else b"")
            written.append(path)
            previous = lines
        if copy is not None and copy < len(written):
            (root / "archived_sessions").mkdir()
            dst = root / "archived_sessions" / written[copy].name
            dst.write_bytes(written[copy].read_bytes())
            os.utime(dst, ns=(_T0, _T0))
        home = Path(d) / "home"
        want = _key(_dry_run(root, home, tally=False))
        for native in (True, False):  # read ahead by the scanner; the plain reader (the parser's Python)
            monkeypatch.setattr(jsonl, "NATIVE", native)
            assert _key(_dry_run(root, home, tally=True)) == want, native
        monkeypatch.setattr(jsonl, "_CHUNK", 64)  # a lone file's chunks (its own scan, not read ahead)
        monkeypatch.setattr(jsonl, "NATIVE", True)
        for path in written:
            assert _key(_dry_run(path, home, tally=True)) == _key(_dry_run(path, home, tally=False))


def _rollout(home: Path, usages: list[tuple[str, dict[str, int]]], model: str = "gpt-5.4") -> Path:
    r = CodexRollout(cwd="/repo", model=model)
    r.meta()
    r.turn_context()
    for rid, u in usages:
        r.usage_record(rid, u)
    return r.write(home)


def test_a_dry_run_keeps_no_record_a_call_and_prices_each_tier(tmp_path: Path) -> None:
    root = tmp_path / "codex"
    below, above = codex_usage(100_000, 50_000, 900), codex_usage(290_000, 30_000, 1_200)  # prompt 290,000
    _rollout(root, [("resp_1", below), ("resp_2", above), ("resp_1", below)])
    totals = _dry_run(root, tmp_path, tally=True)
    assert totals._seen == {}  # counted in the scanner: no call was a record
    pricer = Pricer()
    want = [Usage(50_000, 50_000, 0, 0, 900), Usage(260_000, 30_000, 0, 0, 1_200)]
    assert (totals.calls, totals.usage) == (2, want[0] + want[1])
    assert totals._cost == sum((pricer.price("openai", "gpt-5.4", u).cost_usd for u in want), Decimal(0))
    # The tier mattered: the sum priced at the base rates is another figure.
    assert totals._cost != pricer.cost_of_group("openai", "gpt-5.4", totals.usage, (0, 0, 0, 0), list)
    assert _key(totals) == _key(_dry_run(root, tmp_path, tally=False))


def test_copies_count_once_and_a_fuller_reading_wins(tmp_path: Path) -> None:
    root = tmp_path / "codex"
    path = _rollout(root, [("resp_1", codex_usage(1_000, 100, 5))], model="gpt-5")
    archived = root / "archived_sessions"
    archived.mkdir()
    # The copy read later has the response's final usage (more output): the call takes each maximum.
    r = CodexRollout(session_id=path.stem[-36:], cwd="/repo", model="gpt-5")
    r.meta()
    r.turn_context()
    r.usage_record("resp_1", codex_usage(1_000, 100, 70))
    (archived / path.name).write_text("\n".join(__import__("json").dumps(x) for x in r.lines) + "\n", encoding="utf-8")
    totals = _dry_run(root, tmp_path, tally=True)
    assert (totals.calls, totals.usage) == (1, Usage(900, 100, 0, 0, 70))
    assert _key(totals) == _key(_dry_run(root, tmp_path, tally=False))


def test_a_count_past_64_bits_is_counted_with_records(tmp_path: Path) -> None:
    root = tmp_path / "codex"
    _rollout(root, [("resp_1", codex_usage(1_000, 100, 5)), ("resp_2", codex_usage(10**19, 0, 5))])
    tally = jsonl._scan.Tally()  # type: ignore[union-attr]
    tally.add("0" * 32, "openai", "gpt-5", (10**19, 0, 0, 0, 5, 0), True)
    assert tally.spoiled
    totals = _dry_run(root, tmp_path, tally=True)
    assert totals.usage.input_tokens == 10**19 + 900
    assert _key(totals) == _key(_dry_run(root, tmp_path, tally=False))


def test_tally_keeps_the_parsers_rules_within_a_file() -> None:
    tally = jsonl._scan.Tally()  # type: ignore[union-attr]
    a, b = "a" * 32, "b" * 32
    tally.add(a, "openai", None, (5, 0, 0, 0, 1, 0), False)  # token_count calls: the first reading stays
    tally.add(a, "openai", "gpt-5", (9, 0, 0, 0, 9, 0), False)
    assert tally.has(a, False) and not tally.has(a, True) and not tally.file_has_records
    assert tally.end_file(False) == 1
    tally.add(b, "openai", None, (1, 2, 3, 4, 5, 6), True)  # records: merged, a missing model filled
    tally.add(b, "openai", "o3", (6, 1, 3, 4, 0, 6), True)
    tally.add(a, "openai", "gpt-5", (1, 1, 1, 1, 1, 1), False)  # not the file's calls: it has records
    assert tally.file_has_records
    assert tally.end_file(True) == 1
    tally.add(a, "openai", "o3", (7, 0, 0, 0, 0, 0), True)  # a later file: merged into the run's call
    tally.end_file(True)
    assert tally.calls == 2
    # a: its first token_count reading (no model), then the later file's maximum and model; b: merged.
    assert tally.groups() == [("openai", "o3", 2, (13, 2, 3, 4, 6, 6), (7, 2, 3, 4))]
    assert sorted(tally.usages("openai", "o3")) == [(6, 2, 3, 4, 5, 6), (7, 0, 0, 0, 1, 0)]
    with pytest.raises(TypeError):
        tally.add("not-an-id", "openai", None, (0, 0, 0, 0, 0, 0), True)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEF-xg\n", max_size=50),
        st.builds("{}{}{}".format, st.sampled_from(["", "a", "-"]), st.uuids().map(str), st.sampled_from(["", "\n"])),
        st.uuids().map(lambda u: str(u).upper()[:-1] + "\n"),
    ),
    st.sampled_from(["", "rollout-2026-"]),
)
def test_session_id_from_the_name_as_the_search_gives_it(stem: str, prefix: str) -> None:
    from agenttrail.importers.codex import _UUID_TAIL, session_id_from_name

    path = Path(prefix + stem + ".jsonl")
    m = _UUID_TAIL.search(path.stem)
    assert session_id_from_name(path) == (m.group(1) if m else path.stem)


def test_a_dry_run_makes_no_read_positions_and_reads_the_same(tmp_path: Path) -> None:
    from agenttrail.importers import iter_codex

    root = tmp_path / "codex"
    for n in range(3):
        _rollout(root, [(f"resp_{n}", codex_usage(1_000 + n, 100, 5))], model="gpt-5")
    kept = [b for _, b in iter_codex(root, with_events=False, env={})]
    none = [b for _, b in iter_codex(root, with_events=False, env={}, positions=False)]
    assert [len(b.file_states) for b in kept] == [1, 1, 1] and all(not b.file_states for b in none)
    for a, b in zip(kept, none, strict=True):
        assert (a.calls, a.sessions, a.errors, a.lines_read, a.bytes_read) == (
            b.calls,
            b.sessions,
            b.errors,
            b.lines_read,
            b.bytes_read,
        )
