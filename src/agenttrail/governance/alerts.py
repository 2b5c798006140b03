"""Budget alerts: one per budget, period and threshold, to every configured webhook.

Exactly once: an alert is a row in `alert`, unique on (budget, period start, threshold). Whichever
process inserts it delivers it; every other process (and every other call crossing the same threshold
at the same moment) finds the row there and does nothing. Delivery is retried with exponential
backoff until it succeeds or `max_attempts` is reached, and each attempt is claimed by bumping
`attempts` only if it still has the value this process read, so two processes never send the same
attempt. Alerts left undelivered by a process that stopped are picked up by the others.

Bodies: Slack-compatible `{"text": …}`, or a generic JSON object with every field.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import httpx
import orjson
from anyio import to_thread
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from agenttrail.clock import Clock
from agenttrail.config import ConfigError, Settings
from agenttrail.governance.budgets import Budget, BudgetBook, usd
from agenttrail.governance.counters import BUDGET
from agenttrail.governance.ledger import Account
from agenttrail.governance.periods import period_window
from agenttrail.store.tables import alert

log = logging.getLogger("agenttrail.governance.alerts")
FORMATS = ("slack", "json")


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    format: str = "json"


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """`[alerts]` in agenttrail.toml, or AGENTTRAIL_ALERT_WEBHOOKS="slack=https://…,json=https://…"."""

    webhooks: tuple[Webhook, ...] = ()
    max_attempts: int = 6
    backoff_s: float = 2.0  # doubles after each failed attempt
    timeout_s: float = 10.0
    redeliver_after_s: float = 600.0  # an undelivered alert this old is taken over by any process

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> AlertSettings:
        env = os.environ if env is None else env
        raw = settings.section("alerts")
        hooks: list[Webhook] = []
        for i, item in enumerate(raw.get("webhooks", []) or []):
            if isinstance(item, str):
                item = {"url": item}
            if not isinstance(item, Mapping) or not isinstance(item.get("url"), str):
                raise ConfigError(f'[alerts] webhooks[{i}] must be {{ url = "https://…", format = "slack" }}')
            hooks.append(_hook(str(item["url"]), str(item.get("format", "json")), f"[alerts] webhooks[{i}]"))
        for part in (env.get("AGENTTRAIL_ALERT_WEBHOOKS") or "").split(","):
            fmt, sep, url = part.strip().partition("=")
            if part.strip():
                hooks.append(_hook(url if sep else fmt, fmt if sep else "json", "AGENTTRAIL_ALERT_WEBHOOKS"))
        try:
            return cls(
                tuple(hooks),
                max_attempts=int(raw.get("max_attempts", 6)),
                backoff_s=float(raw.get("backoff_s", 2.0)),
                timeout_s=float(raw.get("timeout_s", 10.0)),
                redeliver_after_s=float(raw.get("redeliver_after_s", 600.0)),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[alerts]: {e}") from None


def _hook(url: str, fmt: str, where: str) -> Webhook:
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format must be slack or json, got {fmt!r}")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: a webhook URL starts with http:// or https://, got {url!r}")
    return Webhook(url, fmt)


def alert_message(b: Budget, pct: int, spent: int, resets: str | None) -> str:
    if pct >= 100:
        head = f"{b.label} is spent: {usd(spent)} of {usd(b.limit_nanos)}; calls are refused"
    else:
        head = f"{b.label} has reached {pct}%: {usd(spent)} of {usd(b.limit_nanos)} spent"
    tail = f"; resets {resets}" if resets else "; it is a lifetime budget"
    owner = f". Owner: {b.owner}" if b.owner else ""
    return head + tail + owner


def webhook_body(hook: Webhook, payload: Mapping[str, Any]) -> bytes:
    if hook.format == "slack":
        return orjson.dumps({"text": payload["message"]})
    return orjson.dumps(payload)


Sleep = Callable[[float], Awaitable[None]]


class Alerter:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        settings: AlertSettings,
        book: BudgetBook,
        tz: tzinfo,
        *,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.settings = settings
        self._book = book
        self._tz = tz
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport, follow_redirects=False)
        self._fired: set[tuple[int, datetime, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- noticing a crossing ----------------------------------------------------------------------

    def watch(self, acc: Account) -> None:
        """Ledger listener: the stored spend of a counter was just read back."""
        if acc.cid.table != BUDGET:
            return
        b = self._book.get(int(acc.cid.key))
        if b is None or b.limit_nanos <= 0:
            return
        for pct in b.soft_pcts:
            k = (b.id, acc.cid.window, pct)
            if k in self._fired or acc.db_spent * 100 < b.limit_nanos * pct:
                continue
            self._fired.add(k)
            self._spawn(self._raise(b, acc.cid.window, pct, acc.db_spent))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for raising and delivering to finish (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self._client.aclose()

    async def _raise(self, b: Budget, window_start: datetime, pct: int, spent: int) -> None:
        try:
            window = period_window(b.period, window_start.replace(tzinfo=UTC), self._tz)
            resets = window.describe_end() if window.end else None
            payload: dict[str, Any] = {
                "type": "budget.threshold",
                "budget_id": b.id,
                "scope": b.scope,
                "scope_name": b.name or None,
                "budget": b.label,
                "period": b.period,
                "period_start": window.start.isoformat() + "Z",
                "resets_at": window.end.isoformat() + "Z" if window.end else None,
                "threshold_pct": pct,
                "spent_usd": str(round(spent / 1e9, 6)),
                "limit_usd": str(round(b.limit_nanos / 1e9, 6)),
                "spent_pct": round(spent * 100 / b.limit_nanos, 2),
                "owner": b.owner,
                "message": alert_message(b, pct, spent, resets),
            }
            alert_id = await to_thread.run_sync(self._insert, b.id, window.start, pct, payload)
            if alert_id is not None:
                await self.deliver(alert_id, payload, attempts=0)
        except Exception:
            log.exception("could not raise the %d%% alert of budget %d", pct, b.id)

    def _insert(self, budget_id: int, period_start: datetime, pct: int, payload: dict[str, Any]) -> int | None:
        try:
            with self._engine.begin() as conn:
                new_id = conn.execute(
                    alert.insert().values(
                        budget_id=budget_id,
                        period_start=period_start,
                        threshold_pct=pct,
                        created_at=self._now(),
                        attempts=0,
                        payload="{}",
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                payload["alert_id"] = int(new_id)
                conn.execute(update(alert).where(alert.c.id == new_id).values(payload=orjson.dumps(payload).decode()))
                return int(new_id)
        except IntegrityError:
            return None  # raised already, by this process earlier or by another one

    # -- delivering -------------------------------------------------------------------------------

    async def deliver(self, alert_id: int, payload: Mapping[str, Any], attempts: int) -> bool:
        """Send to every webhook, retrying the ones that fail with backoff. True when all took it."""
        pending = list(self.settings.webhooks)
        if not pending:
            await to_thread.run_sync(self._record, alert_id, None, "no webhooks configured")
            return False
        while pending and attempts < self.settings.max_attempts:
            if not await to_thread.run_sync(self._claim, alert_id, attempts):
                return False  # another process is on it
            attempts += 1
            errors: list[str] = []
            failed: list[Webhook] = []
            for hook in pending:
                err = await self._post(hook, payload)
                if err is not None:
                    failed.append(hook)
                    errors.append(f"{hook.url}: {err}")
            pending = failed
            await to_thread.run_sync(
                self._record, alert_id, None if pending else self._now(), "; ".join(errors)[:2000] or None
            )
            if pending and attempts < self.settings.max_attempts:
                await self._sleep(self.settings.backoff_s * 2 ** (attempts - 1))
        if pending:
            log.error("alert %d was not delivered after %d attempts", alert_id, attempts)
        return not pending

    async def _post(self, hook: Webhook, payload: Mapping[str, Any]) -> str | None:
        try:
            r = await self._client.post(
                hook.url, content=webhook_body(hook, payload), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        if 200 <= r.status_code < 300:
            return None
        return f"HTTP {r.status_code} {r.text[:200]}"

    def _claim(self, alert_id: int, seen_attempts: int) -> bool:
        with self._engine.begin() as conn:
            res = conn.execute(
                update(alert)
                .where((alert.c.id == alert_id) & (alert.c.attempts == seen_attempts) & alert.c.delivered_at.is_(None))
                .values(attempts=seen_attempts + 1)
            )
            return bool(res.rowcount)

    def _record(self, alert_id: int, delivered_at: datetime | None, error: str | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(alert).where(alert.c.id == alert_id).values(delivered_at=delivered_at, last_error=error)
            )

    async def redeliver_pending(self) -> int:
        """Take over alerts whose delivery stopped (their process went away) and try again."""
        cutoff = self._now() - timedelta(seconds=self.settings.redeliver_after_s)
        rows = await to_thread.run_sync(self._stalled, cutoff)
        n = 0
        for alert_id, attempts, payload in rows:
            n += bool(await self.deliver(alert_id, orjson.loads(payload), attempts))
        return n

    def _stalled(self, cutoff: datetime) -> list[tuple[int, int, str]]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(alert.c.id, alert.c.attempts, alert.c.payload).where(
                    alert.c.delivered_at.is_(None)
                    & (alert.c.attempts < self.settings.max_attempts)
                    & (alert.c.created_at < cutoff)
                )
            ).all()
        return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC).replace(tzinfo=None)


def list_alerts(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert).order_by(alert.c.created_at.desc(), alert.c.id.desc()).limit(limit)).all()
    out = []
    for r in rows:
        try:
            p = orjson.loads(r.payload)
        except orjson.JSONDecodeError:
            p = {}
        out.append(
            {
                "id": r.id,
                "created_at": r.created_at,
                "budget": p.get("budget") or f"budget {r.budget_id}",
                "threshold_pct": r.threshold_pct,
                "spent_usd": p.get("spent_usd"),
                "owner": p.get("owner"),
                "delivered_at": r.delivered_at,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "message": p.get("message"),
            }
        )
    return out
