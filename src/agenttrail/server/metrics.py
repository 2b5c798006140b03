"""`GET /metrics` for Prometheus: requests, spend and tokens by team, model and status; what the cache
saved; a gateway latency histogram; and every budget's limit, spend and remaining headroom.

Counters are this process's since it started (Prometheus adds up the processes it scrapes); budget
figures are read from the store at scrape time (cached for a few seconds), so every process reports
the same shared numbers. The registry belongs to the app, not the module: importing this does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from agenttrail.clock import Clock
from agenttrail.gateway.call import Call
from agenttrail.server.app import Services

log = logging.getLogger("agenttrail.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class BudgetCollector(Collector):
    """Budget gauges from the store, cached for `ttl_s` so frequent scrapes do not load it."""

    def __init__(self, engine: Engine, clock: Clock, timezone: str, ttl_s: float = 5.0) -> None:
        self._engine = engine
        self._clock = clock
        self._timezone = timezone
        self._ttl = ttl_s
        self._cached: list[Metric] = []
        self._expires = 0.0

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        if now >= self._expires:
            try:
                self._cached = self._read()
            except Exception:
                log.exception("could not read budgets for /metrics")
                self._cached = []
            self._expires = now + self._ttl
        return self._cached

    def _read(self) -> list[Metric]:
        # Imported here: governance is a part of its own, and metrics must work without budgets.
        from agenttrail.governance.budgets import list_budgets, spend_of
        from agenttrail.governance.periods import zone

        labels = ["budget_id", "scope", "name", "period"]
        limit = GaugeMetricFamily("agenttrail_budget_limit_usd", "A budget's limit in USD.", labels=labels)
        spent = GaugeMetricFamily("agenttrail_budget_spent_usd", "Spent in the budget's current period.", labels=labels)
        remaining = GaugeMetricFamily(
            "agenttrail_budget_remaining_usd",
            "Limit minus spent (minus what calls in progress hold) in the current period; 0 when spent.",
            labels=labels,
        )
        budgets = list_budgets(self._engine)
        spend = spend_of(self._engine, budgets, self._clock.now(), zone(self._timezone))
        for b in budgets:
            _, s, r = spend[b.id]
            values = [str(b.id), b.scope, b.name or "organisation", b.period]
            limit.add_metric(values, b.limit_nanos / 1e9)
            spent.add_metric(values, s / 1e9)
            remaining.add_metric(values, max(0, b.limit_nanos - s - r) / 1e9)
        return [limit, spent, remaining]


class GatewayMetrics:
    """Counts every call the gateway finishes (an observer of `Gateway`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "agenttrail_requests",
            "Model calls by team, model and outcome.",
            ["team", "model", "status"],
            registry=registry,
        )
        self.spend = Counter("agenttrail_spend_usd", "Spend in USD.", ["team", "model"], registry=registry)
        self.saved = Counter(
            "agenttrail_cache_saved_usd", "What cache hits would have cost.", ["team", "model"], registry=registry
        )
        self.tokens = Counter("agenttrail_tokens", "Tokens by class.", ["team", "model", "kind"], registry=registry)
        self.latency = Histogram(
            "agenttrail_gateway_latency_seconds",
            "Time from a call's arrival to its last byte, through the gateway.",
            ["provider", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "agenttrail_gateway_ttft_seconds",
            "Time from a call's arrival to its first byte back.",
            ["provider", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, call: Call) -> None:
        team = call.key.team if call.key is not None else ""
        model = call.model or call.model_requested or ""
        self.requests.labels(team, model, call.status).inc()
        if call.cost_usd:
            self.spend.labels(team, model).inc(float(call.cost_usd))
        if call.saved_usd:
            self.saved.labels(team, model).inc(float(call.saved_usd))
        u = call.usage
        for kind, n in (
            ("input", u.input_tokens),
            ("cache_read", u.cache_read_tokens),
            ("cache_write", u.cache_write_tokens),
            ("output", u.output_tokens),
        ):
            if n:
                self.tokens.labels(team, model, kind).inc(n)
        stream = "true" if call.stream else "false"
        if call.latency_ms is not None:
            self.latency.labels(call.provider, stream).observe(call.latency_ms / 1000)
        if call.ttft_ms is not None:
            self.ttft.labels(call.provider, stream).observe(call.ttft_ms / 1000)


def install(svc: Services) -> list[BaseRoute]:
    registry = svc.registry
    gateway = GatewayMetrics(registry)
    registry.register(BudgetCollector(svc.engine, svc.clock, svc.settings.budget_timezone))
    svc.gateway.observers.append(gateway.observe)

    async def metrics(request: Request) -> Response:
        # Reading budgets touches the store: off the event loop.
        body: Any = await to_thread.run_sync(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
