"""One pooled kernel container: its key, its waiting command, its claim and its hand-over.

A member is keyed by everything a cold start would give it (:func:`pool_key`: image, user,
mounts, environment, network, limits, security settings, kernel command, socket names), so
the only things a hand-over still supplies are what differ between two starts of the same
kernel: the notebook's working directory, its session name and its signing key
(:func:`hand_over`). The member's first process is :mod:`~nbcontainers.inkernel.waiting`:
it binds the start's socket names in its own private folder under a throwaway key (the
start's socket folder becomes a link to that folder at hand-over) and blocks on a FIFO
there; a claim renames that FIFO, atomically, so one member serves one kernel, even when two
processes reach for it at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from jupyter_client.connect import port_names

from ..labels import KERNEL_ID, PRIVATE_DIR, ROLE, SERVER_STARTED
from ..runtimes.base import ContainerRuntime, ContainerSpec, ContainerState, Mount
from .connection import PrivateDir, write_private

__all__ = [
    "POOL_KEY",
    "POOL_ROLE",
    "Pooled",
    "discard",
    "hand_over",
    "idle_pooled",
    "pool_key",
    "release_pooled",
    "start_member",
    "waiting_command",
]

POOL_ROLE = "pool"
POOL_KEY = "io.nbcontainers.pool-key"
SESSION_VARIABLE = "JPY_SESSION_NAME"  # the one variable that differs between two starts
WAITING = "wait"  # the FIFO in the member's sockets folder; renamed to TAKEN when claimed
TAKEN = "taken"
LAUNCHER = ("-m", "ipykernel_launcher")
# What names a kernel's sockets and checks its messages: a member binds these before its start.
SOCKET_NAMES = ("transport", *port_names)
READY_TIMEOUT = 60.0

log = logging.getLogger("nbcontainers.pool")


@dataclass(frozen=True)
class Pooled:
    """One pooled container and its private folder (connection file, sockets, FIFO)."""

    container_id: str
    private: PrivateDir
    key: str

    @property
    def fifo(self) -> Path:
        return self.private.sockets / WAITING

    def claim(self) -> bool:
        """Take this member for good; False when another start (or process) was first:
        a rename is atomic, so exactly one claimant wins."""
        try:
            os.rename(self.fifo, self.private.sockets / TAKEN)
        except OSError:
            return False
        return True


def release_pooled(member: Pooled, private_dir: Path | None) -> None:
    """After ``member``'s container is removed: its folder goes, and the start's own socket
    folder (a link to the member's) becomes a plain folder again for the next start."""
    shutil.rmtree(member.private.path, ignore_errors=True)
    if private_dir is not None:
        sockets = PrivateDir(private_dir).sockets
        if sockets.is_symlink():
            sockets.unlink()
            sockets.mkdir(mode=0o700, exist_ok=True)


def pool_key(spec: ContainerSpec, private: PrivateDir, connection: Mapping[str, Any]) -> str | None:
    """What a member must share with this cold start (whose connection info is
    ``connection``), as a short hash; None when the kernel command is not ``python -m
    ipykernel_launcher ...`` (only that can wait half-started)."""
    if tuple(spec.command[1:3]) != LAUNCHER:
        return None
    env = {k: v for k, v in spec.env.items() if k != SESSION_VARIABLE}
    # Labels naming this one kernel differ between starts; the rest (owner, server) must not.
    labels = {
        k: v for k, v in spec.labels.items() if k not in (KERNEL_ID, PRIVATE_DIR, SERVER_STARTED)
    }
    shape = asdict(replace(spec, name=None, labels=labels, env=env, working_dir=None))
    shape["mounts"] = [asdict(m) for m in moved(spec.mounts, private, PrivateDir(Path("/-")))]
    shape["sockets"] = {name: connection.get(name) for name in SOCKET_NAMES}
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def waiting_command(command: Sequence[str], fifo: Path) -> tuple[str, ...]:
    """The pooled container's command: the kernel's Python running waiting.py on ``fifo``,
    with the kernel's own arguments (the part of ``command`` after ``-m ipykernel_launcher``)."""
    source = (Path(__file__).parent.parent / "inkernel" / "waiting.py").read_text(encoding="utf-8")
    return (command[0], "-c", source, str(fifo), *command[3:])


def moved(mounts: Sequence[Mount], old: PrivateDir, new: PrivateDir) -> list[Mount]:
    """``mounts`` with paths inside the ``old`` private folder moved into ``new``."""
    prefix = str(old.path)

    def move(path: str) -> str:
        return str(new.path) + path[len(prefix) :] if path.startswith(prefix + "/") else path

    return [replace(m, source=move(m.source), target=move(m.target)) for m in mounts]


def reader_waiting(fifo: Path) -> bool:
    """Has the member's launcher opened its FIFO (imports done, waiting for a hand-over)?"""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    os.close(fd)  # the launcher reads nothing and opens again
    return True


def hand_over(
    member: Pooled,
    sockets_link: Path,
    connection: Mapping[str, Any],
    cwd: str,
    env: Mapping[str, str],
    command: Sequence[str],
) -> None:
    """Make ``member`` the kernel of a start: its connection file, the start's socket folder
    ``sockets_link`` pointing at the member's, then cwd, env and arguments over the FIFO."""
    inside = dict(connection)
    inside["ip"] = member.private.ipc_ip  # where the member binds, as it sees its mount
    # The file is what %connect_info and `--existing` read; the key itself goes over the FIFO.
    write_private(member.private.connection_file, json.dumps(inside))
    if sockets_link.is_symlink() or sockets_link.is_file():
        sockets_link.unlink()
    elif sockets_link.exists():
        shutil.rmtree(sockets_link)
    sockets_link.symlink_to(member.private.sockets)
    order = json.dumps(
        {
            "cwd": cwd,
            "env": dict(env),
            "args": list(command[3:]),
            "key": inside["key"],
            "signature_scheme": inside.get("signature_scheme", ""),
        }
    )
    claimed = member.private.sockets / TAKEN
    deadline = time.monotonic() + 1.0
    while True:  # the launcher reopens its FIFO within microseconds of a probe
        try:
            fd = os.open(claimed, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(order)


def idle_pooled(state: ContainerState) -> bool:
    """Is this a pooled container nobody has claimed yet (as far as this user can tell)?
    For display (doctor) only: a handed-out kernel can make itself look idle (its socket
    folder is writable from inside), so kernel counts never use this."""
    if state.labels.get(ROLE) != POOL_ROLE or not state.running:
        return False
    private = state.labels.get(PRIVATE_DIR, "")
    try:
        return (Path(private) / "s" / WAITING).exists()
    except OSError:
        return True


def start_member(
    runtime: ContainerRuntime,
    spec: ContainerSpec,
    cold_private: PrivateDir,
    prepare: Callable[[PrivateDir], None],
    key: str,
    image_name: str,
    connection: Mapping[str, Any],
    cancelled: Callable[[], bool] = lambda: False,
    admit: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Pooled:
    """Start one member like the cold start ``spec`` (whose private folder is
    ``cold_private``, whose connection info as the container reads it is ``connection``)
    and wait until its launcher waits on the FIFO; ``prepare`` writes the member's private
    files first. Once ``cancelled()`` is true (its pool closed) it is removed instead.
    The container is created inside ``admit()`` (the policy's count; it may refuse)."""
    private = PrivateDir.open()
    member_id = "pool-" + uuid.uuid4().hex[:12]
    fifo = private.sockets / WAITING
    os.mkfifo(fifo, 0o600)
    # The start's socket names in the member's folder, signed with a key nobody will use:
    # the kernel binds them while it waits, and takes the real key at hand-over.
    early = {k: v for k, v in connection.items() if k != "jupyter_session"}
    early.update(ip=private.ipc_ip, key=str(uuid.uuid4()))
    write_private(private.connection_file, json.dumps(early))
    prepare(private)
    labels = dict(spec.labels)
    labels.update({KERNEL_ID: member_id, PRIVATE_DIR: str(private.path), ROLE: POOL_ROLE})
    labels[POOL_KEY] = key
    member_spec = replace(
        spec,
        name=f"nbc-{image_name or 'kernel'}-{member_id}",
        command=waiting_command(spec.command, fifo),
        labels=labels,
        env={k: v for k, v in spec.env.items() if k != SESSION_VARIABLE},
        mounts=tuple(moved(spec.mounts, cold_private, private)),
        working_dir=None,
    )
    try:
        with admit():
            cid = runtime.run(member_spec)
    except Exception:
        shutil.rmtree(private.path, ignore_errors=True)
        raise
    member = Pooled(cid, private, key)
    deadline = time.monotonic() + READY_TIMEOUT
    next_check = time.monotonic() + 1.0
    while not reader_waiting(fifo):
        if cancelled():
            discard(runtime, member)
            raise RuntimeError("the pool closed while this member started")
        now = time.monotonic()
        state = None
        if now > next_check:  # asking the engine costs a round trip; the probe is free
            next_check = now + 0.5
            state = runtime.state(cid)
        if now > deadline or (state is not None and not state.running):
            tail = runtime.logs(cid, tail=5).strip().splitlines()
            discard(runtime, member)
            raise RuntimeError(f"pooled kernel did not come up: {tail[-1] if tail else 'no log'}")
        time.sleep(0.02)
    return member


def discard(runtime: ContainerRuntime, member: Pooled) -> None:
    """Remove a member nobody will take, and its folder."""
    try:
        runtime.remove(member.container_id)
    except Exception as exc:  # the engine may be gone at exit; gc removes it later
        log.debug("removing pooled %s failed: %s", member.container_id[:12], exc)
    shutil.rmtree(member.private.path, ignore_errors=True)
