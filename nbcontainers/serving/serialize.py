"""Model capture, run inside the kernel that holds the model (local or container).

Serialise the object by the safest format that round-trips, infer its signature from the
example, and prove in the kernel that the saved form gives the notebook's answer before
anything is built. Stdlib only at import time: numpy, torch, scikit-learn and skops are
imported when the object needs them. The host sends this file's source to the kernel and
calls :func:`export_object`; its result is one JSON document (``{"error": ...}`` for input
the user must fix).
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib.metadata
import inspect
import json
import linecache
import os
import pickle
import sys
import textwrap
import types
from typing import Any

__all__ = [
    "FORMATS",
    "ExportProblem",
    "export_object",
    "write_safetensors",
]

FORMATS = ("auto", "torch.export", "safetensors", "skops", "source", "pickle")

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


class ExportProblem(Exception):
    """Input the user must change; the message says how."""


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
    inputs, frame = _as_input(example)
    if kind == "torch":
        info = _torch(obj, inputs, model_dir, fmt, opts, ns)
    elif kind == "torch-program":
        info = _torch_program(obj, inputs, model_dir)
    elif kind == "sklearn":
        info = _sklearn(obj, inputs, model_dir, fmt, opts)
    else:
        info = _function(obj, inputs, model_dir, fmt, ns)
    outputs = info.pop("expected")
    signature = {
        "inputs": _describe_inputs(inputs, frame),
        "outputs": [_describe(f"output-{i}", o) for i, o in enumerate(outputs)],
    }
    shape = [len(inputs)] if frame else list(inputs.shape)  # every input (column) has it
    with open(os.path.join(out_dir, "example.json"), "w") as f:
        json.dump(
            {
                "inputs": [
                    {**d, "shape": shape, "data": data}
                    for d, data in zip(signature["inputs"], _input_data(inputs, frame), strict=True)
                ],
                "outputs": [
                    {**d, "shape": list(o.shape), "data": o.reshape(-1).tolist()}
                    for d, o in zip(signature["outputs"], outputs, strict=True)
                ],
            },
            f,
        )
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
        "python": ".".join(map(str, sys.version_info[:2])),
    }


# ---- what the object is --------------------------------------------------------------


def _kind(obj: Any) -> str | None:
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


def _as_input(example: Any) -> tuple[Any, bool]:
    """The example as an ndarray (or a DataFrame), and whether it is a DataFrame."""
    import numpy as np

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(example, pandas.DataFrame):
        return example, True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(example, torch.Tensor):
        return example.detach().cpu().numpy(), False
    array = np.asarray(example)
    if array.ndim == 0:
        raise ExportProblem(
            "The example is a single scalar; pass a batch (e.g. X_test[:4]) so the batch "
            "dimension is known."
        )
    return array, False


def _datatype(dtype: Any) -> str:
    return _OIP_TYPES.get(str(dtype), "BYTES")


def _describe(name: str, array: Any) -> dict[str, Any]:
    return {"name": name, "datatype": _datatype(array.dtype), "shape": [-1, *array.shape[1:]]}


def _describe_inputs(inputs: Any, frame: bool) -> list[dict[str, Any]]:
    if frame:
        return [
            {"name": str(c), "datatype": _datatype(inputs[c].dtype), "shape": [-1]}
            for c in inputs.columns
        ]
    return [_describe("input-0", inputs)]


def _input_data(inputs: Any, frame: bool) -> list[list[Any]]:
    if frame:
        return [inputs[c].tolist() for c in inputs.columns]
    return [inputs.reshape(-1).tolist()]


def _outputs(result: Any) -> list[Any]:
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


def _same(a: list[Any], b: list[Any]) -> bool:
    import numpy as np

    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=False):
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-4, atol=1e-5, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def _call(what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        raise ExportProblem(
            f"Calling {what} on the example failed ({type(exc).__name__}: {exc}). Pass an "
            "example the model accepts: a small batch like the data it was trained on."
        ) from None


# ---- torch ---------------------------------------------------------------------------


def _torch(
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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _outputs(_call(type(model).__name__, model, x))
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
            saved = _pickle(model, model_dir)
            saved["modules"] = sorted({*saved["modules"], "torch"})
            return {**saved, "expected": expected, "gpu": gpu, "batchable": True}
        info = _torch_weights(model, x, expected, model_dir, opts, ns)
        return {**info, "expected": expected, "gpu": gpu, "note": note}
    finally:
        model.train(was_training)


def _torch_export(model: Any, x: Any, expected: list[Any], model_dir: str) -> dict[str, Any]:
    import torch

    attempts: list[tuple[Any, bool]] = [
        (({0: torch.export.Dim("batch", min=1, max=1 << 16)},), True),
        (None, False),
    ]
    errors = []
    for dynamic, batchable in attempts:
        try:
            program = torch.export.export(model, (x,), dynamic_shapes=dynamic)
            with torch.no_grad():
                got = _outputs(program.module()(x))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
            continue
        if not _same(expected, got):
            errors.append("the exported program's answer differs from the model's")
            continue
        torch.export.save(program, os.path.join(model_dir, "model.pt2"))
        return {"format": "torch.export", "files": ["model.pt2"], "batchable": batchable}
    raise ExportProblem("torch.export could not trace the model: " + "; ".join(errors))


def _torch_program(program: Any, inputs: Any, model_dir: str) -> dict[str, Any]:
    import torch

    x = torch.from_numpy(inputs)
    with torch.no_grad():
        expected = _outputs(_call("the exported program", program.module(), x))
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
    sources = [_source_of(cls) for cls in classes]
    init = _init_args(model, opts.get("init_args") or {})
    code, modules = _code_with_context(sources, ns)
    if type(model).__module__ != "__main__":
        code = f"from {type(model).__module__} import {type(model).__name__}\n" + code
        modules.add(type(model).__module__.split(".")[0])
    check: dict[str, Any] = {"__name__": "nbc_model"}
    try:
        exec(compile(code, "model_code.py", "exec"), check)
        rebuilt = check[type(model).__name__](**init).to(x.device)
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.eval()
        with torch.no_grad():
            got = _outputs(rebuilt(x))
    except Exception as exc:
        raise ExportProblem(
            f"Rebuilding {type(model).__name__} from its source and weights failed "
            f"({type(exc).__name__}: {exc}). Pass the constructor's arguments with "
            "--init-args '{...}', or --format pickle."
        ) from None
    if not _same(expected, got):
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
        if value is not inspect.Parameter.empty and _is_literal(value):
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
        raw = t.reshape(-1).view(__import__("torch").uint8).numpy().tobytes()
        header[key] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for blob in blobs:
            f.write(blob)


# ---- scikit-learn --------------------------------------------------------------------


def _sklearn(
    obj: Any, inputs: Any, model_dir: str, fmt: str, opts: dict[str, Any]
) -> dict[str, Any]:
    method = opts.get("method") or "predict"
    if not callable(getattr(obj, method, None)):
        raise ExportProblem(
            f"{type(obj).__name__} has no {method}() method; pick one with --method "
            "(predict, predict_proba, transform, ...)."
        )
    expected = _outputs(_call(f"{type(obj).__name__}.{method}", getattr(obj, method), inputs))
    if fmt == "pickle":
        return {
            **_pickle(obj, model_dir),
            "expected": expected,
            "method": method,
            "batchable": True,
            "gpu": False,
        }
    if fmt not in ("auto", "skops"):
        raise ExportProblem(f"A scikit-learn model can't be saved as {fmt!r}; use skops.")
    try:
        import skops.io as sio
    except ImportError:
        raise ExportProblem(
            "scikit-learn models are saved with skops, which this kernel lacks: run "
            "`%pip install skops` in the kernel that holds the model and export again "
            "(or pass --format pickle if you accept pickle)."
        ) from None
    data = sio.dumps(obj)
    trusted = sio.get_untrusted_types(data=data)
    got = _outputs(getattr(sio.loads(data, trusted=trusted), method)(inputs))
    if not _same(expected, got):
        raise ExportProblem(
            f"{type(obj).__name__} saved with skops answers differently; pass --format pickle."
        )
    with open(os.path.join(model_dir, "model.skops"), "wb") as f:
        f.write(data)
    modules = {"sklearn", "skops", type(obj).__module__.split(".")[0]}
    modules |= {t.split(".")[0] for t in trusted}
    return {
        "format": "skops",
        "files": ["model.skops"],
        "trusted": trusted,
        "method": method,
        "batchable": True,
        "gpu": False,
        "expected": expected,
        "modules": sorted(modules),
    }


# ---- plain functions -----------------------------------------------------------------


def _function(fn: Any, inputs: Any, model_dir: str, fmt: str, ns: dict[str, Any]) -> dict[str, Any]:
    expected = _outputs(_call(fn.__name__, fn, inputs))
    if fmt == "pickle":
        return {**_pickle(fn, model_dir), "expected": expected, "batchable": False, "gpu": False}
    if fmt not in ("auto", "source"):
        raise ExportProblem(f"A function is saved as its source; {fmt!r} does not apply.")
    if fn.__name__ == "<lambda>":
        raise ExportProblem("A lambda has no name to serve; define it with def.")
    code, modules = _code_with_context([_source_of(fn)], ns)
    check: dict[str, Any] = {"__name__": "nbc_model"}
    try:
        exec(compile(code, "model_code.py", "exec"), check)
        got = _outputs(check[fn.__name__](inputs))
    except Exception as exc:
        raise ExportProblem(
            f"{fn.__name__} rebuilt from its source fails ({type(exc).__name__}: {exc}); "
            "pass --format pickle."
        ) from None
    if not _same(expected, got):
        raise ExportProblem(f"{fn.__name__} rebuilt from its source answers differently.")
    with open(os.path.join(model_dir, "model_code.py"), "w") as f:
        f.write(code)
    return {
        "format": "source",
        "files": ["model_code.py"],
        "function": fn.__name__,
        "batchable": False,
        "gpu": False,
        "expected": expected,
        "modules": sorted(modules),
    }


# ---- source slicing ------------------------------------------------------------------


def _source_of(obj: Any) -> str:
    """Source of a notebook-defined class or function. inspect can't find a class defined
    in __main__ (it has no file), so find the cell through one of its functions."""
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        pass
    for member in vars(obj).values():
        code = getattr(member, "__code__", None)
        if code is None:
            continue
        text = "".join(linecache.getlines(code.co_filename))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == obj.__name__:
                segment = ast.get_source_segment(text, node)
                if segment:
                    return segment + "\n"
    raise ExportProblem(
        f"Cannot find the source of {obj.__name__} (define it in a notebook cell or a module); "
        "or pass --format pickle."
    )


def _is_literal(value: Any) -> bool:
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _history_imports(ns: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Top-level import statements of every cell run so far, with the names they bind."""
    found: list[tuple[str, set[str]]] = []
    for cell in ns.get("In") or ():
        try:
            tree = ast.parse(cell)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                isinstance(node, ast.ImportFrom) and node.module == "__future__"
            ):
                names = {(a.asname or a.name).split(".")[0] for a in node.names}
                text = ast.unparse(node)
                if all(text != t for t, _ in found):
                    found.append((text, names))
    return found


