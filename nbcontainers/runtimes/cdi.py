"""GPUs from Container Device Interface specs, applied by nbcontainers itself.

A CDI spec (``nvidia-ctk cdi generate`` writes ``/etc/cdi/nvidia.yaml``) lists, per device
and for all of them, the device nodes, mounts, environment and hooks a container needs. Podman
before 5.4 ignores CDI requests made through its Docker-compatible API, and Docker needs the
NVIDIA runtime for its device requests; but both APIs take device nodes, bind mounts and
environment directly. So for those engines the runtime reads the spec here and applies the
edits of exactly the requested GPUs (plus the common ones: control nodes, driver libraries):
a kernel sees its own ``/dev/nvidiaN`` and no other, whatever ``NVIDIA_VISIBLE_DEVICES`` says.

Hooks run in the container's namespaces before its process starts, which an API client cannot
do; the ones nvidia-ctk writes are honoured at the kernel's start instead: ``update-ldcache``
puts its folders on ``LD_LIBRARY_PATH``, ``create-symlinks`` makes its links in a folder on
that path, ``chmod`` is what the device nodes' own modes already give. Any other hook is
refused with the fix, never dropped. Where no spec exists, :func:`host_spec` makes a minimal
one from what the host has (``/dev/nvidia*``, the driver's libraries, ``nvidia-smi``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GPUUnavailable, did_you_mean
from ..hostgpus import GPU, HostGPUs, cuda_for_driver
from .base import ContainerSpec, GPURequest, Mount

__all__ = [
    "CDI_DIRS",
    "GPU_KIND",
    "Edits",
    "GPUSpec",
    "ImageConfig",
    "applicable",
    "apply_edits",
    "find_spec",
    "give_gpus",
    "host_gpus",
    "host_spec",
    "select",
    "spec_dirs",
    "unopenable",
]

CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
GPU_KIND = "nvidia.com/gpu"
# Where the driver's user-space libraries live on Debian/Ubuntu and RHEL-like hosts.
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu")
DRIVER_LIBS = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libnvidia-nvvm.so")
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
# The kernel's start makes create-symlinks' links here (the root filesystem may be read-only).
LINK_DIR = "/tmp/.nbc-cdi-links"
LIBRARY_PATH = "LD_LIBRARY_PATH"
_GPU_NODE = re.compile(r"^nvidia(\d+)$")


@dataclass(frozen=True)
class GPUSpec:
    """One vendor spec of kind ``nvidia.com/gpu``: its devices' edits and the common ones."""

    path: Path
    devices: Mapping[str, Mapping[str, Any]]
    common: Mapping[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The devices a count picks from, in index order (not "all", not the UUID aliases)."""
        return sorted((n for n in self.devices if n.isdigit()), key=int)


@dataclass(frozen=True)
class ImageConfig:
    """What the image itself sets that the edits must keep: its environment and command."""

    env: Mapping[str, str] = field(default_factory=dict)
    command: Sequence[str] = ()


@dataclass(frozen=True)
class Edits:
    """What a container gets for its GPUs: ``host:container:permissions`` device strings,
    read-only mounts, environment, and the shell lines its start runs first."""

    devices: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    start: tuple[str, ...] = ()
    host_nodes: tuple[str, ...] = ()  # the host paths of the device nodes, for access checks


def spec_dirs() -> tuple[Path, ...]:
    """Where CDI specs are read: ``$NBCONTAINERS_CDI_DIRS`` (``:``-separated), else the CDI
    standard folders."""
    configured = os.environ.get("NBCONTAINERS_CDI_DIRS")
    return tuple(Path(p) for p in (configured.split(os.pathsep) if configured else CDI_DIRS))


def find_spec(dirs: Sequence[Path] | None = None) -> GPUSpec | None:
    """The first ``nvidia.com/gpu`` spec in ``dirs`` (files in name order, as CDI reads them),
    or None. A spec that can't be read is a ConfigError naming the file."""
    for folder in dirs if dirs is not None else spec_dirs():
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        except OSError:
            continue  # a missing folder is the usual case, not a fault
        for path in files:
            raw = _load(path)
            if isinstance(raw, dict) and raw.get("kind") == GPU_KIND:
                return _parse(raw, path)
    return None


def _load(path: Path) -> Any:
    try:
        text = path.read_text()
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"The CDI spec {path} can't be read ({exc}); fix or remove it.") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml for its type
        raise ConfigError(f"The CDI spec {path} is not valid YAML ({exc}).") from None


