"""Model capture, run inside the kernel that holds the model (local or container).

Serialise the object by the safest format that round-trips (``torch_model.py``,
``other_models.py``), infer its signature from the example, and prove in the kernel that the
saved form gives the notebook's answer before anything is built. Stdlib only at import time:
numpy, torch, scikit-learn and skops are imported when the object needs them. The host sends
this module with those it imports as one source (``nbcontainers/serving/serialize.py``) and
calls :func:`export_object`; its result is one JSON document (``{"error": ...}`` for input
the user must fix).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import os
import sys
import types
from typing import Any

from .examples import (
    ExportProblem,
    as_input,
    describe,
    describe_inputs,
    input_data,
)
from .other_models import save_function, save_sklearn
from .rows import rows_independent
from .torch_model import save_torch, save_torch_program

__all__ = [
    "FORMATS",
    "export_object",
]


FORMATS = ("auto", "torch.export", "safetensors", "skops", "source", "pickle")


def export_object(
    namespace: dict[str, Any], name: str, example: str, out_dir: str, options: str
) -> str:
    """Save ``namespace[name]`` into ``out_dir`` (``model/`` files and ``example.json``);
    return its description as JSON. ``example`` is an expression over ``namespace``."""
    try:
        return json.dumps(_export(namespace, name, example, out_dir, json.loads(options)))
    except ExportProblem as exc:
        return json.dumps({"error": str(exc)})


def _export(
    ns: dict[str, Any], name: str, example_expr: str, out_dir: str, opts: dict[str, Any]
) -> dict[str, Any]:
    if name not in ns:
        visible = [k for k in ns if not k.startswith("_")]
        close = difflib.get_close_matches(name, visible, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ExportProblem(f"No variable {name!r} in the notebook's namespace.{hint}")
    obj = ns[name]
    if not example_expr:
        raise ExportProblem(
            "Pass an example input with --example (e.g. --example X_test[:4]): it gives the "
            "server its input signature and the smoke test its expected answer."
        )
    try:
        example = eval(example_expr, ns)  # the user's own expression, in their own namespace
    except Exception as exc:
        raise ExportProblem(
            f"--example {example_expr!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    fmt = opts.get("format") or "auto"
    if fmt not in FORMATS:
        raise ExportProblem(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    kind = _kind(obj)
    if kind is None:
        raise ExportProblem(
            f"{name!r} is a {type(obj).__module__}.{type(obj).__qualname__}, not a model "
            "export-serving knows: a torch nn.Module, a scikit-learn estimator or pipeline, or "
            "a Python function. Wrap it in a function that takes the example and returns the "
            "prediction, or pass --format pickle if it has a predict() method."
        )
    inputs, frame = as_input(example)
    # Each saver proves its saved form answers the example as the object does.
    if kind == "torch":
        info = save_torch(obj, inputs, model_dir, fmt, opts, ns)
    elif kind == "torch-program":
        info = save_torch_program(obj, inputs, model_dir)
    elif kind == "sklearn":
        info = save_sklearn(obj, inputs, model_dir, fmt, opts)
    else:
        info = save_function(obj, inputs, model_dir, fmt, ns)
    outputs = info.pop("expected")
    # The saved form can take a batch dimension: batch requests only if the live model's
    # rows are independent on this example (a model that normalises across its batch would
    # mix one client's rows into another's answer).
    if info.get("batchable"):
        info["batchable"], info["batching"] = _rows_independent(kind, obj, inputs, frame, opts)
    else:
        info["batching"] = info.get("batching") or "the saved model takes a fixed batch shape"
    # Fixed here, from the files just written from the live object and checked against it:
    # the image refuses model files that differ (loading.py).
    info["sha256"] = _digests(model_dir)
    signature = {
        "inputs": describe_inputs(inputs, frame),
        "outputs": [describe(f"output-{i}", o) for i, o in enumerate(outputs)],
    }
    shape = [len(inputs)] if frame else list(inputs.shape)  # every input (column) has it
    # The example and the notebook's answer to it: the smoke test sends the one and expects
    # the other from the built image.
    with open(os.path.join(out_dir, "example.json"), "w") as f:
        json.dump(
            {
                "inputs": [
                    {**d, "shape": shape, "data": data}
                    for d, data in zip(signature["inputs"], input_data(inputs, frame), strict=True)
                ],
                "outputs": [
                    {**d, "shape": list(o.shape), "data": o.reshape(-1).tolist()}
                    for d, o in zip(signature["outputs"], outputs, strict=True)
                ],
            },
            f,
        )
    # numpy always: the server decodes requests with it.
    modules = set(info.pop("modules")) | {"numpy"}
    if frame:
        modules.add("pandas")
    return {
        **info,
        "kind": kind,
        "name": name,
        "signature": signature,
        "frame": frame,
        "requires": _distributions(modules),
        # The image's Python: the saved files may only load in the version that wrote them.
        "python": ".".join(map(str, sys.version_info[:2])),
    }


def _rows_independent(
    kind: str, obj: Any, inputs: Any, frame: bool, opts: dict[str, Any]
) -> tuple[bool, str]:
    """The row-independence probe on the live object, called as the server will call it."""
    if kind == "sklearn":
        return rows_independent(getattr(obj, opts.get("method") or "predict"), inputs, frame)
    if kind not in ("torch", "torch-program"):
        return rows_independent(obj, inputs, frame)
    import torch

    module = obj.module() if kind == "torch-program" else obj
    params = list(module.parameters())
    device = params[0].device if params else torch.device("cpu")

    def call(batch: Any) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(batch).to(device))

    # In eval mode, as it was saved and as the server runs it; the user's mode is restored.
    was_training = module.training
    if kind == "torch":
        module.eval()
    try:
        return rows_independent(call, inputs, frame)
    finally:
        if kind == "torch":
            module.train(was_training)


def _digests(model_dir: str) -> dict[str, str]:
    """SHA-256 of every file the saver wrote (``model/``, meta.json is written later)."""
    digests = {}
    for name in sorted(os.listdir(model_dir)):
        with open(os.path.join(model_dir, name), "rb") as f:
            digests[name] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _kind(obj: Any) -> str | None:
    # Only frameworks the session already imported can have made the object: look, don't import.
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.nn.Module):
            return "torch"
        if isinstance(obj, torch.export.ExportedProgram):
            return "torch-program"
    sklearn_base = sys.modules.get("sklearn.base")
    if sklearn_base is not None and isinstance(obj, sklearn_base.BaseEstimator):
        return "sklearn"
    if isinstance(obj, types.FunctionType):
        return "function"
    return None


def _distributions(modules: set[str]) -> list[str]:
    """Distribution names that provide these top-level modules (stdlib ones need none)."""
    # Module names are not distribution names (sklearn is scikit-learn's): ask the metadata.
    mapping = importlib.metadata.packages_distributions()
    names = set()
    for module in modules:
        if module in sys.stdlib_module_names:
            continue
        names.update(mapping.get(module, []))
    return sorted(names)
