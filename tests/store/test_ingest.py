"""Ingest is idempotent by event id and materialises sessions, file changes and commits once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import DateTime, Engine, bindparam, text

from agenttrail.events import Event
from agenttrail.store.database import open_engine
from agenttrail.store.event_fields import BadEvent
from agenttrail.store.ingest import Attribution, ingest, iso_week

T0 = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


def _session_events(sid: str = "s1") -> list[Event]:
    return [
        Event(
            sid,
            "session_start",
            T0,
            {
                "engineer": "ana@example.com",
                "repo": "github.com/acme/api",
                "branch": "main",
                "agent": "claude-code",
                "command": ["claude"],
            },
        ),
        Event(sid, "exec", T0 + timedelta(seconds=1), {"argv": ["ls"]}),
        Event(sid, "exec", T0 + timedelta(seconds=2), {"argv": ["pytest"]}),
        Event(
            sid,
            "file_create",
            T0 + timedelta(seconds=3),
            {"source": "snapshot", "path": "a.py", "lines_added": 3, "diff": "+a\n+b\n+c\n"},
        ),
        Event(
            sid,
            "file_write",
            T0 + timedelta(seconds=3),
            {"source": "snapshot", "path": "b.py", "lines_added": 1, "lines_removed": 2},
        ),
        Event(sid, "file_write", T0 + timedelta(seconds=2), {"path": "b.py"}),  # strace's, not a change row
        Event(sid, "commit", T0 + timedelta(seconds=4), {"sha": "abc123", "message": "x", "files": ["a.py"]}),
        Event(sid, "session_end", T0 + timedelta(minutes=5), {"exit_code": 0, "head_after": "abc123"}),
    ]


def _one(engine, sql: str):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text(sql)).mappings().all()


def test_ingest_twice_changes_nothing(db_url: str) -> None:
    engine = open_engine(db_url)
    evs = _session_events()
    first = ingest(engine, evs, Attribution(engineer="ana@example.com"))
    assert (first.accepted, first.duplicates) == (len(evs), 0)
    again = ingest(engine, evs + evs[:2])
    assert (again.accepted, again.duplicates) == (0, len(evs) + 2)
    s = _one(engine, "SELECT * FROM sessions")
    assert len(s) == 1
    row = s[0]
    assert row["week"] == iso_week(T0) == "2026-W19"
    assert (row["files_created"], row["files_modified"], row["files_changed"]) == (1, 1, 2)
    assert (row["lines_added"], row["lines_removed"], row["commands"]) == (4, 2, 2)
    assert row["engineer"] == "ana@example.com" and row["agent"] == "claude-code"
    assert abs(float(row["duration_s"]) - 300.0) < 1e-3
    assert len(_one(engine, "SELECT * FROM commits")) == 1
    assert len(_one(engine, "SELECT * FROM events")) == len(evs)


def test_end_before_start_still_makes_one_complete_session(db_url: str) -> None:
    engine = open_engine(db_url)
    evs = _session_events("s2")
    ingest(engine, [evs[-1]])
    ingest(engine, evs[:-1])
    rows = _one(engine, "SELECT session_id, started_at, ended_at, agent, exit_code FROM sessions")
    assert len(rows) == 1
    assert rows[0]["agent"] == "claude-code" and rows[0]["exit_code"] == 0
    assert str(rows[0]["started_at"]).startswith("2026-05-06 09:00:00")


def test_seed_query_runs_as_written(db_url: str) -> None:
    engine = open_engine(db_url)
    ingest(engine, _session_events("s3"))
    q = (
        "SELECT engineer, repo, SUM(cost_usd), SUM(files_changed) FROM sessions WHERE week = '2026-W19' "
        "GROUP BY engineer, repo"
    )
    rows = _one(engine, q)
    assert len(rows) == 1 and list(rows[0].values())[:2] == ["ana@example.com", "github.com/acme/api"]


def test_secrets_are_redacted_before_storage(db_url: str) -> None:
    engine = open_engine(db_url)
    aws = "AKIA" + "Q3EGTZLXN4KJ7WVB"
    gh = "ghp_" + "x7Kq2LmN9pR4sT6vW8yZ1aB3cD5eF7gH9iJ0"
    ingest(
        engine,
        [
            Event("s9", "exec", T0, {"argv": ["curl", "-H", f"Authorization: token {gh}", "https://api.github.com"]}),
            Event("s9", "prompt", T0, {"text": f"deploy with AWS_ACCESS_KEY_ID={aws} please"}),
        ],
    )
    stored = " ".join(r["payload"] for r in _one(engine, "SELECT payload FROM events"))
    assert aws not in stored and gh not in stored
    assert "[REDACTED:" in stored and "deploy with" in stored


def _gateway_call(engine: Engine, **values: object) -> None:
    from agenttrail.store.tables import llm_call

    with engine.begin() as conn:
        conn.execute(
            llm_call.insert().values(started_at=datetime(2026, 5, 6, 9, 1), provider="anthropic", status="ok", **values)
        )


def test_agent_session_id_learnt_at_the_end_is_kept(db_url: str) -> None:
    engine = open_engine(db_url)
    # A gateway call made with the engineer's own key, before the session ends.
    _gateway_call(engine, call_id="c1", agent_session_id="cc-77", cost_usd=0.5)
    evs = _session_events("s10")
    evs[-1] = Event("s10", "session_end", T0 + timedelta(minutes=5), {"exit_code": 0, "agent_session_id": "cc-77"})
    ingest(engine, evs)
    (row,) = _one(engine, "SELECT agent_session_id FROM sessions WHERE session_id = 's10'")
    assert row["agent_session_id"] == "cc-77"
    (s,) = _one(engine, "SELECT calls, cost_usd FROM sessions WHERE session_id = 's10'")
    assert (s["calls"], float(s["cost_usd"])) == (1, 0.5)


def _org_events(prefix: str) -> list[Event]:
    """Three sessions with calls, files and commits; one never ends, one repeats its start."""
    out: list[Event] = []
    for i in range(3):
        sid = f"{prefix}{i}"
        evs = _session_events(sid)
        for e in evs:
            if e.kind == "commit":
                e.payload["sha"] = f"{prefix}sha{i}"
        calls = [
            Event(sid, "llm_call", T0 + timedelta(seconds=10 + k), {"record": _record(f"{prefix}-req-{i}-{k}", k)})
            for k in range(3)
        ]
        out += evs[:-1] + calls + ([evs[-1]] if i != 1 else [])
    # A second start for session 2, later: its fields overwrite the first one's.
    out.append(Event(f"{prefix}2", "session_start", T0 + timedelta(seconds=1), {"branch": "fix", "agent": "codex"}))
    return out


def _record(request_id: str, k: int) -> dict[str, object]:
    model = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-sonnet-4-5")[k]
    return {
        "provider": "anthropic",
        "model": model,
        "request_id": request_id,
        "input_tokens": 100 * (k + 1),
        "output_tokens": 10,
        "cost_usd": 0.25 * (k + 1),
        "source": "transcript",
    }


def test_one_batch_stores_what_the_events_one_by_one_store(db_url: str) -> None:
    engine = open_engine(db_url)
    ingest(engine, _org_events("Pa"), Attribution(engineer="ana@example.com", team_id=None))
    for e in sorted(_org_events("Pb"), key=lambda e: (e.kind != "session_start", e.ts)):
        ingest(engine, [e], Attribution(engineer="ana@example.com"))

    def rows(prefix: str, sql: str) -> list[dict[str, object]]:
        out = []
        for r in _one(engine, sql):
            d = {
                k: ("?" + v[len(prefix) :] if isinstance(v, str) and v.startswith(prefix) else v) for k, v in r.items()
            }
            out.append(d)
        return sorted(out, key=repr)

    sessions = "SELECT * FROM sessions WHERE session_id LIKE '{p}%'"
    calls = "SELECT session_id, model, request_id, input_tokens, cost_usd FROM llm_calls WHERE request_id LIKE '{p}-%'"
    for sql in (sessions, calls, "SELECT * FROM commits WHERE session_id LIKE '{p}%'"):
        assert rows("Pa", sql.format(p="Pa")) == rows("Pb", sql.format(p="Pb"))
    (two,) = _one(
        engine, "SELECT branch, agent, model, calls, cost_usd, ended_at FROM sessions WHERE session_id = 'Pa2'"
    )
    assert (two["branch"], two["agent"], two["model"], two["calls"]) == ("fix", "codex", "claude-sonnet-4-5", 3)
    assert abs(float(two["cost_usd"]) - 1.5) < 1e-9 and two["ended_at"] is not None
    (one,) = _one(engine, "SELECT ended_at FROM sessions WHERE session_id = 'Pa1'")
    assert one["ended_at"] is None


def test_a_call_the_gateway_recorded_counts_once_however_many_copies_a_batch_brings(db_url: str) -> None:
    engine = open_engine(db_url)
    _gateway_call(engine, call_id="gw1", request_id="req-gw", cost_usd=0.5, input_tokens=100)
    evs = _session_events("s20")
    evs += [Event("s20", "llm_call", T0, {"record": _record("req-gw", 0)}) for _ in range(2)]
    evs += [Event("s20", "llm_call", T0, {"record": _record("req-new", 1)}) for _ in range(2)]
    ingest(engine, evs)
    got = _one(engine, "SELECT call_id, session_id, request_id FROM llm_calls ORDER BY request_id")
    assert [(r["session_id"], r["request_id"]) for r in got] == [("s20", "req-gw"), ("s20", "req-new")]
    assert got[0]["call_id"] == "gw1"
    (s,) = _one(engine, "SELECT calls, cost_usd FROM sessions WHERE session_id = 's20'")
    assert (s["calls"], float(s["cost_usd"])) == (2, 1.0)


def test_times_made_text_before_the_sqlite_writer_are_stored_as_the_store_makes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`prepare(sqlite=True)` (a server's request thread) formats the times the writer would: the same
    text, in UTC, which SQLAlchemy reads back and compares as it does any other row's."""
    from zoneinfo import ZoneInfo

    from agenttrail.store.ingest import ingest_prepared, prepare

    berlin = datetime(2026, 5, 6, 11, 0, 0, 250_000, tzinfo=ZoneInfo("Europe/Berlin"))
    evs = [
        Event("s1", "exec", T0, {"argv": ["ls"]}, "e-utc"),
        Event("s1", "exec", berlin, {"argv": ["ls"]}, "e-berlin"),
        Event("s1", "exec", T0 + timedelta(microseconds=7), {"argv": ["ls"]}, "e-micro"),
    ]
    stored = {}
    for text_times in (False, True):
        engine = open_engine(f"sqlite:///{tmp_path}/t{text_times}.db")
        assert ingest_prepared(engine, prepare(evs, sqlite=text_times)).accepted == 3
        with engine.connect() as c:
            raw = c.execute(text("SELECT event_id, CAST(ts AS TEXT) FROM event ORDER BY event_id")).all()
            later = text("SELECT event_id FROM event WHERE ts > :t ORDER BY event_id")
            after = c.execute(later.bindparams(bindparam("t", type_=DateTime)), {"t": datetime(2026, 5, 6, 9)}).all()
        stored[text_times] = (raw, after)
    assert stored[True] == stored[False]
    raw, after = stored[True]
    assert dict(raw)["e-berlin"] == "2026-05-06 09:00:00.250000"  # 11:00 in Berlin in May is 09:00 UTC
    assert [r[0] for r in after] == ["e-berlin", "e-micro"]