def _loaded_names(tree: ast.AST) -> set[str]:
    """Names the code reads, leaving out annotations (the written code postpones them)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            notes.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            notes.append(node.returns)
        if isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            skip.update(id(n) for n in ast.walk(note))
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in skip
    }


def _code_with_context(sources: list[str], ns: dict[str, Any]) -> tuple[str, set[str]]:
    """The sources, preceded by the imports, constants and helper definitions they use."""
    pieces = list(sources)
    defined: set[str] = set()
    for src in sources:
        for node in ast.parse(src).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add(node.name)
    imports = _history_imports(ns)
    header: list[str] = []
    helpers: list[str] = []
    constants: list[str] = []
    modules: set[str] = set()
    pending = list(pieces)
    seen: set[str] = set()
    while pending:
        src = pending.pop()
        tree = ast.parse(src)
        bound = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
        bound |= {
            n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        used = _loaded_names(tree)
        for name in sorted(used - bound - defined - seen):
            seen.add(name)
            if hasattr(builtins, name):
                continue
            statement = next((t for t, names in imports if name in names), None)
            if statement is not None:
                if statement not in header:
                    header.append(statement)
                value = ns.get(name)
                module = (
                    value.__name__
                    if isinstance(value, types.ModuleType)
                    else getattr(value, "__module__", None)
                )
                if module:
                    modules.add(str(module).split(".")[0])
                continue
            if name not in ns:
                raise ExportProblem(f"The model's code uses {name!r}, which is not defined.")
            value = ns[name]
            if isinstance(value, (type, types.FunctionType)) and value.__module__ == "__main__":
                helper = _source_of(value)
                helpers.insert(0, helper)
                defined.add(name)
                pending.append(helper)
            elif _is_literal(value):
                constants.append(f"{name} = {value!r}")
            else:
                raise ExportProblem(
                    f"The model's code uses the global {name!r} ({type(value).__name__}), which "
                    "can't be written as code. Make it an argument's default or an attribute, "
                    "or pass --format pickle."
                )
    code = "from __future__ import annotations\n\n" + "\n".join(header) + "\n\n"
    code += "\n".join(constants) + "\n\n"
    code += "\n\n".join([*helpers, *sources])
    return code, modules


# ---- pickle (only when asked) ------------------------------------------------------------


def _pickle(obj: Any, model_dir: str) -> dict[str, Any]:
    modules = set()
    try:
        import cloudpickle  # pickles notebook-defined classes by value

        data = cloudpickle.dumps(obj)
        modules.add("cloudpickle")
    except ImportError:
        data = pickle.dumps(obj, protocol=5)
    root = type(obj).__module__.split(".")[0]
    if root not in ("__main__", "builtins"):
        modules.add(root)
    if root == "sklearn":
        modules.add("sklearn")
    with open(os.path.join(model_dir, "model.pkl"), "wb") as f:
        f.write(data)
    return {"format": "pickle", "files": ["model.pkl"], "modules": sorted(modules)}


# ---- distributions -------------------------------------------------------------------


def _distributions(modules: set[str]) -> list[str]:
    """Distribution names that provide these top-level modules (stdlib ones need none)."""
    mapping = importlib.metadata.packages_distributions()
    names = set()
    for module in modules:
        if module in sys.stdlib_module_names:
            continue
        names.update(mapping.get(module, []))
    return sorted(names)
