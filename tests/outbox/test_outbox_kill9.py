"""A writer killed with SIGKILL loses nothing that `put` had returned for; a later flush delivers it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from outbox_harness import KEY, FakeSleep, IngestServer

from agenttrail.clock import FixedClock
from agenttrail.outbox import Outbox, Uploader

HARNESS_DIR = str(Path(__file__).parent)

SUICIDE = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from outbox_harness import make_events
    from agenttrail.outbox import Outbox

    ob = Outbox(sys.argv[1])
    for k in range(10):
        ob.put(make_events(30, start=k * 30))
    os.kill(os.getpid(), 9)  # no close, no atexit, no flush of anything
    """
)

STREAMER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from outbox_harness import make_events
    from agenttrail.outbox import Outbox

    ob = Outbox(sys.argv[1])
    k = 0
    while True:  # until killed from outside, at whatever point it has reached
        ob.put(make_events(10, start=k * 10))
        print(k, flush=True)  # "put returned for batch k"
        k += 1
    """
)


def deliver_all(path: Path, server: IngestServer, clock: FixedClock) -> None:
    with Outbox(path) as ob, httpx.Client(timeout=10) as client:
        up = Uploader(ob, server.url, KEY, client=client, clock=clock, sleep=FakeSleep(clock))
        assert up.flush(deadline_s=60) == 0
        assert ob.count() == 0


def test_a_writer_that_kills_itself_right_after_put_leaves_its_events(
    tmp_path: Path, server: IngestServer, clock: FixedClock
) -> None:
    path = tmp_path / "outbox.db"
    proc = subprocess.run(
        [sys.executable, "-c", SUICIDE, str(path), HARNESS_DIR], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Outbox(path) as ob:
        assert ob.count() == 300
    deliver_all(path, server, clock)
    assert len(server.stored) == 300 and set(server.stored_times.values()) == {1}


def test_a_writer_killed_from_outside_mid_stream_loses_nothing_put_returned_for(
    tmp_path: Path, server: IngestServer, clock: FixedClock
) -> None:
    path = tmp_path / "outbox.db"
    proc = subprocess.Popen([sys.executable, "-c", STREAMER, str(path), HARNESS_DIR], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    confirmed = -1
    for line in proc.stdout:  # blocks on the child's output: no timing involved
        confirmed = int(line)
        if confirmed >= 25:
            break
    os.kill(proc.pid, signal.SIGKILL)  # probably in the middle of the next put
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    expected = {f"s-1-e{i:06d}" for i in range((confirmed + 1) * 10)}
    with Outbox(path) as ob:
        queued = {e.event_id for e in ob.pending(100_000)}
    assert expected <= queued  # every confirmed batch is there
    assert len(queued) % 10 == 0  # and a batch cut short by the kill is there whole or not at all
    deliver_all(path, server, clock)
    assert set(server.stored) == queued and set(server.stored_times.values()) == {1}
