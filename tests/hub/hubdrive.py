"""Driving a real JupyterHub from tests: the hub process, users' tokens and servers, kernels
over REST and websocket, and tearing down what a user's engine ran."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

__all__ = [
    "PASSWORD",
    "USERS",
    "Hub",
    "engine_services",
    "execute",
    "free_port",
    "kill_user_engine",
    "kill_user_processes",
    "podman_as",
    "remove_user_containers",
    "require_hub_host",
    "sign_in",
    "start_hub",
    "stop_hub",
    "tear_down",
    "user_containers",
]

BIN = Path(sys.executable).parent
# The test users scripts/ensure-hub.sh makes, and their password.
USERS = ("nbc-hub-a", "nbc-hub-b")
PASSWORD = os.environ.get("NBC_HUB_PASSWORD", "nbc-hub-test-password")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hub" / "jupyterhub_config.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Hub:
    """A running hub: its public URL (the proxy), process and folder."""

    url: str
    proc: subprocess.Popen[bytes]
    folder: Path
    proxy_api_port: int
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=180, **kw)

    def log_tail(self, lines: int = 60) -> str:
        text = (self.folder / "hub.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def token_for(self, user: str, password: str) -> requests.Response:
        """A token of ``user``'s own, asked for with the user's password (no cookie, no admin)."""
        body = {"auth": {"username": user, "password": password}, "note": "nbcontainers test"}
        return self.api("POST", f"/hub/api/users/{user}/tokens", json=body)

    def start_server(self, user: str, timeout: float = 150.0) -> None:
        token = self.tokens[user]
        started = self.api("POST", f"/hub/api/users/{user}/server", token)
        assert started.status_code in (201, 202), started.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/hub/api/users/{user}", token).json()
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server did not start:\n{self.log_tail()}")


def start_hub(folder: Path, users: tuple[str, ...], extra: str = "") -> Hub:
    """JupyterHub from the example config, with test overrides: random loopback ports, state
    in ``folder``, only ``users`` allowed."""
    port, hub_port, api_port = free_port(), free_port(), free_port()
    config = folder / "jupyterhub_config.py"
    config.write_text(
        f"load_subconfig({str(EXAMPLE)!r})\n"
        "c = get_config()\n"
        f"c.JupyterHub.bind_url = 'http://127.0.0.1:{port}'\n"
        f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{hub_port}'\n"
        f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{api_port}'\n"
        f"c.ConfigurableHTTPProxy.pid_file = {str(folder / 'proxy.pid')!r}\n"
        f"c.JupyterHub.db_url = 'sqlite:///{folder / 'jupyterhub.sqlite'}'\n"
        f"c.JupyterHub.cookie_secret_file = {str(folder / 'cookie_secret')!r}\n"
        f"c.JupyterHub.pid_file = {str(folder / 'hub.pid')!r}\n"
        "c.Authenticator.allow_all = False\n"
        f"c.Authenticator.allowed_users = {set(users)!r}\n" + extra
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    log = (folder / "hub.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "jupyterhub"), "-f", str(config)],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    hub = Hub(f"http://127.0.0.1:{port}", proc, folder, api_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"jupyterhub exited {proc.returncode}:\n{hub.log_tail()}")
        try:
            if requests.get(f"{hub.url}/hub/api/", timeout=2).status_code == 200:
                return hub
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop_hub(hub)
    raise AssertionError(f"jupyterhub did not answer within 60 s:\n{hub.log_tail()}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_hub(hub: Hub) -> None:
    """Stop users' servers (the hub's cleanup_servers), the hub and the proxy it started."""
    if hub.proc.poll() is None:
        os.killpg(hub.proc.pid, signal.SIGTERM)
        try:
            hub.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.proc.pid, signal.SIGKILL)
            hub.proc.wait(timeout=10)
    pid_file = hub.folder / "proxy.pid"
    if pid_file.is_file():  # the hub stops its proxy; make sure of it
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _port_open(hub.proxy_api_port) and time.monotonic() < deadline:
        time.sleep(0.2)


def execute(
    hub: Hub, user: str, kernel_id: str, code: str, token: str | None = None, timeout: float = 60
) -> tuple[str, dict[str, Any]]:
    """Run ``code`` in a kernel of ``user``'s server through the proxy's websocket; returns
    (stdout, execute_reply content)."""
    token = token or hub.tokens[user]
    ws_url = hub.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel_id}/channels"
    conn = websocket.create_connection(
        ws_url, header=[f"Authorization: token {token}"], timeout=timeout
    )
    msg_id = uuid.uuid4().hex
    conn.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user,
                   "session": uuid.uuid4().hex, "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))  # fmt: skip
    out, reply, idle = [], None, False
    deadline = time.monotonic() + timeout
    try:
        while (reply is None or not idle) and time.monotonic() < deadline:
            msg = json.loads(conn.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
    finally:
        conn.close()
    assert reply is not None, f"no execute_reply within {timeout} s; output so far: {out}"
    return "".join(out), reply


def _user_procs(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
                if entry.stat().st_uid == uid and not zombie:
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return pids


def _podman_as(user: str) -> list[str]:
    entry = pwd.getpwnam(user)
    return ["runuser", "-u", user, "--", "env", "-i", f"HOME={entry.pw_dir}",
            "PATH=/usr/bin:/bin", "podman"]  # fmt: skip


def podman_as(user: str, *args: str, check: bool = True) -> str:
    """``podman ARGS`` as ``user`` (the CLI on the user's own storage): its stdout, or with
    ``check=False`` its stdout and stderr whatever it exits with."""
    done = subprocess.run(
        [*_podman_as(user), *args], capture_output=True, text=True, timeout=60, cwd="/", check=check
    )
    return done.stdout if check else done.stdout + done.stderr


def user_containers(user: str) -> list[str]:
    """Full ids of every container in ``user``'s rootless engine."""
    return podman_as(user, "ps", "-aq", "--no-trunc").split()


def remove_user_containers(user: str) -> None:
    """Remove every container in ``user``'s rootless engine (test users run nothing else).
    A kernel its server was still stopping can refuse once: list and remove until none is left.
    """
    detail = ""
    for _ in range(10):
        ids = user_containers(user)
        if not ids:
            return
        argv = [*_podman_as(user), "rm", "-f", "-t", "2", *ids]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, cwd="/", check=False
        )
        detail = done.stderr.strip()[-500:]
        time.sleep(0.5)
    raise AssertionError(f"containers left in {user}'s engine: {ids}: {detail}")


