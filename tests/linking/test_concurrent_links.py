"""Linking pull requests while an ingest writes the same sessions (PostgreSQL): both succeed.

`link-prs` and the GitHub webhook (both `record_pull_requests`) link a batch in two statements, by
recorded sha (`pr_commit`'s trigger) then by trailer, each upserting the linked sessions'
`session_rollup` rows. The crossed interleaving is forced, not hoped for: the ingest holds one session's
roll-up row (its counted events) and is stopped until the linker holds the other's (linked by sha) and
waits for the first (linked by trailer); then the ingest's calls want the second. Without the linker
taking ingest's session locks first, PostgreSQL aborts one of them ("deadlock detected")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from tests.store.test_concurrent_ingest import Sender, _hold_after_events, run_in_turn
from tests.store.test_rollup_pause import assert_rollups_exact

from agenttrail.events import Event
from agenttrail.linking import record_pull_requests
from agenttrail.linking.record import PullRequestFacts
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SHA = "ab" * 20


class LinkSender(Sender):
    """`record_pull_requests` in a thread, on an engine of its own (as a webhook delivery runs it)."""

    def __init__(self, url: str, prs: list[PullRequestFacts]) -> None:
        super().__init__(url, [])
        self.prs = prs

    def work(self) -> None:
        record_pull_requests(self.engine, self.prs)


def test_linking_prs_while_an_ingest_writes_the_same_sessions_both_succeed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(pg_url)
    s0, s1 = "l-s0", "l-s1"
    setup = [Event(s, "session_start", T0, {"engineer": "e@x", "team_id": 1}, f"{s}-start") for s in (s0, s1)]
    setup.append(Event(s1, "commit", T0, {"sha": SHA, "repo": "github.com/acme/shop"}, f"{s1}-commit"))
    ingest(engine, setup)
    # The ingest: counted events of s0 (its row first), then calls of s1.
    batch = [Event(s0, "exec", T0 + timedelta(minutes=n), {"argv": ["make"]}, f"{s0}-exec-{n}") for n in range(3)]
    record = {"provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": 0.5, "input_tokens": 10}
    batch += [
        Event(s1, "llm_call", T0 + timedelta(minutes=n), {"record": {**record, "call_id": f"{s1}-c{n}"}}, f"{s1}-c{n}")
        for n in range(3)
    ]
    # The linker: s1 by its commit's sha (the first statement), s0 by a trailer (the second).
    pr = PullRequestFacts("github.com/acme/shop", 7, "fix", T0, source="webhook", commits=[SHA], sessions=[s0])
    one, linker = Sender(pg_url, batch), LinkSender(pg_url, [pr])
    senders: dict[int, tuple[Sender, Sender]] = {}
    _hold_after_events(monkeypatch, senders, engine)
    run_in_turn(one, linker, senders)  # the ingest holds s0's roll-up row before the linker starts
    assert_rollups_exact(engine)
    with engine.connect() as conn:
        merged = dict(conn.execute(text("SELECT session_id, merged_prs FROM session_rollup")).all())
    assert merged == {s0: 1, s1: 1}
