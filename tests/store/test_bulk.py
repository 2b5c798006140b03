"""Bulk inserts store what SQLAlchemy's own INSERT stores, on both databases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from agenttrail.store.bulk import insert_rows
from agenttrail.store.database import open_engine
from agenttrail.store.tables import event, file_change, llm_call

T = datetime(2026, 5, 6, 9, 0, 0)


def test_ignore_returns_only_the_rows_inserted(db_url: str) -> None:
    engine = open_engine(db_url)
    rows = [{"event_id": f"e{i}", "session_id": "s", "ts": T, "kind": "exec", "payload": "{}"} for i in range(3)]
    with engine.begin() as conn:
        assert sorted(insert_rows(conn, event, rows[:2], ignore=True, returning=event.c.event_id)) == ["e0", "e1"]
        assert insert_rows(conn, event, rows, ignore=True, returning=event.c.event_id) == ["e2"]
        assert insert_rows(conn, event, rows, ignore=True) == []
        assert conn.execute(select(event.c.event_id).order_by(event.c.event_id)).scalars().all() == ["e0", "e1", "e2"]


def test_values_and_times_read_back_as_sqlalchemy_wrote_them(db_url: str) -> None:
    engine = open_engine(db_url)
    when = [T, T.replace(microsecond=250), T.replace(second=1)]
    with engine.begin() as conn:
        # Costs mixing int and float, a keyword column (`binary`), and rows naming different columns.
        insert_rows(
            conn,
            llm_call,
            [
                {"call_id": "a", "started_at": when[0], "provider": "x", "status": "ok", "cost_usd": 0},
                {"call_id": "b", "started_at": when[1], "provider": "x", "status": "ok", "cost_usd": 0.25},
                {"call_id": "c", "started_at": when[2], "provider": "x", "status": "ok", "stream": 1},
            ],
        )
        conn.execute(
            llm_call.insert().values(call_id="d", started_at=T.replace(microsecond=100), provider="x", status="ok")
        )
        insert_rows(conn, file_change, [{"session_id": "s", "path": "a", "change": "created", "binary": True}])
        got = conn.execute(
            select(llm_call.c.call_id, llm_call.c.started_at, llm_call.c.cost_usd, llm_call.c.stream).order_by(
                llm_call.c.started_at
            )
        ).all()
        assert [tuple(r) for r in got] == [
            ("a", when[0], 0.0, False),
            ("d", T.replace(microsecond=100), 0.0, False),
            ("b", when[1], 0.25, False),
            ("c", when[2], 0.0, True),
        ]
        since = conn.execute(select(llm_call.c.call_id).where(llm_call.c.started_at >= when[1])).scalars().all()
        assert sorted(since) == ["b", "c"]
        assert conn.execute(select(file_change.c.binary, file_change.c.lines_added)).one() == (True, 0)


def test_a_nul_in_text_is_stored_as_u_fffd_and_text_cut_to_its_column(db_url: str) -> None:
    """The gateway's recorder writes client text (a requested model name) straight into columns:
    PostgreSQL refused a NUL in it, and the recorder's whole batch with it, again and again."""
    engine = open_engine(db_url)
    long_model = "m" * 500
    rows = [
        {"call_id": "n", "started_at": T, "provider": "x", "status": "ok", "model": "gpt\x00-4o", "error": "\x00"},
        {"call_id": "l", "started_at": T, "provider": "x", "status": "ok", "model": long_model},
    ]
    with engine.begin() as conn:
        insert_rows(conn, llm_call, rows)
        got = dict(conn.execute(select(llm_call.c.call_id, llm_call.c.model)).all())
        (error,) = conn.execute(select(llm_call.c.error).where(llm_call.c.call_id == "n")).one()
    assert got["n"] == "gpt\ufffd-4o" and error == "\ufffd"
    assert got["l"] == long_model[: llm_call.c.model.type.length]
    assert rows[0]["model"] == "gpt\x00-4o"  # the caller's rows are left as they were


def test_values_of_a_near_type_are_stored_as_the_column_reads_them(db_url: str) -> None:
    """A bool where a count belongs, an int cost, 0/1 for a flag and a missing column (its default):
    stored as SQLAlchemy's own INSERT stores them, on PostgreSQL through one JSON document per group."""
    engine = open_engine(db_url)
    row = {"started_at": T.replace(microsecond=999_999), "provider": "x", "status": "ok"}
    with engine.begin() as conn:
        insert_rows(
            conn,
            llm_call,
            [
                {"call_id": "a", **row, "input_tokens": True, "cost_usd": 0.1, "stream": 0},
                {"call_id": "b", **row, "input_tokens": 2**62, "cost_usd": 3, "stream": 1},
                {"call_id": "c", **row, "model": "é \\ \" ' \n \u2028 💸", "tags": '{"team": "x"}'},
            ],
            ignore=True,
        )
        c = llm_call.c
        got = conn.execute(
            select(c.call_id, c.input_tokens, c.cost_usd, c.stream, c.started_at, c.model, c.tags).order_by(c.call_id)
        ).all()
    assert [tuple(r) for r in got] == [
        ("a", 1, 0.1, False, row["started_at"], None, None),
        ("b", 2**62, 3.0, True, row["started_at"], None, None),
        ("c", 0, 0.0, False, row["started_at"], "é \\ \" ' \n \u2028 💸", '{"team": "x"}'),
    ]
