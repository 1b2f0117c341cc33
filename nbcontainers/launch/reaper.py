"""A kernel container that never outlives the process that started it, even one killed hard.

The start service (:mod:`.service`) removes a launcher's container as soon as the launcher's
connection closes, SIGKILL included. The reaper is the net under the service: the kernelspec
launcher (``python -m nbcontainers.launch``) forks it before it starts anything, a child in
its own session (so a frontend that kills the launcher's process group does not reach it)
that holds the read end of a pipe whose write end only the launcher holds. The launcher
tells it the container once it runs and says "done" when the kernel has ended. When the
launcher dies any other way the kernel closes the pipe and the reaper reads end-of-file at
once: if the service that started the container is still alive, that service is removing
it; if not (killed too, or dead first), the reaper removes the container and its private
folder itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from typing import Any

__all__ = ["Reaper"]


class Reaper:
    """The launcher's side of the pipe to its reaper."""

    def __init__(self, write_fd: int, pid: int) -> None:
        self._fd: int | None = write_fd
        self.pid = pid

    @classmethod
    def start(cls) -> Reaper:
        """Fork the reaper. Call it before any thread or connection exists: the child is a
        copy of this process and must not share one with it."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(write_fd)
            code = 0
            try:
                _reap(read_fd)
            except BaseException:
                code = 1
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
        os.close(read_fd)
        return cls(write_fd, pid)

    def watch(self, container_id: str, runtime_name: str, private_dir: str, service: int) -> None:
        """From now on, if the launcher dies while the start service (pid ``service``) is gone
        too, the reaper removes container ``container_id`` (on engine ``runtime_name``) and
        ``private_dir``."""
        self._send(f"run {container_id} {runtime_name} {private_dir} {service}\n")

    def done(self) -> None:
        """The kernel has ended and its container is gone: the reaper exits."""
        self._send("done\n")
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(ChildProcessError):  # collect it if done; never wait
            os.waitpid(self.pid, os.WNOHANG)

    def _send(self, line: str) -> None:
        if self._fd is not None:
            os.write(self._fd, line.encode())


def _reap(read_fd: int) -> None:
    os.setsid()  # out of the launcher's session and process group
    for signum in (signal.SIGINT, signal.SIGHUP):  # what a frontend sends the kernel's group
        signal.signal(signum, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # hold none of the frontend's pipes open
        os.dup2(null, fd)
    _close_other_fds(keep={0, 1, 2, read_fd})
    data = b""
    while chunk := os.read(read_fd, 4096):  # end-of-file: the launcher is gone
        data += chunk
    lines = data.decode().splitlines()
    last = lines[-1].split() if lines else []
    if len(last) == 5 and last[0] == "run" and not _alive(int(last[4])):
        _remove(last[1], last[2], last[3])


def _alive(pid: int) -> bool:
    """Is the start service still there (then it removes the container itself)? A service
    killed while the launcher that started it lives is a zombie (its pid answers signals),
    and a pid may have been reused: only a running start service counts."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - a one-shot read
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read()  # noqa: SIM115
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state not in ([b"Z"], [b"X"]) and b"nbcontainers.launch.service" in cmdline


def _close_other_fds(keep: set[int]) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _remove(container_id: str, runtime_name: str, private_dir: str) -> None:
    from ..runtimes import get_runtime

    runtime: Any = get_runtime(runtime_name)  # a new connection: none is shared with the parent
    try:
        runtime.remove(container_id)  # kills it first: a running kernel goes too
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
