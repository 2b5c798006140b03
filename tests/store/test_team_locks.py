"""Migration 0013 on PostgreSQL: ingests of different teams do not take turns on the calls' lock; ingests
of one team do; a batch that turns out to write another team's roll-up rows is stored again under the
store-wide lock, with exact roll-ups; a batch without a key takes the store-wide lock as before.

Each ingest is held inside its transaction, after its calls' lock, until the other is done or is seen
waiting on a lock (`pg_stat_activity`): a definite condition, not a guess at a duration."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agenttrail.events import Event
from agenttrail.store import ingest as ingest_module
from agenttrail.store import org
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, ingest

from .test_concurrent_ingest import T0, Sender, _call, _waiting_on_a_lock
from .test_rollup_pause import assert_rollups_exact


class KeySender(Sender):
    """An ingest under a key of `team` (what the server's `/api/v1/ingest` passes)."""

    def __init__(self, url: str, batch: list[Event], team: int | None) -> None:
        super().__init__(url, batch)
        self.who = Attribution(team_id=team)

    def work(self) -> None:
        ingest(self.engine, self.batch, self.who)


def _session(sid: str, team: int, *, sha: str) -> list[Event]:
    """A session of `team` with a call and a commit (a commit's insert runs the link trigger, which
    took the store-wide lock even when it linked nothing)."""
    return [
        Event(sid, "session_start", T0, {"engineer": f"{sid}@x", "team_id": team}, f"{sid}-start"),
        Event(sid, "exec", T0 + timedelta(minutes=1), {"argv": ["make"]}, f"{sid}-exec"),
        Event(sid, "commit", T0 + timedelta(minutes=2), {"sha": sha, "message": "fix"}, f"{sid}-commit"),
        _call(sid, 0, T0 + timedelta(minutes=3), team, "demo"),
        Event(sid, "session_end", T0 + timedelta(hours=1), {"exit_code": 0}, f"{sid}-end"),
    ]


def _hold_first(monkeypatch: pytest.MonkeyPatch, first: Sender, second: Sender, watch: Engine) -> list[bool]:
    """`first`, once it holds its calls' lock (its rows written, before commit), waits until `second` is
    done or waiting on a lock. Returns, once run, [whether `second` was waiting when `first` went on]."""
    waited: list[bool] = []
    real: Callable[..., Any] = ingest_module._materialise

    def held(conn: Any, *args: Any, **kwargs: Any) -> Any:
        out = real(conn, *args, **kwargs)
        if conn.engine is first.engine:
            first.reached.set()
            while not (second.done.is_set() or _waiting_on_a_lock(watch, second.pid)):
                second.done.wait(0.01)  # a poll of a definite condition, not a guess at a duration
            waited.append(not second.done.is_set())
        return out

    monkeypatch.setattr(ingest_module, "_materialise", held)
    return waited


def _run(first: Sender, second: Sender) -> None:
    go_first, go_second = threading.Barrier(2), threading.Barrier(2)
    t1 = threading.Thread(target=first.run, args=(go_first,))
    t1.start()
    go_first.wait()
    while not (first.reached.is_set() or first.done.is_set()):  # held, or failed before it could be
        first.done.wait(0.01)
    t2 = threading.Thread(target=second.run, args=(go_second,))
    t2.start()
    go_second.wait()
    t1.join()
    t2.join()
    assert (first.error, second.error) == (None, None)


def _teams(engine: Engine, n: int) -> list[int]:
    return [org.add_team(engine, f"team-{i}").id for i in range(n)]


def test_ingests_of_different_teams_do_not_wait_for_each_other(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(pg_url)
    a_team, b_team = _teams(engine, 2)
    first = KeySender(pg_url, _session("a1", a_team, sha="a" * 40), a_team)
    second = KeySender(pg_url, _session("b1", b_team, sha="b" * 40), b_team)
    waited = _hold_first(monkeypatch, first, second, engine)
    _run(first, second)
    assert waited == [False]  # the second committed while the first held its transaction open
    assert_rollups_exact(engine)


def test_ingests_of_one_team_take_turns(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(pg_url)
    (team,) = _teams(engine, 1)
    first = KeySender(pg_url, _session("a1", team, sha="a" * 40), team)
    second = KeySender(pg_url, _session("a2", team, sha="c" * 40), team)
    waited = _hold_first(monkeypatch, first, second, engine)
    _run(first, second)
    assert waited == [True]  # the second was seen waiting on the team's lock until the first committed
    assert_rollups_exact(engine)


def test_a_batch_writing_another_teams_rows_is_stored_again_under_the_store_wide_lock(pg_url: str) -> None:
    """A gateway call of team B, recorded without a session but with the agent's session id, is claimed
    by a team-A session's end: its roll-up rows (team B's day) move. The batch named only team A, so the
    guard stops it and it is stored again, whole and exact."""
    engine = open_engine(pg_url)
    a_team, b_team = _teams(engine, 2)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO llm_call (call_id, started_at, team_id, provider, model, status, input_tokens, "
                "output_tokens, cost_usd, agent_session_id) VALUES ('gw-1', :t, :team, 'anthropic', "
                "'claude-sonnet-4-5', 'ok', 10, 2, 0.5, 'asid-9')"
            ),
            {"t": T0.replace(tzinfo=None), "team": b_team},
        )
    passes: list[bool] = []
    real = ingest_module._store

    def spy(*args: Any, by_team: bool) -> Any:
        passes.append(by_team)
        return real(*args, by_team=by_team)

    batch = _session("a1", a_team, sha="a" * 40)
    batch[-1] = Event(
        "a1", "session_end", T0 + timedelta(hours=1), {"exit_code": 0, "agent_session_id": "asid-9"}, "a1-end"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest_module, "_store", spy)
        result = ingest(engine, batch, Attribution(team_id=a_team))
    assert passes == [True, False]  # stopped by the guard, then stored under the store-wide lock
    assert result.accepted == len(batch)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT session_id FROM llm_call WHERE call_id = 'gw-1'")).scalar() == "a1"
        assert conn.execute(text("SELECT COUNT(*) FROM event")).scalar() == len(batch)
        calls = conn.execute(
            text(
                "SELECT COALESCE(team_id, 0), CASE WHEN session_id IS NULL THEN 0 ELSE 1 END, COUNT(*), SUM(cost_usd) "
                "FROM llm_call GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ).all()
        for table in ("call_daily", "call_monthly"):  # the moved call's old row is left at zero, not deleted
            rolled = conn.execute(
                text(
                    f"SELECT team_id, in_session, SUM(calls), SUM(cost_usd) FROM {table} "
                    "GROUP BY 1, 2 HAVING SUM(calls) <> 0 ORDER BY 1, 2"
                )
            ).all()
            assert [tuple(r) for r in rolled] == [tuple(r) for r in calls], table
        session = conn.execute(text("SELECT calls, cost_usd FROM session_rollup WHERE session_id = 'a1'")).one()
    assert calls == [(a_team, 1, 1, 0.25), (b_team, 1, 1, 0.5)]  # gw-1 is in a1 now, still team B's
    assert tuple(session) == (2, 0.75)


def test_without_a_key_a_batch_takes_the_store_wide_lock(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(pg_url)
    a_team, b_team = _teams(engine, 2)
    first = KeySender(pg_url, _session("a1", a_team, sha="a" * 40), None)  # a local import: no key
    second = KeySender(pg_url, _session("b1", b_team, sha="b" * 40), b_team)
    waited = _hold_first(monkeypatch, first, second, engine)
    _run(first, second)
    assert waited == [True]
    assert_rollups_exact(engine)
