"""Admission against shared counters (budgets, rate limits), exact at the cap and fast far from it.

Every counter row has `spent` (what settled calls used) and `reserved` (what admitted calls may still
use). A call reserves its worst case at admission and settles its actual amount at completion. A call
is admitted while the counter's committed total `spent + reserved` is below the limit, checked and
reserved in one atomic conditional UPDATE, so concurrent calls (in one process or many) cannot both
take the last headroom.

Far from the limit the store is not asked on every call: a process *leases* a slice of headroom
(reserving it in the store like a call would) and admits calls against it in memory. Near the limit
(within `exact_within` of it) every admission goes to the store and a process gives back what it
leased, so the cap is exact. A lease never pushes the committed total past the limit, so leasing does
not widen the overshoot bound (docs/governance.md):

    final spent <= limit + largest single reservation + sum over calls in flight of max(0, actual - reserved)

Settlement is in memory and written in batches (`flush`), off the request path. This process's own
view of a counter always includes its unwritten settlements, so a call that starts after another
ended in the same process sees that call's cost.

One driver task per process makes every store trip, one at a time: admissions that need the store
queue up while a trip is out and all go in the next one, as one statement (group admission). So a
trip always sees what the previous one wrote, a busy process makes few large trips instead of many
small ones, and calls near the limit are still admitted exactly as if one at a time: a batch passes
a counter only if its last call would have been admitted after all the others; otherwise its calls
are retried one by one.

All accounting runs on the event loop (no locks needed); store work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from sqlalchemy import Engine

from agenttrail.clock import Clock
from agenttrail.governance.counters import CounterId, CounterStore, Delta

log = logging.getLogger("agenttrail.governance")


@dataclass(frozen=True, slots=True)
class Claim:
    cid: CounterId
    limit: int
    amount: int  # the call's worst case, reserved at admission
    lease: int = 0  # how much headroom a process may hold ahead of calls (0: ask the store every time)
    exact_within: int = 0  # below this much headroom every admission asks the store


@dataclass(slots=True)
class Account:
    """One counter row as this process sees it."""

    cid: CounterId
    limit: int
    lease: int
    exact_within: int
    held: int = 0  # what this process holds in the row's `reserved`
    inflight: int = 0  # reservations of this process's admitted, unsettled calls
    u_spent: int = 0  # settled here, not yet written: actual amounts …
    u_release: int = 0  # … and the reservations they free
    u_over: int = 0  # how far those calls went past their reservations
    db_spent: int = 0  # the row as last read back
    db_reserved: int = 0
    # Taken by a trip and not yet acknowledged by the store: counted, or a decision made meanwhile (the
    # soft-budget downgrade reads `spent`) saw the call as not yet spent.
    t_spent: int = 0
    t_release: int = 0
    ensured: bool = False
    last_used: float = 0.0

    def can_admit_locally(self, amount: int) -> bool:
        # Only against a lease the store granted (held > 0): an account never synced with the store
        # knows nothing of what other processes, or earlier runs, have spent.
        return (
            self.lease > 0
            and self.held > 0
            and self.free >= amount
            and self.limit - self.committed >= self.exact_within
        )

    @property
    def free(self) -> int:
        """Leased headroom not promised to a call (overdrafts count against it until written)."""
        return self.held - self.inflight - self.u_release - self.u_over

    @property
    def committed(self) -> int:
        """spent + reserved in the store, as it will be once this process's settlements are written."""
        return self.db_spent + self.db_reserved + self.t_spent - self.t_release + self.u_spent - self.u_release

    @property
    def spent(self) -> int:
        return self.db_spent + self.t_spent + self.u_spent


@dataclass(slots=True)
class Ticket:
    """What an admitted call holds; settle it exactly once."""

    items: list[tuple[Account, int]] = field(default_factory=list)
    settled: bool = False


class Refused(Exception):
    """A counter is at its limit. `spent` and `reserved` are the store's values after this process's
    pending settlements were written."""

    def __init__(self, claim: Claim, spent: int, reserved: int) -> None:
        super().__init__(f"{claim.cid} is at its limit: {spent} + {reserved} of {claim.limit}")
        self.claim = claim
        self.spent = spent
        self.reserved = reserved


class StoreUnavailable(Exception):
    """The counters could not be read or written."""


