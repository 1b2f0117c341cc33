"""Prometheus ``/metrics`` through ``prometheus_client``: requests, latency, batch sizes,
readiness, in a registry of the server's own (tests make many servers in one process).

With several workers (``serve.main`` sets ``PROMETHEUS_MULTIPROC_DIR``) each worker writes its
values to files there and a scrape, whichever worker answers it, reports the sum over all of
them; readiness is the lowest of the workers' (1 only once every worker has the model).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "METRICS_CONTENT_TYPE",
    "Metrics",
]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: from a fast one-row answer (well under a millisecond here) to a slow batch.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The server's metrics; prometheus_client's types are thread-safe, so the model's
    thread counts batches while the event loop counts requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nbc_requests",
            "Requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nbc_inference_seconds",
            "Time to answer an inference request.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batches = Counter(
            "nbc_batch_calls",
            "Model calls by number of requests they served.",
            ["requests"],
            registry=self.registry,
        )
        self.ready_gauge = Gauge(
            "nbc_model_ready",
            "1 once the model is loaded (in every worker).",
            registry=self.registry,
            multiprocess_mode="min",
        )

        self.loaded = 0

    @property
    def ready(self) -> int:
        return self.loaded

    @ready.setter
    def ready(self, value: int) -> None:
        self.loaded = value
        self.ready_gauge.set(value)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        # Latency only for inference: health probes would swamp the histogram.
        if route.lower().endswith("infer") or route == "/predict":
            self.latency.observe(seconds)

    def batch(self, size: int) -> None:
        self.batches.labels(requests=str(size)).inc()

    def render(self) -> str:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            every = CollectorRegistry()
            multiprocess.MultiProcessCollector(every)  # type: ignore[no-untyped-call]
            return str(generate_latest(every).decode())
        return str(generate_latest(self.registry).decode())