def engine_services(user: str) -> list[int]:
    """Pids of ``user``'s ``podman system service`` processes."""
    found = []
    for pid in _user_procs(pwd.getpwnam(user).pw_uid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"system" in argv and b"service" in argv:
                found.append(pid)
    return found


def kill_user_processes(user: str) -> None:
    """End what the test left running as ``user`` (its engine service, Podman's pause
    process), each by pid: test users run nothing else."""
    uid = pwd.getpwnam(user).pw_uid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _user_procs(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while _user_procs(uid) and time.monotonic() < deadline:
            time.sleep(0.1)


def kill_user_engine(user: str) -> list[int]:
    """End ``user``'s engine and everything it ran, as a reboot or the OOM killer would, while
    the user's Jupyter server lives on: every process of the user inside a user namespace other
    than the host's (the ``podman system service``, its pause process ``catatonit -P``,
    conmon, the containers). Each by pid, SIGKILL; returns the pids."""
    host = os.readlink("/proc/self/ns/user")
    uid = pwd.getpwnam(user).pw_uid
    hit = []
    for pid in _user_procs(uid):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/user") != host:
                os.kill(pid, signal.SIGKILL)
                hit.append(pid)
    deadline = time.monotonic() + 10
    while set(hit) & set(_user_procs(uid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return hit


def require_hub_host() -> None:
    """Root, the test users and the proxy, which scripts/ensure-hub.sh provides: a failure
    where Docker-marked tests are required (CI), a skip elsewhere."""

    def missing(why: str) -> None:
        if os.environ.get("NBCONTAINERS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{why}: run scripts/ensure-hub.sh as root")
        pytest.skip(why)

    if os.geteuid() != 0:
        missing("the hub test runs JupyterHub as root")
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            missing(f"no user {user}")
    if shutil.which("configurable-http-proxy") is None:
        missing("configurable-http-proxy is not installed")


def tear_down(hub: Hub, also: Callable[[str], None] | None = None) -> None:
    """Stop the hub, then remove what each test user's engine and session ran (and ``also``
    per user); fails naming any container that would not go."""
    stop_hub(hub)
    left = []
    for user in USERS:
        try:
            remove_user_containers(user)
        except AssertionError as exc:
            left.append(str(exc))
        kill_user_processes(user)
        if also is not None:
            also(user)
    assert not left, left


def sign_in(hub: Hub) -> None:
    """Each test user's token, asked for with the user's password, into ``hub.tokens``."""
    for user in USERS:
        got = hub.token_for(user, PASSWORD)
        assert got.status_code == 201, got.text
        hub.tokens[user] = got.json()["token"]
