"""The files `%container push` moves variables through: the notebook pickles, the container
unpickles (:func:`load_from` runs there only). Pull comes back as data, see :mod:`.pulldata`.

Pickle protocol 5 keeps large buffers (numpy, pandas, Arrow) out of band: they are written
as raw files to a folder both sides mount (tmpfs where there is one) and memory-mapped by
the reader, so a 1 GiB array costs one write and no copy through the messaging layer.
Pickling into the container is safe for the notebook: the container runs the user's code
anyway, and the notebook's objects are the user's own. Nothing is ever eval'ed from text.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import os
import pickle
import tempfile
import uuid
from pathlib import Path
from typing import Any

__all__ = ["dump_to", "load_from", "make_transfer_dir", "remote_helpers", "remove_files"]


def make_transfer_dir() -> Path:
    """A private folder for transfers, on /dev/shm when it is a writable tmpfs."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="nbc-xfer-", dir=where))


def dump_to(obj: Any, folder: str) -> str:
    """Write ``obj`` as ``<base>.pkl`` plus one raw file per out-of-band buffer; return base.

    On failure nothing is left behind.
    """
    base = os.path.join(folder, uuid.uuid4().hex)
    buffers: list[pickle.PickleBuffer] = []
    try:
        # The callback takes every PickleBuffer out of the stream: big arrays are not copied
        # into ``data``, only written once, raw, to their own file.
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        for i, buf in enumerate(buffers):
            with open(f"{base}.{i}", "wb") as f:
                f.write(buf.raw())
        with open(base + ".pkl", "wb") as f:
            f.write(data)
    except BaseException:
        for path in glob.glob(base + ".*"):
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return base


def load_from(base: str) -> Any:
    """Read what :func:`dump_to` wrote, memory-mapping the buffers, and delete the files."""
    import mmap

    buffers: list[Any] = []
    i = 0
    while os.path.exists(f"{base}.{i}"):
        path = f"{base}.{i}"
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            # Copy-on-write mapping: no read copy, and arrays stay writable. mmap refuses an
            # empty file, hence the bytearray.
            buffers.append(
                mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else bytearray()
            )
        os.unlink(path)  # the mapping outlives the name: the pages go when the array does
        i += 1
    with open(base + ".pkl", "rb") as f:
        data = f.read()
    os.unlink(base + ".pkl")
    return pickle.loads(data, buffers=buffers)


def remove_files(base: str) -> None:
    """Delete what :func:`dump_to` wrote for ``base`` (what a failed load left behind)."""
    for path in glob.glob(base + ".*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


@functools.cache  # reading the sources costs ~5 ms, and they never change in a process
def remote_helpers() -> str:
    """Source that defines, in a kernel without nbcontainers, :func:`load_from` (push) and
    :func:`~.pulldata.encode_to` (pull), and the helpers' ``VERSION``."""
    from ..inkernel.pullencode import encoder_source
    from .transfer import VERSION

    # Sent as source, so they must only use the standard library and import nothing of ours.
    header = "from __future__ import annotations\nimport contextlib, glob, os, pickle, uuid\n"
    return (
        header
        + f"VERSION = {VERSION}\n"
        + inspect.getsource(dump_to)
        + "\n"
        + inspect.getsource(load_from)
        + "\n"
        + encoder_source()
    )
