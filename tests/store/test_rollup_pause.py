"""Roll-ups after a bulk ingest are exact: equal to sums computed from the stored rows, and to what the
row-by-row path gives; a re-sent batch changes nothing; a failed batch leaves nothing behind."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text

from agenttrail.events import Event
from agenttrail.store import rollup_pause
from agenttrail.store.bulk import insert_rows
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import ingest
from agenttrail.store.migrate import alembic_config
from agenttrail.store.tables import llm_call, pr_session, pull_request

T0 = datetime(2026, 4, 28, 22, 0, tzinfo=UTC)  # a batch that spans two days and two months
COUNTED = {"exec": "commands", "package_install": "packages", "net_connect": "connections", "prompt": "prompts"}
COUNTED["tool_call"] = "tool_calls"
FILES = {"file_create": "created", "file_write": "modified", "file_delete": "deleted", "file_rename": "renamed"}
MODELS = ("claude-sonnet-4-5", "gpt-5", None)
ROLLUPS = ("session_rollup", "session_model", "call_daily", "call_monthly", "session_week", "pr_team")
SOURCES = ("event", "file_change", "llm_call", "agent_session", "git_commit", *ROLLUPS)


def _events(seed: int, prefix: str, sessions: int, team_base: int = 0) -> list[Event]:
    """Sessions with every event kind the roll-ups count, calls of several models over midnight and a
    month's end, calls of importers (the join's insert) and of other sources (ingest's)."""
    rng = random.Random(seed)
    out: list[Event] = []
    for s in range(sessions):
        sid = f"{prefix}{s}"
        team = team_base + 1 + s % 2
        t = T0 + timedelta(minutes=rng.randrange(240))
        out.append(
            Event(
                sid,
                "session_start",
                t,
                {"engineer": f"e{s % 3}@x", "repo": "r", "agent": "claude-code", "team_id": team},
            )
        )
        for k in range(rng.randrange(12)):
            t += timedelta(seconds=rng.randrange(1, 900))
            kind = rng.choice([*COUNTED, *FILES, "response", "file_read", "llm_call", "llm_call"])
            payload: dict[str, Any] = {"argv": ["ls"]}
            if kind in FILES:
                payload = {"source": "snapshot", "path": f"f{k}", "lines_added": rng.randrange(50)}
                payload["lines_removed"] = rng.randrange(9)
            elif kind == "llm_call":
                payload = {"record": _record(rng, team, f"{sid}-{k}")}
            out.append(Event(sid, kind, t, payload))
        if rng.random() < 0.8:
            out.append(Event(sid, "session_end", t + timedelta(minutes=1), {"exit_code": 0}))
    return out


def _record(rng: random.Random, team: int, call_id: str) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "provider": "anthropic",
        "model": rng.choice(MODELS),
        "input_tokens": rng.randrange(5000),
        "cache_read_tokens": rng.randrange(9000),
        "output_tokens": rng.randrange(900),
        "cost_usd": rng.randrange(1, 10_000) / 7919,
        "team_id": team,
        "project_id": rng.choice((None, 3)),
        "source": rng.choice(("transcript", "demo")),
    }


def _call_rows(n: int, sessions: int = 1) -> list[dict[str, Any]]:
    t = T0.replace(tzinfo=None)
    return [
        {"call_id": f"c{i}", "started_at": t, "session_id": f"s{i % sessions}", "provider": "p", "status": "ok"}
        | {"cost_usd": 0.5}
        for i in range(n)
    ]


def _table(engine: Engine, name: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(f"SELECT * FROM {name}")).mappings()]


def _day(ts: Any) -> str:
    return str(ts)[:10]


def _keyed(rows: list[dict[str, Any]], key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in key): r for r in rows}


