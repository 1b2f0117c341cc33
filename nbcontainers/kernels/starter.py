"""One kernel's container from start to removal: the service behind both ways in.

Jupyter's provisioner (:mod:`~nbcontainers.kernels.provisioner`, for Jupyter Server,
nbclient, papermill, ``jupyter console``) and the kernelspec launcher (:mod:`nbcontainers.launch`,
for frontends that run a kernelspec's ``argv`` themselves) each hold one :class:`KernelStarter`
per kernel, so a kernel is the same whichever started it. The starter takes the settings
(:class:`StartSettings`), runs the checks that must pass before anything is built or pulled
(:meth:`KernelStarter.precheck`: image name, engine, GPUs, the admin's policy, the image),
starts the container from the warm pool or cold (:meth:`KernelStarter.start`), watches and
signals it, and removes it with its private folder (:meth:`KernelStarter.cleanup`).
It knows nothing of Jupyter's classes: callers hand it the connection info and the command.
Its calls block (engine round trips); the provisioner runs them off its event loop.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import ConfigError, RuntimeFailure, Unsupported
from ..runtimes import (
    ContainerRuntime,
    ContainerState,
    EngineFacts,
    GPURequest,
    engine_facts,
    shared_runtime,
)
from ..runtimes.base import ContainerSpec, Placement
from .connection import (
    PrivateDir,
    connection_for_container,
    hand_to_user,
    release_ports,
    reserve_ports,
    write_private,
)
from .crash import crash_report
from .declared import NOTEBOOK_IMAGE
from .declared_start import declared_settings
from .gpu_request import gpu_request
from .guards import RUNTIME_ENV, refuse_env
from .identity import Host
from .images import ensure_image
from .netns import shared_netns
from .plan import SHARED, KernelStart, LaunchConfig, LaunchPlan, plan_launch
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

__all__ = [
    "LAUNCHER_MODULE",
    "NOTEBOOK_IMAGE",
    "KernelStarter",
    "StartSettings",
    "container_argv",
]

# The module every nbc-* kernelspec's argv runs; what follows its "--" runs in the image.
LAUNCHER_MODULE = "nbcontainers.launch"


def container_argv(argv: list[str]) -> list[str]:
    """The command that runs in the image, from a kernelspec's ``argv``: for the launcher's
    argv (``python -m nbcontainers.launch … -- python3 -m ipykernel_launcher …``) the part
    after ``--``; any other argv as it is."""
    if LAUNCHER_MODULE in argv and "--" in argv:
        return argv[argv.index("--") + 1 :]
    return list(argv)


@dataclass(frozen=True)
class StartSettings:
    """What a kernel is started with: the provisioner's traits, or the launcher's kernelspec
    config, frozen for one start."""

    image: str  # a catalog image name, or NOTEBOOK_IMAGE
    launch: LaunchConfig
    gpus: Any = None  # 'all', a count, device ids, or None for the image's default
    missing_image: str = "error"
    runtime_name: str = "auto"
    startup_timeout: float = 60.0
    pool_size: int = 0
    pool_max_memory: str = "2g"


class KernelStarter:
    """One kernel's container: planned, pre-checked, started, watched and removed.

    Restarts reuse the starter: its private folder, ports and cluster node stay, so connected
    clients find the new container where the old one was.
    """

    def __init__(self, settings: StartSettings, log: Any = None) -> None:
        self.settings = settings
        self.log: Any = log or logging.getLogger("nbcontainers.kernels")
        self.container_id: str | None = None
        self.private_dir: Path | None = None
        self.last_crash: str | None = None
        self.gpu_request: GPURequest | None = None  # what the running container was given
        self.pooled: Pooled | None = None  # the pooled container this kernel took
        self.node = ""  # the cluster node the kernel ran on: a restart goes back there
        self.ports: list[int] = []  # tcp: kept across restarts, clients reconnect to them
        self.stopping = False
        self.notes: list[str] = []  # one-line notes for the user (a declaration's fallback)
        self._runtime: ContainerRuntime | None = None
        self._facts: EngineFacts | None = None
        self._catalog_image: CatalogImage | None = None
        self._image_checked = True  # precheck asked the engine for the image
        # The admin's policy and the settings it allowed, decided in precheck before any
        # image is built or pulled, and used as they are by start.
        self._policy = Policy()
        self._checked: tuple[LaunchConfig, GPURequest | None] | None = None
        self._resolved: StartSettings | None = None  # settings after a notebook's declaration

    # -- what this kernel is ---------------------------------------------------------------

    @property
    def runtime(self) -> ContainerRuntime:
        """The engine, by ``runtime_name``, this process's (shared by its kernels) unless one
        is assigned."""
        if self._runtime is None:
            self._runtime = shared_runtime(self.settings.runtime_name)
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: ContainerRuntime) -> None:
        self._runtime, self._facts = runtime, None

    @property
    def effective(self) -> StartSettings:
        """The settings in force: a notebook's declaration applied, when there is one."""
        return self._resolved or self.settings

    @property
    def catalog_image(self) -> CatalogImage:
        name = self.effective.image
        if self._catalog_image is None or self._catalog_image.name != name:
            if not name:
                raise ConfigError(
                    "The 'nbcontainers' provisioner needs config 'image' naming a catalog image, "
                    'e.g. {"image": "python"}.'
                )
            if name == NOTEBOOK_IMAGE:
                raise ConfigError(
                    "Kernel 'nbc-notebook' starts what its notebook declares, but no notebook "
                    "was named: open it from a notebook (the frontend passes its path)."
                )
            self._catalog_image = load_catalog()[name]
        return self._catalog_image

    def engine_facts(self) -> EngineFacts:
        # The process's one cache of engine facts (runtimes.engine_facts, per runtime object):
        # a start then pays no engine round trip for them; kept per starter for restarts.
        if self._facts is None:
            self._facts = engine_facts(self.runtime)
        return self._facts

    def transport(self) -> str:
        # Unix sockets don't cross hosts: a cluster kernel listens on TCP (Curve-encrypted).
        return "tcp" if self.engine_facts().remote else self.effective.launch.transport

    def launch_config(self) -> LaunchConfig:
        """The config a plan is made from; a cluster restart is pinned to the kernel's node."""
        config = self.effective.launch
        if not self.engine_facts().remote:
            return config
        # A restart goes back to the node it ran on: connected clients keep its address.
        pin = (Placement(self.node),) if self.node else ()
        return replace(config, transport="tcp", placement=config.placement + pin)

    # -- before anything runs --------------------------------------------------------------

    def precheck(
        self,
        env: Mapping[str, str],
        cwd: str | None,
        spec_env: Mapping[str, str],
        kernel_manager: Any = None,
    ) -> None:
        """Everything that can refuse this start, before any image is built or pulled: the
        image's name (did-you-mean), the engine, GPUs, the admin's policy, then the image.
        ``kernel_manager`` (the provisioner's) names the papermill client starting it."""
        self._resolved = None
        if self.settings.image == NOTEBOOK_IMAGE:  # nbc-notebook: what its notebook declares
            self._resolved, note = declared_settings(
                self.settings, env, cwd, self.runtime, self.log, kernel_manager
            )
            if note:
                self.notes.append(note)
                self.log.warning("%s", note)
        img = self.catalog_image  # unknown names fail here, with a did-you-mean
        remote = self.engine_facts().remote
        # GPU first: "this host has no GPU, use X" helps more than "image missing".
        self.gpu_request = gpu_request(img, self.effective.gpus, None, remote)
        self.check_policy(spec_env)
        # A ready pooled member of this image means the engine has it: the warm path saves
        # that round trip; start() checks after all when no member is handed out.
        self._image_checked = not (self.settings.pool_size > 0 and kernel_pool().has_ready(img.ref))
        if not self._image_checked:
            self.log.debug("nbcontainers: %s is in use by the warm pool", img.ref)
        else:
            self.ensure_image()

    def check_policy(self, spec_env: Mapping[str, str]) -> None:
        """The admin's policy on this start's resolved settings (and the checks that hold
        without one): before any image is built or pulled, so a refused kernel costs
        nothing."""
        self._policy = load_policy()
        self._checked = apply_policy(
            self._policy, self.launch_config(), self.catalog_image, self.gpu_request
        )
        refuse_env(spec_env, (*RUNTIME_ENV, *self._policy.denied_env), "the kernelspec's env")
        if self.settings.pool_size > 0:
            pool_limits(self._policy, self.settings.pool_size, self.settings.pool_max_memory)

    def ensure_image(self) -> None:
        self._image_checked = True
        s = self.effective
        ensure_image(self.runtime, self.catalog_image, s.missing_image, self.log, s.startup_timeout)

    def open_private(self) -> PrivateDir:
        """This kernel's private folder (a restart keeps it) and, for tcp, its ports."""
        private = PrivateDir.open(self.private_dir)
        self.private_dir = private.path
        if self.transport() == "tcp" and not self.ports:
            self.ports = reserve_ports()
        return private

    # -- the start -------------------------------------------------------------------------

    def start(self, kernel: KernelStart, connection: Mapping[str, Any]) -> LaunchPlan:
        """Run the kernel's container (a pooled one when the pool has it); return its plan.

        ``connection`` is the start's connection info (the pool hands it to a member). On
        failure nothing is left running, and the private folder and ports are released.
        """
        # Labelled, and counted, by the passwd name: $USER can't move kernels out of the count.
        host = replace(Host.current(), owner=owner_name())
        count_lock = KernelCountLock()
        try:
            # The admin's rules win over user and kernelspec settings (kernels/policy.py),
            # as precheck checked them.
            if self._checked is None:
                self.check_policy({k: "" for k in kernel.spec_env})
            assert self._checked is not None
            policy, (config, gpus) = self._policy, self._checked
            running = 0
            if policy.max_kernels_per_user:
                count_lock.acquire()  # held until the container runs
                running = count_kernels(self.runtime, host.owner, self.container_id)
            facts = self.engine_facts()
            plan = plan_launch(
                config, kernel, self.catalog_image, facts, host, gpus, refused_env=policy.denied_env
            )
            for note in plan.notes:
                self.log.warning("%s", note)
            self._write_private_files(plan, host)
            netns = None
            if plan.network == SHARED:
                netns = shared_netns(
                    self.runtime, host.owner, plan.image.ref, plan.user, facts.limits
                )
            self.stopping = False
            self.last_crash = None
            spec = plan.container_spec(netns)
            if (
                self.settings.pool_size > 0 and self.transport() == "ipc"
            ):  # never for cluster kernels
                self.pooled = self._from_pool(plan, spec, host, connection)
            if self.pooled is not None:
                # A pooled kernel was counted while idle: taking it adds no container.
                self.container_id = self.pooled.container_id
            else:
                check_kernel_count(policy, host.owner, running)
                if not self._image_checked:
                    self.ensure_image()
                self.container_id = self.runtime.run(spec)
        except Exception as exc:
            if isinstance(exc, Unsupported):  # the facts we planned with may be stale
                self._facts = None
            # Nothing runs: leave no private folder or reserved ports behind either.
            self.cleanup()
            raise
        finally:
            count_lock.release()
        return plan

    def _write_private_files(self, plan: LaunchPlan, host: Host) -> None:
        if plan.pip_conf is not None:
            write_private(plan.private_dir.pip_conf, plan.pip_conf)
        # Only a root server gets here (kernel_user checks); on a rootless engine the
        # container's root already is the server's user.
        if plan.user != host.user and not self.engine_facts().rootless:
            hand_to_user(plan.private_dir, plan.user)

    def _from_pool(
        self, plan: LaunchPlan, spec: ContainerSpec, host: Host, connection: Mapping[str, Any]
    ) -> Pooled | None:
        """Take a pooled container for this start (None: start cold); keep the pool full,
        each new member admitted by the policy's kernel count."""

        def prepare(private: PrivateDir) -> None:
            self._write_private_files(replace(plan, private_dir=private), host)

        policy, runtime = self._policy, self.runtime
        size, cap = pool_limits(policy, self.settings.pool_size, self.settings.pool_max_memory)
        inside = connection_for_container(connection, "ipc", plan.network or "")

        def admit() -> Any:  # the policy's count, under the user's lock, per new member
            return pool_admission(policy, runtime, host.owner)

        return start_from_pool(PoolRequest(runtime, spec, plan, size, cap, prepare, inside, admit))

    def locate(self) -> ContainerState:
        """Where a cluster put the kernel (its node's address and ports); the node is kept."""
        assert self.container_id is not None
        state = self.runtime.state(self.container_id)
        if state is None or not state.address:
            where = self.runtime.advice("locate", self.container_id)
            raise RuntimeFailure(
                f"The {self.engine_facts().name} engine started kernel container "
                f"{self.container_id[:12]} but says nowhere where it runs"
                + (f"; {where} shows what became of it." if where else ".")
            )
        self.node = state.node
        return state

    # -- a running kernel ------------------------------------------------------------------

    def poll(self) -> int | None:
        """None while the container runs, else its exit code (1 if it was removed)."""
        if self.container_id is None:
            return 0
        state = self.runtime.state(self.container_id)
        if state is None:
            return 1  # removed behind our back
        if state.running:
            return None
        if state.status == "dead":
            self.node = ""  # its node is lost: a restart may go anywhere
        self.note_exit(state)
        return state.exit_code if state.exit_code is not None else 1

    def note_exit(self, state: ContainerState) -> None:
        """Keep and log why the container exited, once, unless it was asked to stop."""
        if state.running or self.stopping or self.last_crash is not None:
            return
        tail = self.runtime.logs(state.id, tail=20)
        mem = self.effective.launch.mem_limit
        # The name as started; a re-adopted nbc-notebook kernel has no notebook to resolve.
        name = self._catalog_image.name if self._catalog_image else self.effective.image
        self.last_crash = crash_report(state, name, mem, tail)
        self.log.error("%s", self.last_crash)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the kernel; an exited container can't take one: not an error."""
        if self.container_id is None:
            return
        try:
            self.runtime.signal(self.container_id, signum)
        except Exception as exc:
            self.log.debug("signal %s to %s failed: %s", signum, self.container_id[:12], exc)

    def cleanup(self, restart: bool = False) -> None:
        """Remove the container (noting a crash first); without ``restart`` also the private
        folder and ports. Idempotent."""
        if self.container_id is not None:
            if not self.stopping and self.last_crash is None:
                state = self.runtime.state(self.container_id)
                if state is not None:
                    self.note_exit(state)
            self.runtime.remove(self.container_id)
            self.container_id = None
        if self.pooled is not None:
            release_pooled(self.pooled, self.private_dir)
            self.pooled = None
        # A restart keeps the ports and the folder: clients stay connected to the same ones.
        if not restart:
            self.node = ""
            release_ports(self.ports)
            self.ports = []
            if self.private_dir is not None:
                shutil.rmtree(self.private_dir, ignore_errors=True)
                self.private_dir = None
