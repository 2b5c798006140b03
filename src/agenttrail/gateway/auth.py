"""Virtual-key authentication with a small cache, so a call does not wait on the database."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from anyio import to_thread
from sqlalchemy import Engine

from agenttrail.clock import Clock
from agenttrail.gateway.errors import GatewayError
from agenttrail.store.keys import KEY_PREFIX, KeyInfo, hash_key, lookup_key


def extract_key(headers: Mapping[str, str]) -> str | None:
    """`x-api-key` (Anthropic clients) or `Authorization: Bearer` (OpenAI clients, ANTHROPIC_AUTH_TOKEN)."""
    candidates = []
    if headers.get("x-api-key"):
        candidates.append(headers["x-api-key"].strip())
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    for c in candidates:
        if c.startswith(KEY_PREFIX):
            return c
    return candidates[0] if candidates else None


class KeyCache:
    """Positive entries live `ttl_s`, negative ones `negative_ttl_s`: a revoked key stops working
    within `ttl_s` on every process, without a database read per call."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        ttl_s: float = 5.0,
        negative_ttl_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl = ttl_s
        self._neg_ttl = negative_ttl_s
        self._mono = monotonic
        self._max = max_entries
        self._entries: dict[str, tuple[KeyInfo | None, float]] = {}

    async def get(self, key: str) -> KeyInfo | None:
        h = hash_key(key)
        hit = self._entries.get(h)
        now = self._mono()
        if hit is not None and hit[1] > now:
            return hit[0]
        info = await to_thread.run_sync(lookup_key, self._engine, key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[h] = (info, now + (self._ttl if info else self._neg_ttl))
        return info

    def invalidate(self) -> None:
        self._entries.clear()

    async def authenticate(self, headers: Mapping[str, str]) -> KeyInfo:
        key = extract_key(headers)
        if not key:
            raise GatewayError(
                401,
                "no API key: send your agenttrail virtual key (sk-at-…) as x-api-key or "
                "Authorization: Bearer. Ask your admin for one (`agenttrail key create`).",
                code="missing_api_key",
                retry=False,
            )
        if not key.startswith(KEY_PREFIX):
            raise GatewayError(
                401,
                "this gateway takes agenttrail virtual keys (sk-at-…), not provider keys; "
                "set your client's API key to the virtual key you were given.",
                code="invalid_api_key",
                retry=False,
            )
        info = await self.get(key)
        if info is None:
            raise GatewayError(
                401,
                f"unknown virtual key {key[:12]}…: check for a typo or ask for a new key.",
                code="invalid_api_key",
                retry=False,
            )
        why = info.refusal(self._clock.now().replace(tzinfo=None))
        if why:
            raise GatewayError(401, why + "; ask your admin for a new key.", code="invalid_api_key", retry=False)
        return info
