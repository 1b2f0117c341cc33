"""The start service: one warm process per user and environment that starts launched kernels.

``python -m nbcontainers.launch.service SOCKET`` (started by :mod:`.client` on first use, in
a session of its own) listens on a Unix socket in the user's 0700 runtime folder and takes
connections from this user only (``SO_PEERCRED``). Each connection is one kernel: the
launcher sends its request (kernelspec, connection info, command, cwd, environment); the
service starts the container with the same :class:`~nbcontainers.kernels.starter.KernelStarter`
as the provisioner (config files, kernelspec config, policy, GPUs, the warm pool), answers
where the kernel's sockets are, then passes on the launcher's signals and tells it the
kernel's exit code. When the connection closes before that (the launcher was killed,
SIGKILL included) the container is removed at once. The service keeps what a Jupyter server
keeps between kernels: imported code, the engine's facts and the pool, whose idle members it
removes when it leaves, after ``NBCONTAINERS_LAUNCH_IDLE`` seconds (600) without a kernel.

Messages are JSON lines. Launcher to service: ``{"op": "start", …}``, then ``{"op":
"signal", "signum": N}`` or ``{"op": "stop"}``; or ``{"op": "quit"}`` (leave once no kernel
runs; the tests' cleanup). Service to launcher: ``{"log": text}`` lines, then ``{"error":
text, "code": N}`` or ``{"started": {…}}``, and at the end ``{"exit": code}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NbcontainersError
from ..kernels.connection import connection_for_container, write_private
from ..kernels.plan import CONNECTION_FILE, KernelStart
from ..kernels.starter import KernelStarter
from .proxy import KERNEL_PORTS
from .settings import launch_config, start_settings

__all__ = ["main", "start_kernel"]

log = logging.getLogger("nbcontainers.launch.service")
IDLE_EXIT = 600.0  # seconds without a kernel before the service leaves (and drains its pool)
IDLE_ENV = "NBCONTAINERS_LAUNCH_IDLE"


def start_kernel(request: Mapping[str, Any], log: Any) -> tuple[KernelStarter, float]:
    """Start the kernel a launcher asks for, its sockets in its private folder; return its
    starter and its stop timeout. Nothing is left running when it raises."""
    info, env, cwd = request["connection"], dict(request["env"]), request["cwd"]
    config, spec_env = launch_config(request["kernel"], request["image"], log)
    starter = KernelStarter(start_settings(config), log)
    try:
        starter.precheck(env, cwd, spec_env)
        if starter.engine_facts().remote:
            raise ConfigError(
                f"The {starter.engine_facts().name} engine runs kernels on other hosts, and a "
                "kernel started from its kernelspec's argv can only be reached on this one: open "
                "the notebook through Jupyter Server (JupyterLab, Notebook), or set runtime to "
                "a local engine in the kernelspec."
            )
        private = starter.open_private()
        ipc = {
            "transport": "ipc",
            "ip": private.ipc_ip,
            **KERNEL_PORTS,
            "key": info.get("key", ""),
            "signature_scheme": info.get("signature_scheme", "hmac-sha256"),
            "kernel_name": info.get("kernel_name", ""),
        }
        network = starter.effective.launch.network
        inside = connection_for_container(ipc, "ipc", network)
        write_private(private.connection_file, json.dumps(inside))
        # The kernel's command names the connection file as the container sees it.
        path = request["connection_file"]
        argv = [part.replace(path, "{connection_file}") for part in request["command"]]
        kernel = KernelStart(
            kernel_id=request["kernel_id"],
            command=tuple(part.replace("{connection_file}", CONNECTION_FILE) for part in argv),
            cwd=cwd,
            env=env,
            private_dir=private,
            spec_env=frozenset(spec_env),
            started_at=time.time(),
        )
        starter.start(kernel, ipc)
    except BaseException:
        starter.cleanup()
        raise
    return starter, float(config.get("stop_timeout", 5.0))


class _Link:
    """One launcher's connection: JSON lines each way, sends from any thread."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._reader = conn.makefile("rb")
        self._lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            self.conn.sendall(json.dumps(message).encode() + b"\n")

    def messages(self) -> Iterator[dict[str, Any]]:
        """Until the launcher closes its end (or dies)."""
        try:
            for raw in self._reader:
                yield json.loads(raw)
        except (OSError, ValueError):
            return


class _ToLauncher(logging.Handler):
    """A start's log lines (a declaration's fallback, a crash report) go to the launcher,
    which prints them on the frontend's stderr."""

    def __init__(self, link: _Link) -> None:
        super().__init__(logging.INFO)
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):
            self.link.send({"log": record.getMessage()})


