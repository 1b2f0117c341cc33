"""The image's entry point: uvicorn with every limit of :class:`Limits` set, serving from
``NBC_WORKERS`` processes that share the port (default: the CPUs the container may use).

Each worker is a whole server (its model, its batcher, its decoding process); the port is
one socket the supervisor binds and every worker accepts on, so a worker busy with a
request leaves new connections to the others. A worker that dies is started again by
uvicorn's supervisor. HTTP runs on uvicorn's httptools protocol with a header deadline and a
header size bound added (uvicorn has neither): slowloris clients are cut off.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .app import create_app
from .limits import Limits
from .offload import set_process_name

__all__ = [
    "available_cpus",
    "guarded_protocol",
    "main",
]


def available_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup CPU quota (what
    ``docker run --cpus`` and a Kubernetes CPU limit set; rounded up), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = None
    try:  # cgroup v2: "max 100000" or "150000 100000"
        with open(f"{cgroup}/cpu.max") as f:
            limit, period = f.read().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            with open(f"{cgroup}/cpu/cpu.cfs_quota_us") as f:
                limit_us = int(f.read())
            with open(f"{cgroup}/cpu/cpu.cfs_period_us") as f:
                period_us = int(f.read())
            if limit_us > 0:
                quota = limit_us / period_us
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def workers_from_env() -> int:
    """``NBC_WORKERS``, or :func:`available_cpus` when unset."""
    text = os.environ.get("NBC_WORKERS", "").strip()
    if not text:
        return available_cpus()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"NBC_WORKERS={text!r} must be a whole number >= 1; unset it for one")
    return int(text)


def guarded_protocol(limits: Limits) -> Any:
    """uvicorn's httptools protocol with a deadline for each request's headers and a bound
    on their size: a connection that sends headers slower than ``limits.header_timeout`` or
    more than ``limits.max_header_bytes`` of them is closed (408, 431). An answer that waits
    longer than ``limits.write_timeout`` for its client to read on (the transport's buffer
    full) is dropped with its connection: a client that never reads would otherwise hold the
    connection and the answer's bytes for ever (closing waits for the buffer to drain)."""
    # (The ignores: mypy may run where uvicorn is not installed; it is in the image.)
    from uvicorn.protocols.http.httptools_impl import (  # type: ignore[import-not-found,unused-ignore]
        HttpToolsProtocol,
    )

    async def busy(scope: Any, receive: Any, send: Any) -> None:
        body = _refusal(
            0,
            "",
            f"The server has {limits.max_concurrency} requests and "
            "connections already (NBC_MAX_CONCURRENCY); retry shortly.",
            bare=True,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    class GuardedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,unused-ignore]
        nbc_timer: Any = None
        nbc_write_timer: Any = None
        nbc_header_bytes = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.nbc_arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.nbc_disarm()
            self.nbc_drop_write_deadline()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self.nbc_write_timer is None:
                self.nbc_write_timer = self.loop.call_later(limits.write_timeout, self.nbc_stalled)

        def resume_writing(self) -> None:
            self.nbc_drop_write_deadline()
            super().resume_writing()

        def nbc_drop_write_deadline(self) -> None:
            if self.nbc_write_timer is not None:
                self.nbc_write_timer.cancel()
                self.nbc_write_timer = None

        def nbc_stalled(self) -> None:
            self.nbc_write_timer = None
            if not self.transport.is_closing() or self.transport.get_write_buffer_size():
                self.transport.abort()  # close() would wait for the reader

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.nbc_header_bytes = 0
            self.nbc_arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Still before the blank line (the deadline is armed): all of it was headers. The
            # parser keeps every header byte until then, so they are what is bounded here.
            if self.nbc_timer is None or self.transport.is_closing():
                return
            self.nbc_header_bytes += len(data)
            if self.nbc_header_bytes > limits.max_header_bytes:
                self.nbc_disarm()
                self.transport.write(
                    _refusal(
                        431,
                        "Request Header Fields Too Large",
                        f"The request line and headers are over {limits.max_header_bytes} "
                        "bytes (NBC_MAX_HEADER_BYTES).",
                    )
                )
                self.transport.close()

        def on_headers_complete(self) -> None:
            self.nbc_disarm()
            # uvicorn's own limit answers a bare 503; this one says when to come back.
            if (
                len(self.connections) > limits.max_concurrency
                or len(self.tasks) >= limits.max_concurrency
            ):
                app, self.app = self.app, busy
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app
                return
            super().on_headers_complete()

        def nbc_arm(self) -> None:
            if self.nbc_timer is None:
                self.nbc_timer = self.loop.call_later(limits.header_timeout, self.nbc_expire)

        def nbc_disarm(self) -> None:
            if self.nbc_timer is not None:
                self.nbc_timer.cancel()
                self.nbc_timer = None

        def nbc_expire(self) -> None:
            self.nbc_timer = None
            if self.transport.is_closing():
                return
            # Only between requests: a request being answered has its headers already.
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(
                    _refusal(
                        408,
                        "Request Timeout",
                        f"The request's headers did not arrive within {limits.header_timeout:g}"
                        " s (NBC_HEADER_TIMEOUT).",
                    )
                )
                self.transport.close()

    return GuardedHttpToolsProtocol


