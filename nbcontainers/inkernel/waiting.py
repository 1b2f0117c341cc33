"""A pooled kernel container's first process: start the kernel up to user code, then wait.

This file is not imported by nbcontainers: its source is the ``python3 -c`` program of a
pooled container (:func:`~nbcontainers.kernels.pooled.waiting_command`), so it runs with the
image's own Python and uses only the standard library and ipykernel. Before any notebook
asks it does the slow part of a kernel start: importing IPython and ipykernel (~0.2 s) and,
when that runs none of the user's code, initializing the kernel itself (~35 ms: sockets bound
on the names the server will use, the shell made) under a throwaway signing key. Then it
blocks on a FIFO in its private folder. The hand-over written there names the notebook's
working directory, its environment and the real key; the kernel takes them, and only then
loads extensions, runs startup files and ``exec_lines`` and starts answering, exactly as
``python3 -m ipykernel_launcher ARGS`` would have in that folder. When initializing would
run Python the user wrote (an ``ipython_config.py`` or ``ipython_kernel_config.py`` where
IPython looks, an option naming another profile or config), everything waits for the
hand-over. No user code runs before it, and the FIFO is read once: a pooled container
serves one kernel.
"""

import contextlib
import json
import os
import sys
from typing import Any

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
# Options that change which config files (Python code) a kernel start loads.
_CONFIG_OPTIONS = ("--profile", "--profile-dir", "--ipython-dir", "--config", "--extra-config")
_CONFIG_FILES = ("ipython_config.py", "ipython_kernel_config.py")
# The steps of IPKernelApp.initialize that run the user's code: they wait for the hand-over.
_USER_STEPS = ("init_extensions", "init_code")


def runs_no_user_code(args: list[str]) -> bool:
    """Would initializing the kernel with ``args`` now load no config file written in Python?"""
    if any(a.split("=")[0] in _CONFIG_OPTIONS for a in args):
        return False
    from IPython.core.application import ENV_CONFIG_DIRS, SYSTEM_CONFIG_DIRS
    from IPython.paths import get_ipython_dir

    dirs = [os.path.join(get_ipython_dir(), "profile_default"), *ENV_CONFIG_DIRS]
    dirs += SYSTEM_CONFIG_DIRS
    return not any(os.path.exists(os.path.join(d, n)) for d in dirs for n in _CONFIG_FILES)


def initialized(kernelapp: Any, args: list[str]) -> Any:
    """The kernel app, initialized with ``args`` all but its user-code steps."""
    app = kernelapp.IPKernelApp.instance()
    for step in _USER_STEPS:
        setattr(app, step, lambda: None)
    try:
        app.initialize(args)
    finally:
        for step in _USER_STEPS:
            delattr(app, step)
    return app


def take_over(app: Any, order: dict[str, Any]) -> None:
    """Make the initialized ``app`` the kernel a cold start in ``order``'s folder would be:
    the real signing key, the folder IPython noted as its start, the session name."""
    session = app.session
    session.signature_scheme = order.get("signature_scheme") or session.signature_scheme
    session.key = order["key"].encode()
    shell = app.shell
    cwd = os.getcwd()
    shell.starting_dir = cwd
    history = shell.history_manager.dir_hist  # the user's _dh
    history[:] = [type(history[0])(cwd) if history else cwd]
    name = os.environ.get("JPY_SESSION_NAME")
    if name:
        shell.user_ns["__session__"] = name
    for step in _USER_STEPS:
        getattr(app, step)()
    sys.stdout.flush()
    sys.stderr.flush()


def main(fifo: str, *args: str) -> None:
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

    launcher = importlib.util.find_spec("ipykernel_launcher")
    argv0 = launcher.origin if launcher and launcher.origin else "-m"
    app = None
    started_with = dict(os.environ)
    if args and runs_no_user_code(list(args)):
        sys.argv = [argv0, *args]
        app = initialized(kernelapp, list(args))
    data = ""
    while not data:  # an open and close without data (a readiness probe) is no hand-over
        with open(fifo, encoding="utf-8") as f:
            data = f.read()
    order = json.loads(data)
    os.chdir(order["cwd"])
    # The container was created with this kernel's environment but for the session name;
    # the image's own variables (PATH, HOSTNAME) stay as in a cold start, and so do those an
    # early kernel set itself (ipykernel sets TERM, PAGER): only what differs is applied.
    os.environ.update({k: v for k, v in order["env"].items() if started_with.get(k) != v})
    sys.argv = [argv0, *order["args"]]
    if app is None:
        kernelapp.launch_new_instance()
        return
    take_over(app, order)
    app.start()


if __name__ == "__main__":
    main(*sys.argv[1:])
