"""Fixtures: a real gateway (in a thread) with governance configured, in front of a real mock-llm,
on SQLite and PostgreSQL; an injected clock where periods matter."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gateway"))

from gateway_harness import Running, gateway_settings, serve_in_thread

from agenttrail.clock import Clock
from agenttrail.governance.budgets import Budget, set_budget
from agenttrail.governance.policy import GovernancePolicy
from agenttrail.server.app import build_services
from agenttrail.server.parts import create_server_app
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.testing.mock_llm import MockConfig, run_in_thread

A_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@dataclass
class Gov:
    """A running gateway with governance, and helpers to steer and inspect it."""

    run: Running

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    @property
    def policy(self) -> GovernancePolicy:
        p = self.run.services.gateway.policy
        assert isinstance(p, GovernancePolicy)
        return p

    def on_loop(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.run.loop).result(timeout)

    def budget(self, scope: str, target: str | None, usd: float, period: str = "month", **kw: Any) -> Budget:
        b = set_budget(
            self.run.engine,
            scope=scope,
            target=target,
            limit_nanos=round(usd * 1e9),
            period=period,
            now=datetime.utcnow(),
            **kw,
        )
        self.policy.book.invalidate()
        return b

    def make_key(self, **kw: Any) -> str:
        k, _ = keys.create_key(self.run.engine, team_name=kw.pop("team_name", "payments"), now=datetime.utcnow(), **kw)
        return k

    def settle_all(self) -> None:
        """Write every settlement and give back leases, as a stopping server would."""
        self.on_loop(self.run.services.gateway.drain())
        self.on_loop(self.policy.ledger.flush(release_all=True))

    def spend(self, budget_id: int) -> tuple[int, int]:
        """(spent, reserved) nano-dollars of the budget, summed over its periods."""
        from sqlalchemy import text

        self.settle_all()
        with self.run.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT COALESCE(SUM(spent_nanos), 0), COALESCE(SUM(reserved_nanos), 0) "
                    "FROM budget_spend WHERE budget_id = :b"
                ),
                {"b": budget_id},
            ).one()
        return int(row[0]), int(row[1])


@pytest.fixture
def mock_url() -> Iterator[str]:
    with run_in_thread(MockConfig(chunk_ms=1)) as url:
        yield url


@pytest.fixture
def make_gov(db_url: str, mock_url: str):  # type: ignore[no-untyped-def]
    """make_gov(raw={...toml tables...}, clock=FixedClock(...), **Settings overrides) -> Gov."""
    stack = contextlib.ExitStack()

    def make(raw: dict[str, Any] | None = None, clock: Clock | None = None, **overrides: Any) -> Gov:
        # Records are written when the test asks (Running.calls flushes): a background flush racing
        # it could write the same batch twice.
        overrides.setdefault("record_flush_interval_s", 3600.0)
        settings = gateway_settings(db_url, mock_url, **overrides)
        if raw:
            settings = replace(settings, raw={**settings.raw, **raw})
        engine = open_engine(db_url)
        for name in ("payments", "search"):
            with contextlib.suppress(org.DirectoryError):
                org.add_team(engine, name)
        services = build_services(settings, engine=engine, clock=clock)
        app = create_server_app(settings, services)
        url, loop = stack.enter_context(contextlib.contextmanager(serve_in_thread)(app))
        key, _ = keys.create_key(engine, team_name="payments", now=datetime.utcnow())
        return Gov(Running(url, mock_url, key, engine, services, loop))

    yield make
    stack.close()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
