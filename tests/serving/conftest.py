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


def start_iris(runtime: Any, image: str, env: dict[str, str] | None = None) -> Any:
    """The iris image running with extra environment (limits, NBC_WORKERS), as compose runs
    it (read-only root, tmpfs /tmp), ready; its smoke.Served."""
    from nbcontainers.runtimes.base import ContainerSpec
    from nbcontainers.serving import smoke

    port, grpc_port = smoke.free_port(), smoke.free_port()
    cid = runtime.run(
        ContainerSpec(
            image=image,
            command=(),
            labels={smoke.LABEL: "iris"},
            env=env or {},
            ports={smoke.PORT: ("127.0.0.1", port), smoke.GRPC_PORT: ("127.0.0.1", grpc_port)},
            tmpfs={"/tmp": "rw,size=256m"},
            read_only=True,
            init=False,
        )
    )
    served = smoke.Served(cid, f"http://127.0.0.1:{port}", "iris", f"127.0.0.1:{grpc_port}")
    try:
        smoke.wait_ready(runtime, served)
    except BaseException:
        stop_iris(runtime, served)
        raise
    return served


def stop_iris(runtime: Any, served: Any) -> None:
    runtime.stop(served.container_id, timeout=5)
    runtime.remove(served.container_id)


@pytest.fixture
def serve_iris(runtime: Any, iris: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Start the iris image with extra environment; each container is removed after the
    test (the leak check counts what a test leaves)."""
    started: list[Any] = []

    def serve(env: dict[str, str] | None = None) -> Any:
        started.append(start_iris(runtime, iris["image"], env))
        return started[-1]

    try:
        yield serve
    finally:
        for served in started:
            stop_iris(runtime, served)


@pytest.fixture(scope="module")
def iris_one_worker(runtime: Any, iris: dict[str, Any]) -> Iterator[Any]:
    """The iris image with NBC_WORKERS=1, for a module's tests: the event loop of the one
    worker must stay free by itself (no other process to answer)."""
    served = start_iris(runtime, iris["image"], {"NBC_WORKERS": "1"})
    yield served
    stop_iris(runtime, served)


@pytest.fixture(scope="module")
def iris_default(runtime: Any, iris: dict[str, Any]) -> Iterator[Any]:
    """The iris image as it starts by default (every core, every limit at its default)."""
    served = start_iris(runtime, iris["image"])
    yield served
    stop_iris(runtime, served)
