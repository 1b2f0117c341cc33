"""Start a serving image, wait until it is ready, and check its answer to the example."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..errors import ExportError
from ..runtimes.base import ContainerRuntime, ContainerSpec, GPURequest
from .manifests import GRPC_PORT, PORT

__all__ = [
    "LABEL",
    "Served",
    "compare",
    "free_port",
    "request",
    "smoke_test",
    "start",
    "wait_ready",
]

LABEL = "io.nbcontainers.serving"


@dataclass(frozen=True)
class Served:
    """A running serving container, published on the host's loopback only."""

    container_id: str
    url: str
    name: str
    grpc: str | None = None  # host:port of the gRPC service, with --grpc

    def infer(self, body: Any, path: str | None = None, timeout: float = 30) -> Any:
        return request(self.url + (path or f"/v2/models/{self.name}/infer"), body, timeout)


def request(url: str, body: Any = None, timeout: float = 30) -> Any:
    """GET (no body) or POST JSON; the decoded answer. HTTP errors raise urllib's HTTPError."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as reply:
        return json.loads(reply.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    runtime: ContainerRuntime,
    image: str,
    name: str,
    *,
    port: int | None = None,
    gpu: bool = False,
    container_name: str | None = None,
    grpc: bool = False,
) -> Served:
    asked, port = port, port or free_port()
    ports = {PORT: ("127.0.0.1", port)}
    if grpc:
        # --port picks the HTTP port; gRPC takes the next one then, else a free one too.
        ports[GRPC_PORT] = ("127.0.0.1", asked + 1 if asked else free_port())
    if container_name:
        # An earlier `--run` of the same model: the new, tested image replaces it.
        for state in runtime.list({LABEL: name}):
            if state.name.lstrip("/") == container_name:
                runtime.remove(state.id)
    cid = runtime.run(
        ContainerSpec(
            image=image,
            command=(),
            name=container_name,
            labels={LABEL: name},
            ports=ports,
            gpus=GPURequest(count=-1) if gpu else None,
            tmpfs={"/tmp": "rw,size=256m"},
            read_only=True,  # as compose.yaml and the k8s Deployment run it
            init=False,  # the image runs tini
        )
    )
    grpc_at = f"127.0.0.1:{ports[GRPC_PORT][1]}" if grpc else None
    return Served(cid, f"http://127.0.0.1:{port}", name, grpc_at)


def wait_ready(runtime: ContainerRuntime, served: Served, timeout: float = 180) -> float:
    """Seconds until /v2/health/ready answered 200; a crash or a timeout raises with the log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = runtime.state(served.container_id)
        if state is None or not state.running:
            code = state.exit_code if state else "gone"
            raise ExportError(
                f"The serving container exited (code {code}) before it was ready. Its log:\n"
                + runtime.logs(served.container_id, tail=40)
            )
        try:
            request(served.url + "/v2/health/ready", timeout=2)
            return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            time.sleep(0.1)  # 503 while loading, refused before uvicorn listens
    raise ExportError(
        f"The serving container was not ready after {timeout:.0f} s. Its log:\n"
        + runtime.logs(served.container_id, tail=40)
    )


def compare(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> list[str]:
    """Differences between expected and served outputs (floats within a tolerance)."""
    import numpy as np

    problems = []
    if len(expected) != len(got):
        return [f"expected {len(expected)} outputs, the server gave {len(got)}"]
    for want, have in zip(expected, got, strict=False):
        name = want["name"]
        if list(want["shape"]) != list(have.get("shape", [])):
            problems.append(f"{name}: shape {have.get('shape')} instead of {want['shape']}")
            continue
        a, b = np.asarray(want["data"]), np.asarray(have["data"])
        # The same tolerance as the kernel's own check: JSON round trips floats, the model
        # in the image may sum in another order.
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            a, b = a.astype(float), b.astype(float)
            bad = ~np.isclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
        else:
            bad = a != b
        if bad.any():
            where = np.flatnonzero(bad)[:5]
            shown = ", ".join(f"[{i}] {a[i].item()!r} != {b[i].item()!r}" for i in where)
            problems.append(f"{name}: {int(bad.sum())} of {a.size} values differ ({shown})")
    return problems


def smoke_test(served: Served, example: dict[str, Any]) -> None:
    """Send the notebook's example; raise with the differences if the answer is not the same."""
    body = {"id": "nbcontainers-smoke-test", "inputs": example["inputs"]}
    try:
        reply = served.infer(body)
    except urllib.error.HTTPError as exc:
        raise ExportError(
            f"The smoke test's request failed with HTTP {exc.code}: {exc.read().decode()[:500]}"
        ) from None
    problems = compare(example["outputs"], reply.get("outputs", []))
    if problems:
        raise ExportError(
            "The serving image answers the example differently from the notebook:\n  "
            + "\n  ".join(problems)
        )
