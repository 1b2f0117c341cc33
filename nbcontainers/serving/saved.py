"""Saved models and examples on disk (`nbcontainers export`): load them into a namespace
the kernel-side capture can read, as if they had been made in a notebook."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ExportError

__all__ = [
    "MODEL_KINDS",
    "load_example",
    "load_model",
]

MODEL_KINDS = ".pt2 (torch.export), .skops, .pkl/.joblib (with --format pickle), file.py:function"


def load_model(spec: str, fmt: str, trust: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """The model's name and a namespace holding it (plus the source the capture reads).
    ``trust``: the types a .skops file may hold beyond skops' defaults and scikit-learn's."""
    path_text, _, attr = spec.partition(":") if spec.count(":") == 1 else (spec, "", "")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ExportError(f"No file {path}. Pass a saved model: {MODEL_KINDS}.")
    suffix = path.suffix.lower()
    name = attr or path.stem.replace("-", "_").replace(".", "_")
    try:
        if suffix == ".py":
            return _from_python(path, attr)
        if suffix == ".pt2":
            import torch

            return name, {name: torch.export.load(str(path))}
        if suffix == ".skops":
            return name, {name: _load_skops(path, trust)}
        if suffix in (".pkl", ".pickle", ".joblib"):
            if fmt != "pickle":
                raise ExportError(
                    f"{path.name} is a pickle, which runs code when loaded: pass --format pickle "
                    "if you trust it, or save the model as .skops / .pt2."
                )
            import pickle

            with path.open("rb") as f:
                return name, {name: pickle.load(f)}  # the user asked for pickle, above
    except ImportError as exc:
        raise ExportError(f"Loading {path.name} needs {exc.name}: pip install it.") from None
    raise ExportError(f"Don't know how to load {path.name}. Pass one of: {MODEL_KINDS}.")


def _load_skops(path: Path, trust: Sequence[str]) -> Any:
    """A .skops file loaded trusting skops' defaults, scikit-learn's own classes and the
    types the user named, never what the file itself asks to be trusted: a file may name
    any importable type or function, and skops would build it."""
    import skops.io

    named = skops.io.get_untrusted_types(file=str(path))
    trusted = [t for t in named if t.startswith("sklearn.") and _is_class(t)]
    trusted += [t for t in named if t in set(trust)]
    refused = sorted(set(named) - set(trusted))
    if refused:
        raise ExportError(
            f"{path.name} holds types skops does not trust by default: {', '.join(refused)}. "
            "If you trust this file, name them: " + " ".join(f"--trust {t}" for t in refused) + "."
        )
    return skops.io.load(str(path), trusted=trusted)


def _is_class(dotted: str) -> bool:
    """Whether ``dotted`` names a class of its module (not a function, which a model may
    call on its input)."""
    import importlib

    module, _, attr = dotted.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module), attr), type)
    except (ImportError, AttributeError, ValueError):
        return False


def _from_python(path: Path, attr: str) -> tuple[str, dict[str, Any]]:
    if not attr:
        raise ExportError(f"Name the function: {path}:predict")
    module_spec = importlib.util.spec_from_file_location(f"nbc_user_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, attr):
        raise ExportError(f"{path} defines no {attr!r}.")
    # The capture reads imports from "cells": the file is the one cell.
    return attr, {**vars(module), "In": [path.read_text()]}


def load_example(path_text: str) -> Any:
    """An example batch from .npy, .json (a list of rows) or .csv (a DataFrame)."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ExportError(f"No example file {path}; pass a .npy, .json or .csv batch.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if suffix == ".json":
        return json.loads(path.read_text())
    if suffix == ".csv":
        import pandas

        return pandas.read_csv(path)
    raise ExportError(f"Example {path.name}: use a .npy, .json or .csv file.")
