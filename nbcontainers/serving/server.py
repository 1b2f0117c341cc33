"""The model server inside an exported serving image: an ASGI app run by uvicorn.

Open Inference Protocol v2 over REST (health live/ready, server and model metadata, infer),
a plain JSON ``/predict``, an OpenAPI document and Prometheus ``/metrics``. Concurrent
requests are batched when the model takes a batch dimension: while the model runs, new
requests queue, and the next call takes all of them at once (no added wait at low load).
Standalone: the standard library, numpy and the model's own framework; the model is read
from ``$NBC_MODEL_DIR`` (``meta.json`` says how) in a thread, so /v2/health/ready answers 503
until it is loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

__all__ = [
    "BadRequest",
    "Batcher",
    "Metrics",
    "Server",
    "create_app",
    "decode_infer",
    "decode_predict",
    "encode_outputs",
    "load_model",
    "read_safetensors",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("nbcontainers.server")

_NUMPY_TYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class BadRequest(Exception):
    """The client's fault: answered with ``status`` and the message, the server keeps going."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---- loading -------------------------------------------------------------------------


def read_safetensors(path: str) -> dict[str, Any]:
    import torch

    types = {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        body = bytearray(f.read())
    state = {}
    for key, item in header.items():
        if key == "__metadata__":
            continue
        start, end = item["data_offsets"]
        raw = torch.frombuffer(body, dtype=torch.uint8, count=end - start, offset=start)
        state[key] = raw.view(types[item["dtype"]]).reshape(item["shape"]).clone()
    return state


def load_model(model_dir: str, meta: dict[str, Any]) -> Callable[[Any], list[Any]]:
    """A callable from a batch (ndarray or DataFrame) to a list of output ndarrays."""
    fmt = meta["format"]
    path = os.path.join(model_dir, meta["files"][0])
    if meta["kind"] in ("torch", "torch-program"):
        import torch

        device = "cuda" if meta.get("gpu") and torch.cuda.is_available() else "cpu"
        if fmt == "torch.export":
            module = torch.export.load(path).module()
        elif fmt == "safetensors":
            namespace = _run_code(model_dir)
            module = namespace[meta["class"]](**meta.get("init_args", {}))
            module.load_state_dict(read_safetensors(path))
            module.to(device).eval()
        else:
            module = _unpickle(path)
            module.to(device).eval()

        def call_torch(batch: Any) -> list[Any]:
            with torch.inference_mode():
                return _arrays(module(torch.from_numpy(batch).to(device)))

        return call_torch
    if meta["kind"] == "sklearn":
        if fmt == "skops":
            import skops.io

            estimator = skops.io.load(path, trusted=meta.get("trusted", []))
        else:
            estimator = _unpickle(path)
        method = getattr(estimator, meta.get("method", "predict"))
        return lambda batch: _arrays(method(batch))
    function = _run_code(model_dir)[meta["function"]] if fmt == "source" else _unpickle(path)
    return lambda batch: _arrays(function(batch))


def _run_code(model_dir: str) -> dict[str, Any]:
    path = os.path.join(model_dir, "model_code.py")
    namespace: dict[str, Any] = {"__name__": "nbc_model"}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), namespace)
    return namespace


def _unpickle(path: str) -> Any:
    import pickle

    # Only with --format pickle at export time: the exporter accepted pickle's trust model.
    with open(path, "rb") as f:
        return pickle.load(f)


def _arrays(result: Any) -> list[Any]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    out = []
    for item in items:
        if hasattr(item, "detach"):
            item = item.detach().cpu().numpy()
        elif hasattr(item, "to_numpy"):
            item = item.to_numpy()
        out.append(np.asarray(item))
    return out


# ---- batching ------------------------------------------------------------------------


