"""Engine creation for the two supported stores: SQLite (default, WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class StoreError(Exception):
    """The database cannot be opened or used; the message says why and what to do."""


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3; SQLite URLs pass through."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_postgres(url: str) -> bool:
    return normalise_url(url).startswith("postgresql")


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"cannot understand database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    raise StoreError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the gateway's batch writer and readers (sql, reports) work at the same time.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@contextmanager
def bulk_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` for a bulk write. On SQLite, its temporary storage is in memory for the
    transaction: a multi-row `INSERT … VALUES` is built in an ephemeral table, a temporary file by
    default; in memory an `event`-shaped insert costs about two thirds of its time in a file
    (bench/sqlite_insert.py). Only for the write: a report's large sort on a connection keeps spilling
    to disk."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA temp_store=MEMORY")  # outside SQLite's transaction: allowed there
        conn.commit()
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                conn.exec_driver_sql("PRAGMA temp_store=DEFAULT")
                conn.commit()
            except Exception:  # a broken connection: dropped, so the setting goes with it
                conn.invalidate()
