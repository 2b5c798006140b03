"""An opt-in, exact-match response cache per team, with a TTL.

The key is a hash of the canonical request: provider, endpoint, team, the model that will serve it,
and the body with its keys sorted and the stream flag (and `stream_options`) left out, so a streamed
and a plain request share an entry. Only complete, successful answers are kept. A hit never reaches
the provider: it is recorded with cost 0 and `saved_usd` (what the original call cost), and a
streaming client gets the answer as a well-formed stream in its provider's format (`wire.py`).

Entries live in `response_cache` (shared by every process) with a small in-memory copy of recent ones.
Headers do not take part in the key: clients that vary answers with beta headers should not share a
team's cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from anyio import to_thread
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.responses import Response, StreamingResponse

from agenttrail.clock import Clock
from agenttrail.config import ConfigError, Settings
from agenttrail.gateway.call import Call
from agenttrail.governance import wire
from agenttrail.pricing import Pricer
from agenttrail.store.tables import response_cache
from agenttrail.usage import Usage

log = logging.getLogger("agenttrail.governance.cache")
CACHEABLE = ("messages", "chat", "responses", "embeddings")
NANOS = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """`[cache]` in agenttrail.toml."""

    enabled: bool = False
    teams: tuple[str, ...] = ("*",)
    ttl_s: float = 3600.0
    max_entry_bytes: int = 2_000_000
    memory_entries: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheSettings:
        raw = settings.section("cache")
        teams = raw.get("teams", ["*"])
        if isinstance(teams, str):
            teams = [teams]
        if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
            raise ConfigError('[cache] teams must be a list of team names, or ["*"] for every team')
        enabled = raw.get("enabled", False)
        if not isinstance(enabled, bool):  # bool("false") is True
            raise ConfigError(f"[cache] enabled must be true or false, got {enabled!r}")
        try:
            return cls(
                enabled=enabled,
                teams=tuple(teams),
                ttl_s=float(raw.get("ttl_s", 3600.0)),
                max_entry_bytes=int(raw.get("max_entry_bytes", 2_000_000)),
                memory_entries=int(raw.get("memory_entries", 1000)),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[cache]: {e}") from None

    def covers(self, team: str) -> bool:
        return self.enabled and ("*" in self.teams or team in self.teams)


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes  # the whole answer, as JSON
    model: str | None
    usage: Usage
    cost_nanos: int
    expires_at: datetime  # naive UTC


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def request_key(call: Call) -> str:
    body = {k: v for k, v in (call.body or {}).items() if k not in ("stream", "stream_options")}
    assert call.key is not None
    canon = {
        "provider": call.provider,
        "endpoint": call.endpoint.name,
        "team": call.key.team_id,
        "model": call.model,
        "body": body,
    }
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _usage_json(u: Usage) -> str:
    return orjson.dumps(
        {
            "input_tokens": u.input_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_5m_tokens": u.cache_write_5m_tokens,
            "cache_write_1h_tokens": u.cache_write_1h_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
        }
    ).decode()


def _usage(raw: str | None) -> Usage:
    try:
        return Usage(**orjson.loads(raw or "{}"))
    except (TypeError, orjson.JSONDecodeError):
        return Usage()


class ResponseCache:
    def __init__(
        self, engine: Engine, clock: Clock, settings: CacheSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.settings = settings
        self._mono = monotonic
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_prune = monotonic()
        self.stats = CacheStats()
        self.pricer: Pricer | None = None

    def applies(self, call: Call) -> bool:
        return call.key is not None and call.endpoint.name in CACHEABLE and self.settings.covers(call.key.team)

    async def lookup(self, call: Call, key: str) -> Response | None:
        now = self._now()
        entry = self._memory.get(key)
        if entry is not None and entry.expires_at <= now:
            self._memory.pop(key, None)
            entry = None
        if entry is None:
            entry = await to_thread.run_sync(self._read, key, now)
            if entry is not None:
                self._remember(key, entry)
        if entry is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        self._memory.move_to_end(key)
        call.cache_hit = True
        call.status = "ok"
        call.http_status = 200
        call.model = entry.model or call.model
        call.saved_usd = Decimal(entry.cost_nanos) / NANOS
        call.ttft_ms = (time.monotonic() - call.t0) * 1000.0
        headers = {"x-agenttrail-cache": "hit"}
        if not call.stream:
            return Response(entry.body, status_code=200, headers=headers, media_type="application/json")
        body = orjson.loads(entry.body)
        opts = (call.body or {}).get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        stream = wire.synthesize(call.endpoint.name, body, entry.usage, include_usage)
        headers["cache-control"] = "no-cache"
        return Response(stream, status_code=200, headers=headers, media_type="text/event-stream; charset=utf-8")

    def tap(self, call: Call, key: str, response: Response) -> Response:
        """Keep the answer once it is complete; the client's bytes pass unchanged."""
        if response.status_code != 200:
            return response
        if not isinstance(response, StreamingResponse):
            self._store_later(call, key, bytes(response.body), streamed=False)
            return response
        inner = response.body_iterator
        limit = self.settings.max_entry_bytes

        async def tee() -> AsyncIterator[Any]:
            buf = bytearray()
            kept = True
            async for chunk in inner:
                if kept:
                    buf += chunk if isinstance(chunk, bytes | bytearray) else str(chunk).encode()
                    if len(buf) > limit * 4:  # a stream is several times its answer
                        kept, buf = False, bytearray()
                yield chunk
            # Reached only when the stream ended (not when the client went away); the call is priced.
            if kept:
                self._store_later(call, key, bytes(buf), streamed=True)

        response.body_iterator = tee()
        return response

    def _store_later(self, call: Call, key: str, content: bytes, *, streamed: bool) -> None:
        if call.status != "ok" or call.cache_hit:
            return
        if streamed:
            whole = wire.assemble(call.endpoint.name, content)
            if whole is None:
                return
            body = orjson.dumps(whole)
        else:
            body = content
        if len(body) > self.settings.max_entry_bytes:
            return
        # The gateway prices a call after its answer has gone; price it here for what a hit saves.
        cost_usd = self.pricer.price(call.provider, call.model, call.usage).cost_usd if self.pricer else call.cost_usd
        cost = int((cost_usd * NANOS).to_integral_value())
        entry = Entry(body, call.model, call.usage, cost, self._now() + timedelta(seconds=self.settings.ttl_s))
        self._remember(key, entry)
        assert call.key is not None
        team_id, provider = call.key.team_id, call.provider
        task = asyncio.get_running_loop().create_task(to_thread.run_sync(self._write, key, team_id, provider, entry))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not store a cached answer: %s", task.exception())
        else:
            self.stats.stored += 1

    async def drain(self) -> None:
        """Wait for pending writes (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _remember(self, key: str, entry: Entry) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.settings.memory_entries:
            self._memory.popitem(last=False)

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC).replace(tzinfo=None)

    def _read(self, key: str, now: datetime) -> Entry | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(response_cache).where((response_cache.c.cache_key == key) & (response_cache.c.expires_at > now))
            ).first()
        if row is None:
            return None
        return Entry(bytes(row.body), row.model, _usage(row.usage), int(row.cost_nanos), row.expires_at)

    def _write(self, key: str, team_id: int, provider: str, entry: Entry) -> None:
        values = {
            "cache_key": key,
            "team_id": team_id,
            "provider": provider,
            "model": entry.model,
            "body": entry.body,
            "usage": _usage_json(entry.usage),
            "cost_nanos": entry.cost_nanos,
            "created_at": self._now(),
            "expires_at": entry.expires_at,
        }
        ins = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        stmt = ins(response_cache).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["cache_key"], set_={k: stmt.excluded[k] for k in values if k != "cache_key"}
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)
            if self._mono() - self._last_prune > 60:
                self._last_prune = self._mono()
                conn.execute(delete(response_cache).where(response_cache.c.expires_at <= self._now()))
