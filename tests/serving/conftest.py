"""Serving tests leave no image behind: every serving image (and tag) that appears during a
Docker-marked test is removed after it, and the test fails saying which."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

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


# One real exported iris image (gRPC on) per test session, shared by the client and attack
# tests (a serving image build takes minutes here); removed at the end of the session.
@pytest.fixture(scope="session")
def iris(runtime: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from nbcontainers.serving.export import ExportOptions, export_from_namespace

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    folder = tmp_path_factory.mktemp("iris") / "iris"
    result = export_from_namespace(
        {"iris": model, "X": X},
        "iris",
        ExportOptions(example="X[:4]", folder=folder, grpc=True),
        runtime=runtime,
        say=lambda _: None,
    )
    assert result.image is not None
    try:
        yield {"image": result.image, "folder": folder, "model": model, "X": X}
    finally:
        runtime.remove_image(result.image)


@pytest.fixture(scope="session")
def serve_iris(runtime: Any, iris: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Start the iris image with extra environment (limits, NBC_WORKERS), as compose runs it
    (read-only root, tmpfs /tmp); every container started is removed at the end."""
    from nbcontainers.runtimes.base import ContainerSpec
    from nbcontainers.serving import smoke

    started: list[str] = []

    def serve(env: dict[str, str] | None = None) -> Any:
        port, grpc_port = smoke.free_port(), smoke.free_port()
        cid = runtime.run(
            ContainerSpec(
                image=iris["image"],
                command=(),
                labels={smoke.LABEL: "iris"},
                env=env or {},
                ports={smoke.PORT: ("127.0.0.1", port), smoke.GRPC_PORT: ("127.0.0.1", grpc_port)},
                tmpfs={"/tmp": "rw,size=256m"},
                read_only=True,
                init=False,
            )
        )
        started.append(cid)
        served = smoke.Served(cid, f"http://127.0.0.1:{port}", "iris", f"127.0.0.1:{grpc_port}")
        smoke.wait_ready(runtime, served)
        return served

    try:
        yield serve
    finally:
        for cid in started:
            runtime.stop(cid, timeout=5)
            runtime.remove(cid)
