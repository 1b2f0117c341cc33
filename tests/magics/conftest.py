"""The fast tier's notebook: a plain IPython shell (no kernel, no engine) with the magics
loaded, and stand-in container kernels backed by the in-memory runtime."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from nbcontainers.catalog.entries import load_catalog, register_user_image
from nbcontainers.magics import Loaded, load, unload


@pytest.fixture(scope="session")
def _ipython(tmp_path_factory: pytest.TempPathFactory) -> InteractiveShell:
    # One shell for the session (IPython's shell is a singleton); its history stays in memory
    # and its profile in a temporary folder, never the user's ~/.ipython.
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.ipython_dir = str(tmp_path_factory.mktemp("ipython"))
    return InteractiveShell.instance(config=config)


@pytest.fixture
def shell(_ipython: InteractiveShell) -> Iterator[InteractiveShell]:
    """The shell with `%load_ext nbcontainers` done; unloaded afterwards."""
    load(_ipython)
    yield _ipython
    unload(_ipython)
    for name in [n for n in _ipython.user_ns if n.startswith("nbc_test_")]:
        del _ipython.user_ns[name]


def loaded(shell: InteractiveShell) -> Loaded:
    """What `load` installed (the magics' shared state and themes)."""
    found: Loaded = shell._nbcontainers_magics  # type: ignore[attr-defined]
    return found


class StandInRelay:
    """What the themes read of a :class:`~nbcontainers.relay.kernel.Relay`, without a
    kernel: its name, container and start time. What it runs on is the notebook's
    :class:`~nbcontainers.relay.session.RelaySession`'s to say (``container_kernel``)."""

    def __init__(self, name: str, kernel: Any, container_id: str | None, alive: bool = True):
        self.name = name
        self.kernel = kernel  # the RelayKernel it was started as (None: not by the session)
        self.container_id = container_id
        self.alive = alive
        self.started_at = time.time() - 65
        self.stopped = False
        self.restarted = False

    def stop(self, now: bool = False) -> None:
        self.stopped = True
        self.alive = False

    def restart(self) -> None:
        self.restarted = True


@pytest.fixture
def container_kernel(
    shell: InteractiveShell, fake_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> StandInRelay:
    """A running 'python' container kernel on the fake runtime, active in the notebook, as
    the notebook's relay session started it (``specify``, then ``start``)."""
    from dataclasses import replace

    from nbcontainers.runtimes import ContainerSpec

    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="auto": fake_runtime)
    state = loaded(shell).state
    kernel = replace(state.kernels.specify("python"), runtime_name="docker")
    assert kernel.image is not None
    cid = fake_runtime.run(
        ContainerSpec(image=kernel.image.ref, command=("python",), mem_limit="2g")
    )
    relay = StandInRelay("python", kernel, cid)
    state.kernels.kernels["python"] = kernel
    state.relays["python"] = relay  # type: ignore[assignment]
    state.active = "python"
    return relay


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private folder for the user's catalog file."""
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture
def tiny(
    python_image: str, runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Path]]:
    """A user catalog image (name, folder) that is not built: FROM the catalog's python image
    with two trivial steps, so a build takes seconds. Removed afterwards."""
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("NBCONTAINERS_PROGRESS", "")  # the frontend decides, as for users
    name = f"progress-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    base = load_catalog()[python_image].ref
    (folder / "Dockerfile").write_text(
        f"FROM {base}\nRUN echo built > /dev/null\nENV NBC_PROGRESS_TEST={name}\n"
    )
    register_user_image(name, {"build": str(folder)})
    yield name, folder
    runtime.remove_image(load_catalog()[name].ref)
