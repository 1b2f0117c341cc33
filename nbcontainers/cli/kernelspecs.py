"""`nbcontainers kernelspec …`: install, list and remove the nbc-<image> kernelspecs, with the
options and confirmations of `jupyter kernelspec`."""

from __future__ import annotations

import sys

import click

from .common import JSON, complete_images, complete_kernelspecs, errors_as_messages, print_rows

__all__ = ["kernelspec"]


@click.group()
def kernelspec() -> None:
    """Install, list and remove the nbc-<image> kernelspecs."""


@kernelspec.command("install")
@click.argument("names", nargs=-1, shell_complete=complete_images)
@click.option("--user", is_flag=True, help="Install for the current user (the default).")
@click.option("--sys-prefix", is_flag=True, help="Install into this Python environment.")
@click.option("--prefix", default=None, help="Install under PREFIX/share/jupyter/kernels.")
@click.option(
    "--replace",
    is_flag=True,
    help="Overwrite a kernelspec of the same name that nbcontainers did not install.",
)
@errors_as_messages
def kernelspec_install(
    names: tuple[str, ...], user: bool, sys_prefix: bool, prefix: str | None, replace: bool
) -> None:
    """Install one kernelspec per catalog image (or the image NAMES given).

    Installed nbcontainers kernelspecs of the same name are updated in place.
    """
    from ..catalog.entries import load_catalog
    from ..catalog.kernelspecs import install_kernelspecs

    if sum((user, sys_prefix, prefix is not None)) > 1:
        raise click.UsageError("Pass one of --user, --sys-prefix and --prefix.")
    if sys_prefix:
        prefix = sys.prefix
    done = install_kernelspecs(load_catalog(), list(names) or None, prefix=prefix, replace=replace)
    for name, path in done.items():
        click.echo(f"installed {name} -> {path}")


@kernelspec.command("list")
@JSON
@errors_as_messages
def kernelspec_list(as_json: bool) -> None:
    """List installed nbcontainers kernelspecs."""
    import json

    from jupyter_client.kernelspec import KernelSpecManager

    from ..catalog.kernelspecs import installed_kernelspecs

    found = sorted(installed_kernelspecs().items())
    if as_json:
        # The shape of `jupyter kernelspec list --json`, so the same scripts read both.
        manager = KernelSpecManager()
        specs = {
            name: {"resource_dir": path, "spec": manager.get_kernel_spec(name).to_dict()}
            for name, path in found
        }
        click.echo(json.dumps({"kernelspecs": specs}, indent=2))
        return
    rows = [{"name": name, "path": path} for name, path in found]
    print_rows(
        rows,
        {"name": "NAME", "path": "PATH"},
        False,
        empty="no nbcontainers kernelspecs installed (`nbcontainers kernelspec install`)",
    )


@kernelspec.command("remove")
@click.argument("names", nargs=-1, shell_complete=complete_kernelspecs)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing every kernelspec.")
@errors_as_messages
def kernelspec_remove(names: tuple[str, ...], yes: bool) -> None:
    """Remove nbcontainers kernelspecs: the NAMES given, or all of them (after asking).

    Kernelspecs that other tools installed are never removed.
    """
    from ..catalog.kernelspecs import installed_kernelspecs, remove_kernelspecs
    from ..errors import did_you_mean

    installed = installed_kernelspecs()
    wanted = [n if n in installed or n.startswith("nbc-") else f"nbc-{n}" for n in names]
    unknown = [n for n in wanted if n not in installed]
    if unknown:
        raise click.BadParameter(
            f"{unknown[0]!r} is not an installed nbcontainers kernelspec."
            + did_you_mean(unknown[0], installed)
            + " `nbcontainers kernelspec list` shows them.",
            param_hint="NAMES",
        )
    if not names:
        if not installed:
            click.echo("no nbcontainers kernelspecs installed")
            return
        if not yes:
            click.confirm(
                f"Remove all {len(installed)} nbcontainers kernelspecs "
                f"({', '.join(sorted(installed))})?",
                abort=True,
            )
    for name in remove_kernelspecs(wanted or None):
        click.echo(f"removed {name}")