def _scratch(prefix: str) -> str:
    """A new folder under /tmp, removed when this (the supervising) process exits."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _share_metrics() -> None:
    """Workers write their metrics to one folder, so any worker's /metrics reports all."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _scratch("nbc-metrics-")
    except OSError as exc:  # a read-only root without a writable /tmp
        print(f"nbcontainers: /metrics is per worker: no folder to share it ({exc})", flush=True)


def _refusal(status: int, reason: str, message: str, bare: bool = False) -> bytes:
    import json

    body = json.dumps({"error": message}).encode()
    if bare:
        return body
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def main() -> None:
    """Serve: the image's CMD (``python -c "import server; server.main()"``)."""
    import uvicorn  # type: ignore[import-not-found,unused-ignore]

    try:
        limits = Limits.from_env()
        workers = workers_from_env()
    except ValueError as exc:  # a limit set to no number: say which, not a traceback
        raise SystemExit(f"nbcontainers: {exc}") from None
    if workers > 1:
        # Each worker's numeric libraries would otherwise start a thread per CPU: N workers
        # x N threads fight over N cores. A value the user set stays.
        share = str(max(1, available_cpus() // workers))
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, share)
        set_process_name("nbc-server")
        _share_metrics()
        # Each worker marks its loaded model here: readiness waits for all of them, so a
        # request after "ready" never meets a worker still loading.
        os.environ["NBC_WORKERS"] = str(workers)
        if not os.environ.get("NBC_STATE_DIR"):
            try:
                os.environ["NBC_STATE_DIR"] = _scratch("nbc-state-")
            except OSError as exc:  # a read-only root without a writable /tmp
                print(f"nbcontainers: readiness is per worker: no folder to share it ({exc})")
    module = __name__  # "server" in the image: the module whose __getattr__ builds both
    try:
        import httptools  # type: ignore[import-not-found,unused-ignore]  # noqa: F401

        http, uvicorn_limit = f"{module}:HttpProtocol", None  # the protocol limits itself
    except ImportError:  # h11 bounds header size itself; no header deadline then
        http, uvicorn_limit = "h11", limits.max_concurrency
    uvicorn.run(
        f"{module}:app",
        host=os.environ.get("NBC_HOST", "0.0.0.0"),
        port=int(os.environ.get("NBC_PORT", "8080")),
        workers=workers,
        http=http,
        limit_concurrency=uvicorn_limit,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        access_log=False,
    )


def __getattr__(name: str) -> Any:
    # `uvicorn server:app` builds the app on first access, not at import; HttpProtocol (the
    # protocol with header limits) too, so importing the module never imports uvicorn.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    if name == "HttpProtocol":
        globals()["HttpProtocol"] = guarded_protocol(Limits.from_env())
        return globals()["HttpProtocol"]
    raise AttributeError(name)
