"""The `nbcontainers` kernel provisioner: Jupyter's kernel lifecycle on a container runtime.

The traits are the settings users write (``c.ContainerProvisioner.gpus = "all"``, or a
kernelspec's ``metadata.kernel_provisioner.config``). The work is the
:class:`~nbcontainers.kernels.starter.KernelStarter`'s, which the kernelspec launcher
(``python -m nbcontainers.launch``) uses too; this adapter adds what only Jupyter has: the
kernel manager's connection info and files, CurveZMQ keys, the wait for the kernel's sockets,
and re-adoption by a restarted server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

from ..catalog.entries import CatalogImage
from ..errors import ConfigError, ContainerCrashed, RuntimeFailure
from ..runtimes import ContainerRuntime, EngineFacts
from .connection import (
    PrivateDir,
    point_at,
    wait_for_port,
    wait_for_sockets,
    write_connection,
)
from .curve import clear_keys, ensure_keys, kernel_command, wants_curve
from .exit_cleanup import remove_when_finished_at_exit
from .plan import CONNECTION_FILE, HOME, KernelStart, LaunchConfig
from .pooled import Pooled
from .provisioner_traits import ProvisionerTraits
from .starter import KernelStarter, StartSettings, container_argv

__all__ = ["ContainerProvisioner"]


async def _blocking(func: Any, *args: Any) -> Any:
    """Run a blocking engine call off the event loop; inline once the interpreter is exiting
    (atexit handlers that shut kernels down can no longer start threads)."""
    try:
        return await asyncio.to_thread(func, *args)
    except RuntimeError as exc:
        if "interpreter shutdown" not in str(exc):
            raise
        return func(*args)


# mypy can't see that jupyter_client's metaclass derives from traitlets' (it does).
class ContainerProvisioner(ProvisionerTraits, KernelProvisionerBase):  # type: ignore[metaclass]
    """Start a Jupyter kernel inside a container built from a catalog image.

    Set per kernelspec (``metadata.kernel_provisioner.config``) or by traitlets
    (``c.ContainerProvisioner.gpus = "all"``); the kernelspec wins.
    """

    def __init__(self, **kwargs: Any) -> None:
        base_keys = {"kernel_id", "kernel_spec", "parent", "config", "log", "connection_info"}
        own = {name for name in self.class_trait_names(config=True)}
        # The kernelspec's config may say "runtime" (our name) for runtime_name.
        if "runtime" in kwargs:
            kwargs["runtime_name"] = kwargs.pop("runtime")
        # Jupyter only warns about unknown keys; a misspelt limit must not pass unnoticed.
        unknown = sorted(set(kwargs) - base_keys - own)
        if unknown:
            valid = sorted((own - {"runtime_name"}) | {"runtime"})
            raise ConfigError(
                f"Unknown kernel_provisioner config key(s) {', '.join(map(repr, unknown))} for "
                f"'nbcontainers'. Valid keys: {', '.join(valid)}."
            )
        super().__init__(**kwargs)
        self.starter = KernelStarter(self.start_settings(), self.log)

    # What the rest of nbcontainers (``%container status``, the relay) and tests read.
    container_id = property(lambda self: self.starter.container_id)
    private_dir = property(lambda self: self.starter.private_dir)
    last_crash = property(lambda self: self.starter.last_crash)
    gpu_request = property(lambda self: self.starter.gpu_request, doc="What the container got.")
    _pooled = property(lambda self: self.starter.pooled)

    @property
    def runtime(self) -> ContainerRuntime:
        """The engine, by ``runtime_name``, this process's (shared by its kernels) unless one
        is assigned."""
        return self.starter.runtime

    @runtime.setter
    def runtime(self, runtime: ContainerRuntime) -> None:
        self.starter.runtime = runtime

    @property
    def catalog_image(self) -> CatalogImage:
        # Traits may be set after construction (a test, a magic): the next start sees them.
        if self.starter.container_id is None:
            self.starter.settings = self.start_settings()
        return self.starter.catalog_image

    def _engine_facts(self) -> EngineFacts:
        return self.starter.engine_facts()

    def launch_config(self) -> LaunchConfig:
        """The settings a launch plan is made from: the traits of the same names."""
        root = getattr(getattr(self.parent, "parent", None), "root_dir", "")
        return LaunchConfig(**self.launch_values(str(root or "")))

    def start_settings(self) -> StartSettings:
        """The traits, frozen for one start."""
        return self.frozen(self.launch_config())

    # -- KernelProvisionerBase ------------------------------------------------------------

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        self.starter.settings = self.start_settings()
        spec_env = getattr(self.kernel_spec, "env", None) or {}
        env = kwargs.get("env") or os.environ
        await _blocking(self.starter.precheck, env, kwargs.get("cwd"), spec_env, km)
        kwargs = await super().pre_launch(**kwargs)
        if km is None:
            raise ConfigError("The nbcontainers provisioner must be used by a KernelManager.")
        private = self.starter.open_private()
        transport = self.starter.transport()
        if wants_curve(self.encryption, self._engine_facts().remote):
            ensure_keys(km)
        else:
            clear_keys(km)
        self.connection_info = write_connection(
            km,
            private,
            transport,
            self.network,
            self.starter.ports,
            session=kwargs["env"].get("JPY_SESSION_NAME", ""),
        )
        extra = kwargs.pop("extra_arguments", [])
        # Not km.format_kernel_cmd(): it swaps "python3" for the server's own interpreter,
        # a path that means nothing inside the image. The launcher's part of an nbc-* argv
        # is for frontends without provisioners: here the kernel's own command runs.
        argv = container_argv(list(self.kernel_spec.argv)) + list(extra)
        kwargs["cmd"] = [part.replace("{connection_file}", CONNECTION_FILE) for part in argv]
        if km.curve_publickey is not None:
            kwargs["cmd"] = kernel_command(argv, CONNECTION_FILE, f"{HOME}/.kernel.json")
        self.log.debug(
            "nbcontainers: kernel %s will run in %s", self.kernel_id, self.catalog_image.ref
        )
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self.private_dir is not None  # pre_launch made it
        kernel = KernelStart(
            kernel_id=str(self.kernel_id),
            command=tuple(cmd),
            cwd=kwargs.get("cwd") or os.getcwd(),
            env=dict(kwargs.get("env") or {}),
            private_dir=PrivateDir(self.private_dir),
            spec_env=frozenset((getattr(self.kernel_spec, "env", None) or {}).keys()),
            ports=tuple(self.starter.ports),
            started_at=time.time(),
        )
        plan = await _blocking(self.starter.start, kernel, self.connection_info)
        if self._engine_facts().remote:
            try:
                await self._point_at_node()
            except Exception:
                await self.cleanup()  # nothing usable runs: leave nothing behind
                raise
        remove_when_finished_at_exit(self.starter)
        self.log.info(
            "nbcontainers: kernel %s started in container %s (%s)",
            self.kernel_id,
            str(self.container_id)[:12],
            plan.image.ref,
        )
        return self.connection_info

    async def post_launch(self, **kwargs: Any) -> None:
        """With ipc, wait until the kernel has bound its sockets before clients connect.

        A client that connects earlier is retried by ZeroMQ only every 100 ms, and a client
        that subscribes to IOPub late can miss the first status messages (jupyter console
        then waits forever for "idle"). The socket files show the moment the kernel binds.
        """
        await super().post_launch(**kwargs)
        if self.container_id is not None and self._engine_facts().remote:
            await self._wait_reachable()
            return
        if self.transport != "ipc" or self.container_id is None:
            return

        async def exited() -> bool:
            return await self.poll() is not None  # poll() logs why it died

        if await wait_for_sockets(self.connection_info, self.startup_timeout, exited) == "timeout":
            self.log.warning(
                "Kernel %s has not bound its sockets after %.0f s",
                self.kernel_id,
                self.startup_timeout,
            )

    async def poll(self) -> int | None:
        code: int | None = await _blocking(self.starter.poll)
        return code

    async def wait(self) -> int | None:
        if self.container_id is None:
            return 0
        while True:
            code = await self.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)

    async def send_signal(self, signum: int) -> None:
        if self.container_id is None:
            return
        if signum == 0:
            await self.poll()
            return
        await _blocking(self.starter.signal, signum)

    async def kill(self, restart: bool = False) -> None:
        if self.container_id is None:
            return
        self.starter.stopping = True
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        if self.container_id is None:
            return
        self.starter.stopping = True
        await self.send_signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self.starter.stopping = True

    async def cleanup(self, restart: bool = False) -> None:
        await _blocking(self.starter.cleanup, restart)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, self.stop_timeout)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, self.startup_timeout)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        pooled = self.starter.pooled
        info.update(
            {
                "container_id": self.container_id,
                "private_dir": str(self.private_dir) if self.private_dir else None,
                "image": self.image,
                "transport": self.transport,
                "node": self.starter.node,
                "pool_dir": str(pooled.private.path) if pooled else None,
            }
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.image = provisioner_info.get("image") or self.image
        self.transport = provisioner_info.get("transport") or self.transport
        starter = self.starter
        starter.settings = self.start_settings()
        starter.container_id = provisioner_info.get("container_id")
        private = provisioner_info.get("private_dir")
        starter.private_dir = Path(private) if private else None
        starter.node = provisioner_info.get("node") or ""
        pool_dir = provisioner_info.get("pool_dir")
        if pool_dir and starter.container_id:  # a pooled kernel: its folder goes at cleanup
            starter.pooled = Pooled(starter.container_id, PrivateDir(Path(pool_dir)), "")
        if starter.container_id is not None:
            state = await _blocking(self.runtime.state, starter.container_id)
            if state is None or not state.running:
                raise ContainerCrashed(
                    f"Cannot re-adopt kernel {self.kernel_id}: its container "
                    f"{starter.container_id[:12]} is {'gone' if state is None else state.status}."
                )

    # -- kernels on another host (a cluster runtime: EngineFacts.remote) -------------------

    async def _point_at_node(self) -> None:
        """Connect to where the cluster put the kernel: its node's address and ports."""
        state = await _blocking(self.starter.locate)
        self.connection_info = point_at(
            self.parent, self.connection_info, state.address, state.ports
        )
        self.log.info(
            "nbcontainers: kernel %s runs on node %s (%s)",
            self.kernel_id,
            state.node,
            state.address,
        )

    async def _wait_reachable(self) -> None:
        """Fail the start, naming the fix, when this server can't reach the kernel's node."""
        info = self.connection_info

        async def exited() -> bool:
            return await self.poll() is not None

        how = await wait_for_port(
            str(info["ip"]), int(info["hb_port"]), self.startup_timeout, exited
        )
        if how == "unreachable":
            node = self.starter.node or "?"
            check = self.runtime.advice("node", self.starter.node or "NODE")
            await self.kill()
            await self.cleanup()
            raise RuntimeFailure(
                f"This server can't reach the kernel on node {node} at "
                f"{info['ip']}:{info['hb_port']} (no route, or the packets are dropped). Let "
                "this host reach the nodes' TCP ports (a firewall rule for the published kernel "
                "ports), check the node's address"
                + (f" ({check})" if check else "")
                + ", or constrain kernels to reachable nodes with 'placement'."
            )

    def resolve_path(self, path: str) -> str | None:
        # The workspace is mounted at the same path, so host paths are container paths.
        candidate = Path(path).expanduser()
        return str(candidate) if candidate.is_absolute() and candidate.exists() else None
