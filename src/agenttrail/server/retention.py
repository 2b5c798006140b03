"""The retention part of `agenttrail serve`: with `[retention] content_days` set, content older than
that is purged at startup and then every `every_hours` (see store/retention.py for what content is)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from starlette.routing import BaseRoute

from agenttrail.config import ConfigError
from agenttrail.query.access import Principal, audit
from agenttrail.server.app import Services
from agenttrail.store.retention import Purged, RetentionSettings, purge_content, retention_settings

log = logging.getLogger("agenttrail.retention")
ACTOR = Principal("admin", "agenttrail:retention")


def purge_once(svc: Services, rs: RetentionSettings) -> Purged:
    """One scheduled purge, audited like a manual one."""
    assert rs.content_days is not None
    now = svc.clock.now()
    cutoff = now - timedelta(days=rs.content_days)
    purged = purge_content(svc.engine, cutoff)
    audit(svc.engine, ACTOR, "purge_content", {"before": cutoff.isoformat(), **purged.as_dict()}, now)
    return purged


async def _every(svc: Services, rs: RetentionSettings) -> None:
    while True:
        try:
            purged = await asyncio.to_thread(purge_once, svc, rs)
            log.info("retention: purged content older than %s days: %s", rs.content_days, purged.as_dict())
        except Exception:
            log.exception("retention purge failed; will try again at the next interval")
        await asyncio.sleep(rs.every_s)


def install(svc: Services) -> list[BaseRoute]:
    rs = retention_settings(svc.settings)
    if rs.content_days is None:
        return []
    try:
        svc.clock.now() - timedelta(days=rs.content_days)
    except OverflowError:  # each purge would fail on it, logged at every interval and never said at start
        raise ConfigError(
            f"[retention] content_days = {rs.content_days} reaches before the year 1: give a number of days, "
            "e.g. 90 or 3650"
        ) from None
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(_every(svc, rs), name="agenttrail-retention"))

    async def stop() -> None:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t

    svc.on_startup.append(start)
    svc.on_shutdown.append(stop)
    return []
