"""Another local user's process on a kernel's IOPub port: what it reads while the kernel prints
a secret (the attack on a launched kernel's loopback ports)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="another user's process needs root")

# Subscribes to every IOPub message at argv[1] for argv[2] seconds; prints what it got.
SNOOP = textwrap.dedent(
    """
    import sys, time, zmq
    sub = zmq.Context().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RECONNECT_IVL, 10)
    sub.connect(sys.argv[1])
    print("listening", flush=True)
    seen, deadline = [], time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        if sub.poll(100):
            seen.append(b"".join(sub.recv_multipart()).decode(errors="replace"))
    print("GOT", len(seen), " ".join(seen), flush=True)
    """
)


def endpoint(info: dict[str, Any], name: str) -> str:
    """The ZeroMQ address of channel ``name`` in connection info ``info``."""
    if info.get("transport") == "ipc":
        return f"ipc://{info['ip']}-{info[name]}"
    return f"tcp://127.0.0.1:{info[name]}"


def snoop(info: dict[str, Any], uid: int, kc: Any, secret: str) -> str:
    """What a SUB socket of user ``uid`` on the kernel's IOPub port reads while the kernel
    prints ``secret`` a few times."""
    snoop = subprocess.Popen(
        [sys.executable, "-c", SNOOP, endpoint(info, "iopub_port"), "6"],
        user=uid,
        group=uid,
        cwd="/",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert snoop.stdout is not None and snoop.stdout.readline().strip() == "listening"
        time.sleep(1.5)  # a subscription takes a moment to reach the publisher
        for _ in range(3):
            reply = kc.execute_interactive(f"print({secret!r})", timeout=30)
            assert reply["content"]["status"] == "ok"
            time.sleep(0.3)
        out, _ = snoop.communicate(timeout=30)
    finally:
        snoop.kill()
    return out
