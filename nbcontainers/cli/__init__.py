"""The `nbcontainers` command line: one module per command group, each thin over the library
(parse, call one function, print). Imports happen inside the commands, so `nbcontainers
--help` loads neither an engine SDK nor Jupyter."""

from __future__ import annotations

import click

from ..cluster.command import k8s
from ..hub.command import hub
from .containers import gc, logs, ps
from .doctor import doctor
from .export import export_command
from .images import images
from .kernelspecs import kernelspec
from .snapshot import snapshot

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nbcontainers")
def main() -> None:
    """Run Jupyter kernels in pinned container images.

    Exit codes: 0 ok, 1 a check failed or the engine refused, 2 usage error (a bad option or
    name), 3 no engine, 4 image missing, 5 build failed, 6 GPU, 7 snapshot, 8 export,
    9 configuration error. Shell completion: see the README ("Shell completion").
    """


# hub: `nbcontainers hub setup`, prepare a JupyterHub host; k8s: `nbcontainers k8s manifests`.
for command in (images, kernelspec, ps, logs, gc, doctor, snapshot, export_command, hub, k8s):
    main.add_command(command)
