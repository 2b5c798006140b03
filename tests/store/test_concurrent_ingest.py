"""Two ingests at once on PostgreSQL (the server runs one per request): sessions and days they share
end with exact roll-ups, and neither fails ("deadlock detected" before the session locks of
`store.locks`).

The interleaving that deadlocked is forced, not hoped for: each ingest stops after its event rows (which
upsert the roll-up rows of its counted events' sessions) until the other has either got as far or is
waiting on a lock; then both go on to their calls, which upsert the roll-up rows of the other's
sessions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from agenttrail.events import Event
from agenttrail.gateway.recorder import Recorder
from agenttrail.importers import join
from agenttrail.store.database import open_engine
from agenttrail.store.engine import make_engine
from agenttrail.store.ingest import ingest

from .test_rollup_pause import assert_rollups_exact, rollups

T0 = datetime(2026, 4, 30, 23, 0, tzinfo=UTC)  # the calls cross midnight and a month's end
SESSIONS = [f"s{i}" for i in range(6)]


def _call(sid: str, n: int, t: datetime, team: int, source: str) -> Event:
    record = {"call_id": f"{sid}-c{n}", "provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": 0.25}
    record |= {"input_tokens": 100 + n, "output_tokens": 7, "team_id": team, "source": source}
    return Event(sid, "llm_call", t, {"record": record}, f"{sid}-call-{n}")


def _batches(prefix: str, team: int, source: str) -> tuple[list[Event], list[Event], list[Event]]:
    """Starts first; then batch A has the counted events of the even sessions and the calls of the odd
    ones, batch B the other way round; both span the same two days and months."""
    sessions = [prefix + s for s in SESSIONS]
    starts = [Event(s, "session_start", T0, {"engineer": "e@x", "team_id": team}, f"{s}-start") for s in sessions]
    a: list[Event] = []
    b: list[Event] = []
    for i, sid in enumerate(sessions):
        for n in range(4):
            t = T0 + timedelta(minutes=25 * n)
            counted = Event(sid, "exec", t, {"argv": ["make"]}, f"{sid}-exec-{n}")
            (a if i % 2 == 0 else b).append(counted)
            (b if i % 2 == 0 else a).append(_call(sid, n, t, team, source))
    a.append(Event(sessions[0], "session_end", T0 + timedelta(hours=2), {"exit_code": 0}, f"{sessions[0]}-end"))
    b.append(Event(sessions[1], "session_end", T0 + timedelta(hours=2), {"exit_code": 1}, f"{sessions[1]}-end"))
    return starts, a, b


class Sender:
    """One ingest in a thread, on an engine of its own so its backend's pid is known."""

    def __init__(self, url: str, batch: list[Event]) -> None:
        self.engine: Engine = make_engine(url)
        self.batch = batch
        self.pid: int | None = None
        self.reached = threading.Event()  # its event rows are in, its transaction open
        self.done = threading.Event()
        self.error: BaseException | None = None
        event.listen(self.engine, "connect", self._connected)

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        self.pid = cur.fetchone()[0]

    def run(self, start: threading.Barrier) -> None:
        try:
            with self.engine.connect():  # its connection (and pid) before the start
                pass
            start.wait()
            self.work()
        except BaseException as e:
            self.error = e
        finally:
            self.done.set()
            self.engine.dispose()

    def work(self) -> None:
        ingest(self.engine, self.batch)


