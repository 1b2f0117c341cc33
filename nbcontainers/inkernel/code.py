"""A notebook-defined class or function as standalone code: its source sliced from the cells,
preceded by the imports, constants and helpers it uses.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import textwrap
import types
from typing import Any

from .examples import ExportProblem

__all__ = [
    "code_with_context",
    "is_literal",
    "source_of",
]


def source_of(obj: Any) -> str:
    """Source of a notebook-defined class or function. inspect can't find a class defined
    in __main__ (it has no file), so find the cell through one of its functions."""
    try:
        # Dedented: a class defined inside a function or an indented cell block still parses.
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        pass
    for member in vars(obj).values():
        code = getattr(member, "__code__", None)
        if code is None:
            continue
        # IPython keeps each cell's text in linecache under the cell's pseudo file name.
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


def is_literal(value: Any) -> bool:
    """Whether ``repr(value)`` is Python that gives ``value`` back (numbers, strings, lists
    and dicts of them): only such values can be written into the model's code."""
    try:
        return bool(ast.literal_eval(repr(value)) == value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _history_imports(ns: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Top-level import statements of every cell run so far, with the names they bind."""
    found: list[tuple[str, set[str]]] = []
    # IPython's `In` holds every cell as typed; the imports a model's code needs are there.
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
                if all(text != t for t, _ in found):  # a cell run twice imports once
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


def code_with_context(sources: list[str], ns: dict[str, Any]) -> tuple[str, set[str]]:
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
    # A helper pulled in may use further names: work until no new source is pending.
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
                helper = source_of(value)
                helpers.insert(0, helper)  # before the code that uses it
                defined.add(name)
                pending.append(helper)
            elif is_literal(value):
                constants.append(f"{name} = {value!r}")
            else:
                raise ExportProblem(
                    f"The model's code uses the global {name!r} ({type(value).__name__}), which "
                    "can't be written as code. Make it an argument's default or an attribute, "
                    "or pass --format pickle."
                )
    # Postponed annotations: a hint naming an unexported type must not break the import.
    code = "from __future__ import annotations\n\n" + "\n".join(header) + "\n\n"
    code += "\n".join(constants) + "\n\n"
    code += "\n\n".join([*helpers, *sources])
    return code, modules
