"""The ``nbcontainers hub`` command group, which the CLI adds: ``hub setup`` hands its
arguments to :func:`nbcontainers.hub.setup.main`, the one place its options are defined (it
also runs as ``python -m nbcontainers.hub.setup``)."""

from __future__ import annotations

import sys

import click

__all__ = ["hub"]


@click.group()
def hub() -> None:
    """JupyterHub deployments: prepare a shared host (as root)."""


@hub.command("setup", add_help_option=False, context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def setup(args: tuple[str, ...]) -> None:
    """Sub-uid ranges, runtime folders, the shared image store (readable by the hub's group
    only) and the engine config, then one throwaway container per user, idempotently
    (``--help`` lists the options)."""
    from .setup import main  # argparse and the catalog only when the command runs

    sys.exit(main(list(args)))
