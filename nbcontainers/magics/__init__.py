"""`%container` / `%%container` and `%export-serving`: a running notebook's cells in a
container kernel. :func:`load` wires one ``Magics`` class per theme around one shared
:class:`~.state.NotebookState`:

- :mod:`.session`   use, local, list, stop, restart, logs, pin, `%%container`, cell routing
  (how a kernel is specified, checked, started and warmed: :mod:`nbcontainers.relay.session`)
- :mod:`.transfer`  push, pull (the files they move through: :mod:`.pickles`)
- :mod:`.snapshot`  snapshot, and snapshot folders as images
- :mod:`.status`    status
- :mod:`.export`    `%export-serving`
- :mod:`.parser`    the `%container` arguments and the dispatch to the themes
- :mod:`.completion` completion and inspection from the container
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..relay.session import warm_listed
from .completion import Completion
from .export import MAGIC_NAMES, ExportMagics
from .parser import Dispatcher
from .session import LOCAL_ASSIGNMENT, SessionMagics
from .snapshot import SnapshotMagics
from .state import NotebookState
from .status import StatusMagics
from .transfer import TransferMagics

__all__ = [
    "ExportMagics",
    "Loaded",
    "NotebookState",
    "SessionMagics",
    "SnapshotMagics",
    "StatusMagics",
    "TransferMagics",
    "load",
    "unload",
]

# Kept under its old name for tests/test_serving_unit.py; new code uses LOCAL_ASSIGNMENT.
_LOCAL_ASSIGNMENT = LOCAL_ASSIGNMENT

# Where `load` keeps what it installed on the shell, so a second load is a no-op and
# `unload` can take exactly that out again.
_STATE_ATTR = "_nbcontainers_magics"


@dataclass
class Loaded:
    """What :func:`load` installed on one shell."""

    state: NotebookState
    session: SessionMagics
    export: ExportMagics
    completion: Completion


def load(shell: Any) -> None:
    """Register the magics, the routing transformer, completion and inspection (idempotent)."""
    if getattr(shell, _STATE_ATTR, None) is not None:
        return
    state = NotebookState(shell)
    session = SessionMagics(shell, state)
    transfer = TransferMagics(shell, state)
    snapshot = SnapshotMagics(shell, state)
    status = StatusMagics(shell, state)
    export = ExportMagics(shell, state)
    # `%container` belongs to the session theme; its subcommands to whichever theme has them.
    session.dispatch = Dispatcher(
        {
            **session.subcommands(),
            **transfer.subcommands(),
            **snapshot.subcommands(),
            **status.subcommands(),
        }
    )
    shell.register_magics(session, transfer, snapshot, status, export)
    shell.input_transformers_cleanup.append(session.route)
    completion = Completion(state)
    shell.set_hook("complete_command", completion.complete_magic, str_key="%container")
    # Plain IPython (a terminal, the fast tests) has no kernel to patch; ipykernel's shell has.
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        completion.patch(kernel)
    setattr(shell, _STATE_ATTR, Loaded(state, session, export, completion))
    warm = warm_listed()
    if warm:
        session.warm(warm)


def unload(shell: Any) -> None:
    """Undo :func:`load`: stop this notebook's container kernels, run cells locally again."""
    loaded: Loaded | None = getattr(shell, _STATE_ATTR, None)
    if loaded is None:
        return
    loaded.session.shutdown()  # first: nothing may still route cells to a stopped kernel
    if loaded.session.route in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(loaded.session.route)
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        loaded.completion.restore(kernel)
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("container", None)
    for name in MAGIC_NAMES:
        shell.magics_manager.magics["line"].pop(name, None)
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        dispatcher.strs.pop("%container", None)
    setattr(shell, _STATE_ATTR, None)
