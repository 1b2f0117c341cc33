from __future__ import annotations

import importlib

import nbcontainers

MODULES = [
    "errors",
    "folders",
    "catalog",
    "gpu",
    "pipsettings",
    "labels",
    "build",
    "kernels.kernelspecs",
    "kernels.provisioner",
    "kernels.orphans",
    "doctor",
    "progress",
    "capture",
    "snapshot",
    "serving.serialize",
    "serving.server",
    "serving.render",
    "serving.manifests",
    "serving.smoke",
    "serving.export",
    "serving.saved",
    "runtimes",
    "runtimes.base",
    "runtimes.docker",
]


def test_all_names_exist() -> None:
    for name in nbcontainers.__all__:
        assert hasattr(nbcontainers, name), name


def test_every_module_declares_all_and_docstring() -> None:
    for mod in MODULES:
        module = importlib.import_module(f"nbcontainers.{mod}")
        assert module.__doc__ and module.__doc__.strip(), mod
        assert hasattr(module, "__all__"), mod
        for name in module.__all__:
            assert hasattr(module, name), f"{mod}.{name}"


def test_only_the_docker_runtime_imports_docker() -> None:
    from pathlib import Path

    root = Path(nbcontainers.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "docker.py"
        and ("import docker" in p.read_text() or "from docker" in p.read_text())
    ]
    assert offenders == []
