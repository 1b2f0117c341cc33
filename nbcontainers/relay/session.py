"""How a `%container` kernel is specified, pre-checked, started and warmed: the one service
behind the magics, which only parse, call it and print.

- :meth:`RelaySession.specify` decides the kernel: a catalog image (or its ``nbc-*`` name),
  else an installed kernelspec, with did-you-mean for neither; the per-notebook
  :class:`Resources` (``--gpus``/``--mem``/``--cpus``), the warm pool's size and the transfer
  folder go into its provisioner config here and nowhere else.
- :meth:`RelaySession.precheck` runs what must hold before anything is built, pulled or
  started: the GPUs the image needs against the host, the admin's policy on the resources
  asked for (refusals name the flag and the limit) and on the image, then the missing image
  built or pulled with progress (:func:`ensure_image`).
- :meth:`RelaySession.start` starts the :class:`~.kernel.Relay`; :meth:`RelaySession.warm`
  fills pools through :mod:`nbcontainers.kernels.warmup`, the one warming loop there is.

What a started kernel runs on (image, engine, GPUs) is remembered as the :class:`RelayKernel`
value the session made, never read back from the provisioner.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field, replace
from threading import Thread
from typing import Any, Protocol

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

from ..catalog.entries import CatalogImage, load_catalog
from ..catalog.kernelspecs import kernel_json
from ..errors import ConfigError, ImageMissing, NbcontainersError, UnknownImage, did_you_mean
from ..kernels.gpu_request import gpu_request
from ..kernels.plan import LaunchConfig
from ..kernels.policy import Policy, load_policy
from ..kernels.policy_rules import apply_policy, check_image
from ..kernels.warmup import warm_in_background
from ..runtimes import engine_facts
from ..runtimes.base import BuildEvent, ContainerRuntime, GPURequest, missing_image_advice
from .connection import make_manager, remove_socket_folder
from .kernel import Relay

__all__ = [
    "POOL_VARIABLE",
    "WARM_VARIABLE",
    "Engines",
    "Progress",
    "RelayKernel",
    "RelaySession",
    "Resources",
    "Show",
    "ensure_image",
    "warm_listed",
]

# c.ContainerProvisioner.pool_size for `%container use` kernels (set in the server's env).
POOL_VARIABLE = "NBCONTAINERS_POOL_SIZE"
# Images whose pool a notebook fills as the extension loads, e.g. "python pytorch-cpu".
WARM_VARIABLE = "NBCONTAINERS_POOL_WARM"
PROVISIONER = "nbcontainers"


def warm_listed(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The images whose pools a notebook fills as the extension loads (``WARM_VARIABLE``)."""
    return environ.get(WARM_VARIABLE, "").split()


@dataclass(frozen=True)
class Resources:
    """What one notebook asks of its container kernel, within the admin's policy: ``gpus``
    ('all', a count or ids), ``memory`` ('8g') and ``cpus`` (cores); None keeps the
    kernelspec's (or the policy's default)."""

    gpus: str | None = None
    memory: str | None = None
    cpus: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.gpus, self.memory, self.cpus))

    def config(self) -> dict[str, Any]:
        """The provisioner config keys these set."""
        given = (("gpus", self.gpus), ("mem_limit", self.memory), ("cpus", self.cpus))
        return {key: value for key, value in given if value is not None}


@dataclass(frozen=True)
class RelayKernel:
    """One `%container` kernel as specified: ``name`` is what the notebook calls it (the
    catalog image's name, else the kernelspec's), ``spec`` the in-memory kernelspec started.
    ``image`` is None for a kernelspec of another provisioner (no container). ``gpus`` is what
    the container is given, known after :meth:`RelaySession.precheck`."""

    name: str
    spec: KernelSpec = field(compare=False)
    image: CatalogImage | None = None
    runtime_name: str = "auto"
    pool_size: int = 0
    resources: Resources = Resources()
    gpus: GPURequest | None = None

    @property
    def in_container(self) -> bool:
        provisioner = self.spec.metadata.get("kernel_provisioner", {})
        return bool(provisioner.get("provisioner_name") == PROVISIONER)


class Progress(Protocol):
    """What a build or pull reports to (the magics' cell progress is one)."""

    def build_event(self, event: BuildEvent) -> None: ...

    def pulled(self, what: str, done: int, total: int | None) -> None: ...


# show(begin, done, what=..., undone=...): a context in which a build or pull runs, saying
# ``begin`` first and ``done`` (or why it stopped) after; the magics' ``showing``.
Show = Callable[..., AbstractContextManager[Progress]]


