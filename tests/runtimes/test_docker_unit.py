"""The Engine API's request shapes (runtimes/docker/wire.py) that need no engine."""

from __future__ import annotations

import pytest

from nbcontainers.runtimes.docker.wire import repo_and_tag


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("python", ("python", "latest")),
        ("nbcontainers/python:3f2a", ("nbcontainers/python", "3f2a")),
        ("localhost:5000/team/img", ("localhost:5000/team/img", "latest")),
        ("localhost:5000/team/img:1.2", ("localhost:5000/team/img", "1.2")),
        # A digest goes to the API's tag parameter whole: never split at its own colon.
        ("localhost:5000/img@sha256:" + "a" * 64, ("localhost:5000/img", "sha256:" + "a" * 64)),
    ],
)
def test_repo_and_tag(ref: str, expected: tuple[str, str]) -> None:
    assert repo_and_tag(ref) == expected
