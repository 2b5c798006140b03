"""Send queued events to the server's `POST /api/v1/ingest`, and mark them sent only when it says so.

Delivery is at-least-once from here and exactly-once in the store: a batch is acknowledged in the
outbox only after a 2xx whose JSON says how many events were accepted (new) and how many were
duplicates (already stored); anything else leaves it queued, to be sent again, and ingest is
idempotent by event id. Retries back off exponentially with jitter (honouring Retry-After) on
connection errors, timeouts, 408, 429 and 5xx. Other 4xx answers cannot be fixed by retrying: they
stop the upload with an `UploadRefused` that says what to do. See docs/outbox.md.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from agenttrail.clock import Clock, SystemClock
from agenttrail.events import Event
from agenttrail.outbox.queue import Outbox

INGEST_PATH = "/api/v1/ingest"
RETRYABLE = frozenset({408, 429})


class UploadError(Exception):
    """The server answered in a way that retrying cannot fix; the message says what to do."""


class UploadRefused(UploadError):
    """A 4xx answer (other than 408/429): the key, the URL or the data is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Transient(Exception):
    """Worth retrying: the server is unreachable, busy or failing."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Uploader:
    """Moves events from an `Outbox` to the server in batches; `flush` for a deadline, or `start`/`stop`."""

    def __init__(
        self,
        outbox: Outbox,
        server_url: str,
        key: str,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Any] | None = None,
        *,
        batch_size: int = 2000,
        base_delay_s: float = 0.5,
        max_delay_s: float = 60.0,
        max_retry_after_s: float = 600.0,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.server_url = server_url.rstrip("/")
        self.url = self.server_url + INGEST_PATH
        self._key = key
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
        self._clock = clock or SystemClock()
        # The default sleep is a wait that stop() can cut short; tests inject one that moves a FixedClock.
        self._interrupt = threading.Event()
        self._sleep: Callable[[float], Any] = sleep or self._interrupt.wait
        self.batch_size = batch_size
        self._batch = batch_size  # shrinks when the server says a batch is too large (413)
        self._base, self._max, self._max_retry_after = base_delay_s, max_delay_s, max_retry_after_s
        self._rng = rng or random.Random()
        self._send_lock = threading.Lock()  # one batch in flight per uploader, whichever thread flushes
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0  # events the server stored because of this uploader
        self.duplicates = 0  # events it already had (a batch re-sent after a lost answer)
        self.error: UploadError | None = None  # why the background thread stopped, if it did
        self.last_failure: str | None = None  # the latest transient failure, for status displays

    # -- one attempt ---------------------------------------------------------------------------

    def send_batch(self) -> int:
        """Send the oldest pending batch once. Returns how many events were acknowledged (0: none pending).

        Raises `UploadError` when retrying cannot help; a transient failure raises an internal error that
        `flush` turns into a retry.
        """
        with self._send_lock:
            events = self.outbox.pending(self._batch)
            if not events:
                return 0
            try:
                resp = self._client.post(
                    self.url,
                    json={"events": [e.to_dict() for e in events]},
                    headers={"Authorization": f"Bearer {self._key}", "User-Agent": "agenttrail-uploader"},
                )
            except httpx.TransportError as e:  # refused, reset, timed out, DNS: the server may come back
                raise _Transient(f"cannot reach {self.server_url}: {e or type(e).__name__}") from e
            if resp.is_success:
                accepted, duplicates = self._acknowledged(resp, len(events))
                # Only now, with the server's word, do the events leave the queue.
                self.outbox.ack(e.event_id for e in events)
                self.sent += accepted
                self.duplicates += duplicates
                return len(events)
            self._refused(resp, events)
            raise AssertionError("unreachable")  # _refused always raises

    def _acknowledged(self, resp: httpx.Response, n: int) -> tuple[int, int]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        accepted = body.get("accepted") if isinstance(body, dict) else None
        duplicates = body.get("duplicates", 0) if isinstance(body, dict) else None
        if not isinstance(accepted, int) or not isinstance(duplicates, int):
            raise UploadError(
                f"{self.url} answered HTTP {resp.status_code} without saying what it accepted "
                '(expected {"accepted": n, "duplicates": m}); is it an agenttrail server? '
                "The events stay queued."
            )
        if accepted + duplicates != n:
            raise UploadError(
                f"the server acknowledged {accepted} new + {duplicates} duplicate events of a batch of {n}; "
                "the batch stays queued. This is a server bug: report it with the server's log."
            )
        return accepted, duplicates

    def _refused(self, resp: httpx.Response, events: list[Event]) -> None:
        status, said = resp.status_code, _message(resp)
        if status >= 500 or status in RETRYABLE:
            raise _Transient(f"the server answered HTTP {status}: {said}", self._retry_after(resp))
        if status == 413 and len(events) > 1:
            self._batch = max(1, len(events) // 2)  # halve and try again at once
            raise _Transient(f"a batch of {len(events)} events is too large; trying {self._batch}", 0.0)
        queued = "the events stay queued"
        if status in (401, 403):
            msg = (
                f"the server refused the key (HTTP {status}: {said}); {queued}. Check the key with "
                "`agenttrail login --server URL --key sk-at-…`, then run `agenttrail sync`."
            )
        elif status in (404, 405):
            msg = f"{self.url} has no ingest endpoint (HTTP {status}); is {self.server_url} an agenttrail server?"
        elif status == 413:
            e = events[0]
            msg = f"event {e.event_id} ({e.kind}) is larger than the server accepts (HTTP 413: {said})"
        elif 300 <= status < 400:
            msg = f"the server redirects to {resp.headers.get('location')}: use that as the server URL; {queued}"
        else:
            # The server names the bad event by its index in the batch; name it by id as well.
            m = re.search(r"event (\d+)", said)
            which = ""
            if m and int(m.group(1)) < len(events):
                bad = events[int(m.group(1))]
                which = f" (event_id {bad.event_id}, kind {bad.kind}, session {bad.session_id})"
            msg = f"the server rejected a batch of {len(events)} events (HTTP {status}: {said}){which}; {queued}"
        raise UploadRefused(status, msg)

    def _retry_after(self, resp: httpx.Response) -> float | None:
        value = resp.headers.get("retry-after")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - self._clock.now()).total_seconds()
            except (TypeError, ValueError):
                return None
        return min(max(seconds, 0.0), self._max_retry_after)

    def _backoff(self, failures: int) -> float:
        # Exponential, capped; "equal jitter" keeps at least half the delay so retries still spread out.
        delay = min(self._max, self._base * 2 ** min(failures - 1, 30))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    # -- until empty or a deadline ------------------------------------------------------------

    def flush(self, deadline_s: float = 30.0, on_sent: Callable[[int], Any] | None = None) -> int:
        """Send everything, retrying, until the outbox is empty or `deadline_s` has passed on the clock.

        Returns how many events are left (0: all delivered). Raises `UploadError` if the server refuses.
        `on_sent(n)` is called after each acknowledged batch (a progress bar).
        """
        return self._drain(self._clock.now() + timedelta(seconds=deadline_s), None, on_sent)

    def _drain(
        self, deadline: datetime | None, stop: threading.Event | None, on_sent: Callable[[int], Any] | None = None
    ) -> int:
        failures = 0
        while stop is None or not stop.is_set():
            try:
                sent = self.send_batch()
                if sent == 0:
                    return self.outbox.count()
                if on_sent is not None:
                    on_sent(sent)
                failures = 0
            except _Transient as t:
                failures += 1
                self.last_failure = str(t)
                delay = t.retry_after if t.retry_after is not None else self._backoff(failures)
                if deadline is not None and (deadline - self._clock.now()).total_seconds() < delay:
                    return self.outbox.count()  # the next try would land after the deadline
                self._sleep(delay)
                continue
            if deadline is not None and self._clock.now() >= deadline:
                break
        return self.outbox.count()

    # -- in the background, during a session ---------------------------------------------------

    def start(self, interval_s: float = 1.0) -> None:
        """Upload in a background thread: whatever is queued, then again on `wake()` or every `interval_s`."""
        if self._thread is not None:
            raise RuntimeError("the uploader is already running")
        self._stop.clear()
        self._interrupt.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="agenttrail-uploader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New events were queued: send them now rather than at the next interval."""
        self._wake.set()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            try:
                self._drain(None, self._stop)
            except UploadError as e:
                self.error = e  # retrying cannot help; stop() reports it and the events stay queued
                return
            except Exception as e:  # e.g. the outbox locked past busy_timeout: keep the session going
                self.last_failure = f"{type(e).__name__}: {e}"
            self._wake.wait(interval_s)
            self._wake.clear()

    def stop(self, deadline_s: float = 10.0) -> int:
        """Stop the thread, then flush what is left for up to `deadline_s`. Returns how many events remain.

        Does not raise: a refusal is in `self.error` (and the events stay queued for `agenttrail sync`).
        """
        if self._thread is not None:
            self._stop.set()
            self._interrupt.set()  # cut a backoff wait short
            self._wake.set()
            self._thread.join()
            self._thread = None
            self._interrupt.clear()
        if self.error is not None:
            return self.outbox.count()
        try:
            return self.flush(deadline_s)
        except UploadError as e:
            self.error = e
            return self.outbox.count()

    def close(self) -> None:
        if self._thread is not None:
            self.stop(0)
        if self._own_client:
            self._client.close()


def _message(resp: httpx.Response) -> str:
    """What the server said, from agenttrail's `{"error": {"message": …}}` or whatever text it sent."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for k in ("message", "detail", "error"):
            if isinstance(body.get(k), str):
                return str(body[k])
    return str(body)[:300]
