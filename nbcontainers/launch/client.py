"""The launcher's way to its start service: found on a Unix socket, started on first use.

A kernel launcher is a new Python process per kernel; importing the kernel machinery and the
engine's SDK, and asking the engine what it is, cost it more than the kernel's own start. So
the launcher only forwards, and a per-user service (:mod:`.service`) does the starting: warm
imports, engine facts in memory, and a warm pool kept between kernels, as in a Jupyter
server. One service serves the launchers of one user and one environment (the variables
that may change an engine, a config or a policy, and the code itself, so an upgrade or a
``DOCKER_HOST`` of its own gets its own service); it leaves after some idle minutes.

Only the standard library here: this module runs before anything heavy is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..rundir import check_private, user_runtime_dir

__all__ = ["connect", "runtime_dir", "send", "service_path"]

# Variables that differ between two kernels of one frontend and shape no start (the frontend's
# own per-kernel ones, JPY_*, are passed with each start instead).
_VOLATILE = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST"})
SPAWN_TIMEOUT = 60.0  # seconds a first start waits for the service to listen
_PACKAGE = Path(__file__).resolve().parents[1]
_SERVICE_CODE = ("catalog", "cluster", "inkernel", "kernels", "launch", "runtimes")


def runtime_dir() -> Path:
    """This user's 0700 folder for service sockets: ``nbcontainers`` in the user's runtime
    folder (:func:`~nbcontainers.rundir.user_runtime_dir`: ``$XDG_RUNTIME_DIR``,
    ``/run/user/UID``, ``/run/nbcontainers/UID``, else under the home). Never a predictable
    path in a shared temp folder: another user could make it first and deny this user every
    launched kernel. One that someone else owns or others may enter is refused with the fix
    (whoever can connect to the socket can start containers as this user)."""
    folder = user_runtime_dir() / "nbcontainers"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"Cannot make {folder} for the kernel launcher's socket ({exc.strerror})."
        ) from None
    return check_private(
        folder, os.getuid(), f"The kernel launcher's socket lives there: remove {folder}."
    )


def _code_stamp() -> int:
    """The newest change to the code a service runs (the package's top-level modules and the
    sub-packages it imports): a service runs the code it started with, so a change (an
    upgrade) gets a new one. The other sub-packages (the lab extension, the CLI…) don't count."""
    newest = max(os.stat(p).st_mtime_ns for p in _PACKAGE.glob("*.py"))
    for sub in _SERVICE_CODE:
        for folder, _, files in os.walk(_PACKAGE / sub):
            for name in files:
                if name.endswith(".py"):
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    return newest


def service_path(env: Mapping[str, str]) -> Path:
    """The socket of the service for this user, interpreter, code and environment ``env``."""
    shaping = sorted(
        (k, v) for k, v in env.items() if not k.startswith("JPY_") and k not in _VOLATILE
    )
    text = json.dumps([os.getuid(), sys.executable, _code_stamp(), shaping])
    return runtime_dir() / f"launch-{hashlib.sha256(text.encode()).hexdigest()[:16]}.sock"


def connect(env: Mapping[str, str]) -> socket.socket:
    """A connection to the service for ``env``, started (in its own session, with ``env``)
    when none listens."""
    path = service_path(env)
    sock = _try(path)
    if sock is not None:
        return sock
    import subprocess

    log = path.with_suffix(".log")
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "nbcontainers.launch.service", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd="/",
            start_new_session=True,  # a frontend that kills the kernel's group spares it
        )
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while time.monotonic() < deadline:
        sock = _try(path)
        if sock is not None:
            return sock
        if child.poll() not in (None, 0):  # 0: another launcher's service won the lock
            break
        time.sleep(0.005)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    raise ConfigError(
        f"The kernel launcher's start service did not come up ({'; '.join(tail) or 'no log'}); "
        f"its log is {log}."
    )


def _try(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:  # none listens (yet), or the socket file is left from a dead one
        sock.close()
        return None
    return sock


def send(sock: socket.socket, message: Mapping[str, Any]) -> None:
    """One message: a JSON line."""
    sock.sendall(json.dumps(message).encode() + b"\n")
