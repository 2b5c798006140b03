"""Shared fixtures: a fresh database per test, on SQLite and (where it runs) PostgreSQL.

Tests that need something the machine may lack skip with the reason; under
AGENTTRAIL_TEST_STRICT=1 (set by .ci/run) such a skip is a failure instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from agenttrail.store.database import forget_engine

PG_BASE = os.environ.get("AGENTTRAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
STRICT = os.environ.get("AGENTTRAIL_TEST_STRICT") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a real part is missing, or fail in strict mode (CI)."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI (AGENTTRAIL_TEST_STRICT=1) but missing: {reason}")
    pytest.skip(reason)


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as e:
        return f"PostgreSQL not reachable at {PG_BASE}: {e}"


_PG_REASON: str | bool | None = False


def pg_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _pg_available()
    return _PG_REASON  # type: ignore[return-value]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    reason = pg_reason()
    need(reason is None, reason or "")
    import psycopg

    schema = "at_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_BASE else "?"
    url = f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        forget_engine(url)
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'agenttrail.db'}"
    yield url
    forget_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:  # type: ignore[no-untyped-def]
    """Runs the test once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)


@pytest.fixture
def home(tmp_path, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """An isolated AGENTTRAIL_HOME and no ambient agenttrail settings."""
    h = tmp_path / "home"
    h.mkdir()
    for var in list(os.environ):
        if var.startswith("AGENTTRAIL_") and var not in (
            "AGENTTRAIL_TEST_STRICT",
            "AGENTTRAIL_TEST_PG",
            "AGENTTRAIL_AGENT_CLIS",
        ):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AGENTTRAIL_HOME", str(h))
    return str(h)
