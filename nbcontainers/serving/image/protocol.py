"""Request bodies to batches and outputs to replies: the Open Inference Protocol v2 tensors and
the plain ``/predict`` rows; :class:`BadRequest` for what the client must fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "BadRequest",
    "decode_infer",
    "decode_predict",
    "encode_outputs",
]


# Open Inference Protocol datatype -> numpy dtype (the inverse of what the capture wrote).
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


class BadRequest(Exception):
    """The client's fault: answered with ``status`` and the message, the server keeps going."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
    # A DataFrame model takes one OIP input per column, as its signature lists them.
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
        # pandas only for DataFrame models: the image has it only when the model needed it.
        return __import__("pandas").DataFrame(columns)
    spec = expected[0]
    # One unnamed or misnamed input still means the only one there is.
    item = given.get(spec["name"]) or (body["inputs"][0] if len(body["inputs"]) == 1 else None)
    if item is None:
        raise BadRequest(f"Missing input {spec['name']!r}.")
    return _tensor(item, spec, flat=False)


def decode_predict(body: Any, meta: dict[str, Any]) -> Any:
    """A plain JSON body (``{"instances": rows}`` or a bare list of rows) -> the model's batch."""
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
    # 422, not 400: the JSON is well formed, the tensor is not what the model takes.
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
