"""Saving a scikit-learn estimator (skops), a plain function (its source) or, only when asked,
any object (pickle); each proves the saved form gives the notebook's answer.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from .code import code_with_context, source_of
from .examples import ExportProblem, call_on_example, outputs, same

__all__ = [
    "save_function",
    "save_pickle",
    "save_sklearn",
]


def save_sklearn(
    obj: Any, inputs: Any, model_dir: str, fmt: str, opts: dict[str, Any]
) -> dict[str, Any]:
    method = opts.get("method") or "predict"
    if not callable(getattr(obj, method, None)):
        raise ExportProblem(
            f"{type(obj).__name__} has no {method}() method; pick one with --method "
            "(predict, predict_proba, transform, ...)."
        )
    expected = outputs(
        call_on_example(f"{type(obj).__name__}.{method}", getattr(obj, method), inputs)
    )
    if fmt == "pickle":
        saved = save_pickle(obj, model_dir)
        # A notebook-defined estimator pickles by value but still subclasses scikit-learn's.
        saved["modules"] = sorted({*saved["modules"], "sklearn"})
        # batchable: the format takes any batch; serialize.py proves the rows independent.
        return {**saved, "expected": expected, "method": method, "batchable": True, "gpu": False}
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
    # The types skops would refuse to load: trusted here, where the object was made, and
    # written into meta.json so the server loads the same set and nothing more.
    trusted = sio.get_untrusted_types(data=data)
    got = outputs(getattr(sio.loads(data, trusted=trusted), method)(inputs))
    if not same(expected, got):
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


def save_function(
    fn: Any, inputs: Any, model_dir: str, fmt: str, ns: dict[str, Any]
) -> dict[str, Any]:
    expected = outputs(call_on_example(fn.__name__, fn, inputs))
    if fmt == "pickle":
        return {**save_pickle(fn, model_dir), "expected": expected, "batchable": True, "gpu": False}
    if fmt not in ("auto", "source"):
        raise ExportProblem(f"A function is saved as its source; {fmt!r} does not apply.")
    # The server calls the function by name from model_code.py.
    if fn.__name__ == "<lambda>":
        raise ExportProblem("A lambda has no name to serve; define it with def.")
    code, modules = code_with_context([source_of(fn)], ns)
    check: dict[str, Any] = {"__name__": "nbc_model"}
    try:
        exec(compile(code, "model_code.py", "exec"), check)
        got = outputs(check[fn.__name__](inputs))
    except Exception as exc:
        raise ExportProblem(
            f"{fn.__name__} rebuilt from its source fails ({type(exc).__name__}: {exc}); "
            "pass --format pickle."
        ) from None
    if not same(expected, got):
        raise ExportProblem(f"{fn.__name__} rebuilt from its source answers differently.")
    with open(os.path.join(model_dir, "model_code.py"), "w") as f:
        f.write(code)
    return {
        "format": "source",
        "files": ["model_code.py"],
        "function": fn.__name__,
        "batchable": True,  # if serialize.py proves its rows independent on the example
        "gpu": False,
        "expected": expected,
        "modules": sorted(modules),
    }


def save_pickle(obj: Any, model_dir: str) -> dict[str, Any]:
    modules = set()
    try:
        import cloudpickle  # pickles notebook-defined classes by value

        data = cloudpickle.dumps(obj)
        modules.add("cloudpickle")
    except ImportError:
        data = pickle.dumps(obj, protocol=5)
    # The image needs the distribution that defines the object's class to unpickle it.
    root = type(obj).__module__.split(".")[0]
    if root not in ("__main__", "builtins"):
        modules.add(root)
    if root == "sklearn":
        modules.add("sklearn")
    with open(os.path.join(model_dir, "model.pkl"), "wb") as f:
        f.write(data)
    return {"format": "pickle", "files": ["model.pkl"], "modules": sorted(modules)}
