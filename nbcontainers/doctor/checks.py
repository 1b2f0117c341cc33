"""`nbcontainers doctor`: check engine, builder, images, GPUs and kernelspecs, and on a host
with several users what they could reach of each other (:mod:`.security`); say what to fix.

Every ``fix`` is a command that works on this host: no GPU image advice without a GPU, no
``make`` outside a checkout (:mod:`.advice` decides).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import ConfigError, EngineUnavailable, ImageMissing, NbcontainersError
from ..hostgpus import detect_gpus
from ..runtimes import cdi
from ..runtimes.base import LIMITS, ContainerRuntime, EngineFacts
from .advice import HostFacts, engine_fix, host_facts, image_problem

if TYPE_CHECKING:
    from .security import SecurityFacts

__all__ = ["Check", "exit_code", "pool_check", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One finding. ``status`` is "ok", "skip" (does not apply here), "warn" or "fail";
    ``fix`` says what to run; ``code`` is the exit code a failure maps to."""

    name: str
    status: str
    detail: str
    fix: str = ""
    code: int = 1


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed, else the code of the first failure (3: no engine, 1: other)."""
    failed = [c for c in checks if c.status == "fail"]
    return failed[0].code if failed else 0


def pool_check(runtime: ContainerRuntime) -> Check:
    """How many warm-pool kernel containers run, idle or handed out (a count, never a fault)."""
    from ..kernels.pooled import POOL_ROLE, idle_pooled
    from ..labels import ROLE

    pooled = [s for s in runtime.list({ROLE: POOL_ROLE}) if s.running]
    if not pooled:
        return Check("pool", "ok", "no pooled kernel containers (c.ContainerProvisioner.pool_size)")
    idle = sum(idle_pooled(s) for s in pooled)
    return Check(
        "pool",
        "ok",
        f"{idle} idle pooled kernel container(s) waiting, {len(pooled) - idle} handed out "
        "to kernels",
    )


def run_checks(
    runtime: ContainerRuntime,
    why: str = "as configured",
    *,
    engine_name: str = "docker",
    endpoint: str | None = None,
    host: HostFacts | None = None,
    security: SecurityFacts | None = None,
) -> list[Check]:
    """Every check, in the order a user fixes things; ``why`` says how the engine was chosen,
    ``engine_name`` which kind it is ("docker" or "podman") and ``endpoint`` where it was
    looked for (None: the engine's default). The multi-user checks (:mod:`.security`, on
    ``security``'s facts, else this host's) come last, engine or not."""
    checks = _engine_checks(runtime, why, engine_name, endpoint, host or host_facts())
    from .security import security_checks

    return checks + security_checks(security)


def _engine_checks(
    runtime: ContainerRuntime, why: str, engine_name: str, endpoint: str | None, host: HostFacts
) -> list[Check]:
    checks: list[Check] = []
    try:
        engine = runtime.ping()
    except NbcontainersError as exc:
        # The runtime's own message ends in generic advice; the fix line is this host's.
        detail = str(exc).split(". ")[0].rstrip(".")
        return [
            Check(
                "engine",
                "fail",
                detail,
                engine_fix(runtime, engine_name, host, endpoint),
                EngineUnavailable.exit_code,
            )
        ]
    checks.append(
        Check(
            "engine",
            "ok",
            f"{engine.name.capitalize()} {engine.version} at {engine.endpoint}, "
            f"{'rootless' if engine.rootless else 'runs as root'} (picked: {why}; "
            f"OCI runtimes: {', '.join(engine.runtimes) or 'default'})",
        )
    )
    if os.getuid() != 0 and not engine.rootless:
        # Whoever can start containers on a root engine can mount / and become root.
        checks.append(
            Check(
                "engine access",
                "warn",
                f"you are not root, yet you reach an engine that runs as root at "
                f"{engine.endpoint}: that is root on this host for anyone with the same access "
                "(the docker group)",
                "use your own rootless engine: `sudo apt-get install podman uidmap`, then unset "
                "DOCKER_HOST and leave the docker group",
            )
        )
    missing = set(LIMITS) - engine.limits
    if missing:
        checks.append(
            Check(
                "limits",
                "warn",
                f"this engine can't enforce {', '.join(sorted(missing))} limits; a kernel that "
                "asks for one fails at start",
                "cgroup v2 with controllers delegated to users (systemd Delegate=yes)",
            )
        )
    try:
        checks.append(Check("builder", "ok", runtime.builder()))
    except NbcontainersError as exc:
        checks.append(Check("builder", "warn", str(exc)))

    gpus = detect_gpus()
    if not gpus:
        # Without NVML and nvidia-smi the CDI spec (or /dev/nvidia*) still says what is here.
        gpus = cdi.host_gpus() or gpus
    if gpus:
        names = ", ".join(f"{g.index}: {g.name}" for g in gpus.gpus)
        checks.append(
            Check(
                "gpus",
                "ok",
                f"{names}; driver {gpus.driver_version}, CUDA "
                f"{gpus.cuda_version} (via {gpus.source})",
            )
        )
        checks += _gpu_device_checks(engine)
    else:
        checks.append(Check("gpus", "ok", f"none ({gpus.detail}); CPU images only"))

    try:
        catalog = load_catalog()
    except NbcontainersError as exc:
        return [*checks, Check("catalog", "fail", str(exc), code=exc.exit_code)]
    checks += _image_checks(runtime, catalog.values(), has_gpu=bool(gpus))
    checks.append(pool_check(runtime))
    from ..kernels.orphans import find_orphans

    orphans = find_orphans(runtime)
    if orphans:
        checks.append(
            Check(
                "orphans",
                "warn",
                f"{len(orphans)} kernel container(s) without a live server",
                "nbcontainers gc",
            )
        )
    else:
        checks.append(Check("orphans", "ok", "no orphaned kernel containers"))
    return checks


def _gpu_device_checks(engine: EngineFacts) -> list[Check]:
    """How kernels get the GPUs on this engine, and whether this user's engine can open them."""
    spec = cdi.find_spec()
    made = spec is None
    spec = spec or cdi.host_spec()
    generate = "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    if spec is None:
        return [Check("gpu devices", "warn", "no CDI spec and no /dev/nvidia0", generate)]
    checks = []
    if "nvidia" in engine.runtimes:
        how = "the engine's NVIDIA runtime (device requests)"
    else:
        how = "nbcontainers, from the CDI spec (each kernel gets its GPUs' nodes only)"
    if made:
        checks.append(
            Check(
                "gpu devices",
                "warn",
                f"no CDI spec: GPUs {', '.join(spec.names())} from /dev/nvidia*, the driver's "
                f"libraries and nvidia-smi; given by {how}. A full spec also carries the "
                "driver's other libraries and firmware",
                generate,
            )
        )
    else:
        checks.append(
            Check("gpu devices", "ok", f"{spec.path}: GPUs {', '.join(spec.names())}; by {how}")
        )
    if engine.rootless:
        user = _user_name()
        blocked = cdi.unopenable(user, spec) if user else {}
        for node, group in blocked.items():
            checks.append(
                Check(
                    "gpu access",
                    "warn",
                    f"your rootless engine runs as you ({user}) and can't open {node} "
                    f"(group {group}): GPU kernels will be refused",
                    f"sudo usermod -aG {group} {user}  # then log in again",
                )
            )
    return checks


