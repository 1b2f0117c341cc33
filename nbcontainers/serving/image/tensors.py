"""Tensors on the wire and as arrays, both ways: the Open Inference Protocol datatypes, JSON
``data`` lists, and the binary tensor data extension's raw bytes (row-major, little-endian;
``BYTES`` elements each after a 4-byte little-endian length).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .limits import BadRequest

__all__ = [
    "NUMPY_TYPES",
    "array_from_bytes",
    "array_from_data",
    "array_to_bytes",
    "array_to_data",
]


# Open Inference Protocol datatype -> numpy dtype (the inverse of what the capture wrote).
NUMPY_TYPES = {
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


def array_from_data(data: Any, datatype: str, name: str) -> Any:
    """A JSON ``data`` value (flat or nested lists) as a flat array of ``datatype``."""
    if not isinstance(data, list):
        raise BadRequest(f"Input {name!r}: data must be a list, got {type(data).__name__}.")
    if datatype == "BYTES":
        flat = np.asarray(data, dtype=object).reshape(-1)
        if not all(isinstance(v, str) for v in flat):
            raise BadRequest(f"Input {name!r} is BYTES: its data must be strings.")
        return flat
    try:
        # A finite number past FP16's or FP32's range would become inf, with only a warning.
        with np.errstate(over="raise"):
            return np.asarray(data, dtype=NUMPY_TYPES[datatype]).reshape(-1)
    except (OverflowError, FloatingPointError):
        raise BadRequest(f"Input {name!r} is {datatype}: a value is out of its range.") from None
    except (TypeError, ValueError):
        # numpy's words would name its internals; the rule is what the client needs.
        raise BadRequest(
            f"Input {name!r} must be {datatype}: a list (or nested lists of equal length) of "
            "values of that type."
        ) from None


def array_from_bytes(raw: bytes, datatype: str, count: int, name: str) -> Any:
    """``count`` elements of ``datatype`` from a binary input's bytes, as a flat array."""
    if datatype != "BYTES":
        dtype = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
        if len(raw) != count * dtype.itemsize:
            raise BadRequest(
                f"Input {name!r}: {len(raw)} bytes of binary data, but {count} {datatype} "
                f"values take {count * dtype.itemsize}."
            )
        # A copy: the request's buffer is not kept, and the model may write to its input.
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    items: list[Any] = []
    at = 0
    while at < len(raw) and len(items) < count:
        if at + 4 > len(raw):
            break
        size = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + size > len(raw):
            break
        item = raw[at + 4 : at + 4 + size]
        at += 4 + size
        # Text where it is text, as the JSON encoding gives it; other bytes stay bytes.
        try:
            items.append(item.decode())
        except UnicodeDecodeError:
            items.append(item)
    if len(items) != count or at != len(raw):
        raise BadRequest(
            f"Input {name!r}: its binary BYTES data does not hold exactly {count} "
            "length-prefixed elements."
        )
    flat = np.empty(count, dtype=object)
    flat[:] = items
    return flat


def array_to_data(array: Any, datatype: str) -> list[Any]:
    """An output array as a flat JSON ``data`` list."""
    if datatype == "BYTES":
        return [
            v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            for v in np.asarray(array, dtype=object).reshape(-1)
        ]
    return list(np.asarray(array, dtype=NUMPY_TYPES[datatype]).reshape(-1).tolist())


def array_to_bytes(array: Any, datatype: str) -> bytes:
    """An output array in the binary extension's layout."""
    if datatype == "BYTES":
        parts = []
        for v in np.asarray(array, dtype=object).reshape(-1):
            item = v if isinstance(v, bytes) else str(v).encode()
            parts += [len(item).to_bytes(4, "little"), item]
        return b"".join(parts)
    dtype = np.dtype(NUMPY_TYPES[datatype]).newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()