def _waiting_on_a_lock(watch: Engine, pid: int | None) -> bool:
    with watch.connect() as conn:
        kind = conn.execute(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
    return kind == "Lock"


def _hold_after_events(
    monkeypatch: pytest.MonkeyPatch, senders: dict[int, tuple[Sender, Sender]], watch: Engine
) -> None:
    """Each ingest, once its event rows are in, waits until the other has got as far, is waiting on a
    lock (blocked before it could), or is done."""
    real: Callable[..., Any] = join.materialise

    def held(conn: Any, fresh: Any, who: Any) -> Any:
        me, other = senders[threading.get_ident()]
        me.reached.set()
        while not (other.reached.is_set() or other.done.is_set() or _waiting_on_a_lock(watch, other.pid)):
            other.reached.wait(0.01)  # a poll of a definite condition, not a guess at a duration
        return real(conn, fresh, who)

    monkeypatch.setattr(join, "materialise", held)


def run_in_turn(first: Sender, second: Sender, senders: dict[int, tuple[Sender, Sender]] | None = None) -> None:
    """`first` starts and runs until it holds its rows (`reached`), then `second` starts; both run to the
    end and neither may fail. `senders` (for `_hold_after_events`) learns first's thread and its other."""
    go_first, go_second = threading.Barrier(2), threading.Barrier(2)
    first_thread = threading.Thread(target=first.run, args=(go_first,))
    first_thread.start()
    if senders is not None:
        assert first_thread.ident is not None
        senders[first_thread.ident] = (first, second)
    go_first.wait()
    first.reached.wait()
    second_thread = threading.Thread(target=second.run, args=(go_second,))
    second_thread.start()
    go_second.wait()
    for t in (first_thread, second_thread):
        t.join()
    assert (first.error, second.error) == (None, None)


# A transcript's calls are the join's to insert (the calls' lock before the join); the others are
# ingest's own (the lock after the sessions, file changes and commits).
@pytest.mark.parametrize("source", ["transcript", "demo"])
def test_two_ingests_sharing_sessions_and_days_both_succeed_with_exact_rollups(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    engine = open_engine(pg_url)
    starts, a, b = _batches("c-", 1, source)
    ingest(engine, starts)
    one, two = Sender(pg_url, a), Sender(pg_url, b)
    start = threading.Barrier(3)  # the two senders, and this thread once it has named them
    threads = [threading.Thread(target=s.run, args=(start,)) for s in (one, two)]
    senders: dict[int, tuple[Sender, Sender]] = {}
    _hold_after_events(monkeypatch, senders, engine)
    for t, pair in zip(threads, ((one, two), (two, one)), strict=True):
        t.start()
        assert t.ident is not None
        senders[t.ident] = pair
    start.wait()
    for t in threads:
        t.join()
    assert (one.error, two.error) == (None, None)
    assert_rollups_exact(engine)
    # The same events through one ingest at a time, into sessions of their own: the same roll-ups.
    monkeypatch.undo()
    for batch in _batches("one-", 101, source):
        ingest(engine, batch)
    assert rollups(engine, "c-") == rollups(engine, "one-", team_base=100)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM event")).scalar() == 2 * len(starts + a + b)
        assert conn.execute(text("SELECT SUM(calls) FROM call_daily")).scalar() == 2 * len(SESSIONS) * 4


class RecorderSender(Sender):
    """The gateway's recorder writing call rows in a thread, as the server's recorder task does."""

    def __init__(self, url: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(url, [])
        self.rows = rows

    def work(self) -> None:
        recorder = Recorder(self.engine, batch_size=len(self.rows), interval_s=60)
        for row in self.rows:
            recorder.add(row)
        asyncio.run(recorder.flush())


def _gateway_rows(sessions: list[str], team: int) -> list[dict[str, Any]]:
    """Gateway calls of the given sessions on the same days, team, provider and model as the batches'
    calls, so they share the calls' period roll-up rows."""
    return [
        {"call_id": f"{sid}-gw{n}", "started_at": (T0 + timedelta(minutes=25 * n)).replace(tzinfo=None)}
        | {"session_id": sid, "team_id": team, "provider": "anthropic", "model": "claude-sonnet-4-5"}
        | {"status": "ok", "input_tokens": 50, "output_tokens": 3, "cost_usd": 0.5}
        for sid in sessions
        for n in range(4)
    ]


def test_an_ingest_and_the_gateway_recorder_on_the_same_sessions_both_succeed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest holds its counted events' (even) sessions' roll-up rows, then writes the odd sessions'
    calls; the recorder's insert, in between, upserts roll-up rows of both. Without the recorder taking
    ingest's locks first, PostgreSQL aborts one of them ("deadlock detected")."""
    engine = open_engine(pg_url)
    starts, a, _ = _batches("r-", 1, "demo")
    ingest(engine, starts)
    # Calls of every session but the first: the recorder's upserts (in key order) take the first odd
    # session's row, which the ingest's calls will want, then wait for the next even one, which it holds.
    called = sorted({e.session_id for e in starts})[1:]
    one, gateway = Sender(pg_url, a), RecorderSender(pg_url, _gateway_rows(called, 1))
    senders: dict[int, tuple[Sender, Sender]] = {}
    _hold_after_events(monkeypatch, senders, engine)
    run_in_turn(one, gateway, senders)  # the ingest holds its sessions' rows before the recorder starts
    assert_rollups_exact(engine)
    with engine.connect() as conn:
        gateway_calls = conn.execute(text("SELECT COUNT(*) FROM llm_call WHERE call_id LIKE 'r-%gw%'")).scalar()
    assert gateway_calls == 4 * len(called)


def test_a_traced_session_taking_over_an_imported_one_while_it_is_ingested_both_succeed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A traced session's end names the agent session an import stored under its own id: its ingest
    takes the imported session over (`join.after`) holding the calls' lock. An upload of that agent
    session's transcript meanwhile holds the imported session's roll-up row (its counted events) and
    waits for the calls' lock. Without the take-over's candidates locked with the batch's sessions,
    PostgreSQL aborts one ("deadlock detected")."""
    engine = open_engine(pg_url)
    imported = "claude-code:asid-1"
    agent = {"agent": "claude-code", "agent_session_id": "asid-1"}
    start = {"source": "imported", "started_at": T0.isoformat(), **agent}
    ingest(
        engine,
        [
            Event("t-1", "session_start", T0, {"engineer": "e@x", "team_id": 1, "agent": "claude-code"}, "t-start"),
            Event(imported, "session_start", T0, start, "i-start"),
            Event(imported, "prompt", T0, {"text": "hi", **agent}, "i-prompt-0"),
        ],
    )
    traced = Sender(pg_url, [Event("t-1", "session_end", T0 + timedelta(hours=1), {"exit_code": 0, **agent}, "t-end")])
    record = {"call_id": "i-c1", "provider": "anthropic", "model": "claude-sonnet-4-5", "source": "transcript"}
    upload = Sender(
        pg_url,
        [
            Event(imported, "prompt", T0 + timedelta(minutes=1), {"text": "more", **agent}, "i-prompt-1"),
            Event(
                imported,
                "llm_call",
                T0 + timedelta(minutes=1),
                {"record": {**record, "input_tokens": 5}, **agent},
                "i-c1",
            ),
        ],
    )
    real: Callable[..., Any] = join.after

    def held(conn: Any, fresh: Any) -> Any:
        """The traced ingest, holding the calls' lock, waits until the upload is blocked or done."""
        if conn.engine is traced.engine:
            traced.reached.set()
            while not (upload.done.is_set() or _waiting_on_a_lock(engine, upload.pid)):
                upload.done.wait(0.01)  # a poll of a definite condition, not a guess at a duration
        return real(conn, fresh)

    monkeypatch.setattr(join, "after", held)
    run_in_turn(traced, upload)
    assert_rollups_exact(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM event WHERE session_id = 't-1'")).scalar() >= 3