def _user_name() -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None  # no passwd entry: nothing a usermod line could name


def _image_checks(
    runtime: ContainerRuntime, images: Iterable[CatalogImage], has_gpu: bool
) -> list[Check]:
    from ..catalog.kernelspecs import installed_kernelspecs

    installed = installed_kernelspecs()
    checks = []
    for image in images:
        kernel = image.kernel_name
        if image.gpu and not has_gpu:
            # Nothing to fix on a host without a GPU: say which image to use instead.
            instead = f"; use {image.cpu_variant}" if image.cpu_variant else ""
            checks.append(
                Check(f"image {image.name}", "skip", f"needs an NVIDIA GPU, none here{instead}")
            )
            continue
        problem = image_problem(image)
        info = None if problem else runtime.image_info(image.ref)
        if problem:
            checks.append(Check(f"image {image.name}", "fail", problem, code=ConfigError.exit_code))
        elif info is None:
            how = "build" if image.buildable else "pull"
            checks.append(
                Check(
                    f"image {image.name}",
                    "fail",
                    f"{image.ref} is not present",
                    f"nbcontainers images {how} {image.name}",
                    ImageMissing.exit_code,
                )
            )
        else:
            checks.append(
                Check(f"image {image.name}", "ok", f"{image.ref} ({info.size / 1e6:.0f} MB)")
            )
        if kernel not in installed:
            checks.append(
                Check(
                    f"kernelspec {kernel}",
                    "warn",
                    "not installed",
                    f"nbcontainers kernelspec install {image.name}",
                )
            )
        else:
            checks.append(Check(f"kernelspec {kernel}", "ok", installed[kernel]))
    return checks
