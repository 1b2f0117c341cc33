"""The kernelspec launcher: the container kernel for frontends that run argv themselves.

Every ``nbc-*`` kernelspec's ``argv`` runs this module. Jupyter Server, nbclient, papermill
and ``jupyter console`` read the kernelspec's ``metadata.kernel_provisioner`` and never run it
(the provisioner starts the container); frontends that ignore provisioners (VS Code, Zed,
nteract, jupyter_client's LocalProvisioner) run it with the connection file they wrote, and
get the same container kernel. The launcher itself stays small (no engine SDK, no Jupyter
machinery): this user's start service (:mod:`.service`, started on first use) starts the
container with the same :class:`~nbcontainers.kernels.starter.KernelStarter` as the
provisioner (config files, kernelspec config, policy, GPUs, limits, labels, warm pool), the
kernel binds Unix sockets in its private folder as the provisioner's do, and the launcher
forwards the connection file's TCP ports on 127.0.0.1 to them (:mod:`.proxy`). It stays in
front of the kernel: SIGINT reaches the kernel, SIGTERM stops it, its exit code is the
kernel's, and the container goes with the launcher however it ends (the service sees its
connection close; a forked reaper covers a service that died too). A start that can't be
made prints ``Error: …`` on stderr and exits non-zero: no kernel runs on the host.

Usage (as the kernelspec writes it)::

    python -m nbcontainers.launch --kernel nbc-python --image python -f CONNECTION_FILE \
        -- python3 -m ipykernel_launcher -f CONNECTION_FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NbcontainersError
from .client import connect, runtime_dir, send
from .reaper import Reaper

__all__ = ["main"]

# Loopback names a frontend may write as the connection file's ip: the launcher binds there.
_LOOPBACK = ("127.0.0.1", "localhost")


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    command = args[args.index("--") + 1 :] if "--" in args else []
    ours = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(
        prog="python -m nbcontainers.launch",
        description="Run a Jupyter kernel in an nbcontainers container (a kernelspec's argv).",
    )
    parser.add_argument("--kernel", default="", help="The kernelspec's name (nbc-<image>).")
    parser.add_argument(
        "--image", default="", help="The catalog image, if the kernelspec's config can't be read."
    )
    parser.add_argument("-f", dest="connection_file", required=True, help="Connection file.")
    parsed = parser.parse_args(ours)
    if not command:
        parser.error("give the kernel's command after '--'")
    return parsed, command


def _connection(path: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the connection file {path}: {exc}.") from None
    transport, ip = info.get("transport", "tcp"), info.get("ip")
    ipc = transport == "ipc" and isinstance(ip, str) and ip != "" and "\0" not in ip
    if not ipc and (transport != "tcp" or str(ip) not in _LOOPBACK):
        raise ConfigError(
            f"The connection file {path} asks for {transport}://{ip}; a container kernel "
            "started from its kernelspec listens on TCP ports of 127.0.0.1 only, or on ipc "
            "socket paths. Let the frontend use tcp on 127.0.0.1 (the default)."
        )
    return info


class _Service:
    """This kernel's connection to the start service: JSON lines each way."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the service is gone: the next read says so
            send(self.sock, message)

    def next(self) -> dict[str, Any] | None:
        """The service's next message (its log lines printed on stderr); None at its end."""
        while True:
            try:
                raw = self._reader.readline()
            except OSError:
                return None
            if not raw:
                return None
            message: dict[str, Any] = json.loads(raw)
            if "log" not in message:
                return message
            print(f"nbcontainers: {message['log']}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, command: list[str]) -> int:
    """Have the kernel's container started, forward its ports, stay in front of it until it
    ends; return its exit code."""
    info = _connection(args.connection_file)
    reaper = Reaper.start()  # before any thread or connection exists
    try:
        service = _Service(connect(os.environ))
        name = Path(args.connection_file).stem
        service.send(
            {
                "op": "start",
                "kernel": args.kernel,
                "image": args.image,
                "connection": info,
                "connection_file": args.connection_file,
                "command": command,
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                # The file's name is the frontend's kernel id (kernel-ID.json) or a temp name.
                "kernel_id": name.removeprefix("kernel-") or str(uuid.uuid4()),
            }
        )
        # While the service starts the container: the frontend's ports bound, so its first
        # messages wait here instead of in its reconnect back-off.
        from .proxy import forwarder_for

        forwarder = forwarder_for(info)
        forwarder.bind()
        answer = service.next()
    except BaseException:
        reaper.done()  # nothing runs that it would have to remove
        raise
    if answer is None or "started" not in answer:
        reaper.done()
        if answer is not None and "error" in answer:
            print(f"Error: {answer['error']}", file=sys.stderr, flush=True)
            return int(answer.get("code", 1))
        raise ConfigError(
            "The kernel launcher's start service ended before the kernel started; see its log "
            f"(launch-*.log) in {runtime_dir()}."
        )
    started = answer["started"]
    reaper.watch(
        started["container"], started["runtime"], started["private_dir"], started["service"]
    )
    forwarder.connect(started["ip"])
    signal.signal(signal.SIGINT, lambda signum, frame: service.send({"op": "signal", "signum": 2}))
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop, then kill after stop_timeout
        signal.signal(signum, lambda signum, frame: service.send({"op": "stop"}))
    end = service.next()
    if end is None or "exit" not in end:
        # The service died under the kernel: leave, and the reaper removes the container.
        print(
            "Error: the kernel launcher's start service ended; the kernel is gone.", file=sys.stderr
        )
        return 1
    reaper.done()
    return int(end["exit"])


def main(argv: Sequence[str] | None = None) -> int:
    args, command = _parse(sys.argv[1:] if argv is None else argv)
    try:
        return run(args, command)
    except NbcontainersError as exc:
        # What the frontend shows as the kernel's failure; no kernel runs anywhere.
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
