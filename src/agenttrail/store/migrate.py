"""Create and upgrade the schema automatically on first use, safely from several processes."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from agenttrail.store.tables import schema_meta
from agenttrail.store.views import VIEW_NAMES, view_sql

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x61677472  # "agtr": one advisory lock id for schema changes


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """Two `serve` processes starting together must not both create tables."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                conn.commit()
        return
    db = engine.url.database
    lock_path = Path(f"{db}.lock") if db and db != ":memory:" else None
    if lock_path is None:
        with engine.connect() as conn:
            yield conn
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    with _schema_lock(engine) as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        refresh_views(conn)
        conn.commit()


def refresh_views(conn: Connection) -> None:
    sql = view_sql(conn.dialect.name)
    digest = hashlib.sha256("\n".join(f"{n}:{sql[n]}" for n in VIEW_NAMES).encode()).hexdigest()
    current = conn.execute(schema_meta.select().where(schema_meta.c.key == "views_digest")).first()
    if current is not None and current.value == digest:
        return
    cascade = " CASCADE" if conn.dialect.name == "postgresql" else ""
    for name in reversed(VIEW_NAMES):
        conn.execute(text(f"DROP VIEW IF EXISTS {name}{cascade}"))
    for name in VIEW_NAMES:
        conn.execute(text(f"CREATE VIEW {name} AS {sql[name]}"))
    if conn.dialect.name == "postgresql":
        from agenttrail.query.readonly_sql import grant_reader

        grant_reader(conn)
    conn.execute(schema_meta.delete().where(schema_meta.c.key == "views_digest"))
    conn.execute(schema_meta.insert().values(key="views_digest", value=digest))
