"""The `nbcontainers` kernel provisioner: Jupyter's kernel lifecycle on a container runtime."""

from __future__ import annotations

import asyncio
import atexit
import getpass
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import weakref
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo, LocalPortCache
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, Dict, Float, Integer, List, Unicode

from ..catalog import CatalogImage, load_catalog
from ..errors import ConfigError, ContainerCrashed, GPUUnavailable, ImageMissing
from ..gpu import check_cuda, detect_gpus, parse_gpu_request
from ..labels import (
    KERNEL_ID,
    OWNER,
    PRIVATE_DIR,
    SERVER_HOST,
    SERVER_PID,
    SERVER_STARTED,
    process_start_time,
)
from ..pipsettings import read_pip_settings
from ..runtimes import (
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    GPURequest,
    Mount,
    get_runtime,
)
from .netns import shared_netns

__all__ = ["ContainerProvisioner"]

HOME = "/home/nbc"
CONNECTION_FILE = "/run/nbcontainers/kernel.json"
DEFAULT_ENV_ALLOWLIST = [
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "COLORTERM",
    "JPY_SESSION_NAME",
    "PIP_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
]
# Never mounted as the workspace: a notebook started from here gets only its private HOME.
_UNSAFE_WORKSPACES = {
    "/",
    "/etc",
    "/usr",
    "/var",
    "/var/run",
    "/run",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
}


async def _blocking(func: Any, *args: Any) -> Any:
    """Run a blocking engine call off the event loop; inline once the interpreter is exiting
    (atexit handlers that shut kernels down can no longer start threads)."""
    try:
        return await asyncio.to_thread(func, *args)
    except RuntimeError as exc:
        if "interpreter shutdown" not in str(exc):
            raise
        return func(*args)


