"""A dry run totals each call once across the whole import, as ccusage does and as the store would: a
copy of a rollout (sessions/ and archived_sessions/) whose calls fall in a later batch than the first
copy's is not counted again, and a fuller later reading of a call moves the totals to its maximum."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import agenttrail.cli.import_ as imp
from agenttrail.config import load_settings
from agenttrail.importers import CODEX, ImportBatch, TranscriptCall
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage
from importers.builders import CodexRollout, codex_usage


def _dry_run(home: Path, tmp_path: Path) -> imp.Totals:
    settings = load_settings(db=f"sqlite:///{tmp_path / 'never.db'}", env={"AGENTTRAIL_HOME": str(tmp_path)})
    return imp.run_import(
        CODEX, str(home), settings=settings, env={}, show_progress=False, usage_only=True, dry_run=True
    )


@pytest.mark.parametrize("flush_every", [1, 5_000])
def test_a_copied_rollout_counts_once_in_any_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flush_every: int
) -> None:
    home = tmp_path / "codex"
    r = CodexRollout(cwd="/repo", model="gpt-5")
    r.meta()
    for turn in range(3):
        r.turn_context()
        r.usage_record(f"resp_{turn}", codex_usage(1_000 * (turn + 1), 100, 50, 10))
    path = r.write(home)
    one = _dry_run(home, tmp_path)
    archived = home / "archived_sessions"
    archived.mkdir()
    shutil.copy(path, archived / path.name)
    monkeypatch.setattr(imp, "FLUSH_EVENTS", flush_every)  # 1: each file's calls in a batch of their own
    both = _dry_run(home, tmp_path)
    assert both.files_read == 2
    assert (both.calls, both.usage, both.cost_usd) == (one.calls, one.usage, one.cost_usd) != (0, Usage(), 0.0)


def test_a_fuller_reading_in_a_later_batch_moves_the_totals_to_its_maximum() -> None:
    t0 = datetime(2026, 11, 23, tzinfo=UTC)

    def call(usage: Usage) -> TranscriptCall:
        return TranscriptCall("c1", "s", CODEX, "openai", "gpt-5", t0, usage)

    pricer = Pricer()
    totals = imp.Totals()
    totals.add_priced(ImportBatch(calls=[call(Usage(input_tokens=500, output_tokens=5))]), pricer)
    totals.add_priced(ImportBatch(calls=[call(Usage(input_tokens=400, output_tokens=90))]), pricer)
    totals.add_priced(ImportBatch(calls=[call(Usage(input_tokens=400, output_tokens=5))]), pricer)  # nothing new
    merged = Usage(input_tokens=500, output_tokens=90)
    assert (totals.calls, totals.usage) == (1, merged)
    assert totals._cost == pricer.price("openai", "gpt-5", merged).cost_usd != Decimal(0)


def test_two_readings_in_one_batch_count_once_and_a_missing_model_is_filled() -> None:
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    first = TranscriptCall("c1", "s", CODEX, "openai", None, t0, Usage(input_tokens=300, output_tokens=40))
    again = TranscriptCall("c1", "s", CODEX, "openai", "gpt-5", t0, Usage(input_tokens=300, output_tokens=70))
    other = TranscriptCall("c2", "s", CODEX, "openai", "gpt-5", t0, Usage(input_tokens=10, output_tokens=1))
    pricer = Pricer()
    totals = imp.Totals()
    totals.add_priced(ImportBatch(calls=[first, other, again]), pricer)
    merged = Usage(input_tokens=300, output_tokens=70)
    assert (totals.calls, totals.usage) == (2, merged + other.usage)
    want = pricer.price("openai", "gpt-5", merged).cost_usd + pricer.price("openai", "gpt-5", other.usage).cost_usd
    assert totals._cost == want
