"""The model server inside an exported serving image: an ASGI app run by uvicorn.

Open Inference Protocol v2 over REST (health live/ready, server and model metadata, infer;
JSON and the binary tensor data extension) and, with ``NBC_GRPC_PORT``, over gRPC; a plain
JSON ``/predict``, an OpenAPI document and Prometheus ``/metrics``. Concurrent
requests are batched when the model takes a batch dimension: while the model runs, new
requests queue, and the next call takes all of them at once (no added wait at low load).
Standalone: the standard library, numpy, prometheus_client (grpcio and protobuf for gRPC,
imported only then) and the model's own framework; the model is read
from ``$NBC_MODEL_DIR`` (``meta.json`` says how) in a thread, so /v2/health/ready answers 503
until it is loaded.

These modules run in the image, not here: ``nbcontainers/serving/server.py`` joins them into
the export folder's ``server/server.py`` (``uvicorn server:app``); ``trim.py`` is not part
of it (it runs in the image's build stage). Importing this package needs numpy and
prometheus_client.
"""

from __future__ import annotations

from .app import Server, create_app
from .batching import Batcher
from .limits import MAX_DEPTH, BadRequest, check_json, parse_json
from .loading import load_model, read_safetensors, write_fast_copy
from .metrics import Metrics
from .protocol import InferRequest, decode_infer, decode_predict, encode_infer, encode_outputs

__all__ = [
    "MAX_DEPTH",
    "BadRequest",
    "Batcher",
    "InferRequest",
    "Metrics",
    "Server",
    "check_json",
    "create_app",
    "decode_infer",
    "decode_predict",
    "encode_infer",
    "encode_outputs",
    "load_model",
    "parse_json",
    "read_safetensors",
    "write_fast_copy",
]
