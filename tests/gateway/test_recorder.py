"""The recorder writes each call once, however many flushes overlap."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import func, select

from agenttrail.events import new_id
from agenttrail.gateway.recorder import Recorder
from agenttrail.store.database import open_engine
from agenttrail.store.tables import llm_call


def _row() -> dict[str, object]:
    return {"call_id": new_id(), "started_at": datetime(2026, 11, 1), "provider": "anthropic", "status": "ok"}


async def test_overlapping_flushes_write_each_row_once(db_url: str) -> None:
    engine = open_engine(db_url)
    rec = Recorder(engine, batch_size=50, interval_s=60)
    for _ in range(500):
        rec.add(_row())
    await asyncio.gather(*(rec.flush() for _ in range(5)))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(llm_call)).scalar_one() == 500
    assert rec.written == 500


async def test_stop_flushes_what_is_pending(db_url: str) -> None:
    engine = open_engine(db_url)
    rec = Recorder(engine, batch_size=1000, interval_s=60)
    await rec.start()
    for _ in range(7):
        rec.add(_row())
    await rec.stop()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(llm_call)).scalar_one() == 7


async def test_a_client_s_overlong_model_name_does_not_stop_the_recording(db_url: str) -> None:
    """PostgreSQL refused the batch holding it, and the recorder retried that batch for ever, so no call
    after it was recorded either; the column now gets what fits."""
    engine = open_engine(db_url)
    rec = Recorder(engine, batch_size=10, interval_s=60)
    usual = {"model_requested": "claude-sonnet-4-5", "model": "claude-sonnet-4-5", "client": "claude-cli"}
    odd = {**_row(), "model_requested": "m" * 300, "model": "n" * 250, "client": "c" * 400}
    for row in ({**_row(), **usual}, odd, {**_row(), **usual}):  # as the gateway makes them: the same keys
        rec.add(row)
    await rec.flush()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(llm_call)).scalar_one() == 3
        got = conn.execute(
            select(llm_call.c.model_requested, llm_call.c.model, llm_call.c.client).where(
                llm_call.c.call_id == odd["call_id"]
            )
        ).one()
    assert tuple(got) == ("m" * 200, "n" * 200, "c" * 300)


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_are_written(db_url: str) -> None:
    """A row no column can hold (here a number past 64 bits) failed its whole batch, and the recorder
    retried that batch for ever: nothing after it was recorded. It is now written alone and, refused
    alone, dropped, counted and logged; the others are written."""
    engine = open_engine(db_url)
    rec = Recorder(engine, batch_size=10, interval_s=60)
    bad = {**_row(), "cost_nanos": 2**70}
    good = [_row() for _ in range(3)]
    for row in (good[0], bad, good[1], good[2]):
        rec.add({"cost_nanos": 0, **row})
    await rec.flush()
    with engine.connect() as conn:
        ids = set(conn.execute(select(llm_call.c.call_id)).scalars())
    assert ids == {r["call_id"] for r in good}
    assert (rec.written, rec.dropped) == (3, 1)
    rec.add({"cost_nanos": 0, **_row()})
    await rec.flush()  # nothing is left pending behind it
    assert rec.written == 4
