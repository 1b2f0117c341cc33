"""The ASGI application: routes, limits, the model loaded in a thread (503 until then)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .batching import Batcher
from .grpc_service import serve_grpc
from .limits import BadRequest
from .loading import load_model
from .metrics import METRICS_CONTENT_TYPE, Metrics
from .openapi import openapi
from .protocol import decode_infer, decode_predict, encode_infer

__all__ = [
    "Server",
    "create_app",
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
    ) -> None:
        self.model_dir = model_dir
        with open(os.path.join(model_dir, "meta.json")) as f:
            self.meta = json.load(f)
        self.name = self.meta["name"]
        self.max_body = max_body
        self.max_rows = max_rows
        self.max_elements = max_elements
        self.grpc_port = grpc_port
        self.cache_dir = cache_dir
        self.grpc_server: Any = None
        self.metrics = Metrics()
        self.predict: Callable[[Any], list[Any]] | None = None
        self.load_error: str | None = None
        self.batcher: Batcher | None = None

    def load(self) -> None:
        # In a thread from startup, so health answers (503) while a large model loads.
        try:
            self.predict = load_model(self.model_dir, self.meta, self.cache_dir)
            self.metrics.ready = 1
            # Warning: uvicorn configures only its own loggers, so ours prints through Python's
            # last-resort handler, which drops anything below warning.
            log.warning("model %s loaded (%s)", self.name, self.meta["format"])
        except Exception as exc:  # reported by /v2/health/ready and the log
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("loading model %s failed: %s", self.name, self.load_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route, status = scope["path"], 500
        # Every failure becomes a JSON answer: a bad request must never stop the server.
        try:
            route, status, payload, kind = await self._route(scope, receive)
        except BadRequest as exc:
            status, payload, kind = exc.status, {"error": str(exc)}, "json"
            if status == 404:
                route = "(no such route)"  # clients pick paths: metrics labels stay bounded
        except Exception as exc:
            log.exception("request to %s failed", route)
            status, payload, kind = 500, {"error": f"{type(exc).__name__}: {exc}"}, "json"
        extra: list[tuple[bytes, bytes]] = []
        if kind == "binary":
            # The binary extension: the JSON header's length, then raw tensors after it.
            body, header_length = payload
            content_type = b"application/octet-stream"
            extra = [(b"inference-header-content-length", str(header_length).encode())]
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
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.request(route, status, time.perf_counter() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                threading.Thread(target=self.load, name="nbc-load", daemon=True).start()
                if self.grpc_port:
                    self.grpc_server = serve_grpc(
                        self.grpc_port, self, self._grpc_bridge(), self.max_body
                    )
                    log.warning("gRPC (KServe v2 GRPCInferenceService) on port %s", self.grpc_port)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.grpc_server is not None:
                    self.grpc_server.stop(grace=5)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[str, int, Any, str]:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        model_path = f"/v2/models/{self.name}"
        # The one version there is may be named: /v2/models/NAME/versions/1[/infer|/ready].
        if path.startswith(f"{model_path}/versions/"):
            version, _, rest = path[len(model_path) + 10 :].partition("/")
            if version != "1":
                raise BadRequest(f"Model {self.name} has version 1 only, not {version!r}.", 404)
            path = model_path + (f"/{rest}" if rest else "")
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
            model_path: lambda: (200, self._model_metadata(), "json"),
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
                    f"Model {self.name} is not ready: {self.load_error or 'loading'}.", status=503
                )
            raw = await self._body(scope, receive)
            if path == "/predict":
                outputs = await self._infer(decode_predict(raw, self.meta, self.max_elements))
                predictions: Any = [o.tolist() for o in outputs]
                return (
                    path,
                    200,
                    # One output: its rows directly (TF Serving's shape); several: a list each.
                    {"predictions": predictions[0] if len(outputs) == 1 else predictions},
                    "json",
                )
            request = decode_infer(raw, _header_length(scope), self.meta, self.max_elements)
            body, header_length = encode_infer(await self._infer(request.batch), request, self.meta)
            if header_length is None:
                return path, 200, body, "bytes"
            return path, 200, (body, header_length), "binary"
        if path.startswith("/v2/models/"):
            raise BadRequest(
                f"No model {path.split('/')[3]!r} here; this server has {self.name!r}.", status=404
            )
        raise BadRequest(f"No route {path}; see /openapi.json.", status=404)

    def _grpc_bridge(self) -> Callable[[bytes, int], tuple[list[Any], Any]]:
        """gRPC calls (in grpc's threads) answered on this loop, by the same batcher."""
        loop = asyncio.get_running_loop()

        async def infer(raw: bytes, header_length: int) -> tuple[list[Any], Any]:
            started, status = time.perf_counter(), 200
            try:
                if self.predict is None:
                    raise BadRequest(f"Model {self.name} is not ready.", status=503)
                request = decode_infer(raw, header_length, self.meta, self.max_elements)
                return await self._infer(request.batch), request
            except BadRequest as exc:
                status = exc.status
                raise
            finally:
                self.metrics.request("grpc:ModelInfer", status, time.perf_counter() - started)

        def call(raw: bytes, header_length: int) -> tuple[list[Any], Any]:
            return asyncio.run_coroutine_threadsafe(infer(raw, header_length), loop).result()

        return call

    def _ready(self) -> tuple[int, Any, str]:
        if self.predict is not None:
            return 200, {"ready": True}, "json"
        return 503, {"ready": False, "error": self.load_error or "loading"}, "json"

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
            )
        try:
            return await self.batcher.submit(batch)
        except BadRequest:
            raise
        except Exception as exc:
            raise BadRequest(
                f"The model failed on this input: {type(exc).__name__}: {exc}", status=422
            ) from None

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        # Over the limit, the rest is read and dropped (up to 8x the limit) so the client
        # gets its 413 rather than a connection reset in the middle of sending.
        for name, value in scope.get("headers", []):
            if name == b"content-encoding" and value.lower() not in (b"identity", b""):
                raise BadRequest(
                    f"Content-Encoding {value.decode(errors='replace')} is not accepted; "
                    "send the body uncompressed.",
                    status=415,
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= self.max_body:
                chunks.append(chunk)
            if not message.get("more_body") or size > 8 * self.max_body:
                break
        if size > self.max_body:
            raise BadRequest(
                f"Request body over {self.max_body} bytes (NBC_MAX_BODY_BYTES).", status=413
            )
        return b"".join(chunks)

    def _model_metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": self.meta["format"],
            "inputs": self.meta["signature"]["inputs"],
            "outputs": self.meta["signature"]["outputs"],
        }


def create_app() -> Server:
    return Server(
        os.environ.get("NBC_MODEL_DIR", "/opt/nbc/model"),
        max_body=int(os.environ.get("NBC_MAX_BODY_BYTES", 8 << 20)),
        max_rows=int(os.environ.get("NBC_MAX_ROWS", 4096)),
        max_elements=int(os.environ.get("NBC_MAX_ELEMENTS", 1 << 21)),
        grpc_port=int(os.environ.get("NBC_GRPC_PORT") or 0) or None,
        cache_dir=os.environ.get("NBC_MODEL_CACHE") or None,
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


def __getattr__(name: str) -> Any:
    # `uvicorn server:app` builds the app on first access, not at import.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
