"""A real Jupyter Server with the nbcontainers.lab extension, a kernelspec capped at 1 GiB, and
the built front end where JupyterLab looks for it; and a cell runner over the kernel's
websocket, as a browser sends cells."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = "nbc-python-1g"  # the capped kernelspec
LIMIT = 1 << 30


def build_labextension() -> Path:
    """The front end, built (or found up to date) by the project's own script."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-labextension.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"},
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/build-labextension.sh failed:\n{done.stdout[-2000:]}{done.stderr}")
    return REPO / "nbcontainers" / "labextension"


@contextlib.contextmanager
def lab_server(
    tmp_path: Path, kernelspec_prefix: Path, monkeypatch: pytest.MonkeyPatch, frontend: bool
) -> Iterator[tuple[str, str, Path]]:
    from ..conftest import jupyter_server

    data = tmp_path / "data"
    spec = json.loads((kernelspec_prefix / "kernels" / "nbc-python" / "kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["mem_limit"] = "1g"
    spec["display_name"] = "Python (container, 1 GiB)"
    (data / "kernels" / SMALL).mkdir(parents=True)
    (data / "kernels" / SMALL / "kernel.json").write_text(json.dumps(spec))
    if frontend:
        # Where a wheel puts it: <prefix>/share/jupyter/labextensions/nbcontainers-lab.
        (data / "labextensions").mkdir()
        (data / "labextensions" / "nbcontainers-lab").symlink_to(build_labextension())
    monkeypatch.setenv("JUPYTER_PATH", f"{data}:{os.environ['JUPYTER_PATH']}")
    config = tmp_path / "config" / "jupyter_server_config.py"
    config.parent.mkdir()
    config.write_text('c.ServerApp.jpserver_extensions = {"nbcontainers.lab": True}\n')
    with jupyter_server(tmp_path, f"--config={config}") as running:
        yield running


def api(
    base: str, token: str | None, path: str, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    """(status, decoded JSON or None) of one API call; errors are answers, not exceptions."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def kernels(base: str, token: str) -> list[dict[str, Any]]:
    status, body = api(base, token, "/api/nbcontainers/kernels")
    assert status == 200, status
    return list(body)


def wait_for(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def execute(base: str, token: str, kernel_id: str, code: str, timeout: float = 60) -> str:
    """Run ``code`` over the kernel's websocket; return what it printed once it is idle."""
    import websocket

    ws = websocket.create_connection(
        f"ws{base[4:]}/api/kernels/{kernel_id}/channels?token={token}", timeout=timeout
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "allow_stdin": False},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    out: list[str] = []
    try:
        while True:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
