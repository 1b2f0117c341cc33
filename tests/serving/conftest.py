"""Serving tests leave no image behind: every serving image (and tag) that appears during a
Docker-marked test is removed after it, and the test fails saying which."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.serving_images import remove_new, serving_images


@pytest.fixture(autouse=True)
def no_leftover_serving_images(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("docker") is None or shutil.which("docker") is None:
        yield
        return
    before = serving_images()
    yield
    left = remove_new(before)
    assert not left, f"test left serving images behind (now removed): {left}"
