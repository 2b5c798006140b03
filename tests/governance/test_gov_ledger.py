"""The ledger on a real store (SQLite and PostgreSQL): exact cap, leases, the overshoot bound under
concurrency within one process and across two, dead processes' holdings, store failures."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from agenttrail.clock import FixedClock
from agenttrail.governance.budgets import set_budget
from agenttrail.governance.counters import BUDGET, COUNTER, CounterId
from agenttrail.governance.ledger import Claim, Ledger, Refused, StoreUnavailable
from agenttrail.store import org
from agenttrail.store.database import open_engine

WINDOW = datetime(2026, 11, 1)
NOW = datetime(2026, 11, 5, tzinfo=UTC)


def _budget(engine: Engine, limit: int, team: str = "payments") -> CounterId:
    with contextlib.suppress(org.DirectoryError):
        org.add_team(engine, team)
    b = set_budget(engine, scope="team", target=team, limit_nanos=limit, period="month", now=datetime(2026, 1, 1))
    return CounterId(BUDGET, str(b.id), WINDOW)


def _row(engine: Engine, cid: CounterId) -> tuple[int, int]:
    with engine.connect() as conn:
        r = conn.execute(
            text("SELECT spent_nanos, reserved_nanos FROM budget_spend WHERE budget_id = :b"), {"b": int(cid.key)}
        ).one()
    return int(r[0]), int(r[1])


@pytest.mark.parametrize("lease", [0, 10])
async def test_the_cap_is_exact(db_url: str, lease: int) -> None:
    engine = open_engine(db_url)
    cid = _budget(engine, 100)
    ledger = Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=100, amount=0, lease=lease, exact_within=20)
    t = await ledger.reserve([claim])
    ledger.settle(t, {cid: 99})
    t = await ledger.reserve([claim])  # spent 99 < 100: admitted
    ledger.settle(t, {cid: 1})
    with pytest.raises(Refused) as e:  # spent 100 >= 100: refused
        await ledger.reserve([claim])
    assert (e.value.spent, e.value.reserved) == (100, 0)
    await ledger.flush(release_all=True)
    assert _row(engine, cid) == (100, 0)


async def test_far_from_the_limit_a_lease_saves_round_trips(db_url: str) -> None:
    engine = open_engine(db_url)
    limit = 1_000_000_000
    cid = _budget(engine, limit)
    ledger = Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=limit, amount=100_000, lease=limit // 100, exact_within=limit // 20)
    for _ in range(50):
        t = await ledger.reserve([claim])
        ledger.settle(t, {cid: 90_000})
    assert ledger.statements <= 2
    # The lease is held in the store like a reservation, so other processes see it.
    spent, reserved = _row(engine, cid)
    assert spent == 0 and reserved >= limit // 100
    await ledger.flush(release_all=True)
    assert _row(engine, cid) == (50 * 90_000, 0)
    assert sum(ledger.store.holdings(ledger.owner).values()) == 0


async def _fire(ledger: Ledger, claim: Claim, actual: int, until_refused: int) -> tuple[int, int]:
    """One client: call until refused `until_refused` times; returns (admitted, refused)."""
    admitted = refused = 0
    while refused < until_refused:
        try:
            t = await ledger.reserve([claim])
        except Refused:
            refused += 1
            continue
        admitted += 1
        await asyncio.sleep(random.random() / 1000)  # the call runs; others interleave
        ledger.settle(t, {claim.cid: actual})
    return admitted, refused


@pytest.mark.parametrize("processes", [1, 2])
async def test_concurrent_calls_stay_within_the_documented_bound(db_url: str, processes: int) -> None:
    """50 clients (split over one or two ledgers, as over server processes) call until refused.
    Spend ends at most one worst case past the limit: the calls' actual cost is below their
    reservation, so the bound is limit + largest reservation."""
    engine = open_engine(db_url)
    limit, reservation, actual = 5_000_000, 150_000, 101_250
    cid = _budget(engine, limit)
    ledgers = [Ledger(engine, FixedClock(NOW)) for _ in range(processes)]
    claim = Claim(cid, limit=limit, amount=reservation, lease=limit // 100, exact_within=limit // 20)
    results = await asyncio.gather(*(_fire(ledgers[i % processes], claim, actual, 2) for i in range(50)))
    for ledger in ledgers:
        await ledger.flush(release_all=True)
    spent, reserved = _row(engine, cid)
    admitted = sum(a for a, _ in results)
    assert reserved == 0
    assert spent == admitted * actual
    assert spent <= limit + reservation, f"overshoot {spent - limit} beyond one reservation"
    # And the budget was really used: the refusals came at the limit, not long before it.
    assert spent >= limit - 50 * (reservation - actual) - reservation


async def test_calls_that_cost_more_than_reserved_are_bounded_by_the_excess(db_url: str) -> None:
    """A provider may bill past the estimate (a longer prompt than estimated): the bound then adds the
    excess of the calls in flight; each client is refused once spend reaches the limit."""
    engine = open_engine(db_url)
    limit, reservation, actual = 1_000_000, 1_000, 40_000
    cid = _budget(engine, limit)
    ledger = Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=limit, amount=reservation, lease=limit // 100, exact_within=limit // 20)
    clients = 20
    await asyncio.gather(*(_fire(ledger, claim, actual, 1) for _ in range(clients)))
    await ledger.flush(release_all=True)
    spent, _ = _row(engine, cid)
    assert spent <= limit + reservation + clients * (actual - reservation)
    with pytest.raises(Refused):
        await ledger.reserve([claim])


async def test_a_refusal_by_one_counter_keeps_nothing_of_the_others(db_url: str) -> None:
    engine = open_engine(db_url)
    roomy = _budget(engine, 10_000, "payments")
    spent_out = _budget(engine, 10, "search")
    ledger = Ledger(engine, FixedClock(NOW))
    first = await ledger.reserve([Claim(spent_out, 10, 0)])
    ledger.settle(first, {spent_out: 10})
    claims = [Claim(roomy, 10_000, 500), Claim(spent_out, 10, 5)]
    with pytest.raises(Refused) as e:
        await ledger.reserve(claims)
    assert e.value.claim.cid == spent_out and e.value.spent == 10
    assert _row(engine, roomy) == (0, 0)
    acc = ledger.peek(roomy)
    assert acc is not None and (acc.held, acc.inflight) == (0, 0)


async def test_concurrency_counters_hold_one_unit_per_call(db_url: str) -> None:
    engine = open_engine(db_url)
    cid = CounterId(COUNTER, "concurrency:key:1", datetime(1970, 1, 1))
    a, b = Ledger(engine, FixedClock(NOW)), Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=2, amount=1)
    t1 = await a.reserve([claim])
    t2 = await b.reserve([claim])
    with pytest.raises(Refused) as e:
        await a.reserve([claim])
    assert e.value.reserved == 2
    b.settle(t2, {})
    await b.flush()
    t3 = await a.reserve([claim])
    a.settle(t1, {})
    a.settle(t3, {})
    await a.flush()
    assert a.store.read([cid])[cid] == (0, 0)


async def test_a_dead_process_holdings_are_returned_by_another(db_url: str) -> None:
    engine = open_engine(db_url)
    limit = 1_000_000_000
    cid = _budget(engine, limit)
    clock = FixedClock(NOW)
    dead = Ledger(engine, clock, dead_after_s=60)
    claim = Claim(cid, limit=limit, amount=1_000, lease=limit // 100, exact_within=limit // 20)
    await dead.reserve([claim])  # admitted with a lease, never settled: the process "dies"
    assert _row(engine, cid)[1] > 0
    alive = Ledger(engine, clock, dead_after_s=60)
    await alive.reserve([Claim(cid, limit, 0, lease=0)])
    assert await alive.sweep() == 0  # not stale yet
    clock.advance(seconds=61)
    await alive.heartbeat()
    assert await alive.sweep() == 1
    assert _row(engine, cid)[1] == 0  # alive holds nothing (lease=0, settled nothing yet)... only its call
    assert await alive.sweep() == 0  # nothing left to return, however often it runs
    # The written-off process notices and holds again what it still holds.
    await dead.heartbeat()
    acc = dead.peek(cid)
    assert acc is not None and _row(engine, cid)[1] == acc.held


async def test_a_failing_store_refuses_cleanly_and_loses_no_settlement(db_url: str) -> None:
    engine = open_engine(db_url)
    cid = _budget(engine, 1_000)
    ledger = Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=1_000, amount=10)
    t = await ledger.reserve([claim])
    ledger.settle(t, {cid: 7})
    real = ledger.store.apply

    def broken(*a: object, **k: object) -> object:
        raise OSError("database went away")

    ledger.store.apply = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await ledger.reserve([claim])
    with pytest.raises(StoreUnavailable):
        await ledger.flush()
    acc = ledger.peek(cid)
    assert acc is not None and (acc.u_spent, acc.u_release, acc.inflight) == (7, 10, 0)
    assert (acc.spent, acc.t_spent, acc.t_release) == (7, 0, 0)
    ledger.store.apply = real  # type: ignore[method-assign]
    await ledger.flush(release_all=True)
    assert _row(engine, cid) == (7, 0)


async def test_a_settlement_on_its_way_to_the_store_still_counts(db_url: str) -> None:
    """While a trip writes a settlement, `spent` (which the soft-budget downgrade reads) and `committed`
    still hold it: they dropped it until the store answered, and a call routed meanwhile saw the budget
    as if the last call had cost nothing (CI: a downgrade at 50% did not happen)."""
    engine = open_engine(db_url)
    cid = _budget(engine, 1_000)
    ledger = Ledger(engine, FixedClock(NOW))
    t = await ledger.reserve([Claim(cid, limit=1_000, amount=10)])
    ledger.settle(t, {cid: 7})
    acc = ledger.peek(cid)
    assert acc is not None
    before = (acc.spent, acc.committed)
    real = ledger.store.apply
    inside, go_on = threading.Event(), threading.Event()

    def slow(*a: object, **k: object) -> object:
        inside.set()
        go_on.wait(30)
        return real(*a, **k)  # type: ignore[arg-type]

    ledger.store.apply = slow  # type: ignore[method-assign]
    flush = asyncio.create_task(ledger.flush())
    assert await asyncio.to_thread(inside.wait, 30)
    assert acc.u_spent == 0 and (acc.spent, acc.committed) == before == (7, 7)
    go_on.set()
    await flush
    assert (acc.spent, acc.committed, acc.t_spent, acc.t_release) == (7, 7, 0, 0)
    assert _row(engine, cid) == (7, 0)


async def test_a_new_period_starts_from_zero(db_url: str) -> None:
    engine = open_engine(db_url)
    nov = _budget(engine, 100)
    dec = CounterId(BUDGET, nov.key, datetime(2026, 12, 1))
    ledger = Ledger(engine, FixedClock(NOW))
    t = await ledger.reserve([Claim(nov, 100, 0)])
    ledger.settle(t, {nov: 100})
    with pytest.raises(Refused):
        await ledger.reserve([Claim(nov, 100, 0)])
    t = await ledger.reserve([Claim(dec, 100, 0)])
    ledger.settle(t, {dec: 1})
    await ledger.flush(release_all=True)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT spent_nanos FROM budget_spend ORDER BY period_start")).all()
    assert [r[0] for r in rows] == [100, 1]
    assert timedelta(0) == timedelta(0)


@pytest.mark.parametrize("amount", [0, 10])
async def test_a_fresh_process_sees_what_was_spent_before_it_started(db_url: str, amount: int) -> None:
    """A process that has never been to the store holds no lease, so it cannot admit locally, even a
    call whose price is unknown (amount 0)."""
    engine = open_engine(db_url)
    cid = _budget(engine, 1_000_000)
    claim = Claim(cid, limit=1_000_000, amount=amount, lease=10_000, exact_within=50_000)
    first = Ledger(engine, FixedClock(NOW))
    t = await first.reserve([claim])
    first.settle(t, {cid: 1_000_000})
    await first.flush(release_all=True)
    fresh = Ledger(engine, FixedClock(NOW))
    with pytest.raises(Refused) as e:
        await fresh.reserve([claim])
    assert e.value.spent == 1_000_000


async def test_calls_waiting_together_share_a_trip_and_stay_exact(db_url: str) -> None:
    """Twenty calls arrive at once, exactly at the cap's edge: they go to the store together, the batch
    does not fit, and one by one exactly ten are admitted (0, 10, … 90 are below 100)."""
    engine = open_engine(db_url)
    cid = _budget(engine, 100)
    ledger = Ledger(engine, FixedClock(NOW))
    claim = Claim(cid, limit=100, amount=10)
    results = await asyncio.gather(*(ledger.reserve([claim]) for _ in range(20)), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 10
    assert all(isinstance(r, Refused) for r in results if isinstance(r, BaseException))
    assert _row(engine, cid) == (0, 100)
    # Far from a limit, calls that arrive together are admitted in one trip.
    roomy = CounterId(BUDGET, _budget(engine, 10**12, "search").key, WINDOW)
    before = ledger.statements
    await asyncio.gather(*(ledger.reserve([Claim(roomy, 10**12, 1000)]) for _ in range(50)))
    assert ledger.statements - before <= 2 and ledger.batched >= 48
