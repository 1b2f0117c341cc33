"""`nbcontainers doctor`: check engine, builder, images, GPUs and kernelspecs; say what to fix."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .catalog import load_catalog
from .errors import NbcontainersError
from .gpu import detect_gpus
from .runtimes.base import LIMITS, ContainerRuntime

__all__ = ["Check", "pool_check", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One finding. ``status`` is "ok", "warn" or "fail"; ``fix`` says what to run."""

    name: str
    status: str
    detail: str
    fix: str = ""


def pool_check(runtime: ContainerRuntime) -> Check:
    """How many warm-pool kernel containers run, idle or handed out (a count, never a fault)."""
    from .kernels.pooled import POOL_ROLE, idle_pooled
    from .labels import ROLE

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


def run_checks(runtime: ContainerRuntime, why: str = "as configured") -> list[Check]:
    """Every check, in the order a user fixes things; ``why`` says how the engine was chosen."""
    from .kernels.kernelspecs import installed_kernelspecs
    from .kernels.orphans import find_orphans

    checks: list[Check] = []
    try:
        engine = runtime.ping()
    except NbcontainersError as exc:
        return [Check("engine", "fail", str(exc), "make setup")]
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
        if engine.gpu_setup:
            checks.append(
                Check(
                    "gpu runtime",
                    "warn",
                    "the engine lists no 'nvidia' runtime; GPU containers need the "
                    "NVIDIA Container Toolkit",
                    engine.gpu_setup,
                )
            )
    else:
        checks.append(Check("gpus", "ok", f"none ({gpus.detail}); CPU images only"))

    try:
        catalog = load_catalog()
    except NbcontainersError as exc:
        return [*checks, Check("catalog", "fail", str(exc))]
    installed = installed_kernelspecs()
    for image in catalog.values():
        info = runtime.image_info(image.ref)
        if info is None:
            how = "build" if image.buildable else "pull"
            status = "warn" if image.gpu and not gpus else "fail"
            checks.append(
                Check(
                    f"image {image.name}",
                    status,
                    f"{image.ref} is not present",
                    f"nbcontainers images {how} {image.name}",
                )
            )
        else:
            checks.append(
                Check(f"image {image.name}", "ok", f"{image.ref} ({info.size / 1e6:.0f} MB)")
            )
        if image.kernel_name not in installed:
            checks.append(
                Check(
                    f"kernelspec {image.kernel_name}",
                    "warn",
                    "not installed",
                    "nbcontainers kernelspec install",
                )
            )
        else:
            checks.append(
                Check(f"kernelspec {image.kernel_name}", "ok", installed[image.kernel_name])
            )
    checks.append(pool_check(runtime))
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
