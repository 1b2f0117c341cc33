"""Loading the exported model from its folder into a callable: batch in, list of ndarrays out."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "FAST_COPY",
    "ModelRefused",
    "as_arrays",
    "load_model",
    "read_safetensors",
    "verify_model_files",
    "write_fast_copy",
]

# A skops model's fast-loading copy, made in the image's build stage (write_fast_copy).
FAST_COPY = "estimator.pkl"


class ModelRefused(Exception):
    """The model files are not those the export wrote and checked against the notebook's
    model; the message names the file and what to do."""


def verify_model_files(model_dir: str, meta: dict[str, Any]) -> bool:
    """Refuse (:class:`ModelRefused`) unless ``model_dir`` holds exactly the files the export
    wrote, byte for byte (``meta["sha256"]``, fixed in the notebook's kernel). False when the
    export predates the digests, so nothing could be checked."""
    expected = meta.get("sha256")
    if not isinstance(expected, dict):
        logging.getLogger("nbcontainers.server").warning(
            "model files unchecked: meta.json has no SHA-256 of them (exported by an older "
            "nbcontainers); export the model again to have them checked"
        )
        return False
    again = "Export the model again from the notebook (the folder was changed after export)."
    present = {n for n in os.listdir(model_dir) if n != "meta.json"}
    for name in sorted(present - set(expected)):
        raise ModelRefused(
            f"Refusing to load the model: model/{name} is not a file the export wrote. {again}"
        )
    for name, digest in sorted(expected.items()):
        path = os.path.join(model_dir, name)
        if name not in present or not os.path.isfile(path):
            raise ModelRefused(f"Refusing to load the model: model/{name} is missing. {again}")
        got = _sha256(path)
        if got != digest:
            raise ModelRefused(
                f"Refusing to load the model: model/{name} changed since export (SHA-256 "
                f"{got[:16]}..., the export wrote {digest[:16]}...). {again}"
            )
    return True


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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

    try:
        verify_model_files(model_dir, meta)
        estimator = _load_skops(os.path.join(model_dir, meta["files"][0]), meta)
    except ModelRefused as exc:
        # The build stops with the reason, not a traceback through our code.
        raise SystemExit(f"nbcontainers: {exc}") from None
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, FAST_COPY), "wb") as f:
        pickle.dump(estimator, f, protocol=pickle.HIGHEST_PROTOCOL)
    return True


def _load_skops(path: str, meta: dict[str, Any]) -> Any:
    import skops.io

    # Exactly the types the export trusted where the model was made, nothing more.
    trusted = list(meta.get("trusted", []))
    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(trusted))
    if untrusted:
        raise ModelRefused(
            f"Refusing to load the model: model/{os.path.basename(path)} holds types the "
            f"export did not trust: {', '.join(untrusted)}. Export the model again from the "
            "notebook."
        )
    return skops.io.load(path, trusted=trusted)


def load_model(
    model_dir: str, meta: dict[str, Any], cache_dir: str | None = None
) -> Callable[[Any], list[Any]]:
    """A callable from a batch (ndarray or DataFrame) to a list of output ndarrays;
    ``cache_dir`` may hold the build stage's fast copy (:func:`write_fast_copy`).
    :class:`ModelRefused` when the model files are not those the export wrote."""
    verify_model_files(model_dir, meta)
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
