"""Saving a torch model: torch.export's ``.pt2`` where it traces and answers the same, else
safetensors weights plus the class source; each checked against the notebook's answer.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any

from .code import code_with_context, is_literal, source_of
from .examples import ExportProblem, call_on_example, outputs, same
from .other_models import save_pickle

__all__ = [
    "save_torch",
    "save_torch_program",
    "write_safetensors",
]


_SAFETENSORS_TYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def save_torch(
    model: Any, inputs: Any, model_dir: str, fmt: str, opts: dict[str, Any], ns: dict[str, Any]
) -> dict[str, Any]:
    import torch

    if fmt not in ("auto", "torch.export", "safetensors", "pickle"):
        raise ExportProblem(f"A torch model can't be saved as {fmt!r}.")
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    gpu = opts.get("gpu")
    gpu = device.type == "cuda" if gpu is None else bool(gpu)
    x = torch.from_numpy(inputs).to(device)
    # Answers are compared in eval mode (dropout, batch norm); the user's mode is restored.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = outputs(call_on_example(type(model).__name__, model, x))
        note = ""
        if fmt in ("auto", "torch.export"):
            try:
                return {
                    **_torch_export(model, x, expected, model_dir),
                    "expected": expected,
                    "gpu": gpu,
                    "modules": ["torch"],
                }
            except ExportProblem as exc:
                if fmt == "torch.export":
                    raise
                note = str(exc)
        if fmt == "pickle":
            saved = save_pickle(model, model_dir)
            saved["modules"] = sorted({*saved["modules"], "torch"})
            return {**saved, "expected": expected, "gpu": gpu, "batchable": True}
        info = _torch_weights(model, x, expected, model_dir, opts, ns)
        return {**info, "expected": expected, "gpu": gpu, "note": note}
    finally:
        model.train(was_training)


def _torch_export(model: Any, x: Any, expected: list[Any], model_dir: str) -> dict[str, Any]:
    import torch

    # A dynamic batch dimension first (the server can then batch requests), else the
    # example's exact shape (every request must then have it).
    attempts: list[tuple[Any, bool]] = [
        (({0: torch.export.Dim("batch", min=1, max=1 << 16)},), True),
        (None, False),
    ]
    errors = []
    for dynamic, batchable in attempts:
        try:
            program = torch.export.export(model, (x,), dynamic_shapes=dynamic)
            with torch.no_grad():
                got = outputs(program.module()(x))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
            continue
        if not same(expected, got):
            errors.append("the exported program's answer differs from the model's")
            continue
        torch.export.save(program, os.path.join(model_dir, "model.pt2"))
        return {"format": "torch.export", "files": ["model.pt2"], "batchable": batchable}
    raise ExportProblem("torch.export could not trace the model: " + "; ".join(errors))


def save_torch_program(program: Any, inputs: Any, model_dir: str) -> dict[str, Any]:
    import torch

    x = torch.from_numpy(inputs)
    with torch.no_grad():
        expected = outputs(call_on_example("the exported program", program.module(), x))
    torch.export.save(program, os.path.join(model_dir, "model.pt2"))
    batchable = any(not isinstance(s, int) for s in program.example_inputs[0][0].shape)
    return {
        "format": "torch.export",
        "files": ["model.pt2"],
        "batchable": batchable,
        "expected": expected,
        "gpu": False,
        "modules": ["torch"],
    }


def _torch_weights(
    model: Any,
    x: Any,
    expected: list[Any],
    model_dir: str,
    opts: dict[str, Any],
    ns: dict[str, Any],
) -> dict[str, Any]:
    """Weights as safetensors plus the class source sliced from the notebook."""
    import torch

    classes = []
    for module in model.modules():
        cls = type(module)
        if cls.__module__ == "__main__" and cls not in classes:
            classes.append(cls)
    classes.reverse()  # submodule classes before the classes that use them
    sources = [source_of(cls) for cls in classes]
    init = _init_args(model, opts.get("init_args") or {})
    code, modules = code_with_context(sources, ns)
    if type(model).__module__ != "__main__":
        code = f"from {type(model).__module__} import {type(model).__name__}\n" + code
        modules.add(type(model).__module__.split(".")[0])
    # Rebuilt from the written code in a fresh namespace, as the server will load it.
    check: dict[str, Any] = {"__name__": "nbc_model"}
    try:
        exec(compile(code, "model_code.py", "exec"), check)
        rebuilt = check[type(model).__name__](**init).to(x.device)
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.eval()
        with torch.no_grad():
            got = outputs(rebuilt(x))
    except Exception as exc:
        raise ExportProblem(
            f"Rebuilding {type(model).__name__} from its source and weights failed "
            f"({type(exc).__name__}: {exc}). Pass the constructor's arguments with "
            "--init-args '{...}', or --format pickle."
        ) from None
    if not same(expected, got):
        raise ExportProblem(
            f"{type(model).__name__} rebuilt from its source and weights answers differently "
            "from the notebook's model; pass --format pickle to save it as it is."
        )
    with open(os.path.join(model_dir, "model_code.py"), "w") as f:
        f.write(code)
    write_safetensors(model.state_dict(), os.path.join(model_dir, "model.safetensors"))
    return {
        "format": "safetensors",
        "files": ["model.safetensors", "model_code.py"],
        "class": type(model).__name__,
        "init_args": init,
        "batchable": True,
        "modules": sorted(modules | {"torch"}),
    }


def _init_args(model: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments: given ones, else same-named attributes of the model."""
    args = dict(given)
    signature = inspect.signature(type(model).__init__)
    for param in list(signature.parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in args:
            continue
        value = getattr(model, param.name, inspect.Parameter.empty)
        if value is not inspect.Parameter.empty and is_literal(value):
            args[param.name] = value
        elif param.default is inspect.Parameter.empty:
            raise ExportProblem(
                f"Cannot tell the value of {type(model).__name__}(..., {param.name}=?) from the "
                f"model. Pass it: --init-args '{{\"{param.name}\": ...}}'."
            )
    return args


def write_safetensors(state: dict[str, Any], path: str) -> None:
    """The safetensors format (JSON header + raw little-endian tensors), written without
    the safetensors package so the kernel needs nothing beyond torch."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for key, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        dtype = _SAFETENSORS_TYPES.get(str(t.dtype).replace("torch.", ""))
        if dtype is None:
            raise ExportProblem(f"Tensor {key} has dtype {t.dtype}, which safetensors lacks.")
        # Raw bytes through a uint8 view: numpy has no bfloat16 to convert through.
        raw = t.reshape(-1).view(__import__("torch").uint8).numpy().tobytes()
        header[key] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format aligns the tensors to 8 bytes
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for blob in blobs:
            f.write(blob)
