"""The public API: what users and plug-in authors import, and nothing else.

The package root, the errors, the runtime Protocol and its values (with the registry), the
engines' entry points, the provisioner, the magics' entry point and the names users write into
their configs (`python -m nbcontainers.hub.setup`, `nbcontainers.kernels.warmup`,
`nbcontainers.hub.slices.use_user_slices`). Every other module is internal to its package and
may move: its ``__all__`` says what its own package uses, not a promise. The public part is
held against a golden listing (tests/public_api.txt), so that a change to it is a visible
diff, never an accident, and an internal move is not."""

from __future__ import annotations

import ast
import importlib
import os
import re
from pathlib import Path

import tomllib

import nbcontainers

ROOT = Path(nbcontainers.__file__).parent
REPO = ROOT.parent
GOLDEN = Path(__file__).with_name("public_api.txt")

PUBLIC = (
    "nbcontainers",
    "nbcontainers.errors",
    "nbcontainers.runtimes",
    "nbcontainers.runtimes.base",
    "nbcontainers.runtimes.docker",
    "nbcontainers.runtimes.podman",
    "nbcontainers.runtimes.swarm",
    "nbcontainers.runtimes.kubernetes",
    "nbcontainers.kernels.provisioner",
    "nbcontainers.kernels.warmup",
    "nbcontainers.magics",
    "nbcontainers.cli",
    "nbcontainers.hub.setup",
    "nbcontainers.hub.slices",
)
# Public once they exist (added by the work that creates them).
OPTIONAL_PUBLIC = ("nbcontainers.launch", "nbcontainers.lab")


def public_modules() -> list[str]:
    return [*PUBLIC, *(m for m in OPTIONAL_PUBLIC if _exists(m))]


def _exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_names() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(["nbcontainers", *parts]))
    return names


def listing() -> str:
    lines = []
    for name in public_modules():
        module = importlib.import_module(name)
        lines.append(f"{name}: {', '.join(sorted(getattr(module, '__all__', ['<no __all__>'])))}")
    return "\n".join(lines) + "\n"


def test_every_module_declares_all_and_docstring() -> None:
    for name in module_names():
        module = importlib.import_module(name)
        assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring"
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        for attr in module.__all__:
            assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which is not there"


def test_public_api_matches_the_listing() -> None:
    """Regenerate with NBC_UPDATE_API=1 after a deliberate change."""
    now = listing()
    if os.environ.get("NBC_UPDATE_API") == "1":
        GOLDEN.write_text(now)
    assert now == GOLDEN.read_text(), (
        "The public API changed. If that is deliberate, run "
        "`NBC_UPDATE_API=1 pytest tests/test_public_api.py` and commit tests/public_api.txt. "
        "Now:\n" + now
    )


def test_all_names_exist() -> None:
    for name in nbcontainers.__all__:
        assert hasattr(nbcontainers, name), name


def test_entry_points_name_public_modules() -> None:
    """What pyproject.toml registers (console scripts, the provisioner, the engines) lives in
    public modules, so that an internal move never breaks a user's install."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    targets = list(project["scripts"].values())
    for group in project["entry-points"].values():
        targets += list(group.values())
    assert targets
    for target in targets:
        module, _, attr = target.partition(":")
        assert module in public_modules(), f"{target} is not in a public module"
        assert getattr(importlib.import_module(module), attr.split(".")[0]), target


def test_users_examples_import_public_modules_only() -> None:
    """examples/ and the README are what users copy: they import the public API only."""
    used = set()
    for path in [*REPO.joinpath("examples").rglob("*.py"), REPO / "README.md"]:
        text = path.read_text()
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nbc"):
                    used.add((path.name, node.module))
        used.update(
            (path.name, m)
            for m in re.findall(r"(?:from|import|-m|extensions=)\s*(nbcontainers[\w.]*)", text)
        )
    private = sorted(f"{where}: {m}" for where, m in used if m not in public_modules())
    assert private == []