class Engines:
    """The notebook's runtimes by name, made on first use: the check that an image is there
    costs one engine round trip (under 1 ms here) instead of a new client (about 10 ms)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], ContainerRuntime] = {}

    def get(self, name: str) -> ContainerRuntime:
        from ..runtimes import get_runtime

        # "auto" follows DOCKER_HOST, which a notebook may change between two starts.
        key = (name, os.environ.get("DOCKER_HOST", ""))
        if key not in self._made:
            self._made[key] = get_runtime(name)
        return self._made[key]


class RelaySession:
    """One notebook's `%container` kernels as a service: ``transfer_dir`` gives the folder
    push/pull move through (mounted into every container kernel at the same path)."""

    def __init__(self, transfer_dir: Callable[[], str]) -> None:
        self.engines = Engines()
        self._transfer_dir = transfer_dir
        # What this session started, by the notebook's name for it.
        self.kernels: dict[str, RelayKernel] = {}

    # -- deciding ---------------------------------------------------------------------------

    def specify(
        self,
        name: str,
        resources: Resources = Resources(),
        environ: Mapping[str, str] = os.environ,
    ) -> RelayKernel:
        """The kernel to start for ``name`` (a catalog image, else an installed kernelspec)
        with ``resources``, the pool size from ``environ`` and the transfer folder in its
        provisioner config."""
        catalog = load_catalog()
        try:
            image: CatalogImage | None = catalog[name]  # also takes "nbc-python"
        except UnknownImage:
            image = None
        if image is not None:
            kernel_name = image.name
            # Built in memory: a catalog image needs no installed kernelspec.
            spec = KernelSpec(**kernel_json(image), resource_dir="")
            spec.name = image.kernel_name
        else:
            manager = KernelSpecManager()
            try:
                spec = manager.get_kernel_spec(name)
            except NoSuchKernel:
                known = set(catalog) | set(manager.find_kernel_specs())
                raise ConfigError(
                    f"Unknown image or kernel {name!r}.{did_you_mean(name, known)} "
                    f"Catalog images: {', '.join(catalog)}."
                ) from None
            kernel_name = name
        provisioner = spec.metadata.get("kernel_provisioner", {})
        if provisioner.get("provisioner_name") != PROVISIONER:
            if resources:
                raise ConfigError(
                    f"--gpus/--memory/--cpus only apply to container images, not kernel {name!r}."
                )
            return RelayKernel(kernel_name, spec)
        config = provisioner.setdefault("config", {})
        config.update(resources.config())
        pool = environ.get(POOL_VARIABLE, "")
        if pool.isdigit() and "pool_size" not in config:
            # The server's setting reaches a notebook's kernel only through its environment.
            config["pool_size"] = int(pool)
        # push/pull and snapshot wheels go through this folder, at the same path inside.
        xfer = self._transfer_dir()
        config["extra_mounts"] = [*config.get("extra_mounts", []), f"{xfer}:{xfer}:rw"]
        wanted = config.get("image")
        if not wanted:
            image = None  # the provisioner itself says what is missing
        elif image is None or wanted != image.name:
            image = catalog[wanted]
        return RelayKernel(
            kernel_name,
            spec,
            image=image,
            runtime_name=str(config.get("runtime", "auto")),
            pool_size=int(config.get("pool_size") or 0),
            resources=resources,
        )

    # -- checking ---------------------------------------------------------------------------

    def precheck(self, kernel: RelayKernel, show: Show) -> RelayKernel:
        """``kernel`` with its GPUs decided, once all that can be known before its start holds:
        a GPU image on a host without GPUs fails now, not after a long build; resources over
        the admin's policy are refused naming the flag; a missing image is built or pulled
        (with ``show``'s progress), unless the policy refuses it."""
        if kernel.image is None:
            return kernel
        image, runtime = kernel.image, self.engines.get(kernel.runtime_name)
        config = kernel.spec.metadata["kernel_provisioner"]["config"]
        gpus = gpu_request(image, config.get("gpus"), remote=engine_facts(runtime).remote)
        policy = load_policy()
        if kernel.resources:
            check_resources(policy, image, kernel.resources, gpus)
        ensure_image(image, runtime, show, policy)
        return replace(kernel, gpus=given_gpus(policy, image, gpus))

    # -- starting ---------------------------------------------------------------------------

    def start(
        self, kernel: RelayKernel, local: Any, cwd: str, execution_count: Callable[[], int]
    ) -> Relay:
        """Start ``kernel`` for the notebook whose ipykernel is ``local``, in ``cwd``."""
        relay = Relay(kernel.name, kernel.spec, local, cwd=cwd, execution_count=execution_count)
        relay.start()
        self.kernels[kernel.name] = kernel
        return relay

    def describe(self, relay: Relay) -> tuple[RelayKernel, CatalogImage, ContainerRuntime]:
        """What ``relay``'s container runs: as specified, its image and its engine; a
        ConfigError for a kernel of a plain kernelspec (`%container use python3`)."""
        kernel = self.kernels.get(relay.name)
        if kernel is None or kernel.image is None:
            raise ConfigError(f"Kernel {relay.name!r} does not run in a container.")
        return kernel, kernel.image, self.engines.get(kernel.runtime_name)

    # -- warming ----------------------------------------------------------------------------

    def warm(
        self, names: Sequence[str], cwd: str, done: Callable[[], None] | None = None
    ) -> Thread:
        """Fill the pools of ``names`` (``NBCONTAINERS_POOL_WARM``) from a background thread,
        so that the notebook's first ``%container use`` of one is pooled too: one kernel of
        each started and stopped as a relay would. Images not on the engine are skipped
        (nothing is built behind the user's back); failures go to the log only."""

        def start_and_stop(name: str) -> Callable[[], int | None]:
            def start() -> int | None:
                kernel = self.specify(name)
                if not kernel.pool_size or kernel.image is None:
                    return None
                if self.engines.get(kernel.runtime_name).image_info(kernel.image.ref) is None:
                    return None
                km = make_manager(kernel.name, kernel.spec)
                try:
                    km.start_kernel(cwd=cwd)
                    km.shutdown_kernel(now=True)
                finally:
                    remove_socket_folder(km)
                return kernel.pool_size

            return start

        return warm_in_background([(name, start_and_stop(name)) for name in names], done)


def check_resources(
    policy: Policy, image: CatalogImage, resources: Resources, gpus: GPURequest | None
) -> None:
    """Refuse what ``resources`` ask beyond the admin's ``policy`` (or what no engine reads
    as a limit), naming the flag: the provisioner applies the same rules at the start."""
    try:
        apply_policy(policy, LaunchConfig(), image, None)
    except ConfigError:
        return  # not the flags' doing: the check of the image, or the start, says what is
    flags: list[tuple[str, str, LaunchConfig, GPURequest | None]] = []
    if resources.memory is not None:
        flags.append(("--mem", resources.memory, LaunchConfig(mem_limit=resources.memory), None))
    if resources.cpus is not None:
        flags.append(("--cpus", f"{resources.cpus:g}", LaunchConfig(cpus=resources.cpus), None))
    if resources.gpus is not None:
        flags.append(("--gpus", resources.gpus, LaunchConfig(), gpus))
    for flag, value, config, asked in flags:
        try:
            apply_policy(policy, config, image, asked)
        except ConfigError as exc:
            raise ConfigError(f"{flag} {value}: {exc}") from None


def given_gpus(policy: Policy, image: CatalogImage, gpus: GPURequest | None) -> GPURequest | None:
    """The GPUs a container of ``image`` is given for ``gpus``: narrowed to the policy's
    allowed ones as the provisioner narrows them at the start."""
    if gpus is None or policy.allowed_gpus is None:
        return gpus
    try:
        return apply_policy(policy, LaunchConfig(), image, gpus)[1]
    except ConfigError:
        return gpus  # refused: the start says why


def ensure_image(
    image: CatalogImage,
    runtime: ContainerRuntime | None,
    show: Show,
    policy: Policy | None = None,
) -> None:
    """Return once ``image`` is on ``runtime`` (default: the ``auto`` engine's), building or
    pulling it with ``show``'s progress if it is not; an ``NbcontainersError`` says what to
    do otherwise. ``policy`` is the admin's (default: loaded here)."""
    from ..catalog.build import build_image
    from ..runtimes import get_runtime

    # The admin's allowed images are checked before anything is built or pulled: a refused
    # image must not reach the engine (or its registry) at all.
    check_image(policy if policy is not None else load_policy(), image)
    runtime = runtime or get_runtime()
    if runtime.image_info(image.ref) is not None:
        return
    if not image.user_defined:
        # The engine may know where catalog images come from: on a hub (rootless Podman) the
        # admin's shared store, as a copy built in each user's own storage would cost minutes
        # and gigabytes per user. A user's own image is built for them.
        advice = missing_image_advice(runtime, image.ref, image.kernel_name)
        if advice:
            raise ImageMissing(advice)
    if image.buildable:
        with show(
            f"Image {image.name} ({image.ref}) is not built yet: building it now "
            f"with {runtime.builder()}.",
            f"Built {image.ref}",
        ) as progress:
            build_image(image, runtime, on_event=progress.build_event)
        return
    with show(
        f"Image {image.name} ({image.ref}) is not on this engine: pulling it now.",
        f"Pulled {image.ref}",
        what="pull",
        undone="the image was not added",
    ) as progress:
        try:
            runtime.pull(image.ref, progress.pulled)
        except KeyboardInterrupt:
            with suppress(NbcontainersError):  # the interrupt is what the cell says
                if runtime.image_info(image.ref) is not None:
                    runtime.remove_image(image.ref)  # done as the interrupt came
            raise
