"""The JupyterLab path: a real Jupyter Server lists the nbc-* kernelspecs (with logos) and
starts, runs and shuts down a container kernel through its REST and websocket API."""

from __future__ import annotations

import json
import os
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


def test_a_server_warms_its_pool_so_the_first_kernel_is_pooled(
    python_image: str,
    runtime: Any,
    tmp_path: Path,
    kernelspec_prefix: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbcontainers.kernels.pooled import POOL_ROLE
    from nbcontainers.labels import PRIVATE_DIR, ROLE

    from .conftest import jupyter_server

    before = {s.id for s in runtime.list({ROLE: POOL_ROLE})}

    def pooled() -> list[Any]:
        return [s for s in runtime.list({ROLE: POOL_ROLE}) if s.id not in before and s.running]

    # A kernelspec whose start fails (its image is misspelt): one line in the log, no more.
    spec = json.loads((kernelspec_prefix / "kernels" / "nbc-python" / "kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["image"] = "pyhton"
    broken = tmp_path / "data" / "kernels" / "nbc-broken"
    broken.mkdir(parents=True)
    (broken / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'data'}:{os.environ['JUPYTER_PATH']}")
    config = tmp_path / "config" / "jupyter_server_config.py"
    config.parent.mkdir()
    config.write_text(
        'c.ServerApp.jpserver_extensions = {"nbcontainers.kernels.warmup": True}\n'
        "c.ContainerProvisioner.pool_size = 1\n"
        'c.ContainerProvisioner.pool_warm = ["nbc-broken", "nbc-python", "nbc-pyhton"]\n'
    )
    with jupyter_server(tmp_path, f"--config={config}") as (base, token, root):
        deadline = time.monotonic() + 90
        log = tmp_path / "server.log"
        while "kernel pool ready for nbc-python" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        [member] = pooled()  # filled before any notebook asked, its kernel started early
        assert (Path(member.labels[PRIVATE_DIR]) / "s" / "k-5").is_socket()
        # The first kernel anyone starts is that member, in the notebook's folder.
        (root / "sub").mkdir()
        kernel = _api(base, token, "/api/kernels", "POST", {"name": "nbc-python", "path": "sub"})
        assert runtime.list({"io.nbcontainers.kernel-id": kernel["id"]}) == []  # none cold
        assert runtime.state(member.id).running
        _api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
        assert runtime.state(member.id) is None
    text = log.read_text()
    assert f"kernel from the warm pool: container {member.id[:12]}" in text, text[-3000:]
    # A misspelt kernelspec is said in the log; the server ran all the same.
    assert "pool for nbc-pyhton: no such kernelspec. Did you mean 'nbc-python'?" in text, text[
        -3000:
    ]
    assert "cannot warm the kernel pool for nbc-broken: Unknown image 'pyhton'" in text, text
    assert "Traceback" not in text, text[-3000:]
    assert pooled() == []  # the refilled member went with the server
