"""The test swarm (scripts/ensure-swarm.sh): this host as manager plus a Docker-in-Docker
worker, made once per session for the Swarm tests and removed after them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbcontainers.labels import KERNEL_ID

REPO = Path(__file__).resolve().parent.parent
WORKER = "nbc-swarm-w1"
ON_WORKER = f"node.labels.nbc.node=={WORKER}"  # ensure-swarm.sh labels every node
SHARED = Path("/tmp/nbc-swarm-shared")  # mounted at the same path on every node
BASE_IMAGE = "nbcontainers/base:bookworm"


def ensure_swarm(images: list[str], action: str = "up") -> None:
    env = {**os.environ, "NBC_SWARM_IMAGES": " ".join(images), "NBC_SWARM_SHARED": str(SHARED)}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-swarm.sh"), action],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"ensure-swarm.sh {action} failed:\n{done.stderr[-3000:]}")


def on_worker(*command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the worker node (its own engine answers `docker ...` there)."""
    return subprocess.run(
        ["docker", "exec", WORKER, *command], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="session")
def swarm_images(runtime: object, python_image: str) -> list[str]:
    from nbcontainers.catalog.entries import load_catalog

    return [load_catalog()[python_image].ref, BASE_IMAGE]


@pytest.fixture(scope="session")
def swarm(swarm_images: list[str]) -> Iterator[object]:
    """A SwarmRuntime on this host's swarm that places everything on the worker node."""
    from nbcontainers.runtimes.swarm.runtime import SwarmRuntime

    if os.getuid() != 0:
        if os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1":
            pytest.fail("the test swarm is made as root: run the Docker tier as root")
        pytest.skip("the test swarm is made as root")
    ensure_swarm(swarm_images)
    rt = SwarmRuntime(placement=(ON_WORKER,))
    yield rt
    left = rt.list({KERNEL_ID: None})
    for state in left:
        rt.remove(state.id)
    ensure_swarm([], "down")
    assert not left, f"Swarm tests left services behind: {[s.name for s in left]}"
