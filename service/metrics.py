"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stance_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "stance_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.pairs_scored = Counter("stance_pairs_scored_total", "(sentence, actor) pairs scored", registry=self.registry)
        self.batch_documents = Histogram(
            "stance_batch_documents",
            "documents per inference batch",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.queue_depth = Gauge("stance_queue_depth", "inference jobs waiting for a batch", registry=self.registry)
