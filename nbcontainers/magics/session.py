"""The session theme: which container kernels a notebook has and which one runs its cells
(`%container use/local/list/stop/restart/logs`, `%%container`, and the input transformer
that sends every cell to the active kernel)."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import re
import sys
import threading
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from ..catalog.entries import load_catalog
from ..catalog.kernelspecs import kernel_json
from ..errors import NbcontainersError, UnknownImage, did_you_mean
from ..kernels.gpu_request import gpu_request
from ..kernels.pool import kernel_pool
from ..relay.kernel import Relay, exposure, warm_start
from .missing import Engines, ensure_in_cell, image_of_spec
from .parser import Dispatcher, Handler
from .snapshot import snapshot_folder_image
from .state import NotebookState, catalog_names, provisioner_of
from .status import format_duration

__all__ = ["LOCAL_ASSIGNMENT", "LOCAL_PREFIXES", "POOL_VARIABLE", "WARM_VARIABLE", "SessionMagics"]

# c.ContainerProvisioner.pool_size for `%container use` kernels (set in the server's env).
POOL_VARIABLE = "NBCONTAINERS_POOL_SIZE"
# Images whose pool a notebook fills as the extension loads, e.g. "python pytorch-cpu".
WARM_VARIABLE = "NBCONTAINERS_POOL_WARM"

log = logging.getLogger("nbcontainers.pool")

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
        self.engines = Engines()

    def subcommands(self) -> dict[str, Handler]:
        return {
            "use": self.use,
            "local": self.local,
            "list": self.list_kernels,
            "stop": self.stop,
            "restart": self.restart,
            "logs": self.logs,
        }

    @line_cell_magic
    def container(self, line: str, cell: str | None = None) -> Any:
        """Run this notebook's cells in a container kernel.

        %container use NAME [--gpus all|N|IDS] [--memory 8g] [--cpus 2]
            From now on, cells run in a container kernel for catalog image (or kernelspec)
            NAME, started in the notebook's folder. Outputs, errors, input(), interrupts,
            widgets, completion and inspection all work as in a local kernel.
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
            relay = self.relay(name, {}) if name else self.state.existing(None)
        except NbcontainersError as exc:
            raise UsageError(str(exc)) from None
        relay.execute(cell)

    # -- subcommands ------------------------------------------------------------------------

    def use(self, args: argparse.Namespace) -> None:
        overrides = {
            k: v
            for k, v in (("gpus", args.gpus), ("mem_limit", args.memory), ("cpus", args.cpus))
            if v is not None
        }
        name = args.name
        if name.startswith((".", "/", "~")) or os.sep in name:
            name = snapshot_folder_image(name, self.state.shell)
        relay = self.relay(name, overrides)
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
        runtime = provisioner_of(relay).runtime
        print(runtime.logs(relay.container_id or "", tail=args.tail))

    # -- kernels ----------------------------------------------------------------------------

    def kernel_spec(self, name: str, overrides: dict[str, Any]) -> tuple[str, KernelSpec]:
        """The kernelspec to start for ``name`` (a catalog image, else an installed
        kernelspec) with ``overrides`` and the transfer folder in its provisioner config;
        and the name the notebook knows the kernel by."""
        catalog = load_catalog()
        try:
            image = catalog[name]  # also takes the kernelspec name, "nbc-python"
        except UnknownImage:
            image = None
        if image is not None:
            image_name = image.name
            # Built in memory: a catalog image needs no installed kernelspec.
            spec = KernelSpec(**kernel_json(image), resource_dir="")
            spec.name = image.kernel_name
        else:
            manager = KernelSpecManager()
            try:
                spec = manager.get_kernel_spec(name)
            except NoSuchKernel:
                known = set(catalog) | set(manager.find_kernel_specs())
                raise UsageError(
                    f"Unknown image or kernel {name!r}.{did_you_mean(name, known)} "
                    f"Catalog images: {', '.join(catalog)}."
                ) from None
            image_name = name
        provisioner = spec.metadata.get("kernel_provisioner", {})
        if provisioner.get("provisioner_name") == "nbcontainers":
            config = provisioner.setdefault("config", {})
            config.update(overrides)
            pool = os.environ.get(POOL_VARIABLE, "")
            if pool.isdigit() and "pool_size" not in config:
                # The server's setting reaches a notebook's kernel only through its environment.
                config["pool_size"] = int(pool)
            mounts = list(config.get("extra_mounts", []))
            # push/pull and snapshot wheels go through this folder, at the same path inside.
            xfer = self.state.transfer_dir()
            config["extra_mounts"] = [*mounts, f"{xfer}:{xfer}:rw"]
        elif overrides:
            raise UsageError(
                f"--gpus/--memory/--cpus only apply to container images, not kernel {name!r}."
            )
        return image_name, spec

    def warm(self, names: list[str]) -> threading.Thread:
        """Fill the pools of ``names`` (``NBCONTAINERS_POOL_WARM``) from a background thread,
        so that the notebook's first ``%container use`` of one is pooled too: one kernel of
        each started and stopped as a relay would. Images not on the engine are skipped
        (nothing is built behind the user's back); failures go to the log only."""

        def fill() -> None:
            for name in names:
                try:
                    image_name, spec = self.kernel_spec(name, {})
                    config = spec.metadata.get("kernel_provisioner", {}).get("config", {})
                    wanted = image_of_spec(spec)
                    if not config.get("pool_size") or wanted is None:
                        continue
                    image, engine = wanted
                    if self.engines.get(engine).image_info(image.ref) is None:
                        continue
                    warm_start(image_name, spec, os.getcwd())
                except Exception as exc:  # never in the user's way: the use starts cold
                    log.warning("nbcontainers: cannot warm the kernel pool for %s: %s", name, exc)
            if not self._exit_hook:  # the transfer folder kernel_spec() made goes at exit
                atexit.register(self.shutdown, now=True)
                self._exit_hook = True

        thread = threading.Thread(target=fill, name="nbc-pool-warm", daemon=True)
        thread.start()
        return thread

    def relay(self, name: str, overrides: dict[str, Any]) -> Relay:
        """The running kernel for ``name``, or a new one; new limits mean a new kernel."""
        image_name, spec = self.kernel_spec(name, overrides)
        relay = self.state.relays.get(image_name)
        if relay is not None and relay.alive and not overrides:
            return relay
        if relay is not None:
            relay.stop()
        shell = self.state.shell
        wanted = image_of_spec(spec)
        if wanted is not None:  # built or pulled here, with progress, when it is missing
            image, engine = wanted
            runtime = self.engines.get(engine)
            gpus = spec.metadata["kernel_provisioner"]["config"].get("gpus")
            try:  # a GPU image on a host without GPUs fails now, not after a long build
                gpu_request(image, gpus, remote=runtime.ping().remote)
            except NbcontainersError as exc:
                raise UsageError(str(exc)) from None
            ensure_in_cell(shell, image, runtime)
        relay = Relay(
            image_name,
            spec,
            shell.kernel,
            cwd=os.getcwd(),
            execution_count=lambda: int(shell.displayhook.prompt_count),
        )
        relay.start()
        if not self._exposure_said:
            # Said once per notebook: the fix is the server's setting, not this cell's.
            self._exposure_said = True
            why = exposure(shell.kernel)
            if why:
                print(f"Warning: {why}", file=sys.stderr)
        if not self._exit_hook:
            # Registered after the first start, so it runs before the provisioner's own exit
            # hook (atexit is last-in, first-out): the local kernel's exit ends its containers.
            atexit.register(self.shutdown, now=True)
            self._exit_hook = True
        self.state.relays[image_name] = relay
        return relay

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
