"""The outbox itself: idempotent puts, oldest-first reads, acks, durability settings, several processes."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from outbox_harness import T0, make_events

from agenttrail.clock import FixedClock
from agenttrail.events import Event
from agenttrail.outbox import Outbox, default_path


def test_put_is_idempotent_by_event_id(outbox: Outbox) -> None:
    events = make_events(20)
    assert outbox.put(events) == 20
    assert outbox.put(events[5:] + make_events(3, start=20)) == 3
    assert outbox.count() == 23


def test_ids_ingest_would_refuse_are_refused_at_put(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="at most 64"):
        outbox.put([*make_events(2), Event(session_id="s", kind="exec", ts=T0, event_id="x" * 65)])
    assert outbox.count() == 0  # checked before anything is written


def test_pending_is_oldest_first_and_limited(outbox: Outbox) -> None:
    first, second = make_events(3, session="b"), make_events(3, session="a")
    outbox.put(first)
    outbox.put(second)
    assert [e.event_id for e in outbox.pending(4)] == [e.event_id for e in first + second[:1]]
    assert outbox.pending(100) == first + second  # the events come back as they went in


def test_ack_removes_from_pending_and_a_resent_event_is_not_queued_again(outbox: Outbox, clock: FixedClock) -> None:
    events = make_events(5)
    outbox.put(events)
    assert outbox.ack([events[0].event_id, events[2].event_id, "unknown", events[0].event_id]) == 2
    assert [e.event_id for e in outbox.pending(10)] == [events[i].event_id for i in (1, 3, 4)]
    assert outbox.ack([events[0].event_id]) == 0
    assert outbox.put(events[:1]) == 0  # already delivered: the tombstone keeps it from going twice
    clock.advance(days=31)
    assert outbox.prune(older_than=timedelta(days=30)) == 2
    assert outbox.put(events[:1]) == 1  # after pruning, the id is forgotten
    assert outbox.count() == 4


def test_payloads_round_trip_exactly(outbox: Outbox) -> None:
    payload = {
        "path": "/work/caf\u00e9/\udcff-not-utf8",  # a file name that was not valid UTF-8 (surrogateescape)
        "argv": ["python", "-c", "print('\u2603')"],
        "nested": {"n": 1, "x": 1.5, "none": None, "list": [True, "a"]},
    }
    e = Event(session_id="s", kind="file_write", ts=T0, payload=payload)
    outbox.put([e])
    assert outbox.pending(1) == [e]


def test_secrets_are_redacted_before_they_are_queued(tmp_path: Path) -> None:
    token = "ghp_" + "a1B2c3D4e5" * 4
    e = Event(
        session_id="s", kind="exec", ts=T0, payload={"argv": ["git", "push", f"https://x:{token}@github.com/o/r"]}
    )
    with Outbox(tmp_path / "r.db") as ob:
        ob.put([e])
        assert ob.pending(1)[0].payload["argv"][2] == "https://x:[REDACTED:github_token]@github.com/o/r"
    assert token.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    with Outbox(tmp_path / "raw.db", redact=False) as ob:
        ob.put([e])
        assert ob.pending(1)[0].payload == e.payload


def test_wal_and_full_sync_and_private_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTTRAIL_HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / "outbox.db"
    with Outbox() as ob:
        assert ob.path == tmp_path / "home" / "outbox.db"
        ob.put(make_events(1))
        # synchronous is a per-connection setting: read it from the outbox's own connection.
        assert ob._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert stat.S_IMODE(ob.path.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "home" / "outbox.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with Outbox(tmp_path / "fast.db", durable=False) as ob:
        assert ob._db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from outbox_harness import make_events
    from agenttrail.outbox import Outbox

    me, path = int(sys.argv[1]), sys.argv[2]
    ob = Outbox(path, busy_timeout_ms=60_000)
    for k in range(20):
        ob.put(make_events(10, start=me * 200 + k * 10))  # this writer's own events
        ob.put(make_events(5, start=10_000 + k * 5))  # the same events from every writer: duplicates
        ob.ack([e.event_id for e in ob.pending(3)])
    """
)


def test_several_processes_write_and_ack_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    Outbox(path).close()  # create it first, so the writers race on rows and not on the schema
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(i), str(path), str(Path(__file__).parent)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err  # no "database is locked": writers waited for each other
    with sqlite3.connect(path) as db:
        ids = [r[0] for r in db.execute("SELECT event_id FROM outbox")]
        (sent,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()
    assert len(ids) == len(set(ids)) == 4 * 200 + 100
    assert 0 < sent <= 4 * 20 * 3
    with Outbox(path) as ob:
        assert ob.count() == len(ids) - sent


def test_a_damaged_outbox_is_kept_aside_and_a_new_one_takes_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "outbox.db"
    junk = b"\x13\x37" * 5000
    path.write_bytes(junk)
    box = Outbox(path)
    assert box.put(make_events(3)) == 3 and box.count() == 3
    assert box.set_aside is not None and box.set_aside.read_bytes() == junk
    assert box.set_aside.name.startswith("outbox.db.damaged-")
    err = capsys.readouterr().err
    assert "could not be read" in err and str(box.set_aside) in err
    box.close()
    assert Outbox(path).set_aside is None  # the new one opens cleanly next time
