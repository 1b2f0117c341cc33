"""The session theme: which container kernels a notebook has and which one runs its cells
(`%container use/local/list/stop/restart/logs`, `%%container`, and the input transformer
that sends every cell to the active kernel)."""

from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import threading
import time
from functools import partial
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import NbcontainersError
from ..kernels.pool import kernel_pool
from ..relay.connection import exposure
from ..relay.kernel import Relay
from ..relay.session import POOL_VARIABLE, WARM_VARIABLE, Resources
from .missing import showing
from .parser import Dispatcher, Handler
from .snapshot import snapshot_folder_image
from .state import NotebookState, catalog_names
from .status import format_duration

# POOL_VARIABLE and WARM_VARIABLE are nbcontainers.relay.session's, re-exported here.
__all__ = ["LOCAL_ASSIGNMENT", "LOCAL_PREFIXES", "POOL_VARIABLE", "WARM_VARIABLE", "SessionMagics"]

# Cells starting with these run locally even while a container kernel is active.
LOCAL_PREFIXES = (
    "%container",
    "%%container",
    "%load_ext",
    "%unload_ext",
    "%reload_ext",
    "%export-serving",
    "%export_serving",
)
# `server = %export-serving ...` runs locally too.
LOCAL_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*\s*=\s*%(container|export-serving|export_serving)\b")