class Service:
    """The accept loop and its kernels."""

    def __init__(self, listener: socket.socket, idle: float, leave: Any) -> None:
        self.listener = listener
        self.idle = idle
        self.leave = leave  # stop being found: new launchers start a new service
        self.starters: set[KernelStarter] = set()
        self.connections = 0
        self.quitting = False
        self.last = time.monotonic()
        self._lock = threading.Lock()

    def serve(self) -> None:
        self.listener.settimeout(1.0)
        while True:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                with self._lock:
                    idle = not self.connections and time.monotonic() - self.last > self.idle
                    if not (idle or (self.quitting and not self.connections)):
                        continue
                self.leave()
                try:  # a launcher that connected just before: serve it, leave after
                    self.listener.settimeout(0.5)
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    return
                finally:
                    self.listener.settimeout(1.0)
            if _peer_uid(conn) != os.getuid():  # the folder is 0700; this is the second lock
                conn.close()
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        link = _Link(conn)
        try:
            request = next(link.messages(), {})
            if request.get("op") == "quit":
                self.quitting = True
                link.send({"bye": os.getpid()})
            elif request.get("op") == "start":
                self._kernel(link, request)
        except Exception:
            log.exception("nbcontainers: a launcher's request failed")
        finally:
            conn.close()
            with self._lock:
                self.connections -= 1
                self.last = time.monotonic()

    def _kernel(self, link: _Link, request: Mapping[str, Any]) -> None:
        kernel_log = logging.Logger(f"nbcontainers.launch.{request.get('kernel_id', '')}")
        kernel_log.addHandler(_ToLauncher(link))
        kernel_log.setLevel(logging.WARNING)
        try:
            starter, stop_timeout = start_kernel(request, kernel_log)
        except NbcontainersError as exc:
            link.send({"error": str(exc), "code": exc.exit_code})
            return
        except Exception as exc:  # a bug, not the user's: the traceback goes to our log
            log.exception("nbcontainers: kernel start failed")
            link.send({"error": f"{type(exc).__name__}: {exc}", "code": 1})
            return
        with self._lock:
            self.starters.add(starter)
        try:
            self._watch(link, starter, stop_timeout)
        finally:
            with self._lock:
                self.starters.discard(starter)

    def _watch(self, link: _Link, starter: KernelStarter, stop_timeout: float) -> None:
        """Stand in for the launcher until the kernel exits or the launcher goes."""
        finished = threading.Lock()
        done: list[bool] = []

        def finish() -> bool:  # remove the container, once, whoever comes first
            with finished:
                if done:
                    return False
                done.append(True)
                try:
                    starter.cleanup()
                except Exception as exc:
                    starter.log.error("Cannot remove the kernel container: %s", exc)
                return True

        def wait() -> None:
            cid, code = starter.container_id, 1
            assert cid is not None
            try:
                while True:
                    exit_code = starter.runtime.wait(cid, timeout=3600)
                    if exit_code is not None or starter.runtime.state(cid) is None:
                        code = exit_code if exit_code is not None else 1
                        break
            except Exception as exc:  # the engine went away
                if not done:
                    starter.log.error("Lost the kernel container %s: %s", cid[:12], exc)
            # 0: it ended as asked (a shutdown request); anything else is reported, with the
            # log tail, by the cleanup.
            starter.stopping = starter.stopping or code == 0
            if finish():
                with contextlib.suppress(OSError):
                    link.send({"exit": code})

        assert starter.container_id is not None and starter.private_dir is not None
        started = {
            "container": starter.container_id,
            "runtime": starter.settings.runtime_name,
            "private_dir": str(starter.private_dir),
            "ip": str(starter.private_dir / "s" / "k"),
            "service": os.getpid(),
        }
        try:
            link.send({"started": started})
        except OSError:  # the launcher died during the start (a SIGKILL): nobody to serve
            starter.stopping = True
            finish()
            return
        threading.Thread(target=wait, name="nbc-wait", daemon=True).start()
        for message in link.messages():
            if message.get("op") == "signal":
                starter.signal(int(message["signum"]))
            elif message.get("op") == "stop":
                starter.stopping = True
                starter.signal(signal.SIGTERM)
                timer = threading.Timer(stop_timeout, starter.signal, (signal.SIGKILL,))
                timer.daemon = True
                timer.start()
        # The launcher closed its end: after the exit message, or because it is gone.
        starter.stopping = True
        finish()

    def close(self) -> None:
        """Leaving: remove every kernel still running (their launchers lose them anyway)."""
        with self._lock:
            starters = list(self.starters)
        for starter in starters:
            starter.stopping = True
            try:
                starter.cleanup()
            except Exception as exc:
                log.warning("nbcontainers: cannot remove kernel container: %s", exc)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _prewarm() -> None:
    """Ask the default engine for its facts now, so the first kernel does not wait for them."""
    from ..runtimes import engine_facts, shared_runtime

    try:
        engine_facts(shared_runtime("auto"))
    except Exception as exc:  # the first start says it properly
        log.info("nbcontainers: engine not ready yet: %s", exc)


def _idle_exit(raw: str) -> float | None:
    """Seconds without a kernel before the service leaves: ``raw`` (the variable), else the
    default; None when ``raw`` is no number of seconds (negative, nan, inf, text)."""
    if not raw.strip():
        return IDLE_EXIT
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def main(argv: list[str] | None = None) -> int:
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    idle = _idle_exit(os.environ.get(IDLE_ENV, ""))
    if idle is None:  # the launcher shows this line from the log
        print(
            f"{IDLE_ENV}={os.environ[IDLE_ENV]!r} is not a number of seconds: set it to how long "
            f"the kernel launcher's start service may wait for a kernel (e.g. {IDLE_EXIT:.0f}), "
            "or unset it.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another launcher's service for this environment got there first
    path.unlink(missing_ok=True)  # left by a service that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    threading.Thread(target=_prewarm, daemon=True).start()

    def leave() -> None:
        if not lock.closed:
            path.unlink(missing_ok=True)
            lock.close()  # the next service may take the name at once

    service = Service(listener, idle, leave)
    # SIGTERM (a logout, a shutdown) leaves as the idle exit does: kernels and pool removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    log.info("nbcontainers: start service %d listening on %s", os.getpid(), path)
    try:
        service.serve()
    finally:
        leave()
        listener.close()
        service.close()
        from ..kernels.pool import kernel_pool

        kernel_pool().drain()
    return 0


if __name__ == "__main__":
    sys.exit(main())
