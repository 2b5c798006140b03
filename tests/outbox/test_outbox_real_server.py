"""Contract: the uploader against agenttrail's own ingest endpoint (`agenttrail serve`'s app, on SQLite)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from outbox_harness import T0, FakeSleep, make_events
from sqlalchemy import Engine, text

from agenttrail.clock import FixedClock
from agenttrail.config import load_settings
from agenttrail.outbox import Outbox, Uploader, UploadRefused
from agenttrail.server.parts import create_server_app
from agenttrail.store.database import open_engine
from agenttrail.store.keys import create_key
from agenttrail.store.org import add_team


@dataclass
class RealServer:
    url: str
    key: str
    engine: Engine


@pytest.fixture
def real_server(tmp_path: Path) -> Iterator[RealServer]:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    settings = load_settings(db=db, env={"AGENTTRAIL_HOME": str(tmp_path / "server-home")})
    engine = open_engine(db)
    add_team(engine, "core")
    key, _ = create_key(engine, team_name="core", now=T0)
    # Our own listening socket: its port is known and connections wait in the backlog until uvicorn
    # accepts them, so there is nothing to wait for before using it.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_server_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield RealServer(f"http://127.0.0.1:{sock.getsockname()[1]}", key, engine)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM events")).scalar_one())


def test_events_reach_the_real_store_once(tmp_path: Path, real_server: RealServer, clock: FixedClock) -> None:
    events = make_events(700, session="real-1")
    with Outbox(tmp_path / "a.db") as first, Outbox(tmp_path / "b.db") as second, httpx.Client(timeout=30) as c:
        first.put(events)
        up = Uploader(first, real_server.url, real_server.key, client=c, clock=clock, sleep=FakeSleep(clock))
        assert up.flush(deadline_s=60) == 0
        assert (up.sent, up.duplicates) == (700, 0)
        # The same events from another machine's outbox: acknowledged as duplicates, stored once.
        second.put(events[:300])
        again = Uploader(second, real_server.url, real_server.key, client=c, clock=clock, sleep=FakeSleep(clock))
        assert again.flush(deadline_s=60) == 0
        assert (again.sent, again.duplicates) == (0, 300)
    assert stored(real_server.engine) == 700


def test_the_real_server_refusing_a_key_gives_the_clear_error(
    tmp_path: Path, real_server: RealServer, clock: FixedClock
) -> None:
    with Outbox(tmp_path / "a.db") as ob, httpx.Client(timeout=30) as c:
        ob.put(make_events(3))
        up = Uploader(ob, real_server.url, "sk-at-not-a-key", client=c, clock=clock, sleep=FakeSleep(clock))
        with pytest.raises(UploadRefused, match="the server refused the key") as e:
            up.flush(deadline_s=60)
        assert e.value.status == 401 and ob.count() == 3
