"""The gateway's governance policy: routing, the cache, rate limits and budgets, in that order.

`admit` resolves the model (alias, then soft-budget downgrade), answers from the cache when it can,
and otherwise reserves the call's worst case against every rate limit and budget that covers it in
one ledger operation (usually no store round trip at all). `settle` hands the ledger what the call
used. Two optional capabilities the gateway looks for: `fallback_models` (the models to try if the
upstream fails) and `tap_response` (the cache sees complete answers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal

from starlette.responses import Response

from agenttrail.clock import Clock
from agenttrail.gateway.call import Call
from agenttrail.gateway.errors import GatewayError
from agenttrail.governance.alerts import Alerter
from agenttrail.governance.budgets import (
    NANOS,
    Budget,
    BudgetBook,
    BudgetSettings,
    Estimate,
    budget_cid,
    budget_claim,
    refusal_message,
)
from agenttrail.governance.cache import ResponseCache, request_key
from agenttrail.governance.counters import CounterId
from agenttrail.governance.ledger import Claim, Ledger, Refused, StoreUnavailable, Ticket
from agenttrail.governance.limits import LimitClaim, Limiter
from agenttrail.governance.limits import refusal_message as limit_message
from agenttrail.governance.periods import Window, Windows
from agenttrail.governance.routing import Router
from agenttrail.pricing import Pricer
from agenttrail.usage import Usage

log = logging.getLogger("agenttrail.governance")


@dataclass(slots=True)
class Grant:
    """What an admitted call holds, kept on `call.reservation` until it settles."""

    ticket: Ticket
    budgets: list[CounterId] = field(default_factory=list)
    limits: list[LimitClaim] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    cache_key: str | None = None


class GovernancePolicy:
    def __init__(
        self,
        *,
        clock: Clock,
        pricer: Pricer,
        ledger: Ledger,
        book: BudgetBook,
        budget_settings: BudgetSettings,
        tz: tzinfo,
        limiter: Limiter,
        router: Router,
        cache: ResponseCache,
        alerter: Alerter | None = None,
    ) -> None:
        self.clock = clock
        self.pricer = pricer
        self.ledger = ledger
        self.book = book
        self.budget_settings = budget_settings
        self.tz = tz
        self.windows = Windows(tz)
        self.limiter = limiter
        self.router = router
        self.cache = cache
        self.alerter = alerter
        cache.pricer = pricer  # the cache prices an answer it keeps: the gateway prices after sending
        self.refusals = 0
        # A budget that was removed or replaced takes this process's counters for it along.
        book.on_change.append(lambda old, new: ledger.forget("budget", str(old.id)) if old else None)

    async def admit(self, call: Call) -> Response | None:
        if call.key is None or not call.endpoint.billable:
            return None
        self.router.resolve_alias(call)
        now = self.clock.now()
        await self.book.refresh_if_stale()
        covering = [(b, self.windows.get(b.period, now)) for b in self.book.covering(call.key)]
        if covering and self.router.settings.downgrade:
            self.router.downgrade(call, [(b.label, self._spent_pct(b, w)) for b, w in covering])
        cache_key = None
        if self.cache.applies(call):
            cache_key = request_key(call)
            hit = await self.cache.lookup(call, cache_key)
            if hit is not None:
                return hit  # costs nothing upstream: no budget or limit is charged
        fallbacks = self.router.fallbacks(call.model)
        est = Estimate.of(call.endpoint.name, call.body or {}, self.budget_settings.default_max_output_tokens)
        # Reserved at the dearest model the call may end up on, so a fallback cannot widen the bound.
        worst = max(est.cost(self.pricer, call.provider, m) for m in [call.model, *fallbacks])
        if covering and worst == 0 and call.model:
            self._refuse_unpriced(call, covering[0][0])
        limit_claims = self.limiter.claims(call.key, now, est.tokens_in + est.tokens_out)
        claims: list[Claim] = [lc.claim for lc in limit_claims]
        claims += [budget_claim(b, w, worst, self.budget_settings) for b, w in covering]
        grant = Grant(Ticket(), [c.cid for c in claims[len(limit_claims) :]], limit_claims, fallbacks, cache_key)
        if claims:
            try:
                grant.ticket = await self.ledger.reserve(claims)
            except Refused as r:
                self.refusals += 1
                raise self._refusal(r, covering, limit_claims, now) from None
            except StoreUnavailable as e:
                if self.budget_settings.on_store_error == "admit":
                    log.error("admitting a call without checking budgets or limits: %s", e)
                else:
                    raise GatewayError(
                        503,
                        "the gateway cannot check budgets and rate limits right now (its database is "
                        "unavailable); try again shortly",
                        record_status="error",
                        retry=True,
                        retry_after_s=5,
                    ) from None
        call.reservation = grant
        return None

    def _refuse_unpriced(self, call: Call, b: Budget) -> None:
        """A model with no known price costs $0 in agenttrail's books: under a budget it would go
        through unmetered (the provider bills it all the same). Refused, saying how to price it."""
        if self.pricer.price(call.provider, call.model, Usage(output_tokens=1)).known:
            return  # a free model
        self.refusals += 1
        raise GatewayError(
            403,
            f'agenttrail has no price for model "{call.model}", so the {b.label} cannot be enforced on it: '
            f'use a model it prices, or ask an admin to add [prices."{call.model}"] (input and output, USD '
            "per million tokens) to the server's agenttrail.toml",
            code="model_not_priced",
            retry=False,
            record_status="refused",
        )

    def _spent_pct(self, b: Budget, w: Window) -> float:
        acc = self.ledger.peek(budget_cid(b, w))
        if acc is None or b.limit_nanos <= 0:
            return 0.0 if b.limit_nanos > 0 else 100.0
        return acc.spent * 100 / b.limit_nanos

    def _refusal(
        self, r: Refused, covering: list[tuple[Budget, Window]], limits: list[LimitClaim], now: datetime
    ) -> GatewayError:
        cid = r.claim.cid
        for b, w in covering:
            if budget_cid(b, w) == cid:
                return GatewayError(
                    429,
                    refusal_message(b, w, r.spent, r.reserved),
                    code="budget_exceeded",
                    retry=False,  # retrying cannot help until the period resets or the limit is raised
                    retry_after_s=w.seconds_left(now),
                    record_status="refused",
                )
        for lc in limits:
            if lc.claim.cid == cid:
                msg, wait = limit_message(lc, r.spent, r.reserved, now)
                # Retrying after the wait does help: leave retrying to the client's own policy.
                return GatewayError(429, msg, code="rate_limited", retry_after_s=wait, record_status="refused")
        return GatewayError(429, f"refused by {cid}", retry=False, record_status="refused")

    async def settle(self, call: Call) -> None:
        grant = call.reservation
        if not isinstance(grant, Grant):
            return
        cost = int((call.cost_usd * Decimal(NANOS)).to_integral_value())
        actual: dict[CounterId, int] = dict.fromkeys(grant.budgets, cost)
        tokens = call.usage.total_tokens
        for lc in grant.limits:
            actual[lc.claim.cid] = {"rpm": 1, "tpm": tokens, "concurrency": 0}[lc.kind]
        self.ledger.settle(grant.ticket, actual)

    # -- optional capabilities the gateway looks for -------------------------------------------------

    def fallback_models(self, call: Call) -> list[str]:
        grant = call.reservation
        return list(grant.fallbacks) if isinstance(grant, Grant) else []

    @property
    def fallback_statuses(self) -> frozenset[int]:
        return self.router.settings.fallback_on

    def tap_response(self, call: Call, response: Response) -> Response:
        grant = call.reservation
        # An answer from a fallback model is not what the request asked for: do not keep it.
        if isinstance(grant, Grant) and grant.cache_key is not None and "fallback" not in (call.route_reason or ""):
            return self.cache.tap(call, grant.cache_key, response)
        return response
