"""Prometheus ``/metrics`` in the text exposition format, kept by hand: the image carries no
client library."""

from __future__ import annotations

import threading

__all__ = [
    "Metrics",
]


# Seconds: from a fast one-row answer (well under a millisecond here) to a slow batch.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Prometheus text exposition, kept by hand: requests, latency, batch sizes, readiness."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.batches: dict[int, int] = {}
        self.ready = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        # The lock: requests finish on the loop, batches are counted in the model's thread.
        with self.lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            # Latency only for inference: health probes would swamp the histogram.
            if route.lower().endswith("infer") or route == "/predict":
                index = next((i for i, b in enumerate(_LATENCY_BUCKETS) if seconds <= b), -1)
                self.latency[index] += 1
                self.latency_sum += seconds

    def batch(self, size: int) -> None:
        with self.lock:
            self.batches[size] = self.batches.get(size, 0) + 1

    def render(self) -> str:
        with self.lock:
            lines = [
                "# HELP nbc_requests_total HTTP requests by route and status.",
                "# TYPE nbc_requests_total counter",
            ]
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f'nbc_requests_total{{route="{route}",status="{status}"}} {count}')
            lines += [
                "# HELP nbc_inference_seconds Time to answer an inference request.",
                "# TYPE nbc_inference_seconds histogram",
            ]
            total = 0
            for bound, count in zip(_LATENCY_BUCKETS, self.latency, strict=False):
                total += count
                lines.append(f'nbc_inference_seconds_bucket{{le="{bound}"}} {total}')
            total += self.latency[-1]
            lines += [
                f'nbc_inference_seconds_bucket{{le="+Inf"}} {total}',
                f"nbc_inference_seconds_sum {self.latency_sum:.6f}",
                f"nbc_inference_seconds_count {total}",
                "# HELP nbc_batch_calls_total Model calls by number of requests they served.",
                "# TYPE nbc_batch_calls_total counter",
            ]
            for size, count in sorted(self.batches.items()):
                lines.append(f'nbc_batch_calls_total{{requests="{size}"}} {count}')
            lines += [
                "# HELP nbc_model_ready 1 once the model is loaded.",
                "# TYPE nbc_model_ready gauge",
                f"nbc_model_ready {self.ready}",
            ]
        return "\n".join(lines) + "\n"
