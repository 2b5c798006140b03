"""Fixtures: a running gateway in front of mock-llm, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from gateway_harness import Running, gateway_settings, serve_in_thread

from agenttrail.server.app import build_services
from agenttrail.server.parts import create_server_app
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.testing.mock_llm import MockConfig, run_in_thread


@pytest.fixture
def mock_url() -> Iterator[str]:
    with run_in_thread(MockConfig(chunk_ms=1)) as url:
        yield url


@pytest.fixture
def make_gateway(db_url: str, mock_url: str):  # type: ignore[no-untyped-def]
    """Call with Settings overrides to get a running gateway; cleaned up at the end of the test."""
    stack = contextlib.ExitStack()

    def make(**overrides: Any) -> Running:
        settings = gateway_settings(db_url, mock_url, **overrides)
        engine = open_engine(db_url)
        with contextlib.suppress(org.DirectoryError):
            org.add_team(engine, "payments")
        services = build_services(settings, engine=engine)
        app = create_server_app(settings, services)
        url, loop = stack.enter_context(contextlib.contextmanager(serve_in_thread)(app))
        key, _ = keys.create_key(engine, team_name="payments", now=datetime.utcnow())
        return Running(url, mock_url, key, engine, services, loop)

    yield make
    stack.close()


@pytest.fixture
def gw(make_gateway) -> Running:  # type: ignore[no-untyped-def]
    return make_gateway()
