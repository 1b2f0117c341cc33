"""A kernel container that never outlives the process that started it, even one killed hard.

The kernelspec launcher (``python -m nbcontainers.launch``) forks a reaper before it starts
anything: a child in its own session (so a frontend that kills the launcher's process group
does not reach it) that holds the read end of a pipe whose write end only the launcher holds.
The launcher tells it the container once it runs and says "done" after removing it itself.
When the launcher dies any other way, SIGKILL included, the kernel closes the pipe, the
reaper reads end-of-file at once and removes the container and its private folder.
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
    def start(cls, runtime_name: str) -> Reaper:
        """Fork the reaper. Call it before any thread or engine connection exists: the
        child is a copy of this process and must not share a connection with it."""
        read_fd, write_fd = os.pipe()
        launcher = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(write_fd)
            code = 0
            try:
                _reap(read_fd, runtime_name, launcher)
            except BaseException:
                code = 1
            os._exit(code)  # no atexit handlers, no flushing of the parent's buffers
        os.close(read_fd)
        return cls(write_fd, pid)

    def watch(self, kernel_id: str, private_dir: str) -> None:
        """From now on, if the launcher dies, the reaper removes the containers of kernel
        ``kernel_id`` that this launcher started (by their labels: also one whose start was
        under way) and ``private_dir``."""
        self._send(f"run {kernel_id} {private_dir}\n")

    def done(self) -> None:
        """The launcher removed the container itself: the reaper exits."""
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


def _reap(read_fd: int, runtime_name: str, launcher: int) -> None:
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
    if len(last) == 3 and last[0] == "run":
        _remove(runtime_name, last[1], launcher, last[2])


def _close_other_fds(keep: set[int]) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _remove(runtime_name: str, kernel_id: str, launcher: int, private_dir: str) -> None:
    from ..labels import KERNEL_ID, SERVER_PID
    from ..runtimes import get_runtime

    runtime: Any = get_runtime(runtime_name)  # a new connection: none is shared with the parent
    try:
        for state in runtime.list({KERNEL_ID: kernel_id, SERVER_PID: str(launcher)}):
            runtime.remove(state.id)  # kills it first: a running kernel goes too
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
