"""`bulk_transaction`: on SQLite, temporary storage in memory for the write only, whatever happens in it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from agenttrail.store.database import open_engine
from agenttrail.store.engine import bulk_transaction, make_engine

DEFAULT, MEMORY = 0, 2  # PRAGMA temp_store's answers


def _one_connection(url: str) -> Engine:
    open_engine(url)  # the schema
    return make_engine(url, pool_size=1, max_overflow=0)  # so "after" reads the connection the write used


def _temp_store(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("PRAGMA temp_store")).scalar_one())


def test_memory_during_the_write_and_default_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = _one_connection(f"sqlite:///{tmp_path}/a.db")
    with bulk_transaction(engine) as conn:
        assert conn.execute(text("PRAGMA temp_store")).scalar_one() == MEMORY
        conn.execute(text("INSERT INTO team (name, created_at) VALUES ('payments', '2026-05-12 09:00:00')"))
    assert _temp_store(engine) == DEFAULT
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM team")).scalars().all() == ["payments"]


def test_a_failed_write_rolls_back_and_restores(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = _one_connection(f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(RuntimeError), bulk_transaction(engine) as conn:
        conn.execute(text("INSERT INTO team (name, created_at) VALUES ('payments', '2026-05-12 09:00:00')"))
        raise RuntimeError("the batch failed")
    assert _temp_store(engine) == DEFAULT
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM team")).scalar_one() == 0


def test_postgresql_is_a_plain_transaction(pg_url: str) -> None:
    engine = open_engine(pg_url)
    with bulk_transaction(engine) as conn:
        conn.execute(text("INSERT INTO team (name, created_at) VALUES ('payments', '2026-05-12 09:00:00')"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM team")).scalars().all() == ["payments"]
