"""Ingest's share of `GET /metrics`: batches by answer, events by what became of them, and on SQLite how
many batches each turn of the writer stored together (docs/store.md, "Ingest on SQLite")."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batches = Counter(
            "agenttrail_ingest_batches",
            "Batches posted to /api/v1/ingest, by HTTP status.",
            ["status"],
            registry=registry,
        )
        self.events = Counter(
            "agenttrail_ingest_events",
            "Events of accepted batches: accepted (new) or duplicate (stored already).",
            ["result"],
            registry=registry,
        )
        self.turn_batches = Histogram(
            "agenttrail_ingest_writer_turn_batches",
            "SQLite: batches stored together in one turn of the ingest writer.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.turn_seconds = Histogram(
            "agenttrail_ingest_writer_turn_seconds",
            "SQLite: the time of one turn of the ingest writer, its commit included.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def answered(self, status: int, accepted: int = 0, duplicates: int = 0) -> None:
        self.batches.labels(str(status)).inc()
        if accepted:
            self.events.labels("accepted").inc(accepted)
        if duplicates:
            self.events.labels("duplicate").inc(duplicates)

    def turn(self, batches: int, seconds: float) -> None:
        self.turn_batches.observe(batches)
        self.turn_seconds.observe(seconds)