@magics_class
class SessionMagics(Magics):
    """Starts, switches and stops the notebook's container kernels; owns the `%container`
    magic itself and hands its other subcommands to ``dispatch`` (set by ``load``)."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state
        self.dispatch: Dispatcher | None = None
        self._exit_hook = False
        self._exposure_said = False

    def subcommands(self) -> dict[str, Handler]:
        return {
            "use": self.use,
            "local": self.local,
            "list": self.list_kernels,
            "stop": self.stop,
            "restart": self.restart,
            "logs": self.logs,
            "pin": self.pin,
        }

    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run this notebook's cells in a container kernel.

        %container use NAME [--gpus all|N|IDS] [--mem 8g] [--cpus 2]
            From now on, cells run in a container kernel for catalog image (or kernelspec)
            NAME, started in the notebook's folder. Outputs, errors, input(), interrupts,
            widgets, completion and inspection all work as in a local kernel.
            --gpus, --mem (or --memory) and --cpus choose this notebook's GPUs, memory
            and CPUs, within the admin's policy (a request over it is refused, naming the
            flag and the limit); a new choice starts a new kernel.
        %container use ./DIR      the same for a snapshot folder: its image snapshot-DIR is
            built (once) and registered first
        %container local          cells run locally again; the container keeps running
        %container status [NAME]  image, digest, uptime, CPU/memory, GPUs
        %container list           this notebook's container kernels
        %container stop [NAME]    shut a container kernel down (back to local if it was active)
        %container restart [NAME] a fresh kernel in a fresh container
        %container logs [NAME] [--tail N]
        %container push VAR...    copy notebook variables into the container kernel
        %container pull VAR... [--pickle]
            copy container variables into the notebook, as data only: numpy arrays and
            scalars, pandas DataFrames/Series/Index, str, int, float, complex, bool, None,
            bytes and lists/tuples/sets/dicts of them (npy and JSON files; nothing the
            container sends is run). --pickle also moves other objects by pickle, which runs
            any code the container chose in this notebook, as you: only for trusted images.
        %container snapshot [DIR] [--minimal] [--wheels] [--build] [--verify]
            write DIR (default ./snapshot): a Dockerfile, lock, environment.json and project
            files that plain `docker build DIR` turns back into the active container kernel's
            environment (or the local kernel's). --verify rebuilds it and compares packages;
            --build also registers it as image snapshot-DIR for `%container use`;
            --wheels vendors every distribution, so it builds with no index at all;
            --minimal keeps only what the session imported and what that requires.
            conda installs are pinned from pip's index (same version) or refused by name;
            environment.json also records GPUs (nvidia-smi) and torch/CUDA/cuDNN facts.
        %container pin [...]      write what the active container kernel runs (image
            digest, snapshot lock) into this notebook's metadata
        %%container [NAME]        run just this cell in the active (or NAME's) container

        Variables move through a private shared tmpfs folder: push as pickles (protocol 5),
        pull as data; large arrays are memory-mapped, not copied through the messaging layer.
        """
        if cell is not None:
            return self.run_cell(line.strip() or None, cell)
        if self.dispatch is None:
            raise UsageError("%container is not loaded: run `%load_ext nbcontainers`.")
        return self.dispatch(line)

    def run_cell(self, name: str | None, cell: str) -> None:
        """`%%container [NAME]`: this cell in NAME's kernel (started if need be), else in
        the active one."""
        try:
            relay = self.relay(name, Resources()) if name else self.state.existing(None)
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
        relay.execute(cell)

    # -- subcommands ------------------------------------------------------------------------

    def use(self, args: argparse.Namespace) -> None:
        resources = Resources(gpus=args.gpus, memory=args.memory, cpus=args.cpus)
        name = args.name
        if name.startswith((".", "/", "~")) or os.sep in name:
            name = snapshot_folder_image(name, self.state.shell)
        relay = self.relay(name, resources)
        self.state.active = relay.name
        print(
            f"Cells now run in container kernel {relay.name!r} "
            f"({(relay.container_id or '')[:12]}). `%container local` to switch back."
        )

    def local(self, args: argparse.Namespace) -> None:
        if self.state.active is None:
            print("Cells already run in the local kernel.")
            return
        print(
            f"Cells run in the local kernel again; container kernel {self.state.active!r} keeps "
            "running (`%container stop` ends it)."
        )
        self.state.active = None

    def list_kernels(self, args: argparse.Namespace) -> None:
        if not self.state.relays:
            print(
                "No container kernels. Start one with `%container use NAME`; images: "
                + catalog_names()
            )
            return
        for name, relay in self.state.relays.items():
            mode = "idle" if relay.alive else "dead"
            if name == self.state.active:
                mode = "active"
            print(
                f"{name:<20} {mode:<7} {(relay.container_id or '-')[:12]}  "
                f"up {format_duration(time.time() - relay.started_at)}"
            )
        idle = {name: n for name, n in kernel_pool().idle().items() if n}
        if idle:
            print("warm pool: " + ", ".join(f"{name} {n} idle" for name, n in sorted(idle.items())))

    def stop(self, args: argparse.Namespace) -> None:
        relay = self.state.existing(args.name)
        relay.stop()
        self.state.forget(relay)
        print(f"Stopped container kernel {relay.name!r}; cells run in the local kernel.")

    def restart(self, args: argparse.Namespace) -> None:
        relay = self.state.existing(args.name)
        relay.restart()
        print(f"Restarted container kernel {relay.name!r} ({(relay.container_id or '')[:12]}).")

    def logs(self, args: argparse.Namespace) -> None:
        relay = self.state.existing(args.name)
        runtime = self.state.kernels.describe(relay)[2]
        print(runtime.logs(relay.container_id or "", tail=args.tail))

    def pin(self, args: argparse.Namespace) -> None:
        """`%container pin ...`: :func:`nbcontainers.magics.pin.pin` reads its arguments."""
        try:
            from .pin import pin  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.pin":
                raise  # something pin itself needs: its own message says what
            raise UsageError(
                "%container pin is not available in this installation of nbcontainers "
                f"(no module {exc.name}). Upgrade nbcontainers, or write the image into the "
                "notebook's metadata by hand."
            ) from None
        pin(self.state.shell, list(args.argv))

    # -- kernels ----------------------------------------------------------------------------

    def warm(self, names: list[str]) -> threading.Thread:
        """Fill the pools of ``names`` (``NBCONTAINERS_POOL_WARM``) in the background, so that
        the notebook's first ``%container use`` of one is pooled too
        (:meth:`~nbcontainers.relay.session.RelaySession.warm`)."""
        # The transfer folder the warming made goes at exit.
        return self.state.kernels.warm(names, os.getcwd(), done=self._hook_exit)

    def relay(self, name: str, resources: Resources) -> Relay:
        """The running kernel for ``name``, or a new one; new resources mean a new kernel."""
        kernels = self.state.kernels
        kernel = kernels.specify(name, resources)
        relay = self.state.relays.get(kernel.name)
        if relay is not None and relay.alive and not resources:
            return relay
        if relay is not None:
            relay.stop()
        shell = self.state.shell
        kernel = kernels.precheck(kernel, partial(showing, shell))
        relay = kernels.start(
            kernel,
            shell.kernel,
            cwd=os.getcwd(),
            execution_count=lambda: int(shell.displayhook.prompt_count),
        )
        if not self._exposure_said:
            # Said once per notebook: the fix is the server's setting, not this cell's.
            self._exposure_said = True
            why = exposure(shell.kernel)
            if why:
                print(f"Warning: {why}", file=sys.stderr)
        # After the first start, so it runs before the provisioner's own exit hook (atexit is
        # last-in, first-out): the local kernel's exit ends its containers.
        self._hook_exit()
        self.state.relays[kernel.name] = relay
        return relay

    def _hook_exit(self) -> None:
        if not self._exit_hook:
            atexit.register(self.shutdown, now=True)
            self._exit_hook = True

    def shutdown(self, now: bool = False) -> None:
        """Stop every container kernel of this notebook (``now``: kill, don't ask)."""
        for relay in list(self.state.relays.values()):
            try:
                relay.stop(now=now)
            except Exception as exc:  # the engine may be gone already
                self.state.shell.log.debug("stopping %s failed: %s", relay.name, exc)
        self.state.relays.clear()
        self.state.active = None
        self.state.remove_transfer_dir()

    # -- cell routing -----------------------------------------------------------------------

    def route(self, lines: list[str]) -> list[str]:
        """Input transformer: while a container is active, every cell becomes %%container.

        The body is never parsed here, so `await`, `!cmd` and cell magics reach the
        container kernel as written.
        """
        if self.state.active is None or not lines:
            return lines
        first = next((ln.lstrip() for ln in lines if ln.strip()), "")
        if not first or first.startswith(LOCAL_PREFIXES) or LOCAL_ASSIGNMENT.match(first):
            return lines
        return ["%%container\n", *lines]
