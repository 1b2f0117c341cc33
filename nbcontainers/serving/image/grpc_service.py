"""The Open Inference Protocol over gRPC (KServe v2 ``inference.GRPCInferenceService``): its
messages built at start from the table below, and a servicer that answers through the same
checks, batcher and model as the REST routes.

The messages are declared here from the public protocol (field numbers and types are what
goes on the wire; ``map<string, InferParameter>`` is, on the wire, a repeated key/value
entry, declared so). Only with ``--grpc``: grpcio and protobuf are imported when the server
starts one, never at import.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .limits import BadRequest, Limits
from .protocol import InferRequest, decode_infer
from .tensors import NUMPY_TYPES, array_to_bytes

__all__ = [
    "MESSAGES",
    "SERVICE",
    "decode_grpc_infer",
    "serve_grpc",
]

grpc_log = logging.getLogger("nbcontainers.server.grpc")

SERVICE = "inference.GRPCInferenceService"

# message -> (field, number, type, label); a type starting with "." is another message here;
# label "*" is repeated, "?" one of the message's oneof. Nested messages of the protocol
# are top-level here (a type's name never goes on the wire).
MESSAGES: dict[str, list[tuple[str, int, str, str]]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("live", 1, "bool", "")],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("ready", 1, "bool", "")],
    "ModelReadyRequest": [("name", 1, "string", ""), ("version", 2, "string", "")],
    "ModelReadyResponse": [("ready", 1, "bool", "")],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [
        ("name", 1, "string", ""),
        ("version", 2, "string", ""),
        ("extensions", 3, "string", "*"),
    ],
    "ModelMetadataRequest": [("name", 1, "string", ""), ("version", 2, "string", "")],
    "TensorMetadata": [
        ("name", 1, "string", ""),
        ("datatype", 2, "string", ""),
        ("shape", 3, "int64", "*"),
    ],
    "ModelMetadataResponse": [
        ("name", 1, "string", ""),
        ("versions", 2, "string", "*"),
        ("platform", 3, "string", ""),
        ("inputs", 4, ".TensorMetadata", "*"),
        ("outputs", 5, ".TensorMetadata", "*"),
    ],
    "InferParameter": [
        ("bool_param", 1, "bool", "?"),
        ("int64_param", 2, "int64", "?"),
        ("string_param", 3, "string", "?"),
        ("double_param", 4, "double", "?"),
        ("uint64_param", 5, "uint64", "?"),
    ],
    "ParameterEntry": [("key", 1, "string", ""), ("value", 2, ".InferParameter", "")],
    "InferTensorContents": [
        ("bool_contents", 1, "bool", "*"),
        ("int_contents", 2, "int32", "*"),
        ("int64_contents", 3, "int64", "*"),
        ("uint_contents", 4, "uint32", "*"),
        ("uint64_contents", 5, "uint64", "*"),
        ("fp32_contents", 6, "float", "*"),
        ("fp64_contents", 7, "double", "*"),
        ("bytes_contents", 8, "bytes", "*"),
    ],
    "InferInputTensor": [
        ("name", 1, "string", ""),
        ("datatype", 2, "string", ""),
        ("shape", 3, "int64", "*"),
        ("parameters", 4, ".ParameterEntry", "*"),
        ("contents", 5, ".InferTensorContents", ""),
    ],
    "InferRequestedOutputTensor": [
        ("name", 1, "string", ""),
        ("parameters", 2, ".ParameterEntry", "*"),
    ],
    "ModelInferRequest": [
        ("model_name", 1, "string", ""),
        ("model_version", 2, "string", ""),
        ("id", 3, "string", ""),
        ("parameters", 4, ".ParameterEntry", "*"),
        ("inputs", 5, ".InferInputTensor", "*"),
        ("outputs", 6, ".InferRequestedOutputTensor", "*"),
        ("raw_input_contents", 7, "bytes", "*"),
    ],
    "InferOutputTensor": [
        ("name", 1, "string", ""),
        ("datatype", 2, "string", ""),
        ("shape", 3, "int64", "*"),
        ("parameters", 4, ".ParameterEntry", "*"),
        ("contents", 5, ".InferTensorContents", ""),
    ],
    "ModelInferResponse": [
        ("model_name", 1, "string", ""),
        ("model_version", 2, "string", ""),
        ("id", 3, "string", ""),
        ("parameters", 4, ".ParameterEntry", "*"),
        ("outputs", 5, ".InferOutputTensor", "*"),
        ("raw_output_contents", 6, "bytes", "*"),
    ],
}

# The contents field each datatype's values travel in when a client sends no raw bytes.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@lru_cache(maxsize=1)
def message_classes() -> dict[str, Any]:
    """The protocol's message classes, from :data:`MESSAGES`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="nbc_grpc_predict_v2.proto", package="inference", syntax="proto3"
    )
    for name, fields in MESSAGES.items():
        message = proto.message_type.add(name=name)
        if any(label == "?" for *_, label in fields):
            message.oneof_decl.add(name="parameter_choice")
        for fname, number, ftype, label in fields:
            spec = message.field.add(name=fname, number=number)
            spec.label = field.LABEL_REPEATED if label == "*" else field.LABEL_OPTIONAL
            if ftype.startswith("."):
                spec.type, spec.type_name = field.TYPE_MESSAGE, f".inference{ftype}"
            else:
                spec.type = getattr(field, f"TYPE_{ftype.upper()}")
            if label == "?":
                spec.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
        for name in MESSAGES
    }


