"""The kernelspec launcher: the container kernel for frontends that run argv themselves.

Every ``nbc-*`` kernelspec's ``argv`` runs this module. Jupyter Server, nbclient, papermill
and ``jupyter console`` read the kernelspec's ``metadata.kernel_provisioner`` and never run it
(the provisioner starts the container); frontends that ignore provisioners (VS Code, Zed,
nteract, jupyter_client's LocalProvisioner) run it with the connection file they wrote, and
get the same container kernel: the same :class:`~nbcontainers.kernels.starter.KernelStarter`
decides image, mounts, uid, policy, GPUs, limits and labels. The kernel binds the connection
file's ports, published on 127.0.0.1 only. The launcher stays in front of the kernel: SIGINT
reaches the kernel, SIGTERM stops it, its exit code is the kernel's, and the container goes
with the launcher however it ends (a forked reaper removes it after a SIGKILL). A start that
can't be made prints ``Error: …`` on stderr and exits non-zero: no kernel runs on the host.

Usage (as the kernelspec writes it)::

    python -m nbcontainers.launch --kernel nbc-python --image python -f CONNECTION_FILE \
        -- python3 -m ipykernel_launcher -f CONNECTION_FILE
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NbcontainersError

__all__ = ["main"]

# Loopback names a frontend may write as the connection file's ip: the ports are published there.
_LOOPBACK = ("127.0.0.1", "localhost")
# Provisioner settings that shape no container here: the pool serves a server's later starts,
# and a launcher lives for one kernel; the rest come from the connection file.
_NOT_HERE = {"pool_size", "pool_warm", "pool_max_memory", "transport", "encryption"}


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    command = args[args.index("--") + 1 :] if "--" in args else []
    ours = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(
        prog="python -m nbcontainers.launch",
        description="Run a Jupyter kernel in an nbcontainers container (a kernelspec's argv).",
    )
    parser.add_argument("--kernel", default="", help="The kernelspec's name (nbc-<image>).")
    parser.add_argument(
        "--image", default="", help="The catalog image, if the kernelspec's config can't be read."
    )
    parser.add_argument("-f", dest="connection_file", required=True, help="Connection file.")
    parsed = parser.parse_args(ours)
    if not command:
        parser.error("give the kernel's command after '--'")
    return parsed, command


def kernelspec_config(kernel: str, image: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The kernelspec's provisioner config and env (so an edit there applies to both ways in);
    ``{"image": image}`` when the kernelspec can't be found from here."""
    if kernel:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            spec = KernelSpecManager().get_kernel_spec(kernel)
        except (NoSuchKernel, OSError, ValueError):
            spec = None
        provisioner = (spec.metadata or {}).get("kernel_provisioner") or {} if spec else {}
        if spec is not None and provisioner.get("provisioner_name") == "nbcontainers":
            return dict(provisioner.get("config") or {}), dict(spec.env or {})
    if not image:
        raise ConfigError(
            f"Cannot find kernelspec {kernel!r} from here, and no --image was given: reinstall "
            "the kernelspecs with `nbcontainers kernelspec install`."
        )
    return {"image": image}, {}


def start_settings(config: Mapping[str, Any]) -> Any:
    """:class:`~nbcontainers.kernels.starter.StartSettings` from a kernelspec's config, its
    keys checked as the provisioner checks them."""
    from traitlets import TraitError

    from ..kernels.plan import LaunchConfig
    from ..kernels.provisioner_traits import ProvisionerTraits
    from ..kernels.starter import StartSettings

    values = dict(config)
    if "runtime" in values:
        values["runtime_name"] = values.pop("runtime")
    names = set(ProvisionerTraits.class_trait_names(config=True))
    unknown = sorted(set(values) - names)
    if unknown:
        valid = sorted((names - {"runtime_name"}) | {"runtime"})
        raise ConfigError(
            f"Unknown kernel_provisioner config key(s) {', '.join(map(repr, unknown))} for "
            f"'nbcontainers'. Valid keys: {', '.join(valid)}."
        )
    try:  # the traits' defaults and checks, as the provisioner gets them
        traits = ProvisionerTraits(**values)
    except TraitError as exc:
        raise ConfigError(f"Bad kernel_provisioner config: {exc}") from None
    launch: dict[str, Any] = {}
    for f in fields(LaunchConfig):
        if hasattr(traits, f.name) and f.name not in _NOT_HERE:
            value = getattr(traits, f.name)
            launch[f.name] = tuple(value) if isinstance(value, list) else value
    return StartSettings(
        image=traits.image,
        launch=LaunchConfig(**launch, transport="tcp"),
        gpus=traits.gpus,
        missing_image=traits.missing_image,
        runtime_name=traits.runtime_name,
        startup_timeout=traits.startup_timeout,
    )


