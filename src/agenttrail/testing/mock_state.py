"""Runtime state of one mock provider: recorded requests, armed failures, scenario cursors.

Kept in one object handed to the app (never module globals), so two mocks in one test process,
e.g. a primary and a fallback upstream, never see each other's state.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from agenttrail.testing.mock_config import Failure, MockConfig
from agenttrail.testing.mock_scenario import Scenario, ScenarioPlayer

# Previous-response ids remembered for `history` cursors; a bound keeps a long benchmark's memory flat.
_MAX_RESPONSE_TURNS = 10_000


class MockState:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._requests: deque[dict[str, Any]] = deque(maxlen=max(1, config.max_recorded))
        self._failures: list[Failure] = [copy.deepcopy(f) for f in config.failures]
        self._response_turns: OrderedDict[str, int] = OrderedDict()
        self.player: ScenarioPlayer | None = ScenarioPlayer(config.scenario) if config.scenario else None

    # ------------------------------------------------------------------------------------ recording

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": next(self._seq), "time": time.time(), **entry}
            self._requests.append(entry)
        path = self.config.record_path
        if path is not None:
            # One line per request, written at once, so a crashed run still leaves what it saw.
            with Path(path).open("ab") as fh:
                fh.write(orjson.dumps(entry, default=str) + b"\n")
        return entry

    def requests(self, endpoint: str | None = None, path: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._requests)
        return [
            r
            for r in items
            if r["seq"] > since
            and (endpoint is None or r.get("endpoint") == endpoint)
            and (path is None or path in r["path"])
        ]

    # ------------------------------------------------------------------------------------- failures

    def add_failures(self, failures: Iterable[Failure]) -> None:
        with self._lock:
            self._failures.extend(failures)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def failures(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._failures]

    def take_failure(self, model: str | None, endpoint: str) -> Failure | None:
        """The first armed rule matching this request, spending one of its count."""
        with self._lock:
            for i, f in enumerate(self._failures):
                if f.matches(model, endpoint):
                    if f.count > 0:
                        f.count -= 1
                        if f.count == 0:
                            del self._failures[i]
                    return f
        return None

    # ------------------------------------------------------------------------------------- scenario

    def set_scenario(self, scenario: Scenario | None) -> None:
        with self._lock:
            self.player = ScenarioPlayer(scenario) if scenario else None
            self._response_turns.clear()

    def remember_response(self, response_id: str, turn_index: int) -> None:
        with self._lock:
            self._response_turns[response_id] = turn_index
            while len(self._response_turns) > _MAX_RESPONSE_TURNS:
                self._response_turns.popitem(last=False)

    def response_turn(self, response_id: str) -> int | None:
        with self._lock:
            return self._response_turns.get(response_id)

    # ---------------------------------------------------------------------------------------- reset

    def reset(self) -> None:
        """Back to the state at start: no requests, the configured failures re-armed, script rewound."""
        with self._lock:
            self._requests.clear()
            self._failures = [copy.deepcopy(f) for f in self.config.failures]
            self._response_turns.clear()
            player = self.player
        if player is not None:
            player.reset()