def _parse(raw: Mapping[str, Any], path: Path) -> GPUSpec:
    devices = {}
    for device in raw.get("devices") or ():
        if not isinstance(device, dict) or not isinstance(device.get("name"), str):
            raise ConfigError(f"The CDI spec {path} has a device without a name.")
        devices[device["name"]] = device.get("containerEdits") or {}
    return GPUSpec(path=path, devices=devices, common=raw.get("containerEdits") or {})


def select(spec: GPUSpec, request: GPURequest) -> Edits:
    """The edits for exactly the GPUs ``request`` names (ids, a count, or all)."""
    if request.device_ids:
        wanted = [i.removeprefix(f"{GPU_KIND}=") for i in request.device_ids]
        for name in wanted:
            if name not in spec.devices:
                raise GPUUnavailable(
                    f"GPU {name!r} is not in this host's CDI spec {spec.path} "
                    f"(it has {', '.join(spec.names()) or 'none'})."
                    + did_you_mean(name, list(spec.devices))
                )
    else:
        names = spec.names()
        # None (no count given) and -1 both mean every GPU, as with Docker's device requests.
        count = len(names) if request.count is None or request.count < 0 else request.count
        if count > len(names):
            raise GPUUnavailable(
                f"{count} GPUs were asked for, but this host's CDI spec {spec.path} lists "
                f"{len(names)}."
            )
        wanted = names[:count]
    parts = [spec.common, *(spec.devices[name] for name in wanted)]
    return _merge(parts, spec.path)


def _merge(parts: Sequence[Mapping[str, Any]], path: Path) -> Edits:
    devices: dict[str, str] = {}
    host_nodes: list[str] = []
    mounts: dict[str, Mount] = {}
    env: dict[str, str] = {}
    lib_dirs: list[str] = []
    links: list[tuple[str, str]] = []
    for edits in parts:
        for node in edits.get("deviceNodes") or ():
            container = node["path"]
            host = node.get("hostPath") or container
            permissions = node.get("permissions") or "rwm"
            devices[container] = f"{host}:{container}:{permissions}"
            host_nodes.append(host)
        for mount in edits.get("mounts") or ():
            target = mount["containerPath"]
            mounts[target] = Mount(source=mount["hostPath"], target=target, read_only=True)
        for item in edits.get("env") or ():
            key, _, value = str(item).partition("=")
            env[key] = value
        for hook in edits.get("hooks") or ():
            _honour(hook, path, lib_dirs, links)
    start = []
    if links:
        lib_dirs.insert(0, LINK_DIR)
        start.append(f"mkdir -p {LINK_DIR}")
        start += [
            f"ln -sf {shlex.quote(target)} {LINK_DIR}/{shlex.quote(Path(link).name)}"
            for target, link in links
        ]
    if lib_dirs:
        env[LIBRARY_PATH] = ":".join(dict.fromkeys(lib_dirs))
    return Edits(
        devices=tuple(devices.values()),
        mounts=tuple(mounts.values()),
        env=env,
        start=tuple(start),
        host_nodes=tuple(dict.fromkeys(host_nodes)),
    )


