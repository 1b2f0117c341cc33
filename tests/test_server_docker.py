"""The JupyterLab path: a real Jupyter Server lists the nbc-* kernelspecs (with logos) and
starts, runs and shuts down a container kernel through its REST and websocket API."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(python_image: str, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": "hub-token-must-not-leak"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "jupyter"),
            "server",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={tmp_path}",
            *(["--allow-root"] if os.getuid() == 0 else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        log.close()
        pytest.fail("jupyter server did not come up:\n" + (tmp_path / "server.log").read_text())
    yield base, token, tmp_path
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _api(base: str, token: str, path: str, method: str = "GET", body: Any = None) -> Any:
    req = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        data = resp.read()
    return json.loads(data) if data else None


def test_server_lists_and_runs_container_kernels(
    server: tuple[str, str, Path], runtime: Any
) -> None:
    from websocket import create_connection

    base, token, root = server
    specs = _api(base, token, "/api/kernelspecs")["kernelspecs"]
    assert specs["nbc-python"]["spec"]["display_name"].endswith("(container)")
    assert "logo-64x64" in specs["nbc-python"]["resources"]
    kernel = _api(base, token, "/api/kernels", "POST", {"name": "nbc-python", "path": ""})
    ws = create_connection(
        f"ws://{base[7:]}/api/kernels/{kernel['id']}/channels?token={token}", timeout=60
    )
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": "t",
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": "import os; print(os.getcwd(), os.path.exists('/.dockerenv'),"
                        " os.environ.get('JUPYTERHUB_API_TOKEN'))",
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        printed = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed += msg["content"]["text"]
            if msg["msg_type"] == "execute_reply":
                break
        assert printed.split() == [str(root), "True", "None"]
    finally:
        ws.close()
    containers = runtime.list({"io.nbcontainers.kernel-id": kernel["id"]})
    assert len(containers) == 1
    _api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
    assert runtime.list({"io.nbcontainers.kernel-id": kernel["id"]}) == []
