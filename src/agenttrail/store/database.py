"""Open a store by URL: engine plus an automatic schema upgrade, once per process and URL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError

from agenttrail.store.engine import StoreError, make_engine, normalise_url
from agenttrail.store.migrate import upgrade

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    key = normalise_url(url)
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        engine = make_engine(key)
        if migrate:
            try:
                upgrade(engine)
            except DatabaseError as e:  # refused, unknown role, and a file that is not SQLite's
                engine.dispose()
                raise StoreError(f"cannot open the database at {_safe(key)}: {e.orig}{_hint(key, e)}") from None
            except OSError as e:  # the lock file beside a SQLite database, in a folder it cannot write
                engine.dispose()
                raise StoreError(
                    f"cannot open the database at {_safe(key)}: {e.strerror}: {e.filename} "
                    "(agenttrail writes its lock and journal files beside the database)"
                ) from None
        _engines[key] = engine
        return engine


def forget_engine(url: str) -> None:
    """Drop the cached engine (tests that delete their database)."""
    with _lock:
        engine = _engines.pop(normalise_url(url), None)
    if engine is not None:
        engine.dispose()


def _hint(url: str, e: DatabaseError) -> str:
    if url.startswith("sqlite") and "not a database" in str(e.orig):
        return (
            ". The file is damaged or is not an agenttrail database: move it aside (a new one is made), "
            "or name another with --db"
        )
    return ""


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url
