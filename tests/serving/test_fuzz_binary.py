"""Structure-aware fuzzing of the binary tensor data extension (issue 22): request headers
built from the protocol's own pieces (shapes with hostile sizes, every datatype and some that
are none, binary_data_size right, wrong and absurd, Inference-Header-Content-Length right and
wrong) with random tensor bytes after them. Whatever arrives, the answer is a decoded request
or a 4xx whose message leaks nothing, in time linear in the body. In-process here; the real
image gets the same bodies in test_fuzz_image.py."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbcontainers.serving.image import BadRequest, InferRequest
from nbcontainers.serving.image.offload import decode_request
from nbcontainers.serving.image.tensors import NUMPY_TYPES

LEAKS = re.compile(
    r"Traceback|Error:|Exception|/opt/|/usr/|site-packages|\.py\b|numpy|dtype\(", re.IGNORECASE
)


def meta(datatype: str, shape: list[int]) -> dict[str, Any]:
    return {
        "name": "iris",
        "signature": {
            "inputs": [{"name": "input-0", "datatype": datatype, "shape": shape}],
            "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
        },
    }


METAS = [meta("FP64", [-1, 4]), meta("BYTES", [-1]), meta("INT8", [-1, 2, 2])]

SIZES = st.one_of(
    st.integers(0, 6),
    st.sampled_from([-1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**64, 10**30]),
)
DATATYPES = st.sampled_from([*NUMPY_TYPES, "FP8", "", "fp64", "BF16"])


@st.composite
def binary_request(draw: Any, datatype: str = "FP64") -> tuple[bytes, Any]:
    """A body of the binary extension and its header length: a valid one for a model taking
    ``datatype`` rows of 4 with one part replaced by something drawn (so every check gets
    reached), or one drawn whole."""
    if draw(st.booleans()):
        return draw(mutated_request(datatype))
    return draw(drawn_request(datatype))


@st.composite
def mutated_request(draw: Any, datatype: str) -> tuple[bytes, Any]:
    rows = draw(st.integers(0, 5))
    itemsize = {"FP64": 8, "INT8": 1, "BYTES": 0}.get(datatype, 4)
    data = bytes(itemsize * rows * 4)
    if datatype == "BYTES":
        data = b"".join(len(b"ab").to_bytes(4, "little") + b"ab" for _ in range(rows))
    shape = [rows] if datatype == "BYTES" else [rows, 4]
    tensor: dict[str, Any] = {"name": "input-0", "shape": shape, "datatype": datatype}
    tensor["parameters"] = {"binary_data_size": len(data)}
    body: dict[str, Any] = {"inputs": [tensor]}
    part = draw(
        st.sampled_from(["none", "shape", "datatype", "size", "data", "outputs", "length", "id"])
    )
    if part == "shape":
        tensor["shape"] = draw(st.lists(SIZES, max_size=draw(st.sampled_from([3, 70]))))
    elif part == "datatype":
        tensor["datatype"] = draw(DATATYPES)
    elif part == "size":
        tensor["parameters"]["binary_data_size"] = draw(
            st.one_of(st.integers(-3, 300), st.sampled_from([2**63, 1e3, "8", None, True]))
        )
    elif part == "data":
        data = draw(st.binary(max_size=200))
    elif part == "outputs":
        body["outputs"] = [
            {"name": draw(st.sampled_from(["output-0", "y"])), "parameters": {"binary_data": True}}
        ]
    elif part == "id":
        body["id"] = draw(st.one_of(st.text(max_size=5), st.integers()))
    header = json.dumps(body).encode()
    length: Any = len(header)
    if part == "length":
        length = draw(st.one_of(st.integers(-2, len(header) + len(data) + 3), st.just("x")))
    return header + data, length


@st.composite
def drawn_request(draw: Any, datatype: str) -> tuple[bytes, Any]:
    inputs = []
    chunks = []
    for _ in range(draw(st.integers(0, 3))):
        tensor: dict[str, Any] = {
            "name": draw(st.sampled_from(["input-0"] * 6 + ["x", ""])),
            "shape": draw(
                st.one_of(
                    st.lists(SIZES, max_size=draw(st.sampled_from([4, 4, 70]))),
                    st.tuples(st.integers(0, 5), st.integers(1, 4)).map(list),  # near the model's
                )
            ),
            "datatype": draw(st.one_of(st.just(datatype), st.just(datatype), DATATYPES)),
        }
        chunk = draw(st.binary(max_size=128))
        if draw(st.sampled_from([True, True, True, False])):
            # Sizes that fit the data (the checks after this one get exercised), or not.
            count = 1
            for s in tensor["shape"]:
                count = count * s if isinstance(s, int) and 0 <= s < 64 else count
            itemsize = {"FP64": 8, "INT8": 1}.get(tensor["datatype"], 4)
            if tensor["datatype"] == "BYTES":
                items = [draw(st.binary(max_size=6)) for _ in range(min(count, 16))]
                chunk = b"".join(len(i).to_bytes(4, "little") + i for i in items)
            else:
                chunk = draw(st.binary(min_size=0, max_size=8)) * 0 + bytes(itemsize * count)
        size = draw(
            st.one_of(
                st.just(len(chunk)),
                st.just(len(chunk)),
                st.just(len(chunk)),
                st.integers(-3, 300),
                st.sampled_from([2**63, 1e3, "8", None, True]),
            )
        )
        tensor["parameters"] = {"binary_data_size": size}
        if draw(st.booleans()):
            tensor["parameters"]["extra"] = draw(st.one_of(st.text(max_size=3), st.integers()))
        inputs.append(tensor)
        chunks.append(chunk)
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["output-0", "y", 3])},
                    optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})},
                ),
                max_size=2,
            )
        )
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.one_of(st.booleans(), st.text()))}
    if draw(st.booleans()):
        body["id"] = draw(st.one_of(st.text(max_size=5), st.integers(), st.none()))
    header = json.dumps(body).encode()
    raw = header + b"".join(chunks)
    length = draw(
        st.one_of(st.just(len(header)), st.just(len(header)), st.integers(-2, len(raw) + 3))
    )
    return raw, length


def decoded_or_4xx(raw: bytes, header_length: Any, meta_: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        result = decode_request("infer", raw, header_length, meta_, 1 << 21)
        assert isinstance(result, InferRequest)
    except BadRequest as exc:
        assert 400 <= exc.status < 500, exc
        assert not LEAKS.search(str(exc)) and len(str(exc)) < 1000, str(exc)
    # Bodies here are under a few KB: anything slower is work out of proportion.
    assert time.perf_counter() - started < 0.25


@st.composite
def model_and_request(draw: Any) -> tuple[dict[str, Any], tuple[bytes, Any]]:
    meta_ = draw(st.sampled_from(METAS))
    return meta_, draw(binary_request(meta_["signature"]["inputs"][0]["datatype"]))


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(case=model_and_request())
def test_fuzzed_binary_requests_decode_or_are_4xx(
    case: tuple[dict[str, Any], tuple[bytes, Any]],
) -> None:
    meta_, (raw, header_length) = case
    decoded_or_4xx(raw, header_length, meta_)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=512), length=st.integers(-2, 600), which=st.integers(0, 2))
def test_random_bytes_with_a_header_length_are_4xx(raw: bytes, length: int, which: int) -> None:
    decoded_or_4xx(raw, length, METAS[which])


def test_fuzz_findings_stay_fixed() -> None:
    # Found by the fuzzers above (on the code before issue 22) and kept as regressions: a
    # binary_data_size that is a float or bool, a shape of 65 ones, a huge size beside a 0.
    header = {"name": "input-0", "datatype": "FP64"}
    for tensor, data in (
        (header | {"shape": [1, 4], "parameters": {"binary_data_size": 32.0}}, bytes(32)),
        (header | {"shape": [1, 4], "parameters": {"binary_data_size": True}}, bytes(1)),
        (header | {"shape": [1] * 65, "parameters": {"binary_data_size": 8}}, bytes(8)),
        (header | {"shape": [0, 2**62], "parameters": {"binary_data_size": 0}}, b""),
    ):
        text = json.dumps({"inputs": [tensor]}).encode()
        decoded_or_4xx(text + data, len(text), METAS[0])
