"""The public API, generated from every module's ``__all__`` and held against a golden listing
(tests/public_api.txt) so that a change to it is a visible diff, never an accident."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import nbcontainers

ROOT = Path(nbcontainers.__file__).parent
GOLDEN = Path(__file__).with_name("public_api.txt")


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
    for name in module_names():
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


def test_only_the_docker_runtime_imports_docker() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "runtimes/docker" not in p.as_posix()
        and ("import docker" in p.read_text() or "from docker" in p.read_text())
    ]
    assert offenders == []
