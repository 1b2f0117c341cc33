"""No module of ``nbcontainers.kernels`` reads another object's private names (``prov._gpu``,
``km._kernel_spec``); tests/test_architecture.py checks the imports of every package."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import nbcontainers.kernels

MODULES = sorted(m.name for m in pkgutil.iter_modules(nbcontainers.kernels.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_no_private_names_of_other_modules(name: str) -> None:
    path = Path(nbcontainers.kernels.__path__[0]) / f"{name}.py"
    tree = ast.parse(path.read_text())
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and node.module != "__future__"
    ]
    # Attributes read off anything but self/cls: `prov._gpu`, `km._kernel_spec`.
    reached = [
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert imported == [] and reached == [], (imported, reached)
