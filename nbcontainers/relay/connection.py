"""The connection to a relayed container kernel: its kernel manager (an in-memory
kernelspec, sockets no other user can open), waiting until it answers, what its provisioner
reports, and whether the notebook's own kernel publishes where others can read."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import weakref
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from ..errors import ConfigError
from ..kernels.connection import PrivateDir, other_login_users
from ..rundir import check_private

__all__ = [
    "container_of",
    "crash_of",
    "exposure",
    "make_manager",
    "remove_socket_folder",
    "wait_for_ready",
]


class _OneSpec(KernelSpecManager):
    """Jupyter's kernelspec lookup, answered with one spec that lives only in memory."""

    def __init__(self, spec: KernelSpec) -> None:
        super().__init__()
        self.spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self.spec


def make_manager(name: str, kernel_spec: KernelSpec) -> KernelManager:
    """The kernel manager of a relay's kernel. The spec is built in memory (the relay's
    session makes it): no kernelspec install needed.

    Its sockets are ipc files in a 0700 folder: a TCP port on 127.0.0.1 would let any user of
    the host subscribe to the kernel's IOPub and read every output (the key only signs).
    The nbcontainers provisioner places them itself (ipc in its private folder, or TCP with
    CurveZMQ for a kernel on another host); any other kernelspec gets a folder here.
    """
    km = KernelManager(
        kernel_name=kernel_spec.name or name, kernel_spec_manager=_OneSpec(kernel_spec)
    )
    provisioner = (kernel_spec.metadata or {}).get("kernel_provisioner", {})
    if provisioner.get("provisioner_name") != "nbcontainers":
        private = PrivateDir.open()
        km.transport, km.ip = "ipc", private.ipc_ip
        _SOCKET_FOLDERS[km] = private.path
    return km


# The folders make_manager made (a kernel manager's own, removed with it).
_SOCKET_FOLDERS: weakref.WeakKeyDictionary[KernelManager, Path] = weakref.WeakKeyDictionary()


def remove_socket_folder(km: KernelManager) -> None:
    """Remove the private folder :func:`make_manager` made for a plain kernelspec's sockets."""
    folder = _SOCKET_FOLDERS.pop(km, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# What the provisioner reports, read through jupyter_client's public ``km.provisioner`` in
# this one place: None for a kernelspec of another provisioner, which has no container.
def container_of(km: KernelManager) -> str | None:
    """The id of the container ``km``'s kernel runs in."""
    return getattr(km.provisioner, "container_id", None)


def crash_of(km: KernelManager) -> str | None:
    """The provisioner's report of why the container stopped (exit code, OOM, log tail)."""
    return getattr(km.provisioner, "last_crash", None)


def exposure(kernel: Any) -> str | None:
    """Why other users of this host could read what the local kernel ``kernel`` publishes
    (the relay re-publishes container outputs there), or None when they can't."""
    app = getattr(kernel, "parent", None)
    transport, ip = getattr(app, "transport", None), getattr(app, "ip", None)
    if transport is None or ip is None:
        return None  # not an ipykernel started from a connection file: nothing to judge
    others = other_login_users()
    if not others:
        return None
    if transport == "tcp":
        where = f"TCP {ip}"
    else:
        try:
            check_private(Path(ip).parent, os.getuid(), "")
            return None
        except (ConfigError, OSError):
            where = f"ipc sockets in {Path(ip).parent}, a folder other users can open,"
    return (
        f"this notebook's kernel publishes its outputs (and those relayed from the container) "
        f"on {where} where {len(others)} other user(s) of this host can subscribe and read "
        "them. Run kernels on ipc in private folders: c.KernelManager.transport = 'ipc' "
        "(examples/hub/jupyterhub_config.py does)."
    )


def wait_for_ready(kc: Any, timeout: float) -> None:
    """Return once ``kc``'s kernel has answered kernel_info and the request's status has come
    on IOPub (both channels connected), with what IOPub brought until then (the kernel's
    start) discarded. jupyter_client's own wait_for_ready() then waits for 0.2 s of IOPub
    silence, a fifth of a second on every ``%container use`` that nothing here needs: the
    kernel's start output is all before that status."""
    deadline = time.monotonic() + timeout
    sent: set[str] = set()
    answered = False
    while time.monotonic() < deadline:
        sent.add(kc.kernel_info())
        try:
            while not answered and time.monotonic() < deadline:
                answered = kc.get_shell_msg(timeout=1)["parent_header"].get("msg_id") in sent
            seen = False
            while not seen and time.monotonic() < deadline:
                seen = kc.get_iopub_msg(timeout=0.1)["parent_header"].get("msg_id") in sent
            if not seen:
                break
        except Empty:  # no answer yet, or a late IOPub subscriber missed it: ask again
            if not kc.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info") from None
            continue
        with contextlib.suppress(Empty):
            for _ in range(10_000):  # what is queued now, not a kernel that never stops talking
                kc.get_iopub_msg(timeout=0)
        return
    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
