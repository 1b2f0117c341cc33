"""Shared fixtures: a real engine (failing, not skipping, in CI), kernelspecs in a temp prefix,
and a check that every test removes the kernel containers it started."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcontainers.errors import EngineUnavailable
from nbcontainers.labels import KERNEL_ID, ROLE

REQUIRE_DOCKER = os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="session")
def runtime() -> Iterator[object]:
    from nbcontainers.orphans import find_orphans, remove_orphans
    from nbcontainers.runtimes.docker import DockerRuntime

    rt = DockerRuntime()
    try:
        rt.ping()
    except EngineUnavailable as exc:
        if REQUIRE_DOCKER:
            pytest.fail(f"NBCONTAINERS_REQUIRE_DOCKER=1 but no engine answers: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    yield rt
    # The shared network holder outlives single tests by design; the session removes it.
    remove_orphans(rt, [o for o in find_orphans(rt) if o.container.labels.get(ROLE)])


def _ensure_built(runtime: object, name: str) -> None:
    from nbcontainers.build import build_image
    from nbcontainers.catalog import load_catalog

    image = load_catalog()[name]
    if runtime.image_info(image.ref) is None:  # type: ignore[attr-defined]
        build_image(image, runtime, on_line=lambda line: sys.stderr.write(line + "\n"))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def python_image(runtime: object) -> str:
    _ensure_built(runtime, "python")
    return "python"


@pytest.fixture(scope="session")
def torch_image(runtime: object) -> str:
    _ensure_built(runtime, "pytorch-cpu")
    return "pytorch-cpu"


@pytest.fixture(scope="session", autouse=True)
def kernelspec_prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install the nbc-* kernelspecs into a private prefix that Jupyter searches first."""
    from nbcontainers.catalog import load_catalog
    from nbcontainers.kernelspecs import install_kernelspecs

    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
    data = prefix / "share" / "jupyter"
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(data), old]))
    yield data
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.fixture(autouse=True)
def no_leaked_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Docker-marked tests must remove every kernel container they start."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    rt = request.getfixturevalue("runtime")
    before = {s.id for s in rt.list({KERNEL_ID: None})}
    yield
    leaked = [s for s in rt.list({KERNEL_ID: None}) if s.id not in before]
    for state in leaked:
        rt.remove(state.id)
    assert not leaked, f"test left kernel containers behind: {[s.name for s in leaked]}"
