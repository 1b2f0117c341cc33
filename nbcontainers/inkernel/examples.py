"""The example input and the model's answers as ndarrays: converted, compared, described in
Open Inference Protocol terms; :class:`ExportProblem` for input the user must fix.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "ExportProblem",
    "as_input",
    "call_on_example",
    "describe",
    "describe_inputs",
    "input_data",
    "outputs",
    "same",
]


# numpy dtype name -> Open Inference Protocol datatype
_OIP_TYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class ExportProblem(Exception):
    """Input the user must change; the message says how."""


def as_input(example: Any) -> tuple[Any, bool]:
    """The example as an ndarray (or a DataFrame), and whether it is a DataFrame."""
    import numpy as np

    # Frameworks are looked up, not imported: the kernel only has what the model needs.
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(example, pandas.DataFrame):
        return example, True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(example, torch.Tensor):
        return example.detach().cpu().numpy(), False
    array = np.asarray(example)
    # The first dimension is the batch: the signature and the server's batching rely on it.
    if array.ndim == 0:
        raise ExportProblem(
            "The example is a single scalar; pass a batch (e.g. X_test[:4]) so the batch "
            "dimension is known."
        )
    return array, False


def _datatype(dtype: Any) -> str:
    return _OIP_TYPES.get(str(dtype), "BYTES")


def describe(name: str, array: Any) -> dict[str, Any]:
    return {"name": name, "datatype": _datatype(array.dtype), "shape": [-1, *array.shape[1:]]}


def describe_inputs(inputs: Any, frame: bool) -> list[dict[str, Any]]:
    if frame:
        return [
            {"name": str(c), "datatype": _datatype(inputs[c].dtype), "shape": [-1]}
            for c in inputs.columns
        ]
    return [describe("input-0", inputs)]


def input_data(inputs: Any, frame: bool) -> list[list[Any]]:
    if frame:
        return [inputs[c].tolist() for c in inputs.columns]
    return [inputs.reshape(-1).tolist()]


def outputs(result: Any) -> list[Any]:
    """A model's result as a list of ndarrays (one per output)."""
    import numpy as np

    torch = sys.modules.get("torch")
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    arrays = []
    for item in items:
        if torch is not None and isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(item, (pandas.Series, pandas.DataFrame)):
            item = item.to_numpy()
        arrays.append(np.asarray(item))
    return arrays


def same(a: list[Any], b: list[Any]) -> bool:
    import numpy as np

    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=False):
        if x.shape != y.shape:
            return False
        # Floats within a tolerance: a reloaded model may sum in another order.
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def call_on_example(what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``; a failure is the user's to fix (a wrong example), so it becomes an
    :class:`ExportProblem` that says so rather than a traceback from our code."""
    try:
        return fn(*args)
    except Exception as exc:
        raise ExportProblem(
            f"Calling {what} on the example failed ({type(exc).__name__}: {exc}). Pass an "
            "example the model accepts: a small batch like the data it was trained on."
        ) from None
