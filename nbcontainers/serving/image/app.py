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
from concurrent.futures import Executor
from typing import Any

from .batching import Batcher
from .grpc_service import decode_grpc_infer, serve_grpc
from .limits import BadRequest, Limits
from .loading import load_model
from .metrics import METRICS_CONTENT_TYPE, Metrics
from .openapi import openapi
from .protocol import decode_infer, decode_predict, encode_infer

__all__ = [
    "INLINE_DECODE",
    "INLINE_ENCODE",
    "Server",
    "create_app",
    "decode_request",
    "encode_reply",
    "set_process_name",
]

# Bodies up to this size are decoded on the event loop: the worst of them (a body of empty
# strings, the slowest for the JSON pre-check) takes about 4 ms here; a larger one goes to
# the decoding process (its round trip costs more than decoding a small body).
INLINE_DECODE = 16 << 10
# Output values encoded on the loop; more go to the decoding process (about 4 ms here).
INLINE_ENCODE = 16 << 10


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
        self.buffered = 0  # request bytes held now (bodies read or waiting for the model)
        self.decoder: Executor | None = None
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
                if self.decoder is not None:
                    self.decoder.shutdown(wait=False, cancel_futures=True)
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
                    f"Model {self.name} is not ready: "
                    + ("it failed to load." if self.load_error else "loading; retry shortly."),
                    status=503,
                    retry_after=None if self.load_error else 1,
                )
            header_length = _header_length(scope)
            raw = await self._body(scope, receive)
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
                self.buffered -= len(raw)
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
                self._reserve(len(raw))
                try:
                    request = await self._decode("grpc", raw, None)
                    return await self._infer(request.batch), request
                finally:
                    self.buffered -= len(raw)
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
        return await self._offload(decode_request, args, len(raw) > INLINE_DECODE)

    async def _encode(self, kind: str, outputs: list[Any], request: Any) -> tuple[bytes, Any]:
        """The reply's body (and binary header length): large outputs encoded off the loop
        too (a JSON list of millions of values takes as long as decoding one)."""
        values = sum(int(getattr(o, "size", 0)) for o in outputs)
        args = (kind, outputs, request, self.meta)
        return await self._offload(encode_reply, args, values > INLINE_ENCODE)  # type: ignore[no-any-return]

    async def _offload(self, func: Callable[..., Any], args: tuple[Any, ...], heavy: bool) -> Any:
        """``func(*args)``: here when light, else in this worker's decoding process."""
        if not heavy:
            return func(*args)
        if self.decoder is None:
            self.decoder = _decoding_process()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.decoder, func, *args)
        except BadRequest:
            raise
        except Exception:
            # The process died (out of memory, killed): a new one for the next request.
            log.exception("the decoding process failed")
            decoder, self.decoder = self.decoder, None
            with contextlib.suppress(Exception):
                decoder.shutdown(wait=False, cancel_futures=True)
            raise BadRequest(
                "The server could not handle this request now; retry.", status=503, retry_after=1
            ) from None

    def _reserve(self, size: int) -> None:
        if self.buffered + size > self.limits.max_buffered:
            raise BadRequest(
                f"The server holds {self.limits.max_buffered} bytes of requests already "
                "(NBC_MAX_BUFFERED_BYTES); retry.",
                status=503,
                retry_after=1,
            )
        self.buffered += size

    def _ready(self) -> tuple[int, Any, str]:
        if self.predict is not None:
            return 200, {"ready": True}, "json"
        # Why it failed is in the log: its words may hold paths and versions, for no client.
        error = "the model failed to load; the server's log says why" if self.load_error else None
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
        chunks: list[bytes] = []
        size = reserved = 0

        async def read() -> None:
            nonlocal size, reserved
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= self.max_body:
                    self._reserve(len(chunk))
                    reserved += len(chunk)
                    chunks.append(chunk)
                if not message.get("more_body") or size > 8 * self.max_body:
                    return

        try:
            # One deadline for the whole body (slowloris sends a byte now and then).
            await asyncio.wait_for(read(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            self.buffered -= reserved
            raise BadRequest(
                f"The body did not arrive within {self.limits.body_timeout:g} s "
                "(NBC_BODY_TIMEOUT).",
                status=408,
            ) from None
        except BaseException:
            self.buffered -= reserved
            raise
        if size > self.max_body:
            self.buffered -= reserved
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
    limits = Limits.from_env()
    return Server(
        os.environ.get("NBC_MODEL_DIR", "/opt/nbc/model"),
        grpc_port=int(os.environ.get("NBC_GRPC_PORT") or 0) or None,
        cache_dir=os.environ.get("NBC_MODEL_CACHE") or None,
        limits=limits,
    )


def decode_request(
    kind: str, raw: bytes, header_length: int | None, meta: dict[str, Any], max_elements: int
) -> Any:
    """A request's body decoded, here or in the decoding process: /predict's batch, or the
    :class:`InferRequest` of an infer (``kind`` "infer") or a gRPC ModelInfer ("grpc").
    Whatever the body holds, the outcome is the decoded request or a :class:`BadRequest`."""
    try:
        if kind == "predict":
            return decode_predict(raw, meta, max_elements)
        if kind == "grpc":
            return decode_grpc_infer(raw, meta, max_elements)
        return decode_infer(raw, header_length, meta, max_elements)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("The request nests too deep.") from None
    except Exception as exc:
        # Checks above should leave nothing for here; what does is still the input's doing,
        # so a 400 that leaks nothing, and the details in the log for a fix.
        log.warning("decoding a request failed: %s: %s", type(exc).__name__, exc)
        raise BadRequest("The request could not be read as this model's inputs.") from None


def encode_reply(
    kind: str, outputs: list[Any], request: Any, meta: dict[str, Any]
) -> tuple[bytes, int | None]:
    """The reply's body to /predict (``kind`` "predict") or an infer request, and the binary
    extension's JSON header length when some output is binary; here or in the decoding
    process."""
    if kind == "predict":
        predictions: Any = [o.tolist() for o in outputs]
        # One output: its rows directly (TF Serving's shape); several: a list each.
        reply = {"predictions": predictions[0] if len(outputs) == 1 else predictions}
        return json.dumps(reply).encode(), None
    return encode_infer(outputs, request, meta)


def _decoding_process() -> Executor:
    """One process per worker, started on the first large body: decodes queue there
    (bounded by the buffered-bytes budget), never on the loop."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    try:
        # spawn: this process has threads (the model's, gRPC's), which fork would copy in
        # whatever state they are.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=set_process_name,
            initargs=("nbc-decode",),
        )
    except OSError as exc:  # no /dev/shm for its locks: serve on, slower to answer probes
        log.warning("no decoding process (%s); large bodies are decoded in a thread", exc)
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbc-decode")


def set_process_name(name: str) -> None:
    """Name this process (``ps``, ``docker top``) by its role: nbc-worker, nbc-decode."""
    import ctypes

    with contextlib.suppress(Exception):  # not Linux, no libc: the name is a nicety
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


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
