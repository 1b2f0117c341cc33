"""What a launched kernel is started with: the user's Jupyter config files, then the
kernelspec's provisioner config, checked as the provisioner checks them.

Under Jupyter Server a kernel's :class:`~nbcontainers.kernels.provisioner.ContainerProvisioner`
takes ``c.ContainerProvisioner.*`` from the server's config files and the kernelspec's
``metadata.kernel_provisioner.config`` on top (jupyter_client passes the latter as keyword
arguments, which win). A kernel started from the kernelspec's argv gets the same: the same
files (``jupyter_config`` and ``jupyter_server_config``, ``.py`` or ``.json``, on Jupyter's
config path), the same order, the same traits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..kernels.plan import LaunchConfig
from ..kernels.provisioner_traits import ProvisionerTraits
from ..kernels.starter import StartSettings

__all__ = [
    "CONFIG_FILES",
    "config_files_section",
    "kernelspec_config",
    "launch_config",
    "start_settings",
]

# The files Jupyter Server reads the provisioner's settings from, in its order (later wins).
CONFIG_FILES = ("jupyter_config", "jupyter_server_config")
# Config-file settings that shape no launched kernel: warming is a server's start-up job.
_SERVER_ONLY = {"pool_warm"}


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


def launch_config(
    kernel: str, image: str, log: Any = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings of a launched kernel and its kernelspec's env: as under Jupyter Server,
    the config files' ``c.ContainerProvisioner.*`` first, the kernelspec's config over them."""
    config, spec_env = kernelspec_config(kernel, image)
    return {**config_files_section(log), **config}, spec_env


def config_files_section(log: Any = None) -> dict[str, Any]:
    """``c.ContainerProvisioner.*`` from the user's and the system's Jupyter config files, as
    Jupyter Server would load them (the files are re-read at every start, as a server restart
    would). A file that can't be loaded is an error naming it: a typo there must not silently
    start a different kernel."""
    from jupyter_core.application import JupyterApp
    from traitlets.config import Config

    log = log or logging.getLogger("nbcontainers.launch")
    merged = Config()
    for name in CONFIG_FILES:
        reader = JupyterApp(config_file_name=name, log=logging.getLogger("nbcontainers.quiet"))
        reader.raise_config_file_errors = True
        try:
            reader.load_config_file()
        except Exception as exc:
            raise ConfigError(
                f"Cannot load your Jupyter config file {name}.(py|json): {exc}. Fix it (Jupyter "
                "Server would refuse it too), or move it aside."
            ) from None
        merged.merge(reader.config)
    section = merged.get("ContainerProvisioner") or {}
    names = set(ProvisionerTraits.class_trait_names(config=True))
    values: dict[str, Any] = {}
    for key, value in dict(section).items():
        if key in _SERVER_ONLY:
            continue
        if key not in names:  # traitlets only warns about these under a server too
            log.warning("Ignoring unknown setting c.ContainerProvisioner.%s in Jupyter config", key)
            continue
        values[key] = value
    return values


def start_settings(config: Mapping[str, Any]) -> StartSettings:
    """:class:`~nbcontainers.kernels.starter.StartSettings` from a kernelspec's config (the
    config files' settings merged under it), its keys checked as the provisioner checks them.
    The kernel listens on Unix sockets (the launcher forwards the frontend's TCP ports to
    them), as the provisioner's default kernels do."""
    from traitlets import TraitError

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
    launch = traits.launch_values()
    for name in ("transport", "encryption"):  # LaunchConfig's defaults; ipc below
        launch.pop(name, None)
    return traits.frozen(LaunchConfig(**launch, transport="ipc"))
