"""Request bodies to batches and outputs to replies: Open Inference Protocol v2 requests in
JSON or with the binary tensor data extension, and the plain ``/predict`` rows.

Strict by design: input names must be the signature's, shapes concrete and the signature's,
datatypes the signature's, binary sizes exact. Each refusal is a :class:`BadRequest` whose
message says what this model takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .limits import BadRequest, parse_json
from .tensors import NUMPY_TYPES, array_from_bytes, array_from_data, array_to_bytes, array_to_data

__all__ = [
    "MAX_DIMS",
    "InferRequest",
    "decode_infer",
    "decode_predict",
    "encode_infer",
    "encode_outputs",
]


@dataclass
class InferRequest:
    """A decoded infer request: the model's batch and how the reply should look."""

    batch: Any
    id: Any = None
    # Output name -> binary or not, in the order asked; None: every output.
    outputs: dict[str, bool] | None = None
    binary: bool = False  # binary_data_output: the default for outputs not listed
    parameters: dict[str, Any] = field(default_factory=dict)


# The most dimensions a request's tensor may have (numpy's own limit is 32 or 64 by version;
# a model's signature has a handful).
MAX_DIMS = 32


def _show(value: Any) -> str:
    """A client's value, as JSON, cut short: messages name it without echoing megabytes."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _takes(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']!r} ({s['datatype']}, shape {s['shape']})" for s in specs)


def _params(item: dict[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: parameters must be an object.")
    return params


def decode_infer(
    raw: bytes, header_length: int | None, meta: dict[str, Any], max_elements: int
) -> InferRequest:
    """An infer request's body (its JSON header first when ``header_length`` is given, the
    binary tensor data after it) -> the model's batch and the reply's form."""
    binary = b""
    if header_length is not None:
        if not 0 < header_length <= len(raw):
            raise BadRequest(
                f"Inference-Header-Content-Length is {header_length}, the body {len(raw)} bytes."
            )
        raw, binary = raw[:header_length], raw[header_length:]
    body = parse_json(raw, max_elements)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest('Expected {"inputs": [{"name", "shape", "datatype", "data"}, ...]}.')
    specs = meta["signature"]["inputs"]
    by_name = {s["name"]: s for s in specs}
    arrays: dict[str, Any] = {}
    offset = 0
    # In the request's order: binary inputs take their bytes one after the other.
    for item in body["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("Each input is an object with name, shape, datatype and data.")
        name = item["name"][:100]  # echoed in messages: never the client's megabytes back
        spec = by_name.get(item["name"])
        if spec is None:
            raise BadRequest(f"No input {name!r} in this model; it takes {_takes(specs)}.")
        if name in arrays:
            raise BadRequest(f"Input {name!r} is given twice.")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(
            type(s) is int and s >= 0
            for s in shape  # bool is an int: refused too
        ):
            raise BadRequest(
                f"Input {name!r}: shape must be a list of concrete sizes (integers >= 0), "
                f"got {_show(shape)}; -1 is for signatures, a request says how many."
            )
        if len(shape) > MAX_DIMS:
            raise BadRequest(
                f"Input {name!r}: shape has {len(shape)} dimensions; at most {MAX_DIMS}."
            )
        # Each size on its own too: [0, 2**62] holds no value, yet no array has that shape.
        if any(s > max_elements for s in shape):
            raise BadRequest(
                f"Input {name!r}: shape {_show(shape)} has a size over {max_elements} "
                "(NBC_MAX_ELEMENTS).",
                status=413,
            )
        if item.get("datatype") != spec["datatype"]:
            raise BadRequest(
                f"Input {name!r} is {spec['datatype']} in this model, got datatype "
                f"{_show(item.get('datatype'))}."
            )
        count = math.prod(shape)
        if count > max_elements:
            raise BadRequest(
                f"Input {name!r}: shape {shape} is {count} values; at most {max_elements} "
                "(NBC_MAX_ELEMENTS).",
                status=413,
            )
        size = _params(item, f"Input {name!r}").get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise BadRequest(f"Input {name!r}: binary_data_size must be an integer >= 0.")
            if offset + size > len(binary):
                raise BadRequest(
                    f"Input {name!r}: binary_data_size {size} runs past the body's "
                    f"{len(binary)} bytes of binary data (Inference-Header-Content-Length?)."
                )
            flat = array_from_bytes(binary[offset : offset + size], spec["datatype"], count, name)
            offset += size
        elif "data" in item:
            flat = array_from_data(item["data"], spec["datatype"], name)
        else:
            raise BadRequest(f"Input {name!r} has neither data nor binary_data_size.")
        if flat.size != count:
            raise BadRequest(f"Input {name!r}: {flat.size} values don't fit shape {shape}.")
        arrays[name] = flat.reshape(shape)
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data after the inputs that use it."
        )
    missing = [s["name"] for s in specs if s["name"] not in arrays]
    if missing:
        raise BadRequest(f"Missing input {missing[0]!r}; this model takes {_takes(specs)}.")
    request = InferRequest(
        batch=_batch(arrays, specs, bool(meta.get("frame"))),
        id=body.get("id"),
        parameters=_params(body, "The request"),
    )
    request.binary = request.parameters.get("binary_data_output") is True
    request.outputs = _requested(body, meta, request.binary)
    return request


def _batch(arrays: dict[str, Any], specs: list[dict[str, Any]], frame: bool) -> Any:
    # A DataFrame model takes one OIP input per column, as its signature lists them.
    if frame:
        columns = {s["name"]: arrays[s["name"]].reshape(-1) for s in specs}
        if len({len(c) for c in columns.values()}) != 1:
            raise BadRequest("All column inputs must have the same length.")
        # pandas only for DataFrame models: the image has it only when the model needed it.
        return __import__("pandas").DataFrame(columns)
    array = arrays[specs[0]["name"]]
    _check_shape(array.shape, specs[0])
    return array


def _requested(body: dict[str, Any], meta: dict[str, Any], binary: bool) -> dict[str, bool] | None:
    asked = body.get("outputs")
    if asked is None:
        return None
    specs = meta["signature"]["outputs"]
    names = [s["name"] for s in specs]
    if not isinstance(asked, list):
        raise BadRequest("outputs must be a list of {name, parameters}.")
    wanted: dict[str, bool] = {}
    for item in asked:
        if not isinstance(item, dict) or item.get("name") not in names:
            got = item.get("name") if isinstance(item, dict) else item
            raise BadRequest(
                f"No output {_show(got)} in this model; it gives "
                + ", ".join(repr(n) for n in names)
                + "."
            )
        flag = _params(item, f"Output {item['name']!r}").get("binary_data", binary)
        wanted[item["name"]] = flag is True
    return wanted


def decode_predict(raw: bytes, meta: dict[str, Any], max_elements: int) -> Any:
    """A plain JSON body (``{"instances": rows}`` or a bare list of rows) -> the model's batch."""
    body = parse_json(raw, max_elements)
    # The row-list shapes of TF Serving's and KServe v1's REST APIs, or a bare list.
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
        unknown = {k for r in records for k in r} - set(names)
        if unknown:
            raise BadRequest(f"No column {_show(sorted(unknown)[0])}; this model takes {names}.")
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
        return np.asarray(data, dtype=NUMPY_TYPES.get(spec["datatype"], "object"))
    except OverflowError:
        raise BadRequest(
            f"Input {spec['name']!r} is {spec['datatype']}: a value is out of its range."
        ) from None
    except (TypeError, ValueError):
        # numpy's words would name its internals; the rule is what the client needs.
        raise BadRequest(
            f"Input {spec['name']!r} must be {spec['datatype']}: rows of equal length holding "
            "values of that type."
        ) from None


