"""The ASGI application: routes, limits, the model loaded in a thread (503 until then).

The event loop only routes, reads bodies and answers: a body over :data:`INLINE_DECODE` bytes
is checked and decoded in a helper process (``json.loads`` and numpy hold the GIL, so a
thread would still stall health probes for the whole decode), and the model runs in the
batcher's thread. Health, readiness and /metrics so answer in milliseconds whatever the
other requests hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .batching import Batcher
from .grpc_service import serve_grpc
from .limits import BadRequest, Budget, Limits
from .loading import ModelRefused, load_model
from .metrics import METRICS_CONTENT_TYPE, Metrics
from .offload import (
    INLINE_DECODE,
    INLINE_ENCODE,
    Offload,
    decode_request,
    encode_reply,
    set_process_name,
)
from .openapi import model_metadata, openapi

__all__ = [
    "Server",
    "create_app",
    "every_worker_loaded",
]


Scope = dict[str, Any]


Receive = Callable[[], Awaitable[dict[str, Any]]]


Send = Callable[[dict[str, Any]], Awaitable[None]]


log = logging.getLogger("nbcontainers.server")


class Server:
    """The ASGI application (``app`` below is one, configured from the environment)."""

    def __init__(
        self,
        model_dir: str,
        max_body: int = 8 << 20,
        max_rows: int = 4096,
        max_elements: int = 1 << 21,
        grpc_port: int | None = None,
        cache_dir: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.model_dir = model_dir
        with open(os.path.join(model_dir, "meta.json")) as f:
            self.meta = json.load(f)
        self.name = self.meta["name"]
        self.limits = limits or Limits(max_body=max_body, max_rows=max_rows)
        self.max_body = self.limits.max_body
        self.max_rows = self.limits.max_rows
        self.max_elements = limits.max_elements if limits else max_elements
        self.grpc_port = grpc_port
        self.budget = Budget(self.limits)  # request bytes held (read or waiting for the model)
        self.offload = Offload()
        # The routes there are: the only values a metrics label takes.
        model_path = f"/v2/models/{self.name}"
        self.routes = {
            "/v2/health/live",
            "/v2/health/ready",
            f"{model_path}/ready",
            "/v2",
            model_path,
            f"{model_path}/infer",
            "/predict",
            "/openapi.json",
            "/metrics",
            "/",
        }
        self.cache_dir = cache_dir
        self.grpc_server: Any = None
        self.metrics = Metrics()
        self.predict: Callable[[Any], list[Any]] | None = None
        self.load_error: str | None = None
        self.load_refusal: str | None = None
        self.batcher: Batcher | None = None

    def load(self) -> None:
        # In a thread from startup, so health answers (503) while a large model loads.
        try:
            self.predict = load_model(self.model_dir, self.meta, self.cache_dir)
            self.metrics.ready = 1
            if os.environ.get("NBC_STATE_DIR"):  # the other workers' readiness counts this one
                with open(os.path.join(os.environ["NBC_STATE_DIR"], f"loaded-{os.getpid()}"), "w"):
                    pass
            # Warning: uvicorn configures only its own loggers, so ours prints through Python's
            # last-resort handler, which drops anything below warning.
            log.warning("model %s loaded (%s)", self.name, self.meta["format"])
        except Exception as exc:  # reported by /v2/health/ready and the log
            self.load_error = f"{type(exc).__name__}: {exc}"
            # A refusal is written for whoever runs the image (which file, what to do); any
            # other failure's words may hold paths and versions: the log only.
            self.load_refusal = str(exc) if isinstance(exc, ModelRefused) else None
            log.error("loading model %s failed: %s", self.name, self.load_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route, status = "(other)", 500
        with contextlib.suppress(BadRequest):
            route = self._path(scope["path"])
        headers: list[tuple[bytes, bytes]] = []
        # Every failure becomes a JSON answer: a bad request must never stop the server.
        try:
            route, status, payload, kind = await self._route(scope, receive)
        except BadRequest as exc:
            status, payload, kind = exc.status, {"error": str(exc)}, "json"
            if exc.retry_after is not None:
                headers.append((b"retry-after", str(exc.retry_after).encode()))
            if status in (408, 413, 503):
                # The body may be unread: the connection can't carry another request.
                headers.append((b"connection", b"close"))
        except Exception:
            # The server's fault: the log has the details, the client none of them.
            log.exception("request to %s failed", route)
            status, kind = 500, "json"
            payload = {"error": "Internal server error; the server's log has the details."}
        # Clients pick paths: labels only ever name a route that exists.
        route = route if route in self.routes else "(other)"
        if kind == "binary":
            # The binary extension: the JSON header's length, then raw tensors after it.
            body, header_length = payload
            content_type = b"application/octet-stream"
            headers.append((b"inference-header-content-length", str(header_length).encode()))
        elif kind == "bytes":
            body, content_type = payload, b"application/json"
        else:
            body = payload.encode() if kind == "text" else json.dumps(payload).encode()
            content_type = METRICS_CONTENT_TYPE.encode() if kind == "text" else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.request(route, status, time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                set_process_name("nbc-worker")
                threading.Thread(target=self.load, name="nbc-load", daemon=True).start()
                if self.grpc_port:
                    self.grpc_server = serve_grpc(
                        self.grpc_port, self, self._grpc_bridge(), self.limits
                    )
                    log.warning("gRPC (KServe v2 GRPCInferenceService) on port %s", self.grpc_port)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.grpc_server is not None:
                    self.grpc_server.stop(grace=5)
                self.offload.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _path(self, raw: str) -> str:
        """The route a request path names (its trailing slash and model version dropped)."""
        path = raw.rstrip("/") or "/"
        model_path = f"/v2/models/{self.name}"
        # The one version there is may be named: /v2/models/NAME/versions/1[/infer|/ready].
        if path.startswith(f"{model_path}/versions/"):
            version, _, rest = path[len(model_path) + 10 :].partition("/")
            if version != "1":
                raise BadRequest(
                    f"Model {self.name} has version 1 only, not {version[:100]!r}.", 404
                )
            path = model_path + (f"/{rest}" if rest else "")
        return path

    async def _route(self, scope: Scope, receive: Receive) -> tuple[str, int, Any, str]:
        path, method = self._path(scope["path"]), scope["method"]
        model_path = f"/v2/models/{self.name}"
        gets: dict[str, Callable[[], tuple[int, Any, str]]] = {
            "/v2/health/live": lambda: (200, {"live": True}, "json"),
            "/v2/health/ready": self._ready,
            f"{model_path}/ready": self._ready,
            "/v2": lambda: (
                200,
                {
                    "name": "nbcontainers",
                    "version": self.meta.get("nbcontainers", ""),
                    "extensions": ["binary_tensor_data"],
                },
                "json",
            ),
            model_path: lambda: (200, model_metadata(self.name, self.meta), "json"),
            "/openapi.json": lambda: (200, openapi(self.name, self.meta), "json"),
            "/metrics": lambda: (200, self.metrics.render(), "text"),
            "/": lambda: (200, {"model": self.name, "openapi": "/openapi.json"}, "json"),
        }
        # HEAD too: load balancers probe health with it.
        if path in gets:
            if method not in ("GET", "HEAD"):
                raise BadRequest(f"{path} answers GET.", status=405)
            return (path, *gets[path]())
        if path in (f"{model_path}/infer", "/predict"):
            if method != "POST":
                raise BadRequest(f"{path} answers POST.", status=405)
            # 503 until loaded, as readiness says: orchestrators keep traffic away meanwhile.
            if self.predict is None:
                raise BadRequest(
                    f"Model {self.name} is not ready: "
                    + ("it failed to load." if self.load_error else "loading; retry shortly."),
                    status=503,
                    retry_after=None if self.load_error else 1,
                )
            header_length = _header_length(scope)
            raw = await self.budget.read_body(scope, receive)
            # The body's bytes stay counted until the answer: its decoded batch is about
            # as large (at most a few times), and waits in the batcher's queue meanwhile.
            try:
                if path == "/predict":
                    batch = await self._decode("predict", raw, None)
                    outputs = await self._infer(batch)
                    body, _ = await self._encode("predict", outputs, None)
                    return path, 200, body, "bytes"
                request = await self._decode("infer", raw, header_length)
                outputs = await self._infer(request.batch)
                body, header_length = await self._encode("infer", outputs, request)
                if header_length is None:
                    return path, 200, body, "bytes"
                return path, 200, (body, header_length), "binary"
            finally:
                self.budget.release(len(raw))
        if path.startswith("/v2/models/"):
            raise BadRequest(
                f"No model {path.split('/')[3][:100]!r} here; this server has {self.name!r}.",
                status=404,
            )
        raise BadRequest(f"No route {path[:100]}; see /openapi.json.", status=404)

    def _grpc_bridge(self) -> Callable[[bytes], tuple[list[Any], Any]]:
        """gRPC calls (in grpc's threads) answered on this loop, by the same decoding and
        batcher: ModelInfer's serialized request in, the outputs and decoded request out."""
        loop = asyncio.get_running_loop()

        async def infer(raw: bytes) -> tuple[list[Any], Any]:
            started, status = time.perf_counter(), 200
            try:
                if self.predict is None:
                    raise BadRequest(f"Model {self.name} is not ready.", status=503)
                self.budget.reserve(len(raw))
                try:
                    request = await self._decode("grpc", raw, None)
                    return await self._infer(request.batch), request
                finally:
                    self.budget.release(len(raw))
            except BadRequest as exc:
                status = exc.status
                raise
            except Exception:
                status = 500
                raise
            finally:
                self.metrics.request("grpc:ModelInfer", status, time.perf_counter() - started)

        def call(raw: bytes) -> tuple[list[Any], Any]:
            return asyncio.run_coroutine_threadsafe(infer(raw), loop).result()

        return call

    async def _decode(self, kind: str, raw: bytes, header_length: int | None) -> Any:
        """The request decoded: here when small, else in the decoding process."""
        args = (kind, raw, header_length, self.meta, self.max_elements)
        return await self.offload.run(decode_request, args, len(raw) > INLINE_DECODE)

    async def _encode(self, kind: str, outputs: list[Any], request: Any) -> tuple[bytes, Any]:
        """The reply's body (and binary header length): large outputs encoded off the loop
        too (a JSON list of millions of values takes as long as decoding one)."""
        values = sum(int(getattr(o, "size", 0)) for o in outputs)
        args = (kind, outputs, request, self.meta)
        return await self.offload.run(encode_reply, args, values > INLINE_ENCODE)  # type: ignore[no-any-return]

    def ready(self) -> bool:
        """Ready to serve: the model loaded here and, with several workers, in every worker;
        any of them may take the next request."""
        return self.predict is not None and every_worker_loaded()

    def _ready(self) -> tuple[int, Any, str]:
        if self.ready():
            return 200, {"ready": True}, "json"
        if self.predict is not None:
            return 503, {"ready": False, "error": "loading in the other workers"}, "json"
        # Why it failed is in the log: its words may hold paths and versions, for no client.
        error = self.load_refusal or (
            "the model failed to load; the server's log says why" if self.load_error else None
        )
        return 503, {"ready": False, "error": error or "loading"}, "json"

    async def _infer(self, batch: Any) -> list[Any]:
        if len(batch) > self.max_rows:
            raise BadRequest(
                f"At most {self.max_rows} rows per request (NBC_MAX_ROWS).", status=413
            )
        if self.batcher is None:
            assert self.predict is not None
            self.batcher = Batcher(
                self.predict,
                bool(self.meta.get("batchable")),
                bool(self.meta.get("frame")),
                self.max_rows,
                self.metrics,
                max_queue=self.limits.max_queue,
            )
        try:
            return await self.batcher.submit(batch)
        except BadRequest:
            raise
        except Exception as exc:
            # The model's own words may name its code and files: they go to the log only.
            log.warning("model %s failed on a request: %s: %s", self.name, type(exc).__name__, exc)
            raise BadRequest(
                "The model failed on this input (values it cannot take?); the server's log "
                "has its error.",
                status=422,
            ) from None


def every_worker_loaded() -> bool:
    """With several workers (``serve.main`` sets ``NBC_STATE_DIR``): whether each has marked
    its model loaded there; true with one worker."""
    folder = os.environ.get("NBC_STATE_DIR")
    if not folder:
        return True
    loaded = 0
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            pid = int(entry.removeprefix("loaded-")) if entry.startswith("loaded-") else 0
            # A worker that died left its file; the one started in its place has none yet.
            with contextlib.suppress(OSError, ValueError):
                os.kill(pid, 0)
                loaded += pid > 0
    return loaded >= int(os.environ.get("NBC_WORKERS") or 1)


def create_app() -> Server:
    limits = Limits.from_env()
    return Server(
        os.environ.get("NBC_MODEL_DIR", "/opt/nbc/model"),
        grpc_port=int(os.environ.get("NBC_GRPC_PORT") or 0) or None,
        cache_dir=os.environ.get("NBC_MODEL_CACHE") or None,
        limits=limits,
    )


def _header_length(scope: Scope) -> int | None:
    """The binary extension's Inference-Header-Content-Length, if the request has one."""
    for name, value in scope.get("headers", []):
        if name == b"inference-header-content-length":
            try:
                return int(value)
            except ValueError:
                raise BadRequest(
                    "Inference-Header-Content-Length must be a number of bytes."
                ) from None
    return None