def _connection(path: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the connection file {path}: {exc}.") from None
    if info.get("transport", "tcp") != "tcp" or str(info.get("ip")) not in _LOOPBACK:
        raise ConfigError(
            f"The connection file {path} asks for {info.get('transport')}://{info.get('ip')}; a "
            "container kernel started from its kernelspec listens on TCP ports of 127.0.0.1 "
            "only. Let the frontend use tcp on 127.0.0.1 (the default)."
        )
    return info


def run(args: argparse.Namespace, command: list[str], log: logging.Logger) -> int:
    """Start the kernel's container, stay in front of it, remove it; the kernel's exit code."""
    from ..kernels.connection import connection_for_container, write_private
    from ..kernels.curve import kernel_command
    from ..kernels.plan import CONNECTION_FILE, HOME, KernelStart
    from ..kernels.starter import KernelStarter
    from .reaper import Reaper

    info = _connection(args.connection_file)
    config, spec_env = kernelspec_config(args.kernel, args.image)
    settings = start_settings(config)
    reaper = Reaper.start(settings.runtime_name)  # before any engine connection or thread
    starter = KernelStarter(settings, log)
    try:
        env, cwd = dict(os.environ), os.getcwd()
        starter.precheck(env, cwd, spec_env)
        network = starter.effective.launch.network
        starter.ports = [
            int(info[k])
            for k in ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
        ]
        private = starter.open_private()
        write_private(
            private.connection_file, json.dumps(connection_for_container(info, "tcp", network))
        )
        # The kernel's command names the connection file as the container sees it.
        argv = [part.replace(args.connection_file, "{connection_file}") for part in command]
        cmd = [part.replace("{connection_file}", CONNECTION_FILE) for part in argv]
        if info.get("curve_publickey"):  # the frontend's keys: the kernel needs a copy it can write
            cmd = kernel_command(argv, CONNECTION_FILE, f"{HOME}/.kernel.json")
        name = Path(args.connection_file).stem
        kernel = KernelStart(
            # The file's name is the frontend's kernel id (kernel-ID.json) or a unique temp name.
            kernel_id=name.removeprefix("kernel-") or str(uuid.uuid4()),
            command=tuple(cmd),
            cwd=cwd,
            env=env,
            private_dir=private,
            spec_env=frozenset(spec_env),
            ports=tuple(starter.ports),
            started_at=time.time(),
        )
        # Watched from before the engine is asked: a SIGKILL mid-start leaves nothing either.
        reaper.watch(kernel.kernel_id, str(private.path))
        starter.start(kernel, info)
        code = _stay_in_front(starter, float(config.get("stop_timeout", 5.0)))
    finally:
        starter.cleanup()
        reaper.done()
    return code


def _stay_in_front(starter: Any, stop_timeout: float) -> int:
    """Wait for the kernel to exit, passing on SIGINT (interrupt) and SIGTERM/SIGHUP (stop,
    then kill after ``stop_timeout``); return its exit code."""
    assert starter.container_id is not None
    runtime, cid = starter.runtime, starter.container_id
    exited = threading.Event()
    codes: list[int] = []

    def wait() -> None:
        try:
            while True:
                code = runtime.wait(cid, timeout=3600)
                if code is not None or runtime.state(cid) is None:
                    codes.append(code if code is not None else 1)
                    # 0: it ended as asked (a shutdown_request); anything else is reported
                    # by the cleanup, with the log tail, on stderr.
                    starter.stopping = starter.stopping or code == 0
                    return
        except Exception as exc:  # the engine went away: nothing left to stand in front of
            starter.log.error("Lost the kernel container %s: %s", cid[:12], exc)
            codes.append(1)
        finally:
            exited.set()

    def stop(signum: int, frame: Any) -> None:
        starter.stopping = True
        starter.signal(signal.SIGTERM)
        timer = threading.Timer(stop_timeout, starter.signal, (signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGINT, lambda signum, frame: starter.signal(signal.SIGINT))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    threading.Thread(target=wait, daemon=True, name="nbc-wait").start()
    while not exited.wait(1.0):  # a timed wait: signal handlers run between tries
        pass
    return codes[0]


def main(argv: Sequence[str] | None = None) -> int:
    args, command = _parse(sys.argv[1:] if argv is None else argv)
    log = logging.getLogger("nbcontainers.launch")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("nbcontainers: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        log.propagate = False
    try:
        return run(args, command, log)
    except NbcontainersError as exc:
        # What the frontend shows as the kernel's failure; no kernel runs anywhere.
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
