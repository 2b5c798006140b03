"""A real gateway (uvicorn, in a thread) in front of a real mock-llm: shared by the gateway tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, text

from agenttrail.config import Settings, load_settings
from agenttrail.server.app import Services
from agenttrail.store import keys

REAL_ANTHROPIC = "sk-ant-real-upstream-credential"
REAL_OPENAI = "sk-real-openai-upstream-credential"


@dataclass
class Running:
    url: str
    mock_url: str
    key: str
    engine: Engine
    services: Services
    loop: asyncio.AbstractEventLoop

    def flush(self) -> None:
        async def settle_then_flush() -> None:
            await self.services.gateway.drain()
            await self.services.recorder.flush()

        asyncio.run_coroutine_threadsafe(settle_then_flush(), self.loop).result(10)

    def calls(self, expect: int | None = None, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The recorded calls. With `expect`, wait (up to a deadline) until that many are recorded:
        a stream's record is made after its last byte, which the client may act on first."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.flush()
            with self.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM llm_calls ORDER BY started_at"))]
            if expect is None or len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def upstream_requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.mock_url}/_mock/requests").json()

    def mock(self, path: str, payload: Any) -> None:
        httpx.post(f"{self.mock_url}/_mock/{path}", json=payload).raise_for_status()

    def new_key(self, **kw: Any) -> str:
        k, _ = keys.create_key(self.engine, team_name="payments", now=datetime.utcnow(), **kw)
        return k


def serve_in_thread(app: Any) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        loop.run_until_complete(server.serve())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = threading.Event()
    for _ in range(200):
        if server.started:
            break
        deadline.wait(0.05)
    if not server.started:
        raise RuntimeError("gateway did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", loop_box["loop"]
    finally:
        server.should_exit = True
        t.join(15)


def gateway_settings(db_url: str, mock_url: str, **overrides: Any) -> Settings:
    env = {
        "AGENTTRAIL_DATABASE_URL": db_url,
        "AGENTTRAIL_ANTHROPIC_BASE_URL": mock_url,
        "AGENTTRAIL_OPENAI_BASE_URL": mock_url + "/v1",
        "ANTHROPIC_API_KEY": REAL_ANTHROPIC,
        "OPENAI_API_KEY": REAL_OPENAI,
        "AGENTTRAIL_HOME": "/nonexistent-agenttrail-home",
    }
    s = load_settings(env=env)
    return replace(s, **overrides) if overrides else s


def expired() -> datetime:
    return datetime.utcnow() - timedelta(minutes=1)