def _value(parameter: Any) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def infer_body(request: Any) -> tuple[bytes, int]:
    """A gRPC ModelInferRequest as the REST body the binary extension would carry (JSON
    header, then raw tensors), so both protocols pass the very same checks."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: one each or none."
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        item: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if raw:
            item["parameters"] = {"binary_data_size": len(raw[i])}
        else:
            values = list(
                getattr(tensor.contents, _CONTENTS.get(tensor.datatype, "bytes_contents"))
            )
            item["data"] = [
                v.decode(errors="replace") if isinstance(v, bytes) else v for v in values
            ]
        inputs.append(item)
    body: dict[str, Any] = {"inputs": inputs}
    if request.id:
        body["id"] = request.id
    if len(request.outputs):
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    header = json.dumps(body).encode()
    return header + b"".join(raw), len(header)


def decode_grpc_infer(raw: bytes, meta: dict[str, Any], max_elements: int) -> InferRequest:
    """A serialized ModelInferRequest -> the decoded request (its id the request's), through
    the REST checks; here or in the decoding process, like a REST body."""
    try:
        request = message_classes()["ModelInferRequest"].FromString(raw)
    except Exception:  # protobuf's DecodeError, or a message nested past its limit
        raise BadRequest("The message is not a ModelInferRequest.") from None
    check_model(meta["name"], request.model_name, request.model_version)
    body, header_length = infer_body(request)
    decoded = decode_infer(body, header_length, meta, max_elements)
    decoded.id = request.id
    return decoded


def check_model(name: str, asked: str, version: str) -> None:
    """A 404 unless ``asked`` (and ``version``) names the model ``name`` this server has."""
    if asked != name:
        raise BadRequest(f"No model {asked[:100]!r} here; this server has {name!r}.", 404)
    if version not in ("", "1"):
        raise BadRequest(f"Model {name} has version 1 only, not {version[:100]!r}.", 404)


_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "RESOURCE_EXHAUSTED",
    422: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


class _WriteDeadlines:
    """Cancels each call whose answer its client has not taken within ``timeout`` seconds of
    the handler's return. grpc's server keeps an unread answer (up to a message limit) for as
    long as the client gives it no window, and counts the call against the concurrency limit
    no more: many such calls would hold memory without bound. One thread sweeps them all."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._calls: dict[Any, float] = {}  # a call's context -> its deadline
        threading.Thread(target=self._sweep, name="nbc-grpc-deadline", daemon=True).start()

    def watch(self, context: Any) -> None:
        """Start the clock for ``context``'s answer; the call's end stops it."""
        with self._lock:
            self._calls[context] = time.monotonic() + self.timeout
        if not context.add_callback(lambda: self._forget(context)):
            self._forget(context)  # already ended

    def _forget(self, context: Any) -> None:
        with self._lock:
            self._calls.pop(context, None)

    def _sweep(self) -> None:
        every = min(1.0, self.timeout / 4)
        while True:
            time.sleep(every)
            now = time.monotonic()
            with self._lock:
                late = [context for context, at in self._calls.items() if at <= now]
                for context in late:
                    del self._calls[context]
            for context in late:
                grpc_log.warning("a gRPC client left its answer unread: call cancelled")
                context.cancel()  # RST_STREAM: the call ends, and its answer is freed


def serve_grpc(
    port: int,
    server: Any,
    infer: Callable[[bytes], tuple[list[Any], Any]],
    limits: Limits,
) -> Any:
    """Start the gRPC service on ``port`` (all interfaces) in threads; ``infer`` takes a
    serialized ModelInferRequest and gives the outputs and the decoded request. The grpc
    server: messages up to ``limits.grpc_max_message``, ``limits.max_concurrency`` calls at
    once (more are RESOURCE_EXHAUSTED)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    types = message_classes()
    meta = server.meta
    deadlines = _WriteDeadlines(limits.write_timeout)

    def guarded(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def run(request: Any, context: Any) -> Any:
            try:
                reply = handler(request, context)
                deadlines.watch(context)
                return reply
            except BadRequest as exc:
                context.abort(
                    getattr(grpc.StatusCode, _CODES.get(exc.status, "INVALID_ARGUMENT")), str(exc)
                )
            except Exception:
                # The server's fault: the log has the details, the client none of them.
                grpc_log.exception("gRPC call failed")
                context.abort(
                    grpc.StatusCode.INTERNAL, "Internal server error; the server's log has it."
                )

        return run

    def check_model_(name: str, version: str) -> None:
        check_model(server.name, name, version)

    def model_ready(request: Any, context: Any) -> Any:
        check_model_(request.name, request.version)
        return types["ModelReadyResponse"](ready=server.ready())

    def model_metadata(request: Any, context: Any) -> Any:
        check_model_(request.name, request.version)
        tensor = types["TensorMetadata"]
        signature = meta["signature"]
        return types["ModelMetadataResponse"](
            name=server.name,
            versions=["1"],
            platform=meta["format"],
            inputs=[tensor(**s) for s in signature["inputs"]],
            outputs=[tensor(**s) for s in signature["outputs"]],
        )

    def model_infer(raw: bytes, context: Any) -> Any:
        # Parsed with the rest of the decoding (in the decoding process when large).
        outputs, decoded = infer(raw)
        reply = types["ModelInferResponse"](
            model_name=server.name, model_version="1", id=decoded.id or ""
        )
        specs = meta["signature"]["outputs"]
        for i, array in enumerate(outputs):
            spec = specs[i] if i < len(specs) else {"name": f"output-{i}", "datatype": "BYTES"}
            if decoded.outputs is not None and spec["name"] not in decoded.outputs:
                continue
            datatype = spec["datatype"] if spec["datatype"] in NUMPY_TYPES else "BYTES"
            reply.outputs.add(name=spec["name"], datatype=datatype, shape=list(array.shape))
            reply.raw_output_contents.append(array_to_bytes(array, datatype))
        return reply

    handlers = {
        "ServerLive": (lambda r, c: types["ServerLiveResponse"](live=True), "ServerLive"),
        "ServerReady": (
            lambda r, c: types["ServerReadyResponse"](ready=server.ready()),
            "ServerReady",
        ),
        "ModelReady": (model_ready, "ModelReady"),
        "ServerMetadata": (
            lambda r, c: types["ServerMetadataResponse"](
                name="nbcontainers",
                version=meta.get("nbcontainers", ""),
                extensions=["binary_tensor_data"],
            ),
            "ServerMetadata",
        ),
        "ModelMetadata": (model_metadata, "ModelMetadata"),
        "ModelInfer": (model_infer, "ModelInfer"),
    }
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            guarded(fn),
            # ModelInfer's bytes stay bytes here: decoding is the bridge's (off this thread).
            request_deserializer=(
                bytes if name == "ModelInfer" else types[f"{kind}Request"].FromString
            ),
            response_serializer=types[f"{kind}Response"].SerializeToString,
        )
        for name, (fn, kind) in handlers.items()
    }
    grpc_server = grpc.server(
        ThreadPoolExecutor(max_workers=8, thread_name_prefix="nbc-grpc"),
        options=[
            ("grpc.max_receive_message_length", limits.grpc_max_message),
            ("grpc.max_send_message_length", limits.grpc_max_message),
            # Header lists are bounded like REST's (NBC_MAX_HEADER_BYTES).
            ("grpc.max_metadata_size", limits.max_header_bytes),
        ],
        maximum_concurrent_rpcs=limits.max_concurrency,
    )
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
    grpc_server.add_insecure_port(f"0.0.0.0:{port}")
    grpc_server.start()
    return grpc_server
