"""Fixtures of the kernel tests: the Podman test user's workspace, this process's pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .podman_user import workspace  # noqa: F401 (a fixture)


@pytest.fixture
def pool(python_image: str) -> Iterator[Any]:
    """This process's pool, emptied (every idle container removed) after the test."""
    from nbcontainers.kernels.pool import kernel_pool

    yield kernel_pool()
    kernel_pool().drain()
    kernel_pool().reopen()
