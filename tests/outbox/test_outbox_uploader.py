"""The uploader against a real HTTP server: batches, acknowledgements, retries, refusals, thread mode."""

from __future__ import annotations

import random
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from outbox_harness import KEY, Answer, FakeSleep, IngestServer, free_port, make_events

from agenttrail.clock import FixedClock
from agenttrail.outbox import Outbox, Uploader, UploadError, UploadRefused


def uploader(outbox: Outbox, url: str, client: httpx.Client, sleep: FakeSleep, **kw: Any) -> Uploader:
    return Uploader(outbox, url, KEY, client=client, clock=sleep.clock, sleep=sleep, **kw)


def test_sends_oldest_first_in_batches_of_2000(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    events = make_events(4300)
    assert outbox.put(events) == 4300
    up = uploader(outbox, server.url, client, FakeSleep(clock))
    assert up.flush(deadline_s=30) == 0
    assert [len(b) for b in server.requests] == [2000, 2000, 300]
    assert [i for b in server.requests for i in b] == [e.event_id for e in events]
    assert server.stored[events[7].event_id] == events[7].to_dict()
    assert outbox.count() == 0 and up.sent == 4300 and up.duplicates == 0


def test_flush_tells_progress_after_each_acknowledged_batch(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(4300))
    server.script = [Answer(503)]  # a failed attempt is no progress
    told: list[int] = []
    assert uploader(outbox, server.url, client, FakeSleep(clock)).flush(deadline_s=60, on_sent=told.append) == 0
    assert told == [2000, 2000, 300]


def test_nothing_is_acked_before_the_server_acknowledges(
    tmp_path: Path, outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(300))
    seen_pending: list[bool] = []
    with Outbox(tmp_path / "outbox.db") as other:  # a second connection, as another process would have

        def check(ids: list[str]) -> None:
            pending = {e.event_id for e in other.pending(10_000)}
            seen_pending.append(set(ids) <= pending)

        server.on_request = check
        # The first answer is lost after the server stored the batch; the second is a plain 503.
        server.script = [Answer(500, store_first=True), Answer(503)]
        sleep = FakeSleep(clock)
        up = uploader(outbox, server.url, client, sleep, batch_size=100)
        assert up.flush(deadline_s=60) == 0
    assert seen_pending == [True] * len(server.requests)  # at every request, the batch was still queued
    assert len(server.requests) == 5  # 3 batches + 2 failed attempts


def test_exactly_once_across_lost_answers_and_dropped_connections(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    events = make_events(250)
    outbox.put(events)
    server.script = [
        Answer(500, store_first=True),  # stored, but the client hears a failure
        Answer(drop=True),  # connection closed with no answer
        Answer(502),
        Answer(500, store_first=True),
    ]
    sleep = FakeSleep(clock)
    up = uploader(outbox, server.url, client, sleep, batch_size=100, rng=random.Random(1))
    assert up.flush(deadline_s=600) == 0
    assert set(server.stored) == {e.event_id for e in events}
    assert set(server.stored_times.values()) == {1}  # each event stored once
    # The first batch was stored on the first try; when it finally got an answer, all 100 were duplicates.
    assert up.duplicates == 100 and up.sent == 150
    # Four failures in a row, then a success: exponential backoff with jitter, base 0.5 s.
    assert len(sleep.calls) == 4
    for n, delay in enumerate(sleep.calls):
        assert 0.5 * 2**n / 2 <= delay <= 0.5 * 2**n


def test_server_not_started_yet_keeps_everything_then_delivers_once(
    outbox: Outbox, client: httpx.Client, clock: FixedClock
) -> None:
    port = free_port()
    outbox.put(make_events(120))
    sleep = FakeSleep(clock)
    up = uploader(outbox, f"http://127.0.0.1:{port}", client, sleep, max_delay_s=8)
    assert up.flush(deadline_s=60) == 120  # nothing lost, nothing pretended
    assert sleep.calls and sum(sleep.calls) <= 60  # it retried, within the deadline on the clock
    assert "cannot reach" in (up.last_failure or "")
    server = IngestServer(port).start()
    try:
        assert up.flush(deadline_s=60) == 0
        assert len(server.stored) == 120 and set(server.stored_times.values()) == {1}
    finally:
        server.stop()


def test_retry_after_is_honoured_in_seconds_and_as_a_date(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(10))
    when = format_datetime(clock.now().replace(microsecond=0) + timedelta(seconds=19), True)
    server.script = [Answer(429, headers={"Retry-After": "7"}), Answer(503, headers={"Retry-After": when})]
    sleep = FakeSleep(clock)
    assert uploader(outbox, server.url, client, sleep).flush(deadline_s=60) == 0
    assert sleep.calls == [7.0, 12.0]  # the date was 19 s after the start; 7 s had passed


def test_a_refused_key_stops_at_once_with_a_clear_error(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(10))
    sleep = FakeSleep(clock)
    up = Uploader(outbox, server.url, "sk-at-wrong", client=client, clock=clock, sleep=sleep)
    with pytest.raises(UploadRefused) as e:
        up.flush(deadline_s=60)
    assert e.value.status == 401
    assert "the server refused the key" in str(e.value) and "unknown virtual key" in str(e.value)
    assert len(server.requests) == 0 and sleep.calls == []  # refused by auth; no retries
    assert outbox.count() == 10


def test_an_invalid_batch_names_the_event(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    events = make_events(5)
    outbox.put(events)
    server.script = [Answer(400, body=b'{"error": {"message": "event 3: unknown event kind", "status": 400}}')]
    with pytest.raises(UploadRefused, match=f"event_id {events[3].event_id}") as e:
        uploader(outbox, server.url, client, FakeSleep(clock)).flush(deadline_s=60)
    assert e.value.status == 400 and "unknown event kind" in str(e.value)
    assert outbox.count() == 5


def test_a_wrong_url_says_so(outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock) -> None:
    outbox.put(make_events(1))
    with pytest.raises(UploadRefused, match="has no ingest endpoint"):
        uploader(outbox, server.url + "/prefix", client, FakeSleep(clock)).flush(deadline_s=60)


def test_too_large_batches_are_halved(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(250))
    too_big = Answer(413, body=b'{"error": {"message": "too large"}}', when=lambda ids: len(ids) > 70)
    server.script = [too_big, too_big, too_big]  # 250 -> 125 -> 62
    assert uploader(outbox, server.url, client, FakeSleep(clock)).flush(deadline_s=60) == 0
    assert [len(b) for b in server.requests[:3]] == [250, 125, 62]
    assert len(server.stored) == 250


def test_a_200_that_acknowledges_nothing_is_not_an_ack(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(3))
    server.script = [Answer(200, body=b"<html>Welcome to the hotel wifi</html>")]
    with pytest.raises(UploadError, match="without saying what it accepted"):
        uploader(outbox, server.url, client, FakeSleep(clock)).flush(deadline_s=60)
    assert outbox.count() == 3


def test_background_thread_delivers_during_the_session(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    up = uploader(outbox, server.url, client, FakeSleep(clock))
    up.start(interval_s=30)
    try:
        for n in range(50, 250, 50):
            outbox.put(make_events(50, start=n - 50))
            up.wake()
            assert server.wait_stored(n)
    finally:
        assert up.stop(deadline_s=10) == 0
    assert set(server.stored_times.values()) == {1} and up.error is None


def test_server_down_for_the_whole_session_then_up_delivers_everything_once(
    outbox: Outbox, client: httpx.Client, clock: FixedClock
) -> None:
    port = free_port()
    sleep = FakeSleep(clock, gated=True)
    up = uploader(outbox, f"http://127.0.0.1:{port}", client, sleep)
    up.start(interval_s=30)
    outbox.put(make_events(100))
    up.wake()
    assert sleep.called.wait(15)  # it tried, failed to connect, and is backing off
    for round_ in range(1, 5):  # the rest of the session, with the server still down
        outbox.put(make_events(100, start=round_ * 100))
    assert outbox.count() == 500
    server = IngestServer(port).start()
    try:
        sleep.gate.set()  # time passes; the next attempt finds the server
        up.wake()
        assert server.wait_stored(500)
        assert up.stop(deadline_s=10) == 0
        assert set(server.stored_times.values()) == {1}
        assert outbox.count() == 0
    finally:
        server.stop()


def test_a_refusal_in_the_background_stops_the_thread_and_is_reported(
    outbox: Outbox, server: IngestServer, client: httpx.Client, clock: FixedClock
) -> None:
    outbox.put(make_events(5))
    up = Uploader(outbox, server.url, "sk-at-wrong", client=client, clock=clock, sleep=FakeSleep(clock))
    up.start(interval_s=30)
    assert server.wait_for(lambda: server.refused == 1)  # the thread's own attempt, not stop()'s flush
    assert up.stop(deadline_s=5) == 5
    assert server.refused == 1  # after a refusal, stop() does not try again
    assert isinstance(up.error, UploadRefused) and "refused the key" in str(up.error)
