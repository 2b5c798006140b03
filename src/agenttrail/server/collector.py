"""Python's cyclic garbage collector, set for a long-running server.

Every young collection that reaches the oldest generation walks every object the process holds, and
a server holds a great many that live as long as it does: its modules, SQLAlchemy's tables, the
price tables, the app. An ingest of 2,000 events allocates some 100,000 containers, which set off a
young collection every 700 of them and a full one every few batches: measured in-process on
PostgreSQL (seed-demo's batches, 27,700 events), 6.6-7.0 us an event of 54-56, of which one full
collection alone was 110-121 ms. Once started, the server freezes what it has (those objects are
never walked again: `gc.freeze`), and young collections wait for 50,000 allocations instead of 700
(docs/performance.md, "Ingest"). Cycles still die, later; the memory they hold meanwhile is bounded
by that threshold. At shutdown the previous settings come back (a test or an embedding process goes on).
"""

from __future__ import annotations

import gc

from starlette.routing import BaseRoute

from agenttrail.server.app import Services

YOUNG_THRESHOLD = 50_000


def install(svc: Services) -> list[BaseRoute]:
    before = gc.get_threshold()

    async def start() -> None:
        gc.freeze()
        gc.set_threshold(max(YOUNG_THRESHOLD, before[0]), *before[1:])

    async def stop() -> None:
        gc.unfreeze()
        gc.set_threshold(*before)

    svc.on_startup.append(start)
    svc.on_shutdown.append(stop)
    return []
