"""The governance seam: budgets, rate limits, routing and caching plug in here.

The gateway calls `admit` before forwarding (it may refuse with a GatewayError, change the model,
or answer from cache by returning a Response) and `settle` once the call's cost is known, always,
whatever the outcome, so reservations are released.
"""

from __future__ import annotations

from typing import Protocol

from starlette.responses import Response

from agenttrail.gateway.call import Call


class Policy(Protocol):
    async def admit(self, call: Call) -> Response | None: ...

    async def settle(self, call: Call) -> None: ...


class OpenPolicy:
    """No governance: every authenticated call is admitted."""

    async def admit(self, call: Call) -> Response | None:
        return None

    async def settle(self, call: Call) -> None:
        return None
