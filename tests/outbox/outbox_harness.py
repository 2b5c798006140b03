"""Test harness for the outbox: a real HTTP ingest server on 127.0.0.1 with scripted failures.

It stores events idempotently by id and answers like agenttrail's ingest (`{"accepted", "duplicates"}`),
unless a scripted answer says otherwise for the next request: an error status (optionally after
storing the batch, as when the answer is lost), a dropped connection, or a 200 that acknowledges nothing.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agenttrail.clock import FixedClock
from agenttrail.events import Event

KEY = "sk-at-test-key-for-the-outbox-tests"
T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)


@dataclass
class Answer:
    """What the server does with one request instead of storing and acknowledging it."""

    status: int = 500
    store_first: bool = False  # store the batch, then fail: the client never learns it arrived
    drop: bool = False  # close the connection without answering
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": {"message": "scripted failure", "status": 500}}'
    when: Callable[[list[str]], bool] = lambda ids: True  # only for batches this accepts


class IngestServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[list[str]] = []  # event ids of every request that reached the handler
        self.stored: dict[str, dict[str, Any]] = {}
        self.stored_times: Counter[str] = Counter()  # how often each id was stored as new: must be 1
        self.script: list[Answer] = []
        self.refused = 0  # requests refused for a bad key
        self.on_request: Callable[[list[str]], None] | None = None
        self.cond = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IngestServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/api/v1/ingest":
                    return self._answer(404, b'{"error": {"message": "not found"}}')
                if self.headers.get("authorization") != f"Bearer {KEY}":
                    with server.cond:
                        server.refused += 1
                        server.cond.notify_all()
                    return self._answer(401, b'{"error": {"message": "unknown virtual key", "status": 401}}')
                events = json.loads(raw)["events"]
                ids = [e["event_id"] for e in events]
                if server.on_request:
                    server.on_request(ids)
                with server.cond:
                    server.requests.append(ids)
                    answer = next((a for a in server.script if a.when(ids)), None)
                    if answer is not None:
                        server.script.remove(answer)
                    if answer is None or answer.store_first:
                        accepted, duplicates = server._store(events)
                    server.cond.notify_all()
                if answer is None:
                    body = json.dumps({"accepted": accepted, "duplicates": duplicates}).encode()
                    return self._answer(200, body)
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._answer(answer.status, answer.body, answer.headers)

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def _store(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        accepted = 0
        for e in events:
            if e["event_id"] not in self.stored:
                self.stored[e["event_id"]] = e
                self.stored_times[e["event_id"]] += 1
                accepted += 1
        return accepted, len(events) - accepted

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def wait_stored(self, n: int, timeout: float = 15.0) -> bool:
        return self.wait_for(lambda: len(self.stored) == n, timeout)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class FakeSleep:
    """Records each delay and moves the clock by it instead of waiting.

    With `gated`, each call then blocks until the test opens the gate: a background uploader that has
    failed waits there instead of spinning, and the test decides when time "has passed".
    """

    def __init__(self, clock: FixedClock, gated: bool = False) -> None:
        self.clock = clock
        self.calls: list[float] = []
        self.gate = threading.Event()
        self.called = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds=seconds)
        self.called.set()
        assert self.gate.wait(15), "the test never opened the gate"


def free_port() -> int:
    """A port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_events(n: int, session: str = "s-1", start: int = 0) -> list[Event]:
    return [
        Event(
            session_id=session,
            kind="exec",
            ts=T0 + timedelta(milliseconds=i),
            payload={"argv": ["echo", str(i)], "cwd": "/work"},
            event_id=f"{session}-e{i:06d}",
        )
        for i in range(start, start + n)
    ]
