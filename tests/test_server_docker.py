"""The JupyterLab path: a real Jupyter Server lists the nbc-* kernelspecs (with logos) and
starts, runs and shuts down a container kernel through its REST and websocket API."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent


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
