"""Run code in a running Jupyter kernel reached by its connection file: the
``evaluate(code, expression)`` callable that snapshots and exports use to talk to a kernel.
"""

from __future__ import annotations

import ast
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SnapshotError

__all__ = ["Evaluate", "find_connection_file", "kernel_evaluator"]

# evaluate(code, expression): run ``code`` in the kernel, return ``expression``'s value there.
Evaluate = Callable[[str, str], Any]


def find_connection_file(connection: str) -> Path:
    """A kernel's connection file from its path, its file name (``kernel-<id>.json``) or its
    id (or a unique part of it), looked up in Jupyter's runtime folder."""
    path = Path(connection).expanduser()
    if path.is_file():
        return path.resolve()
    from jupyter_client import find_connection_file as jupyter_find
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        return Path(jupyter_find(connection)).resolve()
    except OSError:
        raise SnapshotError(
            f"No kernel connection file {connection!r}: neither a file nor a kernel in "
            f"{jupyter_runtime_dir()}. Pass the path `%connect_info` prints in the notebook, "
            "or the kernel's id."
        ) from None


@contextmanager
def kernel_evaluator(
    connection: str, timeout: float = 30, run_timeout: float = 900
) -> Iterator[Evaluate]:
    """Connect to a running kernel; yield ``evaluate(code, expression)`` for it.

    Raises :class:`SnapshotError` when the kernel does not answer within ``timeout`` seconds
    (gone, or busy running a cell) or a request does not finish within ``run_timeout``.
    """
    from jupyter_client.blocking.client import BlockingKernelClient

    path = find_connection_file(connection)
    client = BlockingKernelClient(connection_file=str(path))
    try:
        client.load_connection_file()
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"{path} is not a kernel connection file ({exc}).") from None
    client.start_channels()
    try:
        try:
            client.wait_for_ready(timeout=timeout)
        except (RuntimeError, TimeoutError):
            raise SnapshotError(
                f"The kernel of {path} did not answer within {timeout:g} s. Is it still "
                "running, and idle (a busy kernel answers after its cell)? Pass --timeout to "
                "wait longer."
            ) from None

        def evaluate(code: str, expression: str) -> Any:
            return _execute(client, code, expression, run_timeout)

        yield evaluate
    finally:
        client.stop_channels()


def _execute(client: Any, code: str, expression: str, timeout: float) -> Any:
    # Silent and out of history: the user's prompt numbers and `In` stay as they were.
    msg_id = client.execute(
        code,
        silent=True,
        store_history=False,
        user_expressions={"v": expression},
        allow_stdin=False,
        stop_on_error=False,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise SnapshotError(
                f"The kernel did not finish the capture within {timeout:g} s; nothing was written."
            ) from None
        # Replies to other clients' requests (the notebook's) share the channel: skip them.
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    content = reply["content"]
    if content.get("status") != "ok":
        raise SnapshotError(
            f"The capture failed in the kernel: {content.get('ename')}: "
            f"{content.get('evalue')}; nothing was written."
        )
    value = content["user_expressions"]["v"]
    if value.get("status") != "ok":
        raise SnapshotError(
            f"The capture failed in the kernel: {value.get('ename')}: "
            f"{value.get('evalue')}; nothing was written."
        )
    # user_expressions come back as their repr: only literals travel, never pickles.
    return ast.literal_eval(value["data"]["text/plain"])