def _honour(hook: Mapping[str, Any], path: Path, lib_dirs: list[str], links: list[Any]) -> None:
    """Turn one of nvidia-ctk's hooks into what the kernel's start does instead."""
    args = [str(a) for a in hook.get("args") or ()]
    verb = next((a for a in args if a in ("update-ldcache", "create-symlinks", "chmod")), "")
    if verb == "update-ldcache":
        lib_dirs += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--folder"]
    elif verb == "create-symlinks":
        for i, arg in enumerate(args[:-1]):
            if arg == "--link":
                target, _, link = args[i + 1].partition("::")
                links.append((target, link))
    elif verb != "chmod":  # chmod: the nodes come with the host's modes already
        raise ConfigError(
            f"The CDI spec {path} asks for the hook `{' '.join(args) or hook.get('path')}`, "
            "which nbcontainers cannot run for this engine (it applies the spec itself). Use an "
            "engine with native CDI (Podman 5.4+, Docker with CDI enabled), or regenerate the "
            "spec with `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`."
        )


def applicable() -> bool:
    """Whether there is anything to apply: a spec, or GPU nodes to make one from. Without
    either, an engine's own device requests fail with its answer, which names the NVIDIA
    Container Toolkit."""
    return find_spec() is not None or host_spec() is not None


def give_gpus(
    spec: ContainerSpec, rootless: bool, image: ImageConfig | None = None
) -> ContainerSpec:
    """``spec`` with exactly its GPUs' device nodes, mounts and environment from the host's
    CDI spec (or one made from ``/dev/nvidia*``); ``image``: what the image itself sets."""
    assert spec.gpus is not None
    found = find_spec() or host_spec()
    if found is None:
        raise GPUUnavailable(
            "This host has no CDI spec and no /dev/nvidia0, so no GPU can be given to the "
            "kernel. Install the NVIDIA driver, then `sudo nvidia-ctk cdi generate "
            "--output=/etc/cdi/nvidia.yaml`."
        )
    return apply_edits(spec, select(found, spec.gpus), rootless, image)


def apply_edits(
    spec: ContainerSpec, edits: Edits, rootless: bool, image: ImageConfig | None = None
) -> ContainerSpec:
    """``spec`` with the GPU edits applied and its GPU request spent. A rootless engine opens
    the device nodes as the user, so a node the user can't open is refused here, by name,
    with the fix (the admin adds the user to the node's group).

    The container's environment replaces the image's variable by variable, so the spec's
    library folders come before the ``LD_LIBRARY_PATH`` the spec or else the image sets (CUDA
    images name their own libraries there), never instead of it. A container started with
    the image's command gets that command wrapped in the start lines too."""
    image = image or ImageConfig()
    if rootless:
        for node in edits.host_nodes:
            if not os.access(node, os.R_OK | os.W_OK):
                raise GPUUnavailable(_no_access(node))
    command = tuple(spec.command)
    if edits.start and (command or image.command):
        script = " && ".join(edits.start) + ' && exec "$@"'
        command = ("/bin/sh", "-c", script, "nbc-cdi", *(command or image.command))
    env = {**spec.env, **edits.env}
    before = spec.env.get(LIBRARY_PATH) or image.env.get(LIBRARY_PATH)
    if LIBRARY_PATH in edits.env and before:
        env[LIBRARY_PATH] = f"{edits.env[LIBRARY_PATH]}:{before}"
    return replace(
        spec,
        gpus=None,
        devices=(*spec.devices, *edits.devices),
        mounts=(*spec.mounts, *edits.mounts),
        env=env,
        command=command,
    )


def _no_access(node: str) -> str:
    import grp
    import pwd

    try:
        info = os.stat(node)
    except OSError as exc:
        return f"The GPU device {node} can't be opened ({exc.strerror}): is the driver loaded?"
    group = str(info.st_gid)
    with contextlib.suppress(KeyError):
        group = grp.getgrgid(info.st_gid).gr_name
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    return (
        f"Your engine runs as you ({user}), and you can't open the GPU device {node} (group "
        f"{group}, mode {info.st_mode & 0o777:o}). Ask your admin: `sudo usermod -aG {group} "
        f"{user}` (then log in again)."
    )


