"""`agenttrail mock-llm`: a fake Anthropic + OpenAI provider that speaks the real wire format.

Every test, demo and benchmark uses it instead of a real provider. Its formats are checked against the
official `anthropic` and `openai` SDKs' own parsers (tests/testing/), so it cannot drift unnoticed.

Python API: `MockConfig` (usage, latency, scenario, failures, credentials; see mock_config.py),
`create_app(config) -> Starlette` (state at `app.state.mock`), `run_in_thread(config, host, port=0)`
(a context manager yielding the base URL of a uvicorn server in a thread), `MockControl(url)` (the
control endpoints below), `Scenario.parse(obj)` / `load_scenario(path)`. Reference: docs/mock-llm.md.

Endpoints (at the root or under any path prefix, e.g. `/anthropic/v1/messages`):

- Anthropic: `POST /v1/messages` (also `?beta=true`), streaming or not; `POST /v1/messages/count_tokens`.
- OpenAI: `POST /v1/chat/completions`, `POST /v1/responses` (streaming or not), `POST /v1/embeddings`.
- `GET /v1/models` and `GET /v1/models/{id}`: in Anthropic's shape when the request carries
  `anthropic-version` or `x-api-key`, else in OpenAI's.
- `GET /` and `HEAD` on any other path answer 200 (Claude Code probes its base URL).

Usage is fixed by `MockConfig` (agenttrail's convention, see `agenttrail.usage.Usage`); the defaults are
Anthropic input 1200 / cache read 3000 / cache write 500 (5m) / output 250, Chat Completions prompt 1500
(1000 cached) / completion 300, Responses input 1500 (1000 cached) / output 300.

A missing or empty credential (`x-api-key` or `Authorization: Bearer`; Anthropic routes take either,
OpenAI routes only Bearer) is answered 401 in the provider's error shape; with `expected_key` set any
other key is too.

Scenario (a JSON or TOML file, or `Scenario.parse(...)`): turns answered in order.

    {
      "cursor": "request",
      "final": "All done.",
      "turns": [
        {"text": "I'll create the file.", "tool": "Write",
         "input": {"file_path": "hello.py", "content": "print('hi')\\n"}},
        {"custom_tool": "apply_patch",
         "input": "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"},
        {"calls": [{"tool": "Bash", "input": {"command": "ls"}},
                   {"tool": "Read", "input": {"file_path": "a.txt"}}]},
        {"text": "Done.", "usage": {"output_tokens": 42, "cache_read_tokens": 0}}
      ]
    }

`cursor` ("request" or "history", see below) and `final` (the answer once the turns run out) are
optional. In TOML, the same keys at the top level and one `[[turns]]` table per turn. A bare JSON list is a list
of turns. A turn has `text`, and/or one tool call (`tool` + object `input`, or `custom_tool` + string
`input`), and/or `calls` (several tool calls in one answer), and optionally `usage` overriding that
turn's usage with the neutral keys `input_tokens, cache_read_tokens, cache_write_tokens (5m),
cache_write_1h_tokens, output_tokens, reasoning_tokens`.

How each provider says a turn: Anthropic, a `text` block then `tool_use` blocks (id `toolu_...`,
streamed as `input_json_delta`, `stop_reason: "tool_use"`); Chat Completions, `content` then
`tool_calls` of type function (`finish_reason: "tool_calls"`); Responses, a `message` item then a
`function_call` item (`call_id`, `name`, `arguments`) per tool or a `custom_tool_call` item (`input`) per
custom tool. A custom tool on Anthropic or Chat Completions becomes an ordinary call with input
`{"input": "<text>"}`.

Cursors. `request` (the default) advances one turn per model request, separately per session
(`X-Claude-Code-Session-Id`, `session-id` or `session_id` header) and otherwise globally: what tests
driving an SDK expect. `history` derives the turn from the conversation the request carries (how many
assistant answers it already holds, or the turn of its `previous_response_id`), so retries and an
agent's side requests cannot push the script out of step: use it to drive a real agent CLI. In both, a
request that declares no `tools` never gets a tool turn (it gets that turn's text or the default text,
and a `request` cursor does not advance). Past the last turn every request gets `final`, else the last
turn if it is plain text, else "Done.".

Control endpoints (no credential needed, at the root or under a prefix):

- `GET /_mock/requests[?endpoint=messages&path=/v1/&since=SEQ]`: recorded requests, oldest first:
  `{seq, time, method, path, query, headers, body, endpoint}` (the last `max_recorded`).
- `POST /_mock/reset`: forget requests, re-arm the configured failures, rewind the scenario.
- `POST /_mock/fail` with a failure object (or a list): `{"status": 529, "count": 1, "model": "x",
  "endpoint": "messages", "mode": "status", "message": "...", "type": "...", "headers": {...},
  "after_events": N}`. `mode` is `status` (an error response), `garbled` (the first content event at
  or after `after_events` cut mid-JSON; unstreamed, half a body), `hang` (no answer until the client gives
  up; with `after_events`, a stream that stalls), `disconnect` (the connection dropped after
  `after_events` events, or mid-body) or `stream_error` (the provider's error event inside a 200 stream:
  Anthropic `error`, a Chat `data: {"error": ...}` line, Responses `response.failed`). `count: -1` fails
  every matching request; `model` may be a glob. `GET /_mock/fail` lists armed rules, `DELETE
  /_mock/fail` clears them. A faulted request does not advance a `request` cursor.
- `POST /_mock/scenario` with a scenario (or `null` to drop it); `GET /_mock/scenario` shows cursors.
- `POST /_mock/config` with any of `ttft_ms, chunk_ms, latency_ms, text, expected_key, count_tokens`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from agenttrail.testing.mock_app import MockDisconnect, create_app
from agenttrail.testing.mock_config import Failure, MockConfig
from agenttrail.testing.mock_scenario import Scenario, Turn, load_scenario
from agenttrail.testing.mock_state import MockState

__all__ = [
    "Failure",
    "MockConfig",
    "MockDisconnect",
    "MockState",
    "Scenario",
    "Turn",
    "create_app",
    "install_log_filter",
    "load_scenario",
    "run_in_thread",
    "serve_forever",
]

_START_TIMEOUT_S = 10.0


class _DropInjectedDisconnects(logging.Filter):
    """uvicorn logs an aborted response as an application error; an injected one is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, MockDisconnect):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropInjectedDisconnects) for f in logger.filters):
        logger.addFilter(_DropInjectedDisconnects())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def run_in_thread(config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve a mock provider on `host:port` (0: a free port) in a daemon thread; yield its base URL.

    The Anthropic SDK takes the URL as its base_url, the OpenAI SDK `URL + "/v1"`. The socket is bound
    before the thread starts, so the port is known and reserved without a race."""
    install_log_filter()
    app = create_app(config or MockConfig())
    state: MockState = app.state.mock
    sock = _bind(host, port)
    actual_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Backstop for a streaming answer that will not finish; hangs already watch `closing`.
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mock-llm", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("mock-llm server thread exited before it started")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mock-llm did not start within {_START_TIMEOUT_S} s")
            time.sleep(0.005)
        yield _url(host, actual_port)
    finally:
        state.closing.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(config: MockConfig, host: str, port: int) -> None:
    """Foreground server for `agenttrail mock-llm`; returns when interrupted."""
    install_log_filter()
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # An injected hang must not keep Ctrl-C from stopping the server.
        timeout_graceful_shutdown=2,
    )
