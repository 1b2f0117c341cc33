"""Loading the exported model from its folder into a callable: batch in, list of ndarrays out."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "FAST_COPY",
    "as_arrays",
    "load_model",
    "read_safetensors",
    "write_fast_copy",
]

# A skops model's fast-loading copy, made in the image's build stage (write_fast_copy).
FAST_COPY = "estimator.pkl"


def read_safetensors(path: str) -> dict[str, Any]:
    """The tensors of a safetensors file, by the safetensors library (the image has it when
    the model was saved so)."""
    from safetensors.torch import load_file

    return dict(load_file(path, device="cpu"))


def write_fast_copy(model_dir: str, meta: dict[str, Any], cache_dir: str) -> bool:
    """In the image's build stage: a skops model, loaded with exactly the types the export
    trusted, pickled into ``cache_dir`` so a start skips skops (its import walks every
    scikit-learn estimator: about half a second of a cold start here). The pickle is made by
    this build from the checked object, never taken from the build context, so loading it
    trusts nothing the image's own code does not. Whether one was written."""
    if meta["kind"] != "sklearn" or meta["format"] != "skops":
        return False
    import pickle

    estimator = _load_skops(os.path.join(model_dir, meta["files"][0]), meta)
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, FAST_COPY), "wb") as f:
        pickle.dump(estimator, f, protocol=pickle.HIGHEST_PROTOCOL)
    return True


def _load_skops(path: str, meta: dict[str, Any]) -> Any:
    import skops.io

    # Exactly the types the export trusted where the model was made, nothing more.
    return skops.io.load(path, trusted=meta.get("trusted", []))


def load_model(
    model_dir: str, meta: dict[str, Any], cache_dir: str | None = None
) -> Callable[[Any], list[Any]]:
    """A callable from a batch (ndarray or DataFrame) to a list of output ndarrays;
    ``cache_dir`` may hold the build stage's fast copy (:func:`write_fast_copy`)."""
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
        fast = os.path.join(cache_dir, FAST_COPY) if cache_dir else ""
        if fmt == "skops" and fast and os.path.exists(fast):
            estimator = _unpickle(fast)
        elif fmt == "skops":
            estimator = _load_skops(path, meta)
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
