"""Fixtures of the kernel tests that run as the Podman test user."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.catalog.kernelspecs import install_kernelspecs
from nbcontainers.kernels.netns import holder_name


@pytest.fixture
def workspace(podman_runtime: Any) -> Iterator[tuple[pwd.struct_passwd, Path, Path]]:
    """(the test user, a folder that user owns, the Jupyter data folder in it holding the
    nbc-* kernelspecs); removed afterwards, with the user's network holder."""
    from .. import conftest

    user = pwd.getpwnam(conftest.PODMAN_USER)
    ref = load_catalog()["python"].ref
    if podman_runtime.image_info(ref) is None:
        pytest.fail(f"{ref} is not in {user.pw_name}'s image store: run scripts/ensure-podman.sh")
    work = Path(user.pw_dir) / f"nbc-test-{os.getpid()}"
    work.mkdir()
    prefix = work / "jupyter"
    install_kernelspecs(load_catalog(include_user=False), prefix=str(prefix))
    for path in [work, *work.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    yield user, work, prefix / "share" / "jupyter"
    shutil.rmtree(work, ignore_errors=True)
    holder = podman_runtime.state(holder_name(user.pw_name))
    if holder is not None:
        podman_runtime.remove(holder.id)


@pytest.fixture
def pool(python_image: str) -> Iterator[Any]:
    """This process's pool, emptied (every idle container removed) after the test."""
    from nbcontainers.kernels.pool import kernel_pool

    yield kernel_pool()
    kernel_pool().drain()
    kernel_pool().reopen()
