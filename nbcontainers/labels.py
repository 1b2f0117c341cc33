"""Labels on every kernel container (and on the images nbcontainers builds), and how to tell
whether the server that owns one is alive."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = [
    "KERNEL_ID",
    "OWNER",
    "PRIVATE_DIR",
    "ROLE",
    "SERVER_HOST",
    "SERVER_PID",
    "SERVER_STARTED",
    "SERVING_MARK",
    "SNAPSHOT_MARK",
    "SOURCE_HASH",
    "owner_alive",
    "process_start_time",
]

PREFIX = "io.nbcontainers."
KERNEL_ID = PREFIX + "kernel-id"
OWNER = PREFIX + "owner"
SERVER_HOST = PREFIX + "server-host"
SERVER_PID = PREFIX + "server-pid"
SERVER_STARTED = PREFIX + "server-started"
PRIVATE_DIR = PREFIX + "private-dir"
ROLE = PREFIX + "role"
# On images: every image build_image() makes carries SOURCE_HASH; snapshot and serving images
# also carry their own mark (written by their Dockerfiles).
SOURCE_HASH = PREFIX + "source-hash"
SNAPSHOT_MARK = PREFIX + "snapshot"
SERVING_MARK = PREFIX + "export"


def process_start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" where /proc can't tell).

    Together with the pid it names one process for good: pids are reused, start times are not.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22; the command name (field 2) may contain spaces, so split after it.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_alive(labels: Mapping[str, str]) -> bool | None:
    """Is the server that started this container still running?

    True/False when this host can tell; None when the container belongs to another host.
    """
    if labels.get(SERVER_HOST) != socket.gethostname():
        return None
    try:
        pid = int(labels.get(SERVER_PID, ""))
    except ValueError:
        return False
    if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
        return False
    started = labels.get(SERVER_STARTED, "")
    return not started or process_start_time(pid) == started
