"""The tree as the architecture: the README's layer list, read from the README itself, holds
for every import in the package (lazy ones included), engine knowledge stays in runtimes/,
no module reaches into another's private names, and big rooms say why they are big."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import nbcontainers

ROOT = Path(nbcontainers.__file__).parent
README = ROOT.parent / "README.md"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def layers() -> list[list[str]]:
    """The fenced block after ``<!-- layers -->`` in the README: one layer per line, top first,
    its components before the first run of two spaces."""
    text = README.read_text()
    block = re.search(r"<!-- layers -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert block, "README.md lost its <!-- layers --> block"
    return [
        line.split("  ")[0].split()
        for line in block.group(1).splitlines()
        if line.strip() and not line.startswith("#")
    ]


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(["nbcontainers", *parts]), path


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import in the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            for n in names:
                # `from . import x` names a submodule where one exists, else an attribute.
                if _is_module(f"{target}.{n}"):
                    yield f"{target}.{n}", [], node.lineno
                else:
                    yield target, [n], node.lineno


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def component(module: str) -> str:
    """``nbcontainers.relay.kernel`` -> ``kernels``; the package root itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(comp: str, table: list[list[str]]) -> int:
    if not comp:
        return -1  # the package root re-exports from everywhere: above every layer
    for i, row in enumerate(table):
        if comp in row:
            return i
    raise AssertionError(f"nbcontainers/{comp} is in no layer of README.md's <!-- layers --> block")


def test_every_component_has_a_layer() -> None:
    table = layers()
    for name, _ in modules():
        if component(name):
            layer_of(component(name), table)


def test_imports_point_downward() -> None:
    """A module imports its own component, or components on lower layers; two components on
    one layer stay independent of each other."""
    table = layers()
    upward = []
    for name, path in modules():
        here = component(name)
        if not here:
            continue  # the package root re-exports the public API
        for target, _, line in imports(name, path):
            inside = target == "nbcontainers" or target.startswith("nbcontainers.")
            if not inside or component(target) == here:
                continue
            there = component(target)
            if layer_of(there, table) <= layer_of(here, table):
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert upward == [], "imports that do not point downward:\n" + "\n".join(upward)


def test_only_runtimes_know_the_engine() -> None:
    """No Docker SDK, CLI call or Docker error text outside runtimes/."""
    offenders = []
    for name, path in modules():
        if component(name) == "runtimes":
            continue
        for target, _, line in imports(name, path):
            if target == "docker" or target.startswith(("docker.", "requests")):
                offenders.append(f"{path.name}:{line} imports {target}")
        source = path.read_text()
        for pattern in (r"\[\s*\"docker\"\s*,", r"\"Conflict\"", r"cpu_stats", r"already in use"):
            for match in re.finditer(pattern, source):
                line = source.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line} has {match.group(0)!r}")
    assert offenders == []


def test_no_private_names_across_modules() -> None:
    reaching = []
    for name, path in modules():
        for target, names, line in imports(name, path):
            if target.startswith("nbcontainers") and target != name:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    reaching.append(f"{path.relative_to(ROOT)}:{line} {target} {private}")
    assert reaching == []


def _reason_stated(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "long because" in doc.lower() or "large because" in doc.lower()


def test_rooms_stay_small_or_say_why() -> None:
    big = []
    for _, path in modules():
        text = path.read_text()
        if _reason_stated(path):
            continue
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno:
                size = node.end_lineno - node.lineno
                if size > MAX_CLASS_LINES:
                    big.append(f"{path.relative_to(ROOT)}: class {node.name} {size} lines")
    assert big == [], "split these, or say at the module's top why it is long:\n" + "\n".join(big)
