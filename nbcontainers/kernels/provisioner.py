"""The `nbcontainers` kernel provisioner: Jupyter's kernel lifecycle on a container runtime.

The traits are the settings users write (``c.ContainerProvisioner.gpus = "all"``, or a
kernelspec's ``metadata.kernel_provisioner.config``); what a container gets from them is
decided by :func:`~nbcontainers.kernels.plan.plan_launch`. This module starts, watches,
signals, re-adopts and removes the container.

The class is long because it is the whole of Jupyter's provisioner interface (sixteen
methods, each a few lines of lifecycle) plus the eighteen traits users configure, which
belong where ``c.ContainerProvisioner`` finds them. The policies live beside it: launch.py,
connection.py, gpus.py, images.py, crash.py, exit_cleanup.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, Integer, List, Unicode

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import ConfigError, ContainerCrashed, RuntimeFailure, Unsupported
from ..runtimes import ContainerRuntime, ContainerState, EngineFacts, GPURequest, shared_runtime
from ..runtimes.base import ContainerSpec
from .connection import (
    PrivateDir,
    connection_for_container,
    hand_to_user,
    point_at,
    release_ports,
    reserve_ports,
    wait_for_port,
    wait_for_sockets,
    write_connection,
    write_private,
)
from .crash import crash_report
from .curve import ENCRYPTION_MODES, clear_keys, ensure_keys, kernel_command, wants_curve
from .exit_cleanup import remove_when_finished_at_exit
from .gpu_request import gpu_request
from .guards import RUNTIME_ENV, refuse_env
from .identity import Host
from .images import MISSING_IMAGE_POLICIES, ensure_image
from .netns import shared_netns
from .plan import (
    CONNECTION_FILE,
    DEFAULT_ENV_ALLOWLIST,
    DEFAULT_HOME_SIZE,
    DEFAULT_PIDS_LIMIT,
    DEFAULT_SHM_SIZE,
    HOME,
    SHARED,
    KernelStart,
    LaunchConfig,
    LaunchPlan,
    plan_launch,
)
from .policy import (
    KernelCountLock,
    Policy,
    check_kernel_count,
    count_kernels,
    load_policy,
    owner_name,
    pool_admission,
)
from .policy_rules import apply_policy, pool_limits
from .pool import PoolRequest, kernel_pool, start_from_pool
from .pooled import Pooled, release_pooled

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


class ContainerProvisioner(KernelProvisionerBase):
    """Start a Jupyter kernel inside a container built from a catalog image.

    Set per kernelspec (``metadata.kernel_provisioner.config``) or by traitlets
    (``c.ContainerProvisioner.gpus = "all"``); the kernelspec wins.
    """

    image = Unicode("", config=True, help="Catalog image name (e.g. 'python', 'pytorch-cpu').")
    gpus = AnyTrait(
        None,
        allow_none=True,
        config=True,
        help="GPUs to expose: 'all', a count, or device ids ('0,1'). "
        "Default: all GPUs for GPU images, none otherwise.",
    )
    mem_limit = Unicode("", config=True, help="Memory limit, e.g. '8g' (default: none).")
    cpus = Float(0.0, config=True, help="CPU limit in cores, e.g. 2.5 (default: none).")
    shm_size = Unicode(
        DEFAULT_SHM_SIZE,
        config=True,
        help="Size of /dev/shm; Docker's 64 MB default breaks PyTorch DataLoaders.",
    )
    home_size = Unicode(
        DEFAULT_HOME_SIZE,
        config=True,
        help="Size of the kernel's HOME, a tmpfs (it holds ~/.local, pip's user installs).",
    )
    pids_limit = Integer(
        DEFAULT_PIDS_LIMIT, config=True, help="Maximum number of processes in the container."
    )
    extra_mounts: List[Any] = List(
        config=True,
        help="More bind mounts: 'host:container[:ro|rw]' strings (read-only by default).",
    )
    env_allowlist = List(
        Unicode(),
        list(DEFAULT_ENV_ALLOWLIST),
        config=True,
        help="Server environment variables (glob patterns) the kernel may see.",
    )
    env = Dict(config=True, help="Extra environment variables set in the kernel container.")
    network = Unicode(
        SHARED,
        config=True,
        help="Container network: 'shared' (default: the owner's kernels join one bridge-"
        "networked namespace, which starts faster than a namespace each; with transport "
        "'tcp' this means 'bridge'), 'bridge', 'none', 'host' or a network name.",
    )
    transport = CaselessStrEnum(
        ["ipc", "tcp"],
        "ipc",
        config=True,
        help="'ipc': ZeroMQ over Unix sockets in a private folder (fastest, "
        "no TCP port at all); 'tcp': ports published on 127.0.0.1.",
    )
    startup_timeout = Float(
        60.0, config=True, help="Seconds a (re)start may take before Jupyter gives up."
    )
    missing_image = CaselessStrEnum(
        list(MISSING_IMAGE_POLICIES),
        "error",
        config=True,
        help="When the image is not present: fail at once with the "
        "command that fixes it, or build/pull it (with progress "
        "in the log).",
    )
    user = Unicode("", config=True, help="uid:gid to run as (default: the server's own).")
    mount_workspace = Bool(
        True, config=True, help="Mount the notebook's folder at the same path as the working dir."
    )
    pip_settings = Bool(
        True, config=True, help="Give the kernel the host's pip settings (read-only)."
    )
    runtime_name = Unicode(
        "auto",
        config=True,
        help="Container engine: 'auto' (DOCKER_HOST, else your rootless engine, else the "
        "system one), 'docker', 'podman', or another registered runtime.",
    )
    stop_timeout = Float(5.0, config=True, help="Grace period before a stopped kernel is killed.")
    placement = List(
        Unicode(),
        config=True,
        help="Where a cluster runtime may place the kernel, as Swarm constraints: "
        "'node.labels.gpu==true', 'node.hostname==gpu-1' (runtime 'swarm' only).",
    )
    encryption = CaselessStrEnum(
        list(ENCRYPTION_MODES),
        "auto",
        config=True,
        help="CurveZMQ on the kernel's channels, on top of HMAC signing: 'auto' (when the "
        "kernel may run on another host), 'curve' (always) or 'none'.",
    )
    pool_size = Integer(
        0,
        config=True,
        help="Warm pool: keep this many idle kernel containers started per image (and user, "
        "mounts, settings), so a start takes one in ~0.025 s; 0 (default) turns it off. "
        "With a pool the kernel mounts workspace_root and starts in the notebook's folder.",
    )
    pool_warm = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Kernelspecs (e.g. ['nbc-python']) whose pool the server fills as it starts, so "
        "that its first notebook's kernel is pooled too; needs the server extension "
        "nbcontainers.kernels.warmup. Read from the server's config only.",
    )
    pool_max_memory = Unicode(
        "2g",
        config=True,
        help="Memory all idle pooled kernels of this server may use together, e.g. '2g' "
        "(an idle nbc-python kernel uses about 36 MiB); '' for no cap.",
    )
    workspace_root = Unicode(
        "",
        config=True,
        help="Folder mounted (at the same path) for kernels started inside it, instead of "
        "the notebook's own folder. Default: none, or with a pool the server's root_dir "
        "(else your home).",
    )

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
        self.container_id: str | None = None
        self.private_dir: Path | None = None
        self.last_crash: str | None = None
        # What the running container was given (``%container status`` shows it).
        self.gpu_request: GPURequest | None = None
        self._runtime: ContainerRuntime | None = None
        self._facts: EngineFacts | None = None
        self._catalog_image: CatalogImage | None = None
        self._stopping = False
        self._image_checked = True  # pre_launch asked the engine for the image
        self._cached_ports: list[int] = []
        self._node = ""  # the cluster node the kernel ran on: a restart goes back there
        self._pooled: Pooled | None = None  # the pooled container this kernel took
        # The admin's policy and the settings it allowed, decided in pre_launch before any
        # image is built or pulled, and used as they are by launch_kernel.
        self._policy = Policy()
        self._checked: tuple[LaunchConfig, GPURequest | None] | None = None

    @property
    def runtime(self) -> ContainerRuntime:
        """The engine, by ``runtime_name``, this process's (shared by its kernels) unless one
        is assigned."""
        if self._runtime is None:
            self._runtime = shared_runtime(self.runtime_name)
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: ContainerRuntime) -> None:
        self._runtime, self._facts = runtime, None

    @property
    def catalog_image(self) -> CatalogImage:
        if self._catalog_image is None:
            if not self.image:
                raise ConfigError(
                    "The 'nbcontainers' provisioner needs config 'image' naming a catalog image, "
                    'e.g. {"image": "python"}.'
                )
            self._catalog_image = load_catalog()[self.image]
        return self._catalog_image

    def launch_config(self) -> LaunchConfig:
        """The settings a launch plan is made from: the traits of the same names."""
        values = {f.name: getattr(self, f.name) for f in fields(LaunchConfig)}
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = tuple(value)
        if self.pool_size > 0 and not self.workspace_root:
            # The pool's kernels exist before their notebook: they mount the folder above.
            root = getattr(getattr(self.parent, "parent", None), "root_dir", "")
            values["workspace_root"] = str(root or Path.home())
        return LaunchConfig(**values)

    def _engine_facts(self) -> EngineFacts:
        # Asked once per provisioner (restarts reuse it): one or two engine round trips. Not
        # once per process: "auto" may name another engine when the environment changes.
        if self._facts is None:
            self._facts = self.runtime.ping()
        return self._facts

    def _write_private_files(self, plan: LaunchPlan, host: Host) -> None:
        if plan.pip_conf is not None:
            write_private(plan.private_dir.pip_conf, plan.pip_conf)
        # Only a root server gets here (kernel_user checks); on a rootless engine the
        # container's root already is the server's user.
        if plan.user != host.user and not self._engine_facts().rootless:
            hand_to_user(plan.private_dir, plan.user)

    def _from_pool(self, plan: LaunchPlan, spec: ContainerSpec, host: Host) -> Pooled | None:
        """Take a pooled container for this start (None: start cold); keep the pool full,
        each new member admitted by the policy's kernel count."""

        def prepare(private: PrivateDir) -> None:
            self._write_private_files(replace(plan, private_dir=private), host)

        policy, runtime = self._policy, self.runtime
        size, cap = pool_limits(policy, self.pool_size, self.pool_max_memory)
        inside = connection_for_container(self.connection_info, "ipc", plan.network or "")
        pool = PoolRequest(
            runtime,
            spec,
            plan,
            size,
            cap,
            prepare,
            inside,
            admit=lambda: pool_admission(policy, runtime, host.owner),
        )
        return start_from_pool(pool)

    def _check_policy(self) -> None:
        """The admin's policy on this start's resolved settings (and the checks that hold
        without one): before any image is built or pulled, so a refused kernel costs
        nothing."""
        self._policy = load_policy()
        self._checked = apply_policy(
            self._policy, self._remote_config(), self.catalog_image, self.gpu_request
        )
        spec_env = getattr(self.kernel_spec, "env", None) or {}
        refuse_env(spec_env, (*RUNTIME_ENV, *self._policy.denied_env), "the kernelspec's env")
        if self.pool_size > 0:
            pool_limits(self._policy, self.pool_size, self.pool_max_memory)

    async def _ensure_image(self) -> None:
        self._image_checked = True
        await _blocking(
            ensure_image,
            self.runtime,
            self.catalog_image,
            self.missing_image,
            self.log,
            self.startup_timeout,
        )

    # -- KernelProvisionerBase ------------------------------------------------------------

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        img = self.catalog_image  # unknown names fail here, with a did-you-mean
        remote = (await _blocking(self._engine_facts)).remote
        # GPU first: "this host has no GPU, use X" helps more than "image missing".
        self.gpu_request = await _blocking(gpu_request, img, self.gpus, None, remote)
        await _blocking(self._check_policy)
        # A ready pooled member of this image means the engine has it: the warm path saves
        # that round trip; launch_kernel checks after all when no member is handed out.
        self._image_checked = not (self.pool_size > 0 and kernel_pool().has_ready(img.ref))
        if not self._image_checked:
            self.log.debug("nbcontainers: %s is in use by the warm pool", img.ref)
        else:
            await self._ensure_image()
        kwargs = await super().pre_launch(**kwargs)
        if km is None:
            raise ConfigError("The nbcontainers provisioner must be used by a KernelManager.")
        private = PrivateDir.open(self.private_dir)
        self.private_dir = private.path
        transport = self._transport()
        if transport == "tcp" and not self._cached_ports:
            # Kept across restarts: clients reconnect to the same ports.
            self._cached_ports = reserve_ports()
        if wants_curve(self.encryption, remote):
            ensure_keys(km)
        else:
            clear_keys(km)
        self.connection_info = write_connection(
            km,
            private,
            transport,
            self.network,
            self._cached_ports,
            session=kwargs["env"].get("JPY_SESSION_NAME", ""),
        )
        extra = kwargs.pop("extra_arguments", [])
        # Not km.format_kernel_cmd(): it swaps "python3" for the server's own interpreter,
        # a path that means nothing inside the image.
        argv = list(self.kernel_spec.argv) + list(extra)
        kwargs["cmd"] = [part.replace("{connection_file}", CONNECTION_FILE) for part in argv]
        if km.curve_publickey is not None:
            kwargs["cmd"] = kernel_command(argv, CONNECTION_FILE, f"{HOME}/.kernel.json")
        self.log.debug("nbcontainers: kernel %s will run in %s", self.kernel_id, img.ref)
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self.private_dir is not None  # pre_launch made it
        # Labelled, and counted, by the passwd name: $USER can't move kernels out of the count.
        host = replace(Host.current(), owner=owner_name())
        kernel = KernelStart(
            kernel_id=str(self.kernel_id),
            command=tuple(cmd),
            cwd=kwargs.get("cwd") or os.getcwd(),
            env=dict(kwargs.get("env") or {}),
            private_dir=PrivateDir(self.private_dir),
            spec_env=frozenset((getattr(self.kernel_spec, "env", None) or {}).keys()),
            ports=tuple(self._cached_ports),
            started_at=time.time(),
        )
        count_lock = KernelCountLock()
        try:
            # The admin's rules win over user and kernelspec settings (kernels/policy.py),
            # as pre_launch checked them.
            if self._checked is None:
                await _blocking(self._check_policy)
            assert self._checked is not None
            policy, (config, gpus) = self._policy, self._checked
            running = 0
            if policy.max_kernels_per_user:
                await _blocking(count_lock.acquire)  # held until the container runs
                running = await _blocking(
                    count_kernels, self.runtime, host.owner, self.container_id
                )
            plan = plan_launch(
                config,
                kernel,
                self.catalog_image,
                self._engine_facts(),
                host,
                gpus,
                refused_env=policy.denied_env,
            )
            for note in plan.notes:
                self.log.warning("%s", note)
            self._write_private_files(plan, host)
            netns = None
            if plan.network == SHARED:
                netns = await _blocking(
                    shared_netns,
                    self.runtime,
                    host.owner,
                    plan.image.ref,
                    plan.user,
                    self._engine_facts().limits,
                )
            self._stopping = False
            self.last_crash = None
            spec = plan.container_spec(netns)
            if self.pool_size > 0 and self._transport() == "ipc":  # never for cluster kernels
                self._pooled = await _blocking(self._from_pool, plan, spec, host)
            if self._pooled is not None:
                # A pooled kernel was counted while idle: taking it adds no container.
                self.container_id = self._pooled.container_id
            else:
                check_kernel_count(policy, host.owner, running)
                if not self._image_checked:
                    await self._ensure_image()
                self.container_id = await _blocking(self.runtime.run, spec)
            if self._engine_facts().remote:
                await self._point_at_node()
        except Exception as exc:
            if isinstance(exc, Unsupported):  # the facts we planned with may be stale
                self._facts = None
            # Nothing runs: leave no private folder or reserved ports behind either.
            await self.cleanup()
            raise
        finally:
            count_lock.release()
        remove_when_finished_at_exit(self)
        self.log.info(
            "nbcontainers: kernel %s started in container %s (%s)",
            self.kernel_id,
            self.container_id[:12],
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
        if self.container_id is None:
            return 0
        state = await _blocking(self.runtime.state, self.container_id)
        if state is None:
            return 1  # removed behind our back
        if state.running:
            return None
        if state.status == "dead":
            self._node = ""  # its node is lost: a restart may go anywhere
        await _blocking(self.note_exit, state)
        return state.exit_code if state.exit_code is not None else 1

    def note_exit(self, state: ContainerState) -> None:
        """Keep and log why the container exited, once, unless it was asked to stop."""
        if state.running or self._stopping or self.last_crash is not None:
            return
        tail = self.runtime.logs(state.id, tail=20)
        self.last_crash = crash_report(state, self.catalog_image.name, self.mem_limit, tail)
        self.log.error("%s", self.last_crash)

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
        try:
            await _blocking(self.runtime.signal, self.container_id, signum)
        except Exception as exc:  # an exited container can't take signals: not an error here
            self.log.debug("signal %s to %s failed: %s", signum, self.container_id[:12], exc)

    async def kill(self, restart: bool = False) -> None:
        if self.container_id is None:
            return
        self._stopping = True
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        if self.container_id is None:
            return
        self._stopping = True
        await self.send_signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping = True

    async def cleanup(self, restart: bool = False) -> None:
        if self.container_id is not None:
            if not self._stopping and self.last_crash is None:
                state = await _blocking(self.runtime.state, self.container_id)
                if state is not None:
                    await _blocking(self.note_exit, state)
            await _blocking(self.runtime.remove, self.container_id)
            self.container_id = None
        if self._pooled is not None:
            release_pooled(self._pooled, self.private_dir)
            self._pooled = None
        # A restart keeps the ports and the folder: clients stay connected to the same ones.
        if not restart:
            self._node = ""
            release_ports(self._cached_ports)
            self._cached_ports = []
            if self.private_dir is not None:
                shutil.rmtree(self.private_dir, ignore_errors=True)
                self.private_dir = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, self.stop_timeout)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, self.startup_timeout)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update(
            {
                "container_id": self.container_id,
                "private_dir": str(self.private_dir) if self.private_dir else None,
                "image": self.image,
                "transport": self.transport,
                "node": self._node,
                "pool_dir": str(self._pooled.private.path) if self._pooled else None,
            }
        )
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        private = provisioner_info.get("private_dir")
        self.private_dir = Path(private) if private else None
        self.image = provisioner_info.get("image") or self.image
        self.transport = provisioner_info.get("transport") or self.transport
        self._node = provisioner_info.get("node") or ""
        pool_dir = provisioner_info.get("pool_dir")
        if pool_dir and self.container_id:  # a pooled kernel: its folder goes at cleanup
            self._pooled = Pooled(self.container_id, PrivateDir(Path(pool_dir)), "")
        if self.container_id is not None:
            state = await _blocking(self.runtime.state, self.container_id)
            if state is None or not state.running:
                raise ContainerCrashed(
                    f"Cannot re-adopt kernel {self.kernel_id}: its container "
                    f"{self.container_id[:12]} is {'gone' if state is None else state.status}."
                )

    # -- kernels on another host (a cluster runtime: EngineFacts.remote) -------------------

    def _transport(self) -> str:
        # Unix sockets don't cross hosts: a cluster kernel listens on TCP (Curve-encrypted).
        return "tcp" if self._engine_facts().remote else self.transport

    def _remote_config(self) -> LaunchConfig:
        config = self.launch_config()
        if not self._engine_facts().remote:
            return config
        # A restart goes back to the node it ran on: connected clients keep its address.
        pin = (f"node.hostname=={self._node}",) if self._node else ()
        return replace(config, transport="tcp", placement=config.placement + pin)

    async def _point_at_node(self) -> None:
        """Connect to where the cluster put the kernel: its node's address and ports."""
        assert self.container_id is not None
        state = await _blocking(self.runtime.state, self.container_id)
        if state is None or not state.address:
            raise RuntimeFailure(
                f"The {self._engine_facts().name} engine started kernel {self.kernel_id} but "
                "says nowhere where it runs; `docker service ps` on a manager shows its task."
            )
        self._node = state.node
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
            node = self._node or "?"
            await self.kill()
            await self.cleanup()
            raise RuntimeFailure(
                f"This server can't reach the kernel on node {node} at "
                f"{info['ip']}:{info['hb_port']} (no route, or the packets are dropped). Let "
                "this host reach the nodes' TCP ports (a firewall rule for the published kernel "
                "ports), check the node's address (`docker node inspect NODE`), or constrain "
                "kernels to reachable nodes with 'placement'."
            )

    def resolve_path(self, path: str) -> str | None:
        # The workspace is mounted at the same path, so host paths are container paths.
        candidate = Path(path).expanduser()
        return str(candidate) if candidate.is_absolute() and candidate.exists() else None