def _check_shape(shape: tuple[int, ...], spec: dict[str, Any]) -> None:
    # 422, not 400: the JSON is well formed, the tensor is not what the model takes.
    want = spec["shape"]
    if len(shape) != len(want) or any(
        w != -1 and w != s for w, s in zip(want, shape, strict=False)
    ):
        raise BadRequest(
            f"Input {spec['name']!r} must have shape {want} (-1: any), got {list(shape)}.",
            status=422,
        )


def _output_specs(outputs: list[Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    specs = meta["signature"]["outputs"]
    return [
        specs[i] if i < len(specs) else {"name": f"output-{i}", "datatype": "BYTES"}
        for i in range(len(outputs))
    ]


def encode_outputs(outputs: list[Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The outputs as JSON tensors."""
    return [
        {
            "name": spec["name"],
            "datatype": spec["datatype"],
            "shape": list(np.shape(array)),
            "data": array_to_data(array, spec["datatype"]),
        }
        for spec, array in zip(_output_specs(outputs, meta), outputs, strict=True)
    ]


def encode_infer(
    outputs: list[Any], request: InferRequest, meta: dict[str, Any]
) -> tuple[bytes, int | None]:
    """The reply's body and, when some output is binary, its JSON header's length (the
    ``Inference-Header-Content-Length`` the client splits the body at)."""
    tensors, chunks = [], []
    for spec, array in zip(_output_specs(outputs, meta), outputs, strict=True):
        binary = request.binary
        if request.outputs is not None:
            if spec["name"] not in request.outputs:
                continue
            binary = request.outputs[spec["name"]]
        tensor: dict[str, Any] = {
            "name": spec["name"],
            "datatype": spec["datatype"],
            "shape": list(np.shape(array)),
        }
        if binary:
            chunk = array_to_bytes(array, spec["datatype"])
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = array_to_data(array, spec["datatype"])
        tensors.append(tensor)
    reply: dict[str, Any] = {"model_name": meta["name"], "model_version": "1", "outputs": tensors}
    # OIP echoes the request's id, so a client can match answers to requests.
    if request.id is not None:
        reply["id"] = request.id
    header = json.dumps(reply).encode()
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