def test_a_nul_character_is_stored_as_u_fffd_on_both_databases(db_url: str) -> None:
    """PostgreSQL's text cannot hold a NUL, and refused the whole batch for one (a 503 an outbox resends
    for ever); a damaged transcript or a client's `\\u0000` brings one into any text field."""
    engine = open_engine(db_url)
    nul = "a\x00b"
    evs = [
        Event("n1", "session_start", T0, {"repo": nul, "cwd": "/w/" + nul, "agent": "codex", "x\x00": [nul]}),
        Event("n1", "file_write", T0, {"source": "snapshot", "path": nul, "diff": "+" + nul, "lines_added": 1}),
        Event("n1", "commit", T0, {"sha": "c0ffee", "message": nul, "author": nul}),
        Event("n1", "llm_call", T0, {"record": {**_record("req-nul", 0), "model": nul, "error": nul}}),
        Event("n1", "session_end", T0 + timedelta(minutes=1), {"status": nul, "exit_code": 0}),
    ]
    assert ingest(engine, evs).accepted == len(evs)
    fixed = "a\ufffdb"
    (s,) = _one(engine, "SELECT repo, cwd, status FROM sessions WHERE session_id = 'n1'")
    assert (s["repo"], s["cwd"], s["status"]) == (fixed, "/w/" + fixed, fixed)
    (f,) = _one(engine, "SELECT path, diff FROM file_changes WHERE session_id = 'n1'")
    assert (f["path"], f["diff"]) == (fixed, "+" + fixed)
    (c,) = _one(engine, "SELECT message, author FROM commits WHERE session_id = 'n1'")
    assert (c["message"], c["author"]) == (fixed, fixed)
    (m,) = _one(engine, "SELECT model FROM llm_calls WHERE request_id = 'req-nul'")
    assert m["model"] == fixed
    payloads = [r["payload"] for r in _one(engine, "SELECT payload FROM events WHERE session_id = 'n1'")]
    assert len(payloads) == len(evs) and all("\\u0000" not in p and "\x00" not in p for p in payloads)
    assert any('"x\ufffd":["a\ufffdb"]' in p for p in payloads)
    assert ingest(engine, evs).duplicates == len(evs)


def test_an_event_id_or_session_id_with_a_nul_is_refused_by_name(db_url: str) -> None:
    engine = open_engine(db_url)
    for bad in (Event("s\x00", "exec", T0, {"argv": ["ls"]}), Event("s", "exec", T0, {"argv": ["ls"]}, "e\x00")):
        with pytest.raises(BadEvent, match=r"event 1 .*must not contain a NUL"):
            ingest(engine, [Event("s", "exec", T0, {"argv": ["pwd"]}), bad])
    assert _one(engine, "SELECT COUNT(*) AS n FROM events")[0]["n"] == 0
