"""The time limit and row cap of read-only SQL: a limit that is no limit is refused, on both databases."""

from __future__ import annotations

import pytest

from agenttrail.query.readonly_sql import SQLRefused, run_sql
from agenttrail.store.database import open_engine


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("nan")])
def test_a_time_limit_must_be_positive(db_url: str, timeout_s: float) -> None:
    # PostgreSQL reads statement_timeout = 0 as "no limit": a client could lift the server's cap.
    with pytest.raises(SQLRefused, match="time limit must be a positive number of seconds"):
        run_sql(open_engine(db_url), "SELECT 1", timeout_s=timeout_s)


def test_a_tiny_time_limit_is_still_a_limit(pg_url: str) -> None:
    with pytest.raises(SQLRefused, match="ran past the time limit"):
        run_sql(open_engine(pg_url), "SELECT pg_sleep(2)", timeout_s=0.0001)


def test_a_row_cap_cannot_be_negative(db_url: str) -> None:
    with pytest.raises(SQLRefused, match="row cap must be 0 or more"):
        run_sql(open_engine(db_url), "SELECT 1", max_rows=-1)
    assert run_sql(open_engine(db_url), "SELECT 1", max_rows=0).truncated


def test_comments_before_the_statement_are_not_its_first_word(db_url: str) -> None:
    engine = open_engine(db_url)
    for empty in ("/* nothing */", "-- only a note", " ; "):
        with pytest.raises(SQLRefused, match="empty statement"):  # was "/* is refused"
            run_sql(engine, empty)
    assert run_sql(engine, "/* why */ -- and how\nSELECT 1 AS one").rows == [(1,)]
    with pytest.raises(SQLRefused, match="DELETE is refused"):
        run_sql(engine, "/* x */ DELETE FROM teams")