def host_gpus() -> HostGPUs | None:
    """The host's GPUs as its CDI spec (or its ``/dev/nvidia*``) describes them, for a host
    without NVML or ``nvidia-smi``: the driver version from the spec's ``libcuda.so.VERSION``
    (else ``/proc/driver/nvidia/version``), the CUDA it supports from that. None without GPUs."""
    spec = find_spec() or host_spec()
    if spec is None or not spec.names():
        return None
    driver = None
    for edits in (spec.common, *spec.devices.values()):
        for mount in edits.get("mounts") or ():
            found = re.search(r"libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$", str(mount.get("hostPath")))
            driver = driver or (found.group(1) if found else None)
    if driver is None:
        with contextlib.suppress(OSError):
            text = Path("/proc/driver/nvidia/version").read_text()
            found = re.search(r"Kernel Module\s+(\d+\.\d+(?:\.\d+)?)", text)
            driver = found.group(1) if found else None
    gpus = tuple(GPU(int(n), "NVIDIA GPU", "", 0) for n in spec.names())
    return HostGPUs(
        gpus=gpus,
        driver_version=driver,
        cuda_version=cuda_for_driver(driver) if driver else None,
        source=f"CDI spec {spec.path}",
    )


def unopenable(user: str, spec: GPUSpec) -> dict[str, str]:
    """The spec's device nodes that ``user`` (a rootless engine runs as its user) cannot open
    for reading and writing, each with the group that could: what ``hub setup`` reports."""
    import grp
    import pwd

    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    blocked: dict[str, str] = {}
    edits = [spec.common, *spec.devices.values()]
    for node in {n.get("hostPath") or n["path"] for e in edits for n in e.get("deviceNodes") or ()}:
        try:
            info = os.stat(node)
        except OSError:
            continue  # a node the driver did not make: nobody opens it, nothing to grant
        mode = info.st_mode
        if (mode & 0o006) == 0o006 or (info.st_uid == entry.pw_uid and (mode & 0o600) == 0o600):
            continue
        if info.st_gid in groups and (mode & 0o060) == 0o060:
            continue
        try:
            blocked[node] = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            blocked[node] = str(info.st_gid)
    return dict(sorted(blocked.items()))


def host_spec(dev: Path = Path("/dev"), lib_dirs: Sequence[str] = LIB_DIRS) -> GPUSpec | None:
    """A minimal spec from what this host has, or None without ``/dev/nvidia0``: each GPU's
    node, the control nodes, the driver's libraries and ``nvidia-smi``, the linker's folders."""
    gpus = sorted(
        (int(m.group(1)), p)
        for p in (dev.glob("nvidia*") if dev.is_dir() else ())
        if (m := _GPU_NODE.match(p.name))
    )
    if not gpus:
        return None
    devices = {str(i): {"deviceNodes": [{"path": f"/dev/{p.name}", "hostPath": str(p)}]}
               for i, p in gpus}  # fmt: skip
    nodes = [
        {"path": f"/dev/{n}", "hostPath": str(dev / n)} for n in CONTROL_NODES if (dev / n).exists()
    ]
    mounts, folders = [], []
    for folder in lib_dirs:
        for lib in DRIVER_LIBS:
            for found in sorted(Path(folder).glob(f"{lib}.*")):
                if found.is_file() and not found.is_symlink():
                    mounts.append({"hostPath": str(found), "containerPath": str(found)})
                    folders.append(folder)
    smi = next((Path(d) / "nvidia-smi" for d in ("/usr/bin", "/usr/local/bin")
                if (Path(d) / "nvidia-smi").is_file()), None)  # fmt: skip
    if smi is not None:
        mounts.append({"hostPath": str(smi), "containerPath": "/usr/bin/nvidia-smi"})
    hooks = [
        {"hookName": "createContainer", "path": "nvidia-ctk",
         "args": ["nvidia-ctk", "hook", "update-ldcache", *[a for f in dict.fromkeys(folders)
                  for a in ("--folder", f)]]}
    ] if folders else []  # fmt: skip
    common = {"deviceNodes": nodes, "mounts": mounts, "hooks": hooks}
    devices["all"] = {"deviceNodes": [n for i, _ in gpus for n in devices[str(i)]["deviceNodes"]]}
    return GPUSpec(path=dev / "(generated from the host)", devices=devices, common=common)
