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
    ensured: bool = False
    last_used: float = 0.0
    # One store trip at a time per counter in this process: each trip then sees the settlements the
    # previous one wrote, so calls that ended here are never invisible to an admission here.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
        return self.db_spent + self.db_reserved + self.u_spent - self.u_release

    @property
    def spent(self) -> int:
        return self.db_spent + self.u_spent


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
class _Plan:
    """One account's trip to the store: the settlements it carries (in transit until the store has
    them) and, for an admission, the call's reservation."""

    acc: Account
    amount: int = 0  # the call's reservation (0 for a flush)
    claim: Claim | None = None
    d_spent: int = 0
    rel: int = 0
    over: int = 0
    give_back: int = 0
    inc: int = 0
    need: int | None = None  # the guard; None: unconditional
    exact: bool = False
    applied: bool = False

    def take(self) -> None:
        """Move the account's unwritten settlements into this plan."""
        a = self.acc
        self.d_spent += a.u_spent
        self.rel += a.u_release
        self.over += a.u_over
        a.held -= a.u_release
        a.u_spent = a.u_release = a.u_over = 0

    def give_back_idle(self) -> None:
        a = self.acc
        idle = max(0, a.held - a.inflight)
        self.give_back += idle
        a.held -= idle

    def decide(self, *, force_exact: bool) -> None:
        """Lease (reserve this call plus a slice ahead) far from the limit; exact near it."""
        a = self.acc
        idle = max(0, a.held - a.inflight)
        headroom = a.limit - (a.db_spent + a.db_reserved + self.d_spent - self.rel - self.give_back)
        want = max(0, self.amount + a.lease - idle)
        if not force_exact and a.lease > 0 and headroom - want >= a.exact_within:
            self.exact = False
            self.inc = want
            self.need = want  # a lease never takes the committed total past the limit
        else:
            # Give back what this process leased, so it blocks nobody, and admit only while
            # spent + reserved < limit: the exact cap.
            self.exact = True
            self.give_back_idle()
            self.inc = self.amount
            self.need = 1
        # Promised to this call now, so no other call can use it; the increase in what this process
        # holds counts only once the store has granted it (see passed), or another call could be
        # admitted against a lease the store then refuses.
        a.inflight += self.amount

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
        self.d_spent = self.rel = self.over = self.give_back = 0

    def failed(self) -> None:
        """The guard failed: nothing reached the store; drop the tentative reservation."""
        self.acc.inflight -= self.amount
        self.inc = 0
        self.need = None

    def restore(self) -> None:
        """The statement did not run: put the settlements back for a later flush."""
        a = self.acc
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
    ) -> None:
        self.store = CounterStore(engine)
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
        # Called with an account whenever its stored values were read back (alerts watch spend).
        self.listeners: list[Callable[[Account], None]] = []
        self.gone: set[CounterId] = set()  # rows that cannot exist: their budget was removed
        self.statements = 0  # store round trips for admissions, for tests and the benchmark

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
        ticket = Ticket()
        plans: list[_Plan] = []
        for c in claims:
            if c.cid in self.gone:
                continue
            acc = self.account(c)
            acc.last_used = now
            if acc.can_admit_locally(c.amount):
                acc.inflight += c.amount  # inside this process's lease: no round trip
                ticket.items.append((acc, c.amount))
            else:
                plans.append(_Plan(acc, c.amount, c))
        if not plans:
            return ticket
        try:
            await self._reserve_in_store(plans)
        except BaseException:
            for acc, amount in ticket.items:
                acc.inflight -= amount
            raise
        ticket.items.extend((p.acc, p.amount) for p in plans if p.acc.cid not in self.gone)
        return ticket

    async def _reserve_in_store(self, plans: list[_Plan]) -> None:
        await self._ensure([p.acc for p in plans])
        plans[:] = [p for p in plans if p.acc.cid not in self.gone]
        if not plans:
            return
        async with contextlib.AsyncExitStack() as locks:
            for acc in sorted((p.acc for p in plans), key=_order):  # one order: no lock cycles
                await locks.enter_async_context(acc.lock)
            await self._reserve_locked(plans)

    async def _reserve_locked(self, plans: list[_Plan]) -> None:
        todo = []
        for p in plans:
            if p.acc.can_admit_locally(p.amount):
                # The trip this call waited for leased enough for it too.
                p.acc.inflight += p.amount
                p.applied = True
            else:
                p.take()
                p.decide(force_exact=False)
                todo.append(p)
        if not todo:
            return
        await self._run(todo)
        refused = [p for p in plans if not p.applied and p.exact]
        retry = [p for p in plans if not p.applied and not p.exact]
        if retry and not refused:
            # The lease did not fit, but the call itself may: ask again, exactly.
            for p in retry:
                p.take()
                p.decide(force_exact=True)
            await self._run(retry)
            refused = [p for p in retry if not p.applied]
        if refused:
            await self._refuse(plans, refused)

    async def _run(self, plans: list[_Plan]) -> None:
        self.statements += 1
        try:
            result = await to_thread.run_sync(self.store.apply, self.owner, [p.delta() for p in plans])
        except Exception as e:
            for p in plans:
                if not p.applied:
                    p.failed()
                    p.restore()
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from e
        for p in plans:
            got = result.get(p.acc.cid)
            if got is not None:
                p.passed(*got)
                self._notify(p.acc)
            else:
                p.failed()

    async def _refuse(self, plans: list[_Plan], refused: list[_Plan]) -> None:
        """The call is refused: write the settlements the plans carried, give back the exact
        reservations that passed (a granted lease stays leased), and raise Refused."""
        flush: list[_Plan] = []
        for p in plans:
            if not p.applied:
                p.need = None
                flush.append(p)
            elif p.exact:
                f = _Plan(p.acc)
                p.acc.inflight -= p.amount
                p.acc.held -= p.amount
                f.give_back = p.amount
                flush.append(f)
            else:
                p.acc.inflight -= p.amount
        try:
            result = await to_thread.run_sync(self.store.apply, self.owner, [f.delta() for f in flush])
        except Exception:
            log.warning("could not write settlements while refusing a call; they stay queued", exc_info=True)
            for f in flush:
                f.restore()
            result = {}
        for f in flush:
            got = result.get(f.acc.cid)
            if got is not None:
                f.passed(*got)
                self._notify(f.acc)
        first = refused[0]
        assert first.claim is not None
        if result and first.acc.cid not in result:
            self.gone.add(first.acc.cid)  # the row vanished mid-call: its budget was removed
        raise Refused(first.claim, first.acc.db_spent + first.acc.u_spent, first.acc.db_reserved)

    async def _ensure(self, accounts: list[Account]) -> None:
        if not self._registered:
            await to_thread.run_sync(self.store.register, self.owner, _naive(self.clock))
            self._registered = True
        missing = [a for a in accounts if not a.ensured]
        if not missing:
            return
        try:
            gone = await to_thread.run_sync(self.store.ensure, [a.cid for a in missing])
        except Exception as e:
            raise StoreUnavailable(f"{type(e).__name__}: {e}") from e
        self.gone |= gone
        for a in missing:
            a.ensured = a.cid not in gone

    # -- settlement -------------------------------------------------------------------------------

    def settle(self, ticket: Ticket, actual: Mapping[CounterId, int]) -> None:
        """Record what the call used; in memory, written by the next flush. Runs once per ticket."""
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
            self._wake.set()

    async def flush(self, *, release_all: bool = False) -> None:
        """Write settlements; give back leases idle for `lease_idle_s` (all of them with release_all)."""
        now = self._mono()
        due: list[Account] = []
        for acc in list(self._accounts.values()):
            if acc.lock.locked():
                continue  # an admission is writing this counter now, settlements included
            if self._due(acc, now, release_all):
                due.append(acc)
            elif not acc.held and not acc.inflight and now - acc.last_used >= 30 * max(self.lease_idle_s, 1.0):
                del self._accounts[acc.cid]  # nothing held, long unused: forget it
        if not due:
            return
        await self._ensure([a for a in due if not a.ensured])
        async with contextlib.AsyncExitStack() as locks:
            for acc in sorted(due, key=_order):  # the admissions' order: no lock cycles
                await locks.enter_async_context(acc.lock)
            plans: list[_Plan] = []
            for acc in due:
                if not self._due(acc, now, release_all):
                    continue  # an admission that held the lock wrote it meanwhile
                p = _Plan(acc)
                p.take()
                if release_all or now - acc.last_used >= self.lease_idle_s:
                    p.give_back_idle()
                plans.append(p)
            if not plans:
                return
            try:
                result = await to_thread.run_sync(self.store.apply, self.owner, [p.delta() for p in plans])
            except Exception:
                for p in plans:
                    p.restore()
                raise
            for p in plans:
                got = result.get(p.acc.cid)
                if got is not None:
                    p.passed(*got)
                    self._notify(p.acc)
                elif p.acc.cid.table == "budget":
                    # The budget was removed with its rows: there is nothing left to write to.
                    self.gone.add(p.acc.cid)
                    p.d_spent = p.rel = p.over = p.give_back = 0
                else:
                    p.restore()

    def _due(self, acc: Account, now: float, release_all: bool) -> bool:
        idle_lease = acc.held - acc.inflight - acc.u_release > 0
        stale = release_all or now - acc.last_used >= self.lease_idle_s
        return bool(acc.u_spent or acc.u_release or (idle_lease and stale))

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


def _order(acc: Account) -> tuple[str, str, datetime]:
    return (acc.cid.table, acc.cid.key, acc.cid.window)


def _naive(clock: Clock) -> datetime:
    return clock.now().astimezone(UTC).replace(tzinfo=None)
