"""Loading the exported model from its folder into a callable: batch in, list of ndarrays out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "as_arrays",
    "load_model",
    "read_safetensors",
]


def read_safetensors(path: str) -> dict[str, Any]:
    """The tensors of a safetensors file, by the safetensors library (the image has it when
    the model was saved so)."""
    from safetensors.torch import load_file

    return dict(load_file(path, device="cpu"))


def load_model(model_dir: str, meta: dict[str, Any]) -> Callable[[Any], list[Any]]:
    """A callable from a batch (ndarray or DataFrame) to a list of output ndarrays."""
    fmt = meta["format"]
    path = os.path.join(model_dir, meta["files"][0])  # the model file; code, if any, next
    if meta["kind"] in ("torch", "torch-program"):
        import torch

        # A GPU model still answers on a host without one: slower, not broken.
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
                return as_arrays(module(torch.from_numpy(batch).to(device)))

        return call_torch
    if meta["kind"] == "sklearn":
        if fmt == "skops":
            import skops.io

            # Exactly the types the export trusted where the model was made, nothing more.
            estimator = skops.io.load(path, trusted=meta.get("trusted", []))
        else:
            estimator = _unpickle(path)
        method = getattr(estimator, meta.get("method", "predict"))
        return lambda batch: as_arrays(method(batch))
    function = _run_code(model_dir)[meta["function"]] if fmt == "source" else _unpickle(path)
    return lambda batch: as_arrays(function(batch))


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


def as_arrays(result: Any) -> list[Any]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    out = []
    for item in items:
        if hasattr(item, "detach"):
            item = item.detach().cpu().numpy()
        elif hasattr(item, "to_numpy"):
            item = item.to_numpy()
        out.append(np.asarray(item))
    return out