@dataclass(slots=True)
class _Req:
    """A call waiting for the driver."""

    claims: list[tuple[Account, Claim]]
    fut: asyncio.Future[None]
    # 0: may lease; 1: a lease did not fit, so exactly, still batched; 2: an exact batch did not fit, so
    # alone (its result is then what it would have been one call at a time).
    stage: int = 0
    items: list[tuple[Account, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Leg:
    """One counter in one trip: the settlements it carries (in transit until the store has them) and
    the reservations of the calls riding on it."""

    acc: Account
    amounts: list[int] = field(default_factory=list)
    d_spent: int = 0
    rel: int = 0
    over: int = 0
    give_back: int = 0
    inc: int = 0
    need: int | None = None  # the guard; None: unconditional
    exact: bool = False
    applied: bool = False

    @property
    def total(self) -> int:
        return sum(self.amounts)

    def take(self) -> None:
        """Move the account's unwritten settlements into this leg."""
        a = self.acc
        self.d_spent += a.u_spent
        self.rel += a.u_release
        self.over += a.u_over
        a.t_spent += a.u_spent
        a.t_release += a.u_release
        a.held -= a.u_release
        a.u_spent = a.u_release = a.u_over = 0

    def landed(self) -> None:
        """What this leg took is no longer in transit: written, put back, or its row is gone."""
        self.acc.t_spent -= self.d_spent
        self.acc.t_release -= self.rel

    def give_back_idle(self) -> None:
        a = self.acc
        idle = max(0, a.held - a.inflight)
        self.give_back += idle
        a.held -= idle

    def decide(self, *, force_exact: bool) -> None:
        """Lease (reserve these calls plus a slice ahead) far from the limit; exact near it."""
        a = self.acc
        total = self.total
        idle = max(0, a.held - a.inflight)
        headroom = a.limit - (a.db_spent + a.db_reserved + self.d_spent - self.rel - self.give_back)
        want = max(0, total + a.lease - idle)
        if not force_exact and a.lease > 0 and headroom - want >= a.exact_within:
            self.exact = False
            self.inc = want
            self.need = want  # a lease never takes the committed total past the limit
        else:
            # Give back what this process leased, so it blocks nobody, and admit only while
            # spent + reserved < limit for the last call after all the others: the exact cap.
            self.exact = True
            self.give_back_idle()
            self.inc = total
            self.need = total - self.amounts[-1] + 1
        # Promised to these calls now, so no other call can use it; what this process holds grows
        # only once the store has granted it (passed), or a call could be admitted against a lease
        # the store then refuses.
        a.inflight += total

    def delta(self) -> Delta:
        return Delta(
            self.acc.cid,
            spent=self.d_spent,
            reserved=-self.rel - self.give_back + self.inc,
            pre=self.d_spent - self.rel - self.give_back,
            need=self.need,
            limit=self.acc.limit,
        )

    def passed(self, spent: int, reserved: int) -> None:
        a = self.acc
        a.db_spent, a.db_reserved = spent, reserved
        a.held += self.inc
        self.applied = True
        self.landed()
        self.d_spent = self.rel = self.over = self.give_back = 0

    def failed(self) -> None:
        """The guard failed, so nothing reached the store: drop the reservations, and put the
        settlements back for the next trip."""
        a = self.acc
        a.inflight -= self.total
        self.inc = 0
        self.need = None
        self.restore()

    def restore(self) -> None:
        a = self.acc
        self.landed()
        a.u_spent += self.d_spent
        a.u_release += self.rel
        a.u_over += self.over
        a.held += self.rel + self.give_back
        self.d_spent = self.rel = self.over = self.give_back = 0


class Ledger:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        flush_interval_s: float = 0.2,
        lease_idle_s: float = 2.0,
        heartbeat_s: float = 5.0,
        dead_after_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        owner: str | None = None,
        synchronous_commit: bool = True,
    ) -> None:
        self.store = CounterStore(engine, synchronous_commit=synchronous_commit)
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.flush_interval_s = flush_interval_s
        self.lease_idle_s = lease_idle_s
        self.heartbeat_s = heartbeat_s
        self.dead_after_s = dead_after_s
        self._mono = monotonic
        self._accounts: dict[CounterId, Account] = {}
        self._registered = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_heartbeat = monotonic()
        self._last_sweep = monotonic()
        self._queue: list[_Req] = []
        self._flush_waiters: list[tuple[bool, asyncio.Future[None]]] = []
        self._flush_wanted = False
        self._driver: asyncio.Task[None] | None = None
        self._trips = asyncio.Lock()  # the driver's trips, and the rare write made outside them
        # Called with an account whenever its stored values were read back (alerts watch spend).
        self.listeners: list[Callable[[Account], None]] = []
        self.gone: set[CounterId] = set()  # rows that cannot exist: their budget was removed
        self.statements = 0  # store round trips that carried admissions (tests, the benchmark)
        self.batched = 0  # admissions that shared a round trip with others

    # -- accounts ---------------------------------------------------------------------------------

    def account(self, claim: Claim) -> Account:
        acc = self._accounts.get(claim.cid)
        if acc is None:
            acc = Account(claim.cid, claim.limit, claim.lease, claim.exact_within)
            self._accounts[claim.cid] = acc
        else:  # a changed limit takes effect with the next call
            acc.limit, acc.lease, acc.exact_within = claim.limit, claim.lease, claim.exact_within
        return acc

    def peek(self, cid: CounterId) -> Account | None:
        return self._accounts.get(cid)

    def forget(self, table: str, key: str) -> None:
        """A budget was removed or replaced: its rows went with it, so must this process's view."""
        for cid in [c for c in self._accounts if c.table == table and c.key == key]:
            del self._accounts[cid]
        self.gone = {c for c in self.gone if not (c.table == table and c.key == key)}

    # -- admission --------------------------------------------------------------------------------

    async def reserve(self, claims: Sequence[Claim]) -> Ticket:
        """Admit a call against every claim, or raise Refused or StoreUnavailable (keeping nothing)."""
        now = self._mono()
        pairs: list[tuple[Account, Claim]] = []
        for c in claims:
            if c.cid in self.gone:
                continue
            acc = self.account(c)
            acc.last_used = now
            pairs.append((acc, c))
        if all(acc.can_admit_locally(c.amount) for acc, c in pairs):
            for acc, c in pairs:  # inside this process's leases: no round trip
                acc.inflight += c.amount
            return Ticket([(acc, c.amount) for acc, c in pairs])
        req = _Req(pairs, asyncio.get_running_loop().create_future())
        self._queue.append(req)
        self._kick()
        await req.fut
        return Ticket(req.items)

    def _kick(self) -> None:
        if self._driver is None or self._driver.done():
            self._driver = asyncio.get_running_loop().create_task(self._drive(), name="agenttrail-ledger-driver")

    async def _drive(self) -> None:
        """Make trips while there is work: every queued admission, flush and settlement goes in the next."""
        while self._queue or self._flush_waiters or self._flush_wanted:
            if self._queue and self._queue[0].stage == 2:
                reqs = [self._queue.pop(0)]
            else:
                reqs = [r for r in self._queue if r.stage < 2]
                self._queue = [r for r in self._queue if r.stage == 2]
            waiters, self._flush_waiters = self._flush_waiters, []
            flush = bool(waiters) or self._flush_wanted
            self._flush_wanted = False
            release_all = any(r for r, _ in waiters)
            try:
                async with self._trips:
                    await self._trip(reqs, flush=flush, release_all=release_all)
            except Exception as e:
                err = e if isinstance(e, StoreUnavailable) else StoreUnavailable(f"{type(e).__name__}: {e}")
                for req in reqs:
                    if not req.fut.done():
                        req.fut.set_exception(err)
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            for _, fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _trip(self, reqs: list[_Req], *, flush: bool, release_all: bool) -> None:
        now = self._mono()
        await self._ensure([acc for req in reqs for acc, _ in req.claims])
        legs: dict[CounterId, _Leg] = {}
        riding: list[tuple[_Req, list[_Leg]]] = []
        exact_cids: set[CounterId] = set()
        for req in reqs:
            req.claims = [(acc, c) for acc, c in req.claims if acc.cid not in self.gone]
            if req.stage == 0 and all(acc.can_admit_locally(c.amount) for acc, c in req.claims):
                # The trip this call waited for leased enough for it too.
                for acc, c in req.claims:
                    acc.inflight += c.amount
                self._admitted(req, [(acc, c.amount) for acc, c in req.claims])
                continue
            mine = []
            for acc, c in req.claims:
                leg = legs.setdefault(acc.cid, _Leg(acc))
                leg.amounts.append(c.amount)
                mine.append(leg)
                if req.stage > 0:
                    exact_cids.add(acc.cid)
            riding.append((req, mine))
        if flush:
            self._collect_garbage(now)
        for acc in self._accounts.values():  # settlements (and, on a flush, idle leases) ride along
            if acc.cid not in legs and acc.cid not in self.gone and self._due(acc, now, flush, release_all):
                legs[acc.cid] = _Leg(acc)
        if not legs:
            return
        await self._ensure([leg.acc for leg in legs.values()])
        for leg in legs.values():
            leg.take()
            if leg.amounts:
                leg.decide(force_exact=leg.acc.cid in exact_cids)
            elif release_all or (flush and now - leg.acc.last_used >= self.lease_idle_s):
                leg.give_back_idle()
        if riding:
            self.statements += 1
            self.batched += len(riding) - 1
        await self._apply(list(legs.values()))
        refused: list[tuple[_Req, Claim]] = []
        retry: list[_Req] = []
        release: set[CounterId] = set()
        for req, mine in riding:
            if all(leg.applied for leg in mine):
                self._admitted(req, [(acc, c.amount) for acc, c in req.claims])
                continue
            for (_, c), leg in zip(req.claims, mine, strict=True):
                if leg.applied:
                    leg.acc.inflight -= c.amount  # its share stays held, idle: given back next trip
                    if leg.exact:
                        release.add(leg.acc.cid)
            failing = [c for (_, c), leg in zip(req.claims, mine, strict=True) if not leg.applied]
            exact_failed = any(leg.exact for leg in mine if not leg.applied)
            if exact_failed and (req.stage == 2 or len(riding) == 1):
                refused.append((req, failing[0]))  # alone and exact: refused as it would be alone
            else:
                # The lease, or the batch, did not fit; exactly (and then alone) this call may.
                req.stage = 2 if exact_failed else max(1, req.stage)
                retry.append(req)
        self._queue[:0] = [r for r in retry if r.stage == 2] + [r for r in retry if r.stage < 2]
        if refused:
            await self._refuse(refused, release)

    def _admitted(self, req: _Req, items: list[tuple[Account, int]]) -> None:
        if req.fut.cancelled():  # the caller went away: nothing will settle this call
            for acc, amount in items:
                acc.inflight -= amount
                acc.u_release += amount
            return
        req.items = items
        req.fut.set_result(None)

    async def _refuse(self, refused: list[tuple[_Req, Claim]], release: set[CounterId]) -> None:
        """Write the refusing counters' settlements (so the refusal quotes current figures), give back
        what refused calls had reserved exactly elsewhere, then refuse. A budget whose row has gone
        meanwhile (it was removed) is forgotten by `_apply`."""
        cids = {c.cid for _, c in refused} | release
        legs = [_Leg(self._accounts[cid]) for cid in cids if cid in self._accounts]
        for leg in legs:
            leg.take()
            if leg.acc.cid in release:
                leg.give_back_idle()
        try:
            await self._apply(legs)
        except Exception:
            log.warning("could not write settlements while refusing a call; they stay queued", exc_info=True)
        for req, claim in refused:
            acc = self._accounts.get(claim.cid)
            if not req.fut.done():
                spent = acc.spent if acc else 0
                req.fut.set_exception(Refused(claim, spent, acc.db_reserved if acc else 0))

    async def _apply(self, legs: list[_Leg]) -> None:
        try:
            result = await to_thread.run_sync(self.store.apply, self.owner, [leg.delta() for leg in legs])
        except Exception:
            for leg in legs:
                leg.acc.inflight -= leg.total
                leg.restore()
            raise
        for leg in legs:
            got = result.get(leg.acc.cid)
            if got is not None:
                leg.passed(*got)
                self._notify(leg.acc)
            elif leg.need is None and leg.acc.cid.table == "budget":
                # An unconditional write found no row: the budget was removed with its rows.
                self.gone.add(leg.acc.cid)
                leg.acc.inflight -= leg.total
                leg.landed()
                leg.d_spent = leg.rel = leg.over = leg.give_back = 0
            else:
                leg.failed()

    async def _ensure(self, accounts: list[Account]) -> None:
        if not self._registered:
            await to_thread.run_sync(self.store.register, self.owner, _naive(self.clock))
            self._registered = True
        missing = list({id(a): a for a in accounts if not a.ensured}.values())
        if not missing:
            return
        gone = await to_thread.run_sync(self.store.ensure, [a.cid for a in missing])
        self.gone |= gone
        for a in missing:
            a.ensured = a.cid not in gone

    # -- settlement -------------------------------------------------------------------------------

    def settle(self, ticket: Ticket, actual: Mapping[CounterId, int]) -> None:
        """Record what the call used; in memory, written by the next trip. Runs once per ticket."""
        if ticket.settled:
            return
        ticket.settled = True
        now = self._mono()
        urgent = False
        for acc, reserved in ticket.items:
            used = max(0, actual.get(acc.cid, 0))
            acc.inflight -= reserved
            acc.u_spent += used
            acc.u_release += reserved
            acc.u_over += max(0, used - reserved)
            acc.last_used = now
            # Near the limit other processes decide from the store: write promptly.
            urgent = urgent or acc.lease == 0 or acc.limit - acc.committed < acc.exact_within
        if urgent:
            self._flush_wanted = True
            with contextlib.suppress(RuntimeError):  # no running loop: the next trip writes it
                self._kick()

    async def flush(self, *, release_all: bool = False) -> None:
        """Write settlements; give back leases idle for `lease_idle_s` (all of them with release_all)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((release_all, fut))
        self._kick()
        await fut

    def _due(self, acc: Account, now: float, flush: bool, release_all: bool) -> bool:
        if acc.u_spent or acc.u_release:
            return True
        idle_lease = acc.held - acc.inflight > 0
        return idle_lease and (release_all or (flush and now - acc.last_used >= self.lease_idle_s))

    def _collect_garbage(self, now: float) -> None:
        for acc in list(self._accounts.values()):
            quiet = now - acc.last_used >= 30 * max(self.lease_idle_s, 1.0)
            if quiet and not (acc.held or acc.inflight or acc.u_spent or acc.u_release):
                del self._accounts[acc.cid]  # nothing held, long unused: forget it

    def _notify(self, acc: Account) -> None:
        for listener in self.listeners:
            try:
                listener(acc)
            except Exception:
                log.exception("a ledger listener failed")

    # -- the background writer and process liveness -------------------------------------------------

    async def start(self) -> None:
        await to_thread.run_sync(self.store.register, self.owner, _naive(self.clock))
        self._registered = True
        self._task = asyncio.create_task(self._loop(), name="agenttrail-ledger")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        try:
            await self.flush(release_all=True)
            # Whatever is still held (calls cut off by the shutdown) goes back with the registration.
            await to_thread.run_sync(self.store.release_owner, self.owner, None)
        except Exception:
            log.exception("could not return this process's holdings; another process will after %ss", self.dead_after_s)
        self.store.close()

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
                now = self._mono()
                if now - self._last_heartbeat >= self.heartbeat_s:
                    self._last_heartbeat = now
                    await self.heartbeat()
                if now - self._last_sweep >= self.dead_after_s / 2:
                    self._last_sweep = now
                    await self.sweep()
            except Exception as e:  # the store is down: keep everything, try again
                log.warning("governance counters not written yet: %s", e)
                await asyncio.sleep(min(self.flush_interval_s * 5, 2.0))

    async def heartbeat(self) -> None:
        alive = await to_thread.run_sync(self.store.heartbeat, self.owner, _naive(self.clock))
        if alive or not self._registered:
            return
        # Another process judged this one dead (no heartbeat for dead_after_s) and returned its
        # holdings. Re-register and hold again what is still held here. Calls admitted while this
        # process was written off may have overshot; the log says so.
        log.error("this process's governance holdings were released by another process; restoring them")
        async with self._trips:
            await to_thread.run_sync(self.store.register, self.owner, _naive(self.clock))
            stored = await to_thread.run_sync(self.store.holdings, self.owner)
            deltas = [
                Delta(a.cid, reserved=a.held - stored.get(a.cid, 0), limit=a.limit)
                for a in self._accounts.values()
                if a.held != stored.get(a.cid, 0)
            ]
            await to_thread.run_sync(self.store.apply, self.owner, deltas)

    async def sweep(self) -> int:
        """Return the holdings of processes whose heartbeat stopped `dead_after_s` ago."""
        cutoff = _naive(self.clock) - timedelta(seconds=self.dead_after_s)
        owners = await to_thread.run_sync(self.store.dead_owners, self.owner, cutoff)
        released = 0
        for owner in owners:
            n = await to_thread.run_sync(self.store.release_owner, owner, cutoff)
            if n:
                log.warning("returned %d holdings of server process %s, which stopped without settling", n, owner)
            released += n
        return released


def _naive(clock: Clock) -> datetime:
    return clock.now().astimezone(UTC).replace(tzinfo=None)
