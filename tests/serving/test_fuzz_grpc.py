"""Structure-aware fuzzing of the gRPC ModelInferRequest (issue 22): messages built field by
field from the protocol's table (hostile shapes, datatypes, contents of every type, raw
contents that fit or not, parameters, requested outputs), and byte strings that are not
messages at all. Whatever arrives, the answer is a decoded request or a 4xx (INVALID_ARGUMENT,
NOT_FOUND, ...) whose message leaks nothing, in time linear in the message. In-process here;
the real image gets the same messages in test_fuzz_image.py."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbcontainers.serving.image import BadRequest, InferRequest

pytest.importorskip("google.protobuf")

from nbcontainers.serving.image.grpc_service import (
    decode_grpc_infer,
    message_classes,
)
from nbcontainers.serving.image.tensors import NUMPY_TYPES

LEAKS = re.compile(
    r"Traceback|Error:|Exception|/opt/|/usr/|site-packages|\.py\b|numpy|dtype\(", re.IGNORECASE
)
META: dict[str, Any] = {
    "name": "iris",
    "signature": {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
    },
}
INT64 = st.one_of(st.integers(-2, 6), st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63), 1 << 40]))
CONTENTS = {
    "bool_contents": st.lists(st.booleans(), max_size=12),
    "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12),
    "int64_contents": st.lists(INT64, max_size=12),
    "uint_contents": st.lists(st.integers(0, 2**32 - 1), max_size=12),
    "uint64_contents": st.lists(st.integers(0, 2**64 - 1), max_size=12),
    "fp32_contents": st.lists(st.floats(width=32), max_size=12),
    "fp64_contents": st.lists(st.floats(), max_size=12),
    "bytes_contents": st.lists(st.binary(max_size=6), max_size=12),
}


@st.composite
def infer_request(draw: Any) -> bytes:
    """A serialized ModelInferRequest: a valid one for the iris model with one part of it
    replaced by something drawn (so every check gets reached), or one drawn whole."""
    if draw(st.booleans()):
        return bytes(draw(mutated_request()).SerializeToString())
    return bytes(draw(drawn_request()).SerializeToString())


@st.composite
def mutated_request(draw: Any) -> Any:
    types = message_classes()
    rows = draw(st.integers(0, 5))
    request = types["ModelInferRequest"](model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[rows, 4])
    raw = draw(st.booleans())
    if raw:
        request.raw_input_contents.append(bytes(8 * 4 * rows))
    else:
        tensor.contents.fp64_contents.extend([0.5] * 4 * rows)
    part = draw(
        st.sampled_from(
            ["none", "version", "datatype", "shape", "contents", "params", "outputs", "id"]
        )
    )
    if part == "version":
        request.model_version = draw(st.text(max_size=4))
    elif part == "datatype":
        tensor.datatype = draw(st.sampled_from([*NUMPY_TYPES, "FP8", ""]))
    elif part == "shape":
        del tensor.shape[:]
        tensor.shape.extend(draw(st.lists(INT64, max_size=draw(st.sampled_from([3, 70])))))
    elif part == "contents" and raw:
        request.raw_input_contents[0] = draw(st.binary(max_size=200))
    elif part == "contents":
        field = draw(st.sampled_from(list(CONTENTS)))
        tensor.contents.Clear()
        getattr(tensor.contents, field).extend(draw(CONTENTS[field]))
    elif part == "params":
        parameter = tensor.parameters.add(key=draw(st.sampled_from(["binary_data_size", "k"])))
        parameter.value.int64_param = draw(INT64)
    elif part == "outputs":
        request.outputs.add(name=draw(st.sampled_from(["output-0", "y", ""])))
    elif part == "id":
        request.id = draw(st.text(max_size=20))
    return request


@st.composite
def drawn_request(draw: Any) -> Any:
    types = message_classes()
    request = types["ModelInferRequest"](
        model_name=draw(st.sampled_from(["iris"] * 5 + ["other", ""])),
        model_version=draw(st.sampled_from(["", "", "1", "2", "x" * 200])),
        id=draw(st.text(max_size=8)),
    )
    raw_contents = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["input-0"] * 5 + ["x", ""])),
            datatype=draw(st.sampled_from(["FP64"] * 5 + [*NUMPY_TYPES, "FP8", ""])),
            shape=draw(
                st.one_of(
                    st.lists(INT64, max_size=draw(st.sampled_from([3, 3, 70]))),
                    st.tuples(st.integers(0, 5), st.integers(1, 4)).map(list),  # near the model's
                )
            ),
        )
        for _ in range(draw(st.integers(0, 2))):
            parameter = tensor.parameters.add(key=draw(st.sampled_from(["binary_data_size", "k"])))
            parameter.value.int64_param = draw(INT64)
        count = 1
        for s in tensor.shape:
            count = count * s if 0 <= s < 64 else count
        count = count if count < 4096 else 0
        if raw_contents:
            fits = bytes(8 * count)
            request.raw_input_contents.append(
                draw(st.one_of(st.just(fits), st.just(fits), st.binary(max_size=64)))
            )
        elif draw(st.booleans()):
            tensor.contents.fp64_contents.extend([0.5] * count)  # values that fit the shape
        else:
            field = draw(st.sampled_from(["fp64_contents"] * 4 + list(CONTENTS)))
            getattr(tensor.contents, field).extend(draw(CONTENTS[field]))
    if draw(st.sampled_from([False, False, True])):
        request.raw_input_contents.append(draw(st.binary(max_size=16)))  # one too many
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["output-0", "y", ""])))
    return request


def decoded_or_4xx(raw: bytes) -> None:
    started = time.perf_counter()
    try:
        assert isinstance(decode_grpc_infer(raw, META, 1 << 21), InferRequest)
    except BadRequest as exc:
        assert 400 <= exc.status < 500, exc
        assert not LEAKS.search(str(exc)) and len(str(exc)) < 1000, str(exc)
    assert time.perf_counter() - started < 0.25  # messages here are a few KB


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=infer_request())
def test_fuzzed_infer_requests_decode_or_are_4xx(raw: bytes) -> None:
    decoded_or_4xx(raw)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=256), infer_request().map(lambda b: b[: len(b) // 2])))
def test_bytes_that_are_no_message_are_4xx(raw: bytes) -> None:
    decoded_or_4xx(raw)


def test_grpc_fuzz_findings_stay_fixed() -> None:
    # Found by the fuzzers above (on the code before issue 22), kept as regressions.
    types = message_classes()
    for shape, raw in (([1] * 65, bytes(8)), ([0, 2**62], b""), ([2**63 - 1, 0], b"")):
        request = types["ModelInferRequest"](model_name="iris")
        request.inputs.add(name="input-0", datatype="FP64", shape=shape)
        request.raw_input_contents.append(raw)
        decoded_or_4xx(request.SerializeToString())