# Provisioners of this process with a container, for the exit hook below.
_LIVE: weakref.WeakSet[ContainerProvisioner] = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def _remove_finished_at_exit() -> None:
    """When a client exits without a shutdown handshake (``jupyter console``'s ``exit`` only
    asks the kernel to quit), remove its container once the kernel has exited. Kernels still
    running are left for re-adoption by a restarted server, or for ``nbcontainers gc``."""
    deadline = time.monotonic() + 2.0  # for all of them together: exit must stay quick
    for prov in list(_LIVE):
        cid = prov.container_id
        if cid is None:
            continue
        try:
            prov.runtime.wait(cid, timeout=max(0.1, deadline - time.monotonic()))
            state = prov.runtime.state(cid)
            if state is not None and not state.running:
                if state.exit_code:  # a clean exit after a client's shutdown is no crash
                    prov._note_exit(state)
                prov.runtime.remove(cid)
                if prov.private_dir is not None:
                    shutil.rmtree(prov.private_dir, ignore_errors=True)
        except Exception as exc:  # the engine may be gone too; never fail interpreter exit
            prov.log.debug("exit cleanup of %s failed: %s", cid[:12], exc)


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
        "2g",
        config=True,
        help="Size of /dev/shm; Docker's 64 MB default breaks PyTorch DataLoaders.",
    )
    pids_limit = Integer(4096, config=True, help="Maximum number of processes in the container.")
    extra_mounts: List[Any] = List(
        config=True,
        help="More bind mounts: 'host:container[:ro|rw]' strings (read-only by default).",
    )
    env_allowlist = List(
        Unicode(),
        DEFAULT_ENV_ALLOWLIST,
        config=True,
        help="Server environment variables (glob patterns) the kernel may see.",
    )
    env = Dict(config=True, help="Extra environment variables set in the kernel container.")
    network = Unicode(
        "shared",
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
        ["error", "build", "pull"],
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
    runtime_name = Unicode("docker", config=True, help="Container runtime to use.")
    stop_timeout = Float(5.0, config=True, help="Grace period before a stopped kernel is killed.")

    def __init__(self, **kwargs: Any) -> None:
        base_keys = {"kernel_id", "kernel_spec", "parent", "config", "log", "connection_info"}
        own = {name for name in self.class_trait_names(config=True)}
        # The kernelspec's config may say "runtime" (our name) for runtime_name.
        if "runtime" in kwargs:
            kwargs["runtime_name"] = kwargs.pop("runtime")
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
        self._runtime: ContainerRuntime | None = None
        self._catalog_image: CatalogImage | None = None
        self._stopping = False
        self._cached_ports: list[int] = []
        self._gpu: GPURequest | None = None

    # -- helpers ----------------------------------------------------------------------------

    @property
    def runtime(self) -> ContainerRuntime:
        if self._runtime is None:
            self._runtime = get_runtime(self.runtime_name)
        return self._runtime

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

    def _gpu_request(self) -> GPURequest | None:
        img = self.catalog_image
        try:
            count, ids = parse_gpu_request(self.gpus)
        except ValueError as exc:
            raise ConfigError(f"Bad 'gpus' setting: {exc}.") from None
        if count == 0 and not ids:
            if img.gpu:
                raise GPUUnavailable(
                    f"Image {img.name!r} needs a GPU but gpus={self.gpus!r}."
                    + (f" Use {img.cpu_variant!r} for CPU work." if img.cpu_variant else "")
                )
            return None
        if count is None and not ids and not img.gpu:
            return None  # default for a CPU image: no GPU
        host = detect_gpus()
        if img.gpu:
            check_cuda(img.name, img.cuda, host, img.cpu_variant)
        elif not host.gpus:
            raise GPUUnavailable(
                f"gpus={self.gpus!r} was asked for, but this host has no NVIDIA GPU "
                f"({host.detail or 'none detected'}). Remove the 'gpus' setting."
            )
        return GPURequest(count=-1 if count is None else count, device_ids=ids)

    def _ensure_image(self) -> None:
        img = self.catalog_image
        if self.runtime.image_info(img.ref) is not None:
            return
        if self.missing_image == "error":
            how = (
                f"nbcontainers images build {img.name}"
                if img.buildable
                else f"nbcontainers images pull {img.name}"
            )
            raise ImageMissing(
                f"Image {img.ref} for kernel 'nbc-{img.name}' is not on this Docker engine. "
                f"Get it first with `{how}` (shows progress), or set "
                f"c.ContainerProvisioner.missing_image = 'build' to build it at kernel start."
            )
        self.log.warning(
            "Image %s is missing; %sing it now (this can take minutes).",
            img.ref,
            self.missing_image.rstrip("e"),
        )
        if self.missing_image == "build" and img.buildable:
            from ..build import build_image

            build_image(img, self.runtime, on_line=lambda line: self.log.info("build: %s", line))
        else:
            self.runtime.pull(
                img.ref, lambda what, done, total: self.log.info("%s: %s/%s", what, done, total)
            )

    def _owner(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return str(os.getuid())

    def _filtered_env(self, env: dict[str, str]) -> dict[str, str]:
        spec_env = set((getattr(self.kernel_spec, "env", None) or {}).keys())
        allowed = {
            k: v
            for k, v in env.items()
            if k in spec_env or any(fnmatch(k, pat) for pat in self.env_allowlist)
        }
        allowed.pop("PIP_CONFIG_FILE", None)
        allowed.update({str(k): str(v) for k, v in self.env.items()})
        allowed.update(
            {"HOME": HOME, "NBCONTAINERS_IMAGE": self.catalog_image.name, "PYTHONUNBUFFERED": "1"}
        )
        return allowed

    def _mounts(self, cwd: str | None, env: dict[str, str]) -> tuple[list[Mount], str]:
        assert self.private_dir is not None
        mounts = [Mount(str(self.private_dir / "kernel.json"), CONNECTION_FILE, read_only=True)]
        if self.transport == "ipc":
            sockets = str(self.private_dir / "s")
            mounts.append(Mount(sockets, sockets, read_only=False))
        workdir = HOME
        if self.mount_workspace and cwd:
            real = os.path.realpath(cwd)
            if real in _UNSAFE_WORKSPACES:
                self.log.warning("Not mounting %s into the kernel container: too broad.", real)
            else:
                mounts.append(Mount(real, real, read_only=False))
                workdir = real
        if self.pip_settings:
            settings = read_pip_settings(env)
            conf = self.private_dir / "pip.conf"
            conf.write_text(settings.render())
            conf.chmod(0o600)
            mounts.append(Mount(str(conf), "/run/nbcontainers/pip.conf", read_only=True))
            env["PIP_CONFIG_FILE"] = "/run/nbcontainers/pip.conf"
            for path in settings.local_paths():
                mounts.append(Mount(path, path, read_only=True))
        for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            cert = env.get(var)
            if cert and os.path.isfile(cert) and all(m.target != cert for m in mounts):
                mounts.append(Mount(cert, cert, read_only=True))
        for item in self.extra_mounts:
            mounts.append(_parse_mount(item))
        return mounts, workdir

    def _make_private_dir(self) -> Path:
        if self.private_dir is None or not self.private_dir.is_dir():
            # Short path on purpose: Unix socket paths are limited to ~107 bytes.
            self.private_dir = Path(tempfile.mkdtemp(prefix="nbc-"))
        (self.private_dir / "s").mkdir(mode=0o700, exist_ok=True)
        return self.private_dir

    def _write_connection(self, km: Any, env: dict[str, str]) -> None:
        private = self._make_private_dir()
        if self.transport == "ipc":
            ip = str(private / "s" / "k")
            if km.transport != "ipc" or km.ip != ip:
                km.transport, km.ip = "ipc", ip
                km.shell_port = km.iopub_port = km.stdin_port = km.hb_port = km.control_port = 0
        else:
            km.transport, km.ip = "tcp", "127.0.0.1"
            if not self._cached_ports:
                cache = LocalPortCache.instance()
                self._cached_ports = [cache.find_available_port(km.ip) for _ in range(5)]
                (km.shell_port, km.iopub_port, km.stdin_port, km.hb_port, km.control_port) = (
                    self._cached_ports
                )
        km.write_connection_file(jupyter_session=env.get("JPY_SESSION_NAME", ""))
        self.connection_info = km.get_connection_info()
        inside = dict(self.connection_info)
        for key, value in inside.items():
            if isinstance(value, bytes):
                inside[key] = value.decode()
        if self.transport == "tcp":
            # In its own network namespace it listens on all of that namespace's interfaces and
            # the engine publishes the ports on 127.0.0.1 only; on the host network, loopback.
            inside["ip"] = "127.0.0.1" if self.network == "host" else "0.0.0.0"
        target = private / "kernel.json"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(inside, f)

    def _hand_private_files_to_user(self) -> str:
        """The uid:gid the kernel runs as. When ``user`` names someone else, a root server
        hands them the private folder (connection file, sockets, pip.conf), and nobody else."""
        own = f"{os.getuid()}:{os.getgid()}"
        if not self.user or self.user == own:
            return own
        try:
            uid, gid = (int(part) for part in self.user.split(":"))
        except ValueError:
            raise ConfigError(
                f"user={self.user!r}: give numeric 'uid:gid', e.g. '1000:1000'."
            ) from None
        if os.getuid() != 0:
            raise ConfigError(
                f"user={self.user!r} differs from the server's own uid:gid {own}; only a server "
                "running as root can start kernels as another user. Remove the 'user' setting."
            )
        assert self.private_dir is not None
        for path in [self.private_dir, *self.private_dir.rglob("*")]:
            os.chown(path, uid, gid)
        return self.user

    # -- KernelProvisionerBase ------------------------------------------------------------

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        img = self.catalog_image  # unknown names fail here, with a did-you-mean
        # GPU first: "this host has no GPU, use X" helps more than "image missing".
        self._gpu = await _blocking(self._gpu_request)
        await _blocking(self._ensure_image)
        kwargs = await super().pre_launch(**kwargs)
        env = kwargs["env"]
        if km is None:
            raise ConfigError("The nbcontainers provisioner must be used by a KernelManager.")
        self._write_connection(km, env)
        extra = kwargs.pop("extra_arguments", [])
        # Not km.format_kernel_cmd(): it swaps "python3" for the server's own interpreter,
        # a path that means nothing inside the image.
        argv = list(self.kernel_spec.argv) + list(extra)
        kwargs["cmd"] = [part.replace("{connection_file}", CONNECTION_FILE) for part in argv]
        self.log.debug("nbcontainers: kernel %s will run in %s", self.kernel_id, img.ref)
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        img = self.catalog_image
        env = self._filtered_env(dict(kwargs.get("env") or {}))
        mounts, workdir = self._mounts(kwargs.get("cwd") or os.getcwd(), env)
        uid_gid = self._hand_private_files_to_user()
        labels = {
            KERNEL_ID: str(self.kernel_id),
            OWNER: self._owner(),
            SERVER_HOST: socket.gethostname(),
            SERVER_PID: str(os.getpid()),
            SERVER_STARTED: process_start_time(os.getpid()),
            PRIVATE_DIR: str(self.private_dir),
            "io.nbcontainers.image": img.name,
        }
        ports = {}
        network_mode = self.network
        if network_mode == "shared":
            if self.transport == "tcp":
                network_mode = "bridge"  # published ports belong to a namespace of its own
            else:
                network_mode = await _blocking(
                    shared_netns, self.runtime, labels[OWNER], img.ref, uid_gid
                )
        if self.transport == "tcp" and self.network != "host":
            ports = {port: ("127.0.0.1", port) for port in self._cached_ports}
        spec = ContainerSpec(
            image=img.ref,
            command=tuple(cmd),
            name=f"nbc-{img.name}-{str(self.kernel_id)[:8]}-{int(time.time()) % 100000}",
            labels=labels,
            env=env,
            mounts=tuple(mounts),
            tmpfs={HOME: "rw,exec,mode=1777,size=4g"},
            working_dir=workdir,
            user=uid_gid,
            network_mode=network_mode,
            ports=ports,
            gpus=self._gpu,
            mem_limit=self.mem_limit or None,
            nano_cpus=int(self.cpus * 1e9) or None,
            shm_size=self.shm_size or None,
            pids_limit=self.pids_limit or None,
        )
        self._stopping = False
        self.last_crash = None
        self.container_id = await _blocking(self.runtime.run, spec)
        global _EXIT_HOOK_REGISTERED
        if not _EXIT_HOOK_REGISTERED:
            atexit.register(_remove_finished_at_exit)
            _EXIT_HOOK_REGISTERED = True
        _LIVE.add(self)
        self.log.info(
            "nbcontainers: kernel %s started in container %s (%s)",
            self.kernel_id,
            self.container_id[:12],
            img.ref,
        )
        return self.connection_info

    async def post_launch(self, **kwargs: Any) -> None:
        """With ipc, wait until the kernel has bound its sockets before clients connect.

        A client that connects earlier is retried by ZeroMQ only every 100 ms, and a client
        that subscribes to IOPub late can miss the first status messages (jupyter console
        then waits forever for "idle"). The socket files show the moment the kernel binds.
        """
        await super().post_launch(**kwargs)
        if self.transport != "ipc" or self.container_id is None:
            return
        ip = self.connection_info["ip"]
        sockets = [
            f"{ip}-{self.connection_info[key]}"
            for key in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
        ]
        deadline = time.monotonic() + self.startup_timeout
        next_check = time.monotonic() + 0.5
        while not all(os.path.exists(s) for s in sockets):
            now = time.monotonic()
            if now > deadline:
                self.log.warning(
                    "Kernel %s has not bound its sockets after %.0f s",
                    self.kernel_id,
                    self.startup_timeout,
                )
                return
            if now > next_check:
                next_check = now + 0.5
                if await self.poll() is not None:
                    return  # died while starting: poll() has logged why
            await asyncio.sleep(0.005)

    async def poll(self) -> int | None:
        if self.container_id is None:
            return 0
        state = await _blocking(self.runtime.state, self.container_id)
        if state is None:
            return 1  # removed behind our back
        if state.running:
            return None
        await _blocking(self._note_exit, state)
        return state.exit_code if state.exit_code is not None else 1

    def _note_exit(self, state: ContainerState) -> None:
        """Keep and log why the container exited, once, unless it was asked to stop."""
        if state.running or self._stopping or self.last_crash is not None:
            return
        self.last_crash = self._crash_report(state)
        self.log.error("%s", self.last_crash)

    def _crash_report(self, state: ContainerState) -> str:
        tail = self.runtime.logs(state.id, tail=20).rstrip()
        oom = state.oom_killed or (state.exit_code == 137 and bool(self.mem_limit))
        code = state.exit_code
        how = f"exited with code {code}"
        if code is not None and code > 128 and code - 128 in signal.valid_signals():
            how += f" (killed by {signal.Signals(code - 128).name})"
        parts = [f"Kernel container {state.name} ({self.catalog_image.name}) {how}."]
        if oom:
            parts.append(
                "It was killed for running out of memory (OOM"
                + (f", limit {self.mem_limit}" if self.mem_limit else "")
                + "): raise c.ContainerProvisioner.mem_limit or use less memory."
            )
        else:
            parts.append("OOM-killed: no.")
        parts.append("Last log lines:\n" + (tail or "(no output)"))
        return " ".join(parts[:2]) + "\n" + parts[2]

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
                    await _blocking(self._note_exit, state)
            await _blocking(self.runtime.remove, self.container_id)
            self.container_id = None
        if not restart:
            if self._cached_ports:
                cache = LocalPortCache.instance()
                for port in self._cached_ports:
                    cache.return_port(port)
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
        if self.container_id is not None:
            state = await _blocking(self.runtime.state, self.container_id)
            if state is None or not state.running:
                raise ContainerCrashed(
                    f"Cannot re-adopt kernel {self.kernel_id}: its container "
                    f"{self.container_id[:12]} is {'gone' if state is None else state.status}."
                )

    def resolve_path(self, path: str) -> str | None:
        # The workspace is mounted at the same path, so host paths are container paths.
        candidate = Path(path).expanduser()
        return str(candidate) if candidate.is_absolute() and candidate.exists() else None


def _parse_mount(item: Any) -> Mount:
    if isinstance(item, dict):
        unknown = set(item) - {"source", "target", "read_only"}
        if unknown or "source" not in item:
            raise ConfigError(
                f"Bad extra_mounts entry {item!r}: use 'host:container[:ro|rw]' or "
                "{'source': ..., 'target': ..., 'read_only': true}."
            )
        return Mount(
            os.path.expanduser(str(item["source"])),
            str(item.get("target") or item["source"]),
            bool(item.get("read_only", True)),
        )
    parts = str(item).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigError(
            f"Bad extra_mounts entry {item!r}: use 'host:container[:ro|rw]', "
            "e.g. '~/data:/data:ro'."
        )
    source = os.path.abspath(os.path.expanduser(parts[0]))
    if not os.path.exists(source):
        raise ConfigError(f"extra_mounts: {source} does not exist on this host.")
    return Mount(source, parts[1], read_only=len(parts) == 2 or parts[2] == "ro")
