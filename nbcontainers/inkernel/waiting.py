"""A pooled kernel container's first process: import ipykernel, wait, then become the kernel.

This file is not imported by nbcontainers: its source is the ``python3 -c`` program of a
pooled container (:func:`~nbcontainers.kernels.pooled.waiting_command`), so it runs with the
image's own Python and uses only the standard library and ipykernel. It does the slow part
of a kernel start (importing IPython and ipykernel, ~0.3 s) before any notebook asks, then
blocks on a FIFO in its private folder. The hand-over written there names the notebook's
working directory, its environment and the kernel's arguments; only then does it
chdir, set its environment and start ipykernel exactly as ``python3 -m
ipykernel_launcher ARGS`` would. No user code runs before the hand-over, and the FIFO is
read once: a pooled container serves one kernel.
"""

import contextlib
import json
import os
import sys

__all__ = ["main"]

_PREIMPORT = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "ipykernel.comm",
    "IPython.core.history",
    "IPython.core.completer",
    "IPython.extensions",
    "sqlite3",
    "pdb",
    "pydoc",
)


def main(fifo: str) -> None:
    # As ipykernel_launcher does first: the folder it started in is no import source.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    import importlib
    import importlib.util

    # The slow imports, done while nobody waits: all that a kernel's start imports (its
    # debugger brings debugpy, its history sqlite3); what an image lacks is skipped here
    # and fails, if at all, where a cold start would.
    for name in _PREIMPORT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from ipykernel import kernelapp

    data = ""
    while not data:  # an open and close without data (a readiness probe) is no hand-over
        with open(fifo, encoding="utf-8") as f:
            data = f.read()
    order = json.loads(data)
    os.chdir(order["cwd"])
    # The container was created with this kernel's environment but for the session name;
    # the image's own variables (PATH, HOSTNAME) stay as in a cold start.
    os.environ.update(order["env"])
    launcher = importlib.util.find_spec("ipykernel_launcher")
    sys.argv = [launcher.origin if launcher and launcher.origin else "-m", *order["args"]]
    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1])
