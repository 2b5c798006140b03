"""Fixtures for the outbox tests: a live ingest server, a fixed clock, a fresh outbox, an HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from outbox_harness import T0, IngestServer

from agenttrail.clock import FixedClock
from agenttrail.outbox import Outbox


@pytest.fixture
def server() -> Iterator[IngestServer]:
    s = IngestServer().start()
    yield s
    s.stop()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def outbox(tmp_path: Path, clock: FixedClock) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db", clock=clock) as ob:
        yield ob


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as c:
        yield c
