"""Code that runs somewhere else, as source text: one source from the modules of a folder
(``inkernel/``, ``serving/image/``), and the Python that runs such a source in a kernel.

The modules stay ordinary, importable and unit-tested here; what travels is their text with
the relative imports between them resolved by concatenation, so the far side needs nothing
but the source (and its stdlib or framework imports).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["bundle", "call_in_kernel", "kernel_function"]


def bundle(folder: Path, modules: Sequence[str], docstring: str) -> str:
    """The source of ``modules`` (file stems in ``folder``, each after those it imports from)
    as one module whose docstring is ``docstring``.

    Each module's docstring, ``from __future__`` line, ``__all__`` and relative imports are
    dropped (the names they import are defined earlier in the same source); one ``__all__``
    lists every module's. Two modules defining the same top-level name would silently
    overwrite each other, so that is refused, as is ``from . import module`` (no module
    objects exist on the far side) and any import from outside ``folder``.
    """
    if '"""' in docstring or "\\" in docstring:
        raise ValueError("the bundle's docstring must not hold triple quotes or backslashes")
    parts = [f'"""{docstring}\n"""\n\nfrom __future__ import annotations\n']
    names: list[str] = []
    owners: dict[str, str] = {}
    for stem in modules:
        path = folder / f"{stem}.py"
        text = path.read_text()
        tree = ast.parse(text, str(path))
        drop: set[int] = set()
        for index, node in enumerate(tree.body):
            if _dropped(node, index, path, names):
                assert node.end_lineno is not None
                drop.update(range(node.lineno - 1, node.end_lineno))
                continue
            for name in _defined(node):
                if name in owners:
                    raise ValueError(f"{name} is defined in both {owners[name]} and {path.name}")
                owners[name] = path.name
        kept = "\n".join(line for i, line in enumerate(text.splitlines()) if i not in drop)
        # What was dropped leaves runs of blank lines; two is what the code had between defs.
        kept = re.sub(r"\n{4,}", "\n\n\n", kept.strip("\n"))
        parts.append(f"# from {path.name}\n{kept}\n")
    parts.append(f"__all__ = {names!r}\n")
    return "\n\n".join(parts)


def _dropped(node: ast.stmt, index: int, path: Path, names: list[str]) -> bool:
    """Whether a top-level statement stays behind (and, for ``__all__``, collect it)."""
    if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True  # the module docstring
    if isinstance(node, ast.ImportFrom):
        if node.level and node.module is None:
            raise ValueError(f"{path.name}: `from . import ...` cannot be bundled")
        if node.level > 1:
            # Only the folder travels: a name from further up would be missing over there.
            raise ValueError(f"{path.name}: imports from outside its folder cannot be bundled")
        return bool(node.level) or node.module == "__future__"
    targets = node.targets if isinstance(node, ast.Assign) else []
    if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
        names.extend(ast.literal_eval(node.value))  # type: ignore[attr-defined]
        return True
    return False


def _defined(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def kernel_function(source: str, function: str, name: str) -> str:
    """Python that defines one function, ``name``, and nothing else: called with arguments,
    it runs ``source`` in a fresh module and returns ``function(*arguments)`` from it.

    The module sees the ``get_ipython`` of the namespace ``name`` is defined in, as a cell's
    code would; the caller deletes ``name`` afterwards, so the namespace keeps nothing.
    """
    return (
        f"def {name}(*args):\n"
        # ModuleType without importing `types` into the user's namespace.
        f"    module = type(__import__('sys'))({function!r})\n"
        "    module.get_ipython = globals().get('get_ipython')\n"
        f"    exec({source!r}, module.__dict__)\n"
        f"    return getattr(module, {function!r})(*args)\n"
    )


def call_in_kernel(
    evaluate: Callable[[str, str], Any],
    source: str,
    function: str,
    *args: Any,
    name: str = "__nbc_call",
) -> Any:
    """``function(*args)`` of ``source``, run in the kernel ``evaluate`` reaches (an
    :data:`nbcontainers.evaluate.Evaluate`), its value brought back (a literal: ``evaluate``
    returns the repr's value); the function ``name`` defined for the call is removed after."""
    value = evaluate(kernel_function(source, function, name), f"{name}(*{args!r})")
    evaluate(f"globals().pop({name!r}, None)", "None")
    return value
