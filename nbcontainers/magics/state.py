"""What the magics of one notebook share: its container kernels, which one runs its cells,
the service that makes them (:class:`~nbcontainers.relay.session.RelaySession`) and the
transfer folder both sides mount."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from ..catalog.entries import load_catalog
from ..errors import did_you_mean
from ..relay.kernel import Relay
from ..relay.session import RelaySession
from .pickles import make_transfer_dir

__all__ = ["Evaluate", "NotebookState", "catalog_names"]

# evaluate(code, expression): run ``code`` in a kernel, return the value of ``expression``.
Evaluate = Callable[[str, str], Any]


def catalog_names() -> str:
    """The catalog's image names, for messages that say what could be used instead."""
    return ", ".join(load_catalog())


class NotebookState:
    """The one object every theme of the magics holds: nothing else is shared between them.

    ``shell`` is the notebook's IPython shell (typed Any: ipykernel's shell carries
    ``.kernel``, which plain IPython's lacks).
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.relays: dict[str, Relay] = {}
        self.active: str | None = None
        self._transfer_dir: str | None = None
        # How its kernels are specified, checked, started and warmed; what they run on.
        self.kernels = RelaySession(self.transfer_dir)

    def active_relay(self) -> Relay | None:
        """The container kernel that runs the notebook's cells, or None (local)."""
        return self.relays.get(self.active or "")

    def existing(self, name: str | None) -> Relay:
        """The container kernel ``name``: the active one (or the only one) by default."""
        name = name or self.active
        if name is None:
            if len(self.relays) == 1:
                return next(iter(self.relays.values()))
            raise UsageError(
                "No container kernel is active: start one with "
                "`%container use NAME` (images: " + catalog_names() + ")."
            )
        # Kernels are held by image name; their kernelspec name says the same thing.
        if name.startswith("nbc-") and name[4:] in self.relays:
            name = name[4:]
        if name not in self.relays:
            raise UsageError(
                f"No container kernel {name!r} in this notebook."
                f"{did_you_mean(name, self.relays)} `%container list` shows them."
            )
        return self.relays[name]

    def forget(self, relay: Relay) -> None:
        """Drop a stopped kernel; the notebook runs locally again if it was the active one."""
        del self.relays[relay.name]
        if self.active == relay.name:
            self.active = None

    def transfer_dir(self) -> str:
        """The folder variables and captured wheels move through, made on first use."""
        if self._transfer_dir is None:
            self._transfer_dir = str(make_transfer_dir())
        return self._transfer_dir

    def remove_transfer_dir(self) -> None:
        if self._transfer_dir:
            shutil.rmtree(self._transfer_dir, ignore_errors=True)
            self._transfer_dir = None

    def evaluator(self) -> tuple[Evaluate, str]:
        """``evaluate(code, expression)`` in the active container kernel, else this one;
        and a folder both it and this process can write."""
        relay = self.active_relay()
        if relay is not None:
            active = relay

            def remote(code: str, expression: str) -> Any:
                return active.run_internal(code, user_expressions={"v": expression})["v"]

            return remote, self.transfer_dir()
        # A namespace of its own: capture code must not leave names in the user's.
        namespace: dict[str, Any] = {"get_ipython": lambda: self.shell}

        def local(code: str, expression: str) -> Any:
            exec(code, namespace)  # our own capture code, never user input
            return eval(expression, namespace)

        return local, self.transfer_dir()

    def notebook_path(self) -> str:
        """The notebook's path where the frontend says it (JupyterLab sets __session__),
        else the folder the notebook runs in."""
        session = self.shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
        return str(session or os.getcwd())