class Batcher:
    """Runs the model in one worker thread; requests that arrive while it is busy are
    concatenated into the next call when the model takes a batch dimension."""

    def __init__(
        self,
        predict: Callable[[Any], list[Any]],
        batchable: bool,
        frame: bool,
        max_rows: int,
        metrics: Metrics,
    ) -> None:
        self.predict = predict
        self.batchable = batchable
        self.frame = frame
        self.max_rows = max_rows
        self.metrics = metrics
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future[list[Any]]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, batch: Any) -> list[Any]:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self.queue.put((batch, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            rows = len(items[0][0])
            while self.batchable and not self.queue.empty() and rows < self.max_rows:
                items.append(self.queue.get_nowait())
                rows += len(items[-1][0])
            try:
                await loop.run_in_executor(None, self._call, items)
            except Exception as exc:  # one bad call must not stop the loop
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)

    def _call(self, items: list[tuple[Any, asyncio.Future[list[Any]]]]) -> None:
        loop = items[0][1].get_loop()
        if len(items) > 1:
            joined = (
                __import__("pandas").concat([b for b, _ in items], ignore_index=True)
                if self.frame
                else np.concatenate([b for b, _ in items])
            )
            try:
                outputs = self.predict(joined)
                if all(len(o) == len(joined) for o in outputs):
                    self.metrics.batch(len(items))
                    start = 0
                    for batch, future in items:
                        end = start + len(batch)
                        loop.call_soon_threadsafe(
                            _settle, future, [o[start:end] for o in outputs], None
                        )
                        start = end
                    return
            except Exception:
                pass
        for batch, future in items:
            self.metrics.batch(1)
            try:
                result, error = self.predict(batch), None
            except Exception as exc:
                result, error = None, exc
            loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[list[Any]], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# ---- metrics -------------------------------------------------------------------------


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
        with self.lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            if route.endswith("infer") or route == "/predict":
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


# ---- request decoding ----------------------------------------------------------------


def decode_infer(body: Any, meta: dict[str, Any]) -> Any:
    """An Open Inference Protocol request body -> the model's batch."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest('Expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}.')
    expected = meta["signature"]["inputs"]
    given = {}
    for item in body["inputs"]:
        if not isinstance(item, dict) or "data" not in item:
            raise BadRequest("Each input needs name, shape, datatype and data.")
        given[str(item.get("name", ""))] = item
    if meta.get("frame"):
        columns = {}
        for spec in expected:
            item = given.get(spec["name"])
            if item is None:
                raise BadRequest(f"Missing input {spec['name']!r} (one input per column).")
            columns[spec["name"]] = _tensor(item, spec, flat=True)
        lengths = {len(c) for c in columns.values()}
        if len(lengths) != 1:
            raise BadRequest("All column inputs must have the same length.")
        return __import__("pandas").DataFrame(columns)
    spec = expected[0]
    item = given.get(spec["name"]) or (body["inputs"][0] if len(body["inputs"]) == 1 else None)
    if item is None:
        raise BadRequest(f"Missing input {spec['name']!r}.")
    return _tensor(item, spec, flat=False)


def decode_predict(body: Any, meta: dict[str, Any]) -> Any:
    """A plain JSON body (``{"instances": rows}`` or a bare list of rows) -> the model's batch."""
    rows = body.get("instances", body.get("inputs")) if isinstance(body, dict) else body
    if not isinstance(rows, list) or not rows:
        raise BadRequest('Expected {"instances": [row, ...]} or a JSON list of rows.')
    specs = meta["signature"]["inputs"]
    if meta.get("frame"):
        names = [s["name"] for s in specs]
        try:
            records = [r if isinstance(r, dict) else dict(zip(names, r, strict=True)) for r in rows]
        except (TypeError, ValueError):
            raise BadRequest(
                f"Each row must be an object or a list of {len(names)} values ({', '.join(names)})."
            ) from None
        frame = __import__("pandas").DataFrame.from_records(records, columns=names)
        for spec in specs:
            frame[spec["name"]] = _cast(frame[spec["name"]].to_numpy(), spec)
        return frame
    spec = specs[0]
    array = _cast(rows, spec)
    _check_shape(array.shape, spec)
    return array


def _cast(data: Any, spec: dict[str, Any]) -> Any:
    try:
        return np.asarray(data, dtype=_NUMPY_TYPES.get(spec["datatype"], "object"))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Input {spec['name']!r} must be {spec['datatype']}: {exc}") from None


def _tensor(item: dict[str, Any], spec: dict[str, Any], flat: bool) -> Any:
    array = _cast(item["data"], spec)
    shape = item.get("shape")
    if shape is not None:
        try:
            array = array.reshape([int(s) for s in shape])
        except (TypeError, ValueError):
            raise BadRequest(
                f"Input {spec['name']!r}: {array.size} values don't fit shape {shape}."
            ) from None
    elif not flat:
        array = array.reshape([-1, *spec["shape"][1:]])
    if flat:
        return array.reshape(-1)
    _check_shape(array.shape, spec)
    return array


def _check_shape(shape: tuple[int, ...], spec: dict[str, Any]) -> None:
    want = spec["shape"]
    if len(shape) != len(want) or any(
        w != -1 and w != s for w, s in zip(want, shape, strict=False)
    ):
        raise BadRequest(
            f"Input {spec['name']!r} must have shape {want} (-1: any), got {list(shape)}.",
            status=422,
        )


def encode_outputs(outputs: list[Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    specs = meta["signature"]["outputs"]
    encoded = []
    for i, array in enumerate(outputs):
        spec = specs[i] if i < len(specs) else {"name": f"output-{i}", "datatype": "BYTES"}
        data = array.reshape(-1).tolist()
        encoded.append(
            {
                "name": spec["name"],
                "datatype": spec["datatype"],
                "shape": list(array.shape),
                "data": data,
            }
        )
    return encoded


# ---- the app -------------------------------------------------------------------------


class Server:
    """The ASGI application (``app`` below is one, configured from the environment)."""

    def __init__(self, model_dir: str, max_body: int = 8 << 20, max_rows: int = 4096) -> None:
        self.model_dir = model_dir
        with open(os.path.join(model_dir, "meta.json")) as f:
            self.meta = json.load(f)
        self.name = self.meta["name"]
        self.max_body = max_body
        self.max_rows = max_rows
        self.metrics = Metrics()
        self.predict: Callable[[Any], list[Any]] | None = None
        self.load_error: str | None = None
        self.batcher: Batcher | None = None

    def load(self) -> None:
        try:
            self.predict = load_model(self.model_dir, self.meta)
            self.metrics.ready = 1
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
        try:
            route, status, payload, kind = await self._route(scope, receive)
        except BadRequest as exc:
            status, payload, kind = exc.status, {"error": str(exc)}, "json"
        except Exception as exc:
            log.exception("request to %s failed", route)
            status, payload, kind = 500, {"error": f"{type(exc).__name__}: {exc}"}, "json"
        body = payload.encode() if kind == "text" else json.dumps(payload).encode()
        content_type = b"text/plain; version=0.0.4" if kind == "text" else b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[str, int, Any, str]:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
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
                    "extensions": [],
                },
                "json",
            ),
            model_path: lambda: (200, self._model_metadata(), "json"),
            "/openapi.json": lambda: (200, self._openapi(), "json"),
            "/metrics": lambda: (200, self.metrics.render(), "text"),
            "/": lambda: (200, {"model": self.name, "openapi": "/openapi.json"}, "json"),
        }
        if path in gets:
            if method not in ("GET", "HEAD"):
                raise BadRequest(f"{path} answers GET.", status=405)
            return (path, *gets[path]())
        if path in (f"{model_path}/infer", "/predict"):
            if method != "POST":
                raise BadRequest(f"{path} answers POST.", status=405)
            if self.predict is None:
                raise BadRequest(
                    f"Model {self.name} is not ready: {self.load_error or 'loading'}.", status=503
                )
            body = await self._json(scope, receive)
            if path == "/predict":
                outputs = await self._infer(decode_predict(body, self.meta))
                predictions: Any = [o.tolist() for o in outputs]
                return (
                    path,
                    200,
                    {"predictions": predictions[0] if len(outputs) == 1 else predictions},
                    "json",
                )
            outputs = await self._infer(decode_infer(body, self.meta))
            reply = {
                "model_name": self.name,
                "model_version": "1",
                "outputs": encode_outputs(outputs, self.meta),
            }
            if isinstance(body, dict) and "id" in body:
                reply["id"] = body["id"]
            return path, 200, reply, "json"
        if path.startswith("/v2/models/"):
            raise BadRequest(
                f"No model {path.split('/')[3]!r} here; this server has {self.name!r}.", status=404
            )
        raise BadRequest(f"No route {path}; see /openapi.json.", status=404)

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

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        # Over the limit, the rest is read and dropped (up to 8x the limit) so the client
        # gets its 413 rather than a connection reset in the middle of sending.
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
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"The body is not JSON: {exc}") from None

    def _model_metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": self.meta["format"],
            "inputs": self.meta["signature"]["inputs"],
            "outputs": self.meta["signature"]["outputs"],
        }

    def _openapi(self) -> dict[str, Any]:
        tensor = {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"type": "string"},
                "data": {"type": "array", "items": {}},
            },
        }
        error = {
            "description": "Bad input",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
                }
            },
        }

        def op(summary: str, body: Any = None) -> dict[str, Any]:
            spec: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
            if body is not None:
                spec["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                }
                spec["responses"].update({"400": error, "413": error, "422": error, "503": error})
            return spec

        model = f"/v2/models/{self.name}"
        return {
            "openapi": "3.0.3",
            "info": {
                "title": f"{self.name} (nbcontainers serving)",
                "version": "1",
                "description": f"Inputs: {json.dumps(self.meta['signature']['inputs'])}",
            },
            "paths": {
                "/v2/health/live": {"get": op("Liveness")},
                "/v2/health/ready": {"get": op("Readiness: 503 until the model is loaded")},
                "/v2": {"get": op("Server metadata")},
                model: {"get": op("Model metadata: input and output signature")},
                f"{model}/ready": {"get": op("Model readiness")},
                f"{model}/infer": {
                    "post": op(
                        "Open Inference Protocol v2 inference",
                        {
                            "type": "object",
                            "required": ["inputs"],
                            "properties": {
                                "id": {"type": "string"},
                                "inputs": {"type": "array", "items": tensor},
                            },
                        },
                    )
                },
                "/predict": {
                    "post": op(
                        'Plain JSON: {"instances": [row, ...]} -> {"predictions": [...]}',
                        {
                            "type": "object",
                            "properties": {"instances": {"type": "array", "items": {}}},
                        },
                    )
                },
                "/metrics": {"get": op("Prometheus metrics")},
            },
        }


def create_app() -> Server:
    return Server(
        os.environ.get("NBC_MODEL_DIR", "/opt/nbc/model"),
        max_body=int(os.environ.get("NBC_MAX_BODY_BYTES", 8 << 20)),
        max_rows=int(os.environ.get("NBC_MAX_ROWS", 4096)),
    )


def __getattr__(name: str) -> Any:
    # `uvicorn server:app` builds the app on first access, not at import.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
