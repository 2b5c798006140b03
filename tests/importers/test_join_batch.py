"""The join's one look per batch (`join._nothing_to_join`): an import with nothing to join to asks a few
questions per batch, not four per agent session; where something could match, every session is still
resolved rule by rule, with the same result as asking each one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from agenttrail.events import Event
from agenttrail.importers import import_codex, join
from agenttrail.importers.to_events import batch_to_events
from agenttrail.pricing import Pricer
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest

from .builders import T0, CodexRollout, codex_usage
from .test_join import traced

PRICER = Pricer()


def rollouts(tmp: Path, n: int) -> list[Event]:
    for i in range(n):
        r = CodexRollout(cwd=f"/home/dev/repo{i % 3}", clock=T0 + timedelta(hours=3 * i))
        r.meta()
        r.turn_context()
        r.usage_record(f"resp_{i}", codex_usage(100 + i, 10, 5))
        r.token_count(codex_usage(100 + i, 10, 5))
        r.write(tmp / "codex")
    batch = import_codex(tmp / "codex", with_events=False, env={})
    assert not batch.errors
    return batch_to_events(batch, PRICER)


def sids(events: list[Event]) -> list[str]:
    return [e.session_id for e in events]


def count_selects(engine: Engine) -> list[str]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    return seen


def test_nothing_to_join_asks_per_batch_not_per_session(db_url: str, tmp_path: Path) -> None:
    engine = open_engine(db_url)
    events = rollouts(tmp_path, 40)
    selects = count_selects(engine)
    resolved = join.resolve_events(engine, events)
    assert sids(resolved) == sids(events)  # nothing moved: every session keeps its own id
    # Before the batch look: four or five queries for each of the 40 sessions.
    assert len(selects) <= 8, selects


def resolved_one_by_one(engine: Engine, events: list[Event]) -> list[Event]:
    """`resolve` as it was: `find_session` for every group."""
    groups = join._groups(events)
    with engine.begin() as conn:
        moved = {gid: t for gid, g in groups.items() if (t := join.find_session(conn, g)) != gid}
    return [e if e.session_id not in moved else join.dc_replace(e, session_id=moved[e.session_id]) for e in events]


def traced_in_repo1() -> list[Event]:
    """A traced Codex session in the cwd and span of `rollouts`' second rollout."""
    start = T0 + timedelta(hours=3) - timedelta(minutes=1)
    return traced("traced-1", cwd="/home/dev/repo1", start=start, end=T0 + timedelta(hours=4), agent="codex")


def test_with_something_to_join_each_session_is_resolved_as_before(db_url: str, tmp_path: Path) -> None:
    """A traced session in the cwd and span of one rollout (rule 5): the batch look says there may be a
    match, and the result is the one-by-one result (that rollout moves, the others stay)."""
    engine = open_engine(db_url)
    events = rollouts(tmp_path, 6)
    ingest(
        engine,
        traced_in_repo1(),
    )
    want = sids(resolved_one_by_one(engine, events))
    assert "traced-1" in want and want != sids(events)  # the case does exercise a join
    with engine.begin() as conn:
        groups = join._groups(events)
        assert not join._nothing_to_join(conn, list(groups.values()))
    assert sids(join.resolve_events(engine, events)) == want


def test_each_rule_is_seen_by_the_batch_look(db_url: str, tmp_path: Path) -> None:
    """Rule 1 (the traced session names the agent session id) and rule 5 (cwd and span), one at a time."""
    engine = open_engine(db_url)
    events = rollouts(tmp_path, 3)
    groups = list(join._groups(events).values())
    with engine.begin() as conn:
        assert join._nothing_to_join(conn, groups)
    far = T0 + timedelta(days=30)
    ingest(engine, traced("by-id", cwd="/elsewhere", start=far, agent_session_id=groups[0].agent_session_id))
    with engine.begin() as conn:
        assert not join._nothing_to_join(conn, groups)
        assert not join._nothing_to_join(conn, groups[:1])
        assert join._nothing_to_join(conn, groups[1:])  # far away and elsewhere: no rule can match them


def test_imported_calls_bill_the_team_of_the_traced_session_they_join(db_url: str, tmp_path: Path) -> None:
    """A local import (no key, so no team of its own) of rollouts: the one that joins a traced session
    is billed to that session's team, project and engineer; the others stay unattributed."""
    from sqlalchemy import select

    from agenttrail.store import org
    from agenttrail.store.ingest import Attribution
    from agenttrail.store.tables import llm_call

    engine = open_engine(db_url)
    team = org.add_team(engine, "payments")
    events = rollouts(tmp_path, 4)
    who = Attribution(team_id=team.id, engineer="alice@example.com")
    ingest(
        engine,
        traced_in_repo1(),
        who,
    )
    ingest(engine, events)  # the local import: no attribution of its own
    with engine.connect() as conn:
        rows = conn.execute(select(llm_call.c.session_id, llm_call.c.team_id)).all()
    by_session = {sid: t for sid, t in rows}
    assert len(rows) == 4 and by_session.pop("traced-1") == who.team_id
    assert set(by_session.values()) == {None}
