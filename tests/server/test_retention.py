"""`agenttrail serve` with `[retention] content_days`: the real app purges old content on startup,
audited, and leaves everything after the cutoff alone. Time comes from a FixedClock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from agenttrail.clock import FixedClock
from agenttrail.config import ConfigError, load_settings
from agenttrail.events import Event, stable_id
from agenttrail.server.app import build_services
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.tables import audit_log

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _prompts(engine, sid):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT payload FROM event WHERE session_id = :s AND kind = 'prompt'"), {"s": sid})
        return [orjson.loads(p) for (p,) in rows]


def _purge_audit(engine):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(audit_log.c.detail).where(audit_log.c.action == "purge_content")).first()


def _app(tmp_path: Path, db_url: str, toml: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(toml)
    settings = load_settings(config_file=cfg, db=db_url, env={"AGENTTRAIL_HOME": str(tmp_path)})
    engine = open_engine(db_url)
    svc = build_services(settings, engine=engine, clock=FixedClock(NOW))
    return create_server_app(settings, svc), engine


def _seed(engine) -> None:  # type: ignore[no-untyped-def]
    for sid, age in (("old", 100), ("new", 10)):
        start = NOW - timedelta(days=age)
        ingest(
            engine,
            [
                Event(sid, "session_start", start, {"agent": "claude-code"}, stable_id(sid, "start")),
                Event(sid, "prompt", start + timedelta(seconds=1), {"text": f"{sid} secret plan"}, stable_id(sid, "p")),
            ],
        )


def test_serve_purges_content_past_the_retention_on_startup(tmp_path: Path, db_url: str) -> None:
    app, engine = _app(tmp_path, db_url, "[retention]\ncontent_days = 30\n")
    _seed(engine)
    with TestClient(app) as client:  # startup runs the first purge in a worker thread
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 60  # a deadline for a slow machine, not a guess at how long it takes
        while (done := _purge_audit(engine)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert done is not None
    detail = orjson.loads(done.detail)
    assert detail["events"] == 1 and detail["before"].startswith("2026-10-23")
    assert _prompts(engine, "old") == [{"purged": True}]
    assert _prompts(engine, "new") == [{"text": "new secret plan"}]


def test_without_retention_serve_keeps_content(tmp_path: Path, db_url: str) -> None:
    app, engine = _app(tmp_path, db_url, "")
    _seed(engine)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert _prompts(engine, "old") == [{"text": "old secret plan"}]
    assert _purge_audit(engine) is None


def test_a_retention_past_the_calendar_is_refused_at_start(tmp_path: Path, db_url: str) -> None:
    """content_days = 99999999999 passed the check and every purge then failed with an OverflowError
    traceback in the log, at startup and every interval after."""
    with pytest.raises(ConfigError, match="content_days = 99999999999 reaches before the year 1"):
        _app(tmp_path, db_url, "[retention]\ncontent_days = 99999999999\n")
