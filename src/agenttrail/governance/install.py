"""The governance part of `agenttrail serve`: builds the policy from settings and plugs it into the
gateway, with start and stop hooks for the ledger's writer, alert delivery and the cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from starlette.routing import BaseRoute

from agenttrail.governance.alerts import Alerter, AlertSettings
from agenttrail.governance.budgets import BudgetBook, BudgetSettings
from agenttrail.governance.cache import CacheSettings, ResponseCache
from agenttrail.governance.ledger import Ledger
from agenttrail.governance.limits import Limiter, LimitSettings
from agenttrail.governance.periods import zone
from agenttrail.governance.policy import GovernancePolicy
from agenttrail.governance.routing import Router, RoutingSettings
from agenttrail.server.app import Services

log = logging.getLogger("agenttrail.governance")


@dataclass
class Governance:
    policy: GovernancePolicy
    ledger: Ledger
    alerter: Alerter
    cache: ResponseCache
    book: BudgetBook


def build(svc: Services) -> Governance:
    s = svc.settings
    bs = BudgetSettings.from_settings(s)
    tz = zone(bs.timezone)
    ledger = Ledger(
        svc.engine,
        svc.clock,
        flush_interval_s=bs.flush_interval_s,
        lease_idle_s=bs.lease_idle_s,
        heartbeat_s=bs.heartbeat_s,
        dead_after_s=bs.dead_after_s,
        synchronous_commit=bs.synchronous_commit,
    )
    book = BudgetBook(svc.engine, bs.cache_ttl_s)
    alerter = Alerter(svc.engine, svc.clock, AlertSettings.from_settings(s), book, tz)
    ledger.listeners.append(alerter.watch)
    cache = ResponseCache(svc.engine, svc.clock, CacheSettings.from_settings(s))
    policy = GovernancePolicy(
        clock=svc.clock,
        pricer=svc.pricer,
        ledger=ledger,
        book=book,
        budget_settings=bs,
        tz=tz,
        limiter=Limiter(LimitSettings.from_settings(s)),
        router=Router(RoutingSettings.from_settings(s)),
        cache=cache,
        alerter=alerter,
    )
    return Governance(policy, ledger, alerter, cache, book)


def install(svc: Services) -> list[BaseRoute]:
    gov = build(svc)
    svc.gateway.policy = gov.policy
    redelivery: list[asyncio.Task[None]] = []

    async def start() -> None:
        await gov.ledger.start()
        redelivery.append(asyncio.create_task(_redeliver(gov), name="agenttrail-alert-redelivery"))

    async def stop() -> None:
        for t in redelivery:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        # Calls still being accounted settle first, so the ledger writes their cost before it stops.
        await svc.gateway.drain()
        await gov.ledger.stop()
        await gov.alerter.drain()
        await gov.alerter.close()
        await gov.cache.drain()

    svc.on_startup.append(start)
    svc.on_shutdown.append(stop)
    return []


async def _redeliver(gov: Governance) -> None:
    every = max(1.0, gov.alerter.settings.redeliver_after_s / 2)
    while True:
        await asyncio.sleep(every)
        try:
            await gov.alerter.redeliver_pending()
        except Exception:
            log.exception("alert redelivery failed; will try again")