DAILY_KEY = ("day", "team_id", "project_id", "engineer_id", "provider", "model", "in_session")
MONTHLY_KEY = ("month", *DAILY_KEY[1:])
CALL_SUMS = ("calls", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_usd")


def expected_rollups(engine: Engine) -> dict[str, Any]:
    """The roll-ups summed in Python from the stored source rows, as DESIGN.md defines them."""
    sessions: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for e in _table(engine, "event"):
        if e["kind"] in COUNTED:
            sessions[e["session_id"]][COUNTED[e["kind"]]] += 1
    for f in _table(engine, "file_change"):
        s = sessions[f["session_id"]]
        s["files_changed"] += 1
        s[f"files_{f['change']}"] += 1
        s["lines_added"] += f["lines_added"]
        s["lines_removed"] += f["lines_removed"]
    models: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    periods: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {"day": defaultdict(lambda: defaultdict(int))}
    periods["month"] = defaultdict(lambda: defaultdict(int))
    for c in _table(engine, "llm_call"):
        figures = {"calls": 1, **{k: c[k] for k in CALL_SUMS[1:]}}
        dims = (c["team_id"] or 0, c["project_id"] or 0, c["engineer_id"] or 0, c["provider"], c["model"] or "")
        in_session = int(c["session_id"] is not None)
        for period, when in (("day", _day(c["started_at"])), ("month", _day(c["started_at"])[:7])):
            for k, v in figures.items():
                periods[period][(when, *dims, in_session)][k] += v
        if in_session:
            for k, v in figures.items():
                sessions[c["session_id"]][k] += v
            m = models[(c["session_id"], c["model"] or "")]
            m["calls"] += 1
            m["cost_usd"] += c["cost_usd"]
    main = {}
    for (sid, model), _m in sorted(
        models.items(), key=lambda kv: (kv[0][0], -kv[1]["cost_usd"], -kv[1]["calls"], kv[0][1])
    ):
        main.setdefault(sid, model or None)
    return {"sessions": sessions, "models": models, "main": main, **periods}


def assert_rollups_exact(engine: Engine) -> None:
    want = expected_rollups(engine)
    got_sessions = {r["session_id"]: r for r in _table(engine, "session_rollup")}
    assert set(want["sessions"]) <= set(got_sessions)
    for sid, got in got_sessions.items():
        figures = want["sessions"].get(sid, {})
        for col in (*COUNTED.values(), "files_changed", "lines_added", "lines_removed", *CALL_SUMS):
            assert got[col] == pytest.approx(figures.get(col, 0), rel=1e-12, abs=1e-12), (sid, col)
        for change in FILES.values():
            assert got[f"files_{change}"] == figures.get(f"files_{change}", 0), (sid, change)
        assert got["model"] == want["main"].get(sid), sid
    got_models = {(r["session_id"], r["model"]): r for r in _table(engine, "session_model")}
    assert set(got_models) == set(want["models"])
    for k, m in want["models"].items():
        assert (got_models[k]["calls"], got_models[k]["cost_usd"]) == (m["calls"], pytest.approx(m["cost_usd"]))
    for period, table, key in (("day", "call_daily", DAILY_KEY), ("month", "call_monthly", MONTHLY_KEY)):
        got = _keyed(_table(engine, table), key)
        assert set(got) == set(want[period]), table
        for k, figures in want[period].items():
            assert {c: got[k][c] for c in CALL_SUMS} == {c: pytest.approx(figures[c]) for c in CALL_SUMS}, (table, k)
    assert_week_and_pr_rollups_exact(engine)


WEEK_KEY = ("week", "agent", "engineer", "repo", "team_id", "nulls")
WEEK_SUMS = ("sessions", "duration_s", "merged_cost_usd", "unmerged_cost_usd")


def expected_week_and_pr_rollups(engine: Engine) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """session_week and pr_team summed in Python from session_rollup (itself checked against the rows
    above) and the PR links: the sessions view's rows (started) by week, agent, engineer, repo and team;
    each linked session's cost split equally over its PRs, by PR and the session's team."""
    weeks: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sessions = {r["session_id"]: r for r in _table(engine, "session_rollup")}
    for r in sessions.values():
        if r["started_at"] is None:
            continue
        nulls = (r["agent"] is None) + 2 * (r["engineer"] is None) + 4 * (r["repo"] is None)
        key = (r["week"], r["agent"] or "", r["engineer"] or "", r["repo"] or "", r["team_id"] or 0, nulls)
        w = weeks[key]
        w["sessions"] += 1
        w["duration_s"] += r["duration_s"] or 0
        w["merged_cost_usd" if r["merged_prs"] > 0 else "unmerged_cost_usd"] += r["cost_usd"]
    links = _table(engine, "pr_session")
    teams: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for link in links:
        s = sessions.get(link["session_id"])
        if s is None or s["started_at"] is None:
            continue
        assert s["merged_prs"] == sum(x["session_id"] == s["session_id"] for x in links)
        t = teams[(link["pr_id"], s["team_id"] or 0)]
        t["sessions"] += 1
        t["cost_usd"] += s["cost_usd"] / s["merged_prs"]
    return weeks, teams


def assert_week_and_pr_rollups_exact(engine: Engine) -> None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("session_week"):  # a test took the store below 0011
            return
    want_weeks, want_teams = expected_week_and_pr_rollups(engine)
    for table, key, sums, want in (
        ("session_week", WEEK_KEY, WEEK_SUMS, want_weeks),
        ("pr_team", ("pr_id", "team_id"), ("sessions", "cost_usd"), want_teams),
    ):
        got = _keyed(_table(engine, table), key)
        # A row whose sessions all moved elsewhere stays, at zero.
        emptied = {k for k, r in got.items() if r["sessions"] == 0}
        assert set(got) - emptied == set(want), table
        for k in emptied:
            assert all(got[k][c] == pytest.approx(0, abs=1e-9) for c in sums), (table, got[k])
        for k, figures in want.items():
            assert {c: got[k][c] for c in sums} == {c: pytest.approx(figures[c], abs=1e-12) for c in sums}, (table, k)


def rollups(engine: Engine, prefix: str = "", team_base: int = 0) -> dict[str, Any]:
    """The roll-up tables as comparable values: `prefix` taken off session ids, `team_base` off teams,
    costs rounded to the last bits a different order of addition may change."""
    out: dict[str, Any] = {}
    for name in ROLLUPS:
        rows = []
        for r in _table(engine, name):
            sid = r.get("session_id")
            if sid is not None:
                if not sid.startswith(prefix):
                    continue
                r["session_id"] = sid[len(prefix) :]
            if r.get("team_id"):
                if not team_base < r["team_id"] <= team_base + 100:
                    continue
                r["team_id"] -= team_base
            rows.append({k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()})
        out[name] = sorted(rows, key=repr)
    return out


def test_bulk_rollups_equal_the_sums_of_the_rows_and_the_row_by_row_path(db_url: str) -> None:
    engine = open_engine(db_url)
    ingest(engine, _events(1, "A", 40))  # one batch: roll-ups paused and applied once per table (SQLite)
    for e in sorted(_events(1, "B", 40, team_base=100), key=lambda e: (e.kind != "session_start", e.ts)):
        ingest(engine, [e])  # one event at a time: the row triggers
    assert_rollups_exact(engine)
    assert rollups(engine, "A") == rollups(engine, "B", team_base=100)
    assert rollups(engine, "A")["session_model"]  # the comparison saw calls


def test_a_resent_batch_changes_nothing(db_url: str) -> None:
    engine = open_engine(db_url)
    batch = _events(2, "A", 30)
    ingest(engine, batch[: len(batch) // 2])
    ingest(engine, batch)
    before = rollups(engine)
    result = ingest(engine, batch)
    assert result.accepted == 0
    assert rollups(engine) == before
    assert_rollups_exact(engine)


def test_a_failing_ingest_leaves_no_pause_and_no_partial_rollup(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(db_url)
    ingest(engine, _events(3, "A", 10))
    before = {name: _table(engine, name) for name in SOURCES}

    def fail(*_args: Any) -> None:
        raise RuntimeError("disk gone")

    # After the events, file changes and calls are inserted, before the transaction commits.
    monkeypatch.setattr("agenttrail.store.ingest._link_agent_sessions", fail)
    with pytest.raises(RuntimeError):
        ingest(engine, _events(4, "B", 30))
    assert {name: _table(engine, name) for name in SOURCES} == before
    assert _table(engine, "rollup_pause") == []


def test_an_insert_failing_part_way_rolls_up_exactly_what_it_inserted(db_url: str) -> None:
    """Pages before the failing one stay in the transaction until the caller decides: whatever stays
    is rolled up, and the row triggers are on again for the rest of the transaction."""
    engine = open_engine(db_url)
    t = T0.replace(tzinfo=None)
    rows = [
        {
            "call_id": f"c{i}",
            "started_at": t,
            "session_id": f"s{i % 7}",
            "provider": "p",
            "status": "ok",
            "cost_usd": 0.5,
        }
        for i in range(3000)
    ]
    rows[-1]["provider"] = None  # NOT NULL: fails on the last page (SQLite) or the one statement (PostgreSQL)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            conn.exec_driver_sql("SAVEPOINT before_insert")
        with pytest.raises(Exception, match=r"(?i)null"):
            insert_rows(conn, llm_call, rows)
        if not sqlite:
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT before_insert")
        assert conn.execute(text("SELECT COUNT(*) FROM rollup_pause")).scalar() == 0
        if sqlite:  # the row triggers set aside for the insert are back
            assert len(rollup_pause.row_triggers(conn, "llm_call")) == 3
        insert_rows(conn, llm_call, [{**rows[0], "call_id": "one-more", "provider": "p"}])  # row triggers
        conn.commit()
    assert_rollups_exact(engine)
    # SQLite inserts pages of 1,000 rows: the two before the failing one stayed; PostgreSQL's one
    # statement failed whole.
    assert len(_table(engine, "llm_call")) == (2001 if sqlite else 1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    sessions=st.integers(1, 25),
    cuts=st.lists(st.floats(0, 1), max_size=3),
    min_rows=st.sampled_from((1, 8, 100, 10**9)),
)
def test_random_batches_roll_up_exactly(
    sqlite_url: str, seed: int, sessions: int, cuts: list[float], min_rows: int
) -> None:
    engine = open_engine(sqlite_url)
    with engine.begin() as conn:
        for name in SOURCES:
            conn.execute(text(f"DELETE FROM {name}"))
    events = _events(seed, f"h{seed}-", sessions)
    bounds = sorted({0, len(events), *(int(c * len(events)) for c in cuts)})
    old = rollup_pause.MIN_ROWS
    rollup_pause.MIN_ROWS = min_rows
    try:
        for lo, hi in itertools.pairwise(bounds):
            ingest(engine, events[lo:hi])
    finally:
        rollup_pause.MIN_ROWS = old
    assert_rollups_exact(engine)


def _rollup_writes(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Rows the triggers wrote for inserting `rows` (SQLite's change counter counts trigger writes too)."""
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        before = raw.total_changes
        insert_rows(conn, llm_call, rows)
        return int(raw.total_changes - before) - len(rows)


def test_sqlite_rolls_a_bulk_insert_up_once_and_a_small_one_row_by_row(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    n = rollup_pause.MIN_ROWS
    rows = _call_rows(2 * n)
    # One session, day and month: the batch writes each roll-up row once (and its pause row twice);
    # row by row, every call writes each of them.
    assert _rollup_writes(engine, rows[:n]) <= 10
    small = rows[n : 2 * n - 1]
    assert _rollup_writes(engine, small) >= 3 * len(small)
    with engine.connect() as conn:  # the row triggers are back
        assert len(rollup_pause.row_triggers(conn, "llm_call")) == 3
    assert_rollups_exact(engine)


def test_0010_down_and_up(db_url: str) -> None:
    engine = open_engine(db_url)
    ingest(engine, _events(5, "A", 10))
    with engine.connect() as conn:
        cfg = alembic_config(conn)
        command.downgrade(cfg, "0009")
        conn.commit()
        assert not inspect(conn).has_table("rollup_pause")
    with engine.begin() as conn:  # the row triggers of 0003 and 0005 as they were (a batch too small to pause)
        rows = _call_rows(rollup_pause.MIN_ROWS - 1)
        insert_rows(conn, llm_call, [{**r, "call_id": f"down{i}"} for i, r in enumerate(rows)])
    assert_rollups_exact(engine)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
    ingest(engine, _events(6, "B", 10))
    assert_rollups_exact(engine)
    assert _table(engine, "rollup_pause") == []


def _link(engine: Engine, links: list[tuple[int, str]]) -> None:
    """Merged PRs (made when missing) and their session links, as linking and the webhook insert them:
    one statement for the batch (the bulk insert's path at 100 rows or more)."""
    t = T0.replace(tzinfo=None)
    prs = [{"id": p, "repo": f"git/r{p % 3}", "number": p, "merged_at": t} for p in sorted({p for p, _ in links})]
    with engine.begin() as conn:
        insert_rows(conn, pull_request, prs, ignore=True)
        insert_rows(conn, pr_session, [{"pr_id": p, "session_id": s, "how": "sha"} for p, s in links], ignore=True)


def _calls(seed: int, session_ids: list[str], n: int) -> list[Event]:
    """More calls of sessions already stored (or not yet): their cost changes after they were linked."""
    rng = random.Random(seed)
    return [
        Event(sid, "llm_call", T0 + timedelta(hours=5, seconds=i), {"record": _record(rng, 1, f"late{seed}-{i}")})
        for i, sid in enumerate(rng.choice(session_ids) for _ in range(n))
    ]


def test_week_and_pr_rollups_follow_links_costs_and_moves(db_url: str) -> None:
    """Links before and after their sessions, in bulk and one at a time; calls after the links; a
    re-sent batch; sessions moved to another team, repo and agent, and one deleted: session_week and pr_team stay equal
    to the sums of the rows at every step."""
    engine = open_engine(db_url)
    rng = random.Random(7)
    ingest(engine, _events(11, "A", 60))
    stored = [f"A{i}" for i in range(60)]
    late = [f"L{i}" for i in range(20)]
    # 150 links in one statement, sessions reaching one to three PRs, some sessions not yet stored.
    bulk = {(rng.randrange(1, 40), rng.choice(stored + late)) for _ in range(150)}
    _link(engine, sorted(bulk))
    assert_rollups_exact(engine)
    for _ in range(5):  # one at a time
        _link(engine, [(rng.randrange(1, 45), rng.choice(stored))])
    assert_rollups_exact(engine)
    calls = _calls(12, stored + late, 150)
    ingest(engine, calls)  # after the links: every linked session's share in each of its PRs changes
    for e in _calls(13, stored, 5):
        ingest(engine, [e])
    assert_rollups_exact(engine)
    ingest(engine, _events(14, "L", 20))  # the late sessions arrive after their links
    assert_rollups_exact(engine)
    before = rollups(engine)
    assert ingest(engine, calls).accepted == 0
    assert rollups(engine) == before
    with engine.begin() as conn:  # a session's attribution corrected (an importer's join does this)
        conn.execute(
            text("UPDATE agent_session SET team_id = 9, repo = NULL, agent = 'codex' WHERE session_id IN ('A1', 'L2')")
        )
    assert_rollups_exact(engine)
    with engine.begin() as conn:  # a session folded into another (the importers' relink deletes its row)
        conn.execute(text("DELETE FROM session_rollup WHERE session_id IN (SELECT MIN(session_id) FROM pr_session)"))
    assert_week_and_pr_rollups_exact(engine)  # (its events stay, unlike relink's: the rest would not match)
    weeks, teams = expected_week_and_pr_rollups(engine)
    assert any(k[5] == 4 for k in weeks) and any(k[1] == 9 for k in teams)  # the moves were seen
    assert sum(t["sessions"] for t in teams.values()) > 100
    assert len(_table(engine, "pr_team")) >= len(teams) and len(_table(engine, "session_week")) >= len(weeks)


def test_the_link_triggers_lock_sessions_as_ingest_does(pg_url: str) -> None:
    """PostgreSQL's link trigger takes `store.locks`' session locks: its key function is theirs."""
    from agenttrail.store.locks import _int4

    ids = ["s1", "claude-code:asid-1", "", "sé-ß-会话", "x" * 64]
    with open_engine(pg_url).connect() as conn:
        got = [conn.execute(text("SELECT at_session_lock_key(:s)"), {"s": s}).scalar() for s in ids]
    assert got == [_int4(s) for s in ids]


def test_a_link_to_a_session_being_ingested_waits_instead_of_deadlocking(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ingest holds its session's roll-up row (its counted events) and goes on to its calls (the
    calls' lock); a PR link to that session arrives meanwhile (link-prs, the webhook). The link waits
    for the ingest's session lock before it takes the calls' lock or touches the row: without that,
    PostgreSQL aborted one of them ("deadlock detected")."""
    from agenttrail.importers import join

    from .test_concurrent_ingest import Sender, _waiting_on_a_lock, run_in_turn

    engine = open_engine(pg_url)
    ingest(engine, [Event("S", "session_start", T0, {"engineer": "e@x", "team_id": 1, "repo": "r"}, "S-start")])
    _link(engine, [(2, "other")])  # PR 1 is made below, with the link

    class Linker(Sender):
        def work(self) -> None:
            _link(self.engine, [(1, "S")])

    rng = random.Random(3)
    batch = [Event("S", "exec", T0, {"argv": ["make"]}, "S-exec")]
    # Ingest's own call (not a transcript's, whose calls' lock comes before the hold).
    batch += [Event("S", "llm_call", T0, {"record": {**_record(rng, 1, "S-call"), "source": "demo"}}, "S-call")]
    ingester, linker = Sender(pg_url, batch), Linker(pg_url, [])
    real = join.materialise

    def held(conn: Any, fresh: Any, who: Any) -> Any:
        """The ingest, its event rows in, waits until the link is blocked or done."""
        if conn.engine is ingester.engine:
            ingester.reached.set()
            while not (linker.done.is_set() or _waiting_on_a_lock(engine, linker.pid)):
                linker.done.wait(0.01)  # a poll of a definite condition, not a guess at a duration
        return real(conn, fresh, who)

    monkeypatch.setattr(join, "materialise", held)
    run_in_turn(ingester, linker)
    assert_rollups_exact(engine)
    assert _table(engine, "pr_team")[0]["sessions"] == 1
