"""A small client for a running mock provider's `/_mock/` endpoints, and an SSE reader for tests.

    with run_in_thread(MockConfig()) as url:
        mock = MockControl(url)
        mock.fail(529, model="claude-a", count=-1)
        ...
        assert mock.requests(endpoint="messages")[-1]["headers"]["x-api-key"] == "sk-real"

Raises ValueError when the mock refuses a command, with the mock's own explanation.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson


class MockControl:
    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        # One kept-alive client: building one costs tens of ms (TLS setup), which adds up over a suite.
        # The mock is plain HTTP, so certificate verification has nothing to do.
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, verify=False)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> MockControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, command: str, payload: Any = None, **params: Any) -> Any:
        content = None if method in ("GET", "DELETE") else orjson.dumps(payload)
        query = {k: v for k, v in params.items() if v is not None}
        r = self._http().request(method, f"{self.base_url}/_mock/{command}", content=content, params=query)
        if r.status_code >= 400:
            raise ValueError(f"mock-llm refused {method} /_mock/{command}: {r.text}")
        return r.json()

    def requests(self, endpoint: str | None = None, path: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: {seq, time, method, path, query, headers, body, endpoint}."""
        result: list[dict[str, Any]] = self._call("GET", "requests", endpoint=endpoint, path=path, since=since)
        return result

    def reset(self) -> None:
        self._call("POST", "reset")

    def fail(
        self,
        status: int = 500,
        *,
        mode: str = "status",
        count: int = 1,
        model: str | None = None,
        endpoint: str | None = None,
        message: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        after_events: int | None = None,
    ) -> list[dict[str, Any]]:
        rule = {
            "status": status,
            "mode": mode,
            "count": count,
            "model": model,
            "endpoint": endpoint,
            "message": message,
            "type": type,
            "headers": headers or {},
            "after_events": after_events,
        }
        result: list[dict[str, Any]] = self._call("POST", "fail", rule)
        return result

    def failures(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "fail")
        return result

    def clear_failures(self) -> None:
        self._call("DELETE", "fail")

    def set_scenario(self, scenario: Any) -> None:
        """A list of turns, a scenario object, or None to answer with the default text again."""
        self._call("POST", "scenario", scenario)

    def configure(self, **settings: Any) -> None:
        """Change ttft_ms, chunk_ms, latency_ms, text, expected_key or count_tokens while running."""
        self._call("POST", "config", settings)


def parse_sse(data: bytes | str) -> list[tuple[str | None, str]]:
    """(event name, data) for each event of a Server-Sent Events body, per the SSE spec's framing."""
    text = data.decode() if isinstance(data, bytes) else data
    events: list[tuple[str | None, str]] = []
    event: str | None = None
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "":
            if lines or event is not None:
                events.append((event, "\n".join(lines)))
            event, lines = None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                lines.append(value)
    if lines or event is not None:
        events.append((event, "\n".join(lines)))
    return events
