"""Serving tests leave no image behind: every serving image (and tag) that appears during a
Docker-marked test is removed after it, and the test fails saying which."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from nbcontainers.serving.render import MARKER


def serving_images() -> dict[str, set[str]]:
    """Image id -> its tags, for every image an export built (untagged ones too)."""
    done = subprocess.run(
        [
            "docker",
            "images",
            "--no-trunc",
            "--filter",
            f"label=io.nbcontainers.export={MARKER}",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    images: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        image_id, _, ref = line.partition(" ")
        images.setdefault(image_id, set())
        if "<none>" not in ref:
            images[image_id].add(ref)
    return images


@pytest.fixture(autouse=True)
def no_leftover_serving_images(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("docker") is None or shutil.which("docker") is None:
        yield
        return
    before = serving_images()
    yield
    after = serving_images()
    left = []
    for image_id, refs in after.items():
        new = refs - before.get(image_id, set()) if image_id in before else refs | {image_id}
        for ref in sorted(new, key=lambda r: r == image_id):  # tags first, then the image
            subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True, check=False)
            left.append(ref)
    assert not left, f"test left serving images behind (now removed): {left}"
