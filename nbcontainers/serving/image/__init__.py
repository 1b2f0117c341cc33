"""The model server inside an exported serving image: an ASGI app run by uvicorn.

Open Inference Protocol v2 over REST (health live/ready, server and model metadata, infer;
JSON and the binary tensor data extension) and, with ``NBC_GRPC_PORT``, over gRPC; a plain
JSON ``/predict``, an OpenAPI document and Prometheus ``/metrics``. Concurrent requests are
batched when the model's rows are independent (``batchable`` in ``meta.json``): while the
model runs, new requests queue, and the next call takes all of them at once (no added wait
at low load). Every request is bounded (body, rows, values, time to send, bytes held, queue
depth) and from ``NBC_WORKERS`` processes sharing the port, each with its own model.
Standalone: the standard library, numpy, prometheus_client (grpcio and protobuf for gRPC,
imported only then; uvicorn when serving) and the model's own framework; the model is read
from ``$NBC_MODEL_DIR`` (``meta.json`` says how) in a thread, so /v2/health/ready answers 503
until it is loaded.

These modules run in the image, not here: ``nbcontainers/serving/server.py`` joins them into
the export folder's ``server/server.py`` (the image runs its ``main()``); ``trim.py`` is not
part of it (it runs in the image's build stage). Importing this package needs numpy and
prometheus_client.
"""

from __future__ import annotations

from .app import Server, create_app
from .batching import Batcher
from .limits import MAX_DEPTH, BadRequest, Limits, check_json, parse_json
from .loading import load_model, read_safetensors, write_fast_copy
from .metrics import Metrics
from .protocol import InferRequest, decode_infer, decode_predict, encode_infer, encode_outputs
from .serve import available_cpus, main

__all__ = [
    "MAX_DEPTH",
    "BadRequest",
    "Batcher",
    "InferRequest",
    "Limits",
    "Metrics",
    "Server",
    "available_cpus",
    "check_json",
    "create_app",
    "decode_infer",
    "decode_predict",
    "encode_infer",
    "encode_outputs",
    "load_model",
    "main",
    "parse_json",
    "read_safetensors",
    "write_fast_copy",
]
