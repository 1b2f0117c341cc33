"""`nbcontainers ps`, `logs` and `gc`: the kernel containers nbcontainers started, through the
runtime seam (never the engine's own CLI), so they work the same on Docker and Podman."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .common import JSON, errors_as_messages, get_runtime, print_rows

if TYPE_CHECKING:
    from ..runtimes.base import ContainerRuntime, ContainerState

__all__ = ["gc", "logs", "ps"]


def _kernel_containers(runtime: ContainerRuntime) -> list[ContainerState]:
    from ..labels import KERNEL_ID

    return sorted(runtime.list({KERNEL_ID: None}), key=lambda s: s.started_at)


def _complete_containers(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    from ..errors import NbcontainersError

    try:
        found = _kernel_containers(get_runtime())
    except NbcontainersError:
        return []  # no engine: nothing to offer, and <Tab> must not print an error
    return [CompletionItem(s.name) for s in found if s.name.startswith(incomplete)]


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Also show stopped containers.")
@JSON
@errors_as_messages
def ps(show_all: bool, as_json: bool) -> None:
    """List the kernel containers nbcontainers started (running ones unless --all)."""
    from ..labels import KERNEL_ID, OWNER, owner_alive

    rows = []
    for state in _kernel_containers(get_runtime()):
        if not (state.running or show_all):
            continue
        alive = owner_alive(state.labels)
        rows.append(
            {
                "name": state.name,
                "id": state.id[:12],
                "kernel_id": state.labels.get(KERNEL_ID, ""),
                "image": state.image,
                "status": state.status,
                "exit_code": state.exit_code,
                "owner": state.labels.get(OWNER, ""),
                "started_at": state.started_at,
                "server": {True: "running", False: "gone", None: "other host"}[alive],
            }
        )
    columns = {"name": "CONTAINER", "image": "IMAGE", "status": "STATUS"}
    columns.update({"owner": "OWNER", "server": "SERVER", "started_at": "STARTED"})
    empty = "no kernel containers" if show_all else "no kernel containers running"
    print_rows(rows, columns, as_json, empty=empty)


@click.command()
@click.argument("container", shell_complete=_complete_containers)
@click.option("-n", "--tail", default=100, show_default=True, help="How many lines to show.")
@errors_as_messages
def logs(container: str, tail: int) -> None:
    """Show the last lines a kernel container wrote.

    CONTAINER is its name (`nbcontainers ps`), a container id or a kernel id, or a prefix
    of one of them.
    """
    from ..errors import ContainerNotFound, did_you_mean
    from ..labels import KERNEL_ID

    runtime = get_runtime()
    found = _kernel_containers(runtime)
    matches = [
        s
        for s in found
        if any(key.startswith(container) for key in (s.name, s.id, s.labels.get(KERNEL_ID, "")))
    ]
    exact = [s for s in matches if container in (s.name, s.id, s.labels.get(KERNEL_ID))]
    matches = exact or matches
    if not matches:
        raise ContainerNotFound(
            f"No kernel container {container!r}."
            + did_you_mean(container, [s.name for s in found])
            + " `nbcontainers ps --all` lists them."
        )
    if len(matches) > 1:
        raise click.BadParameter(
            f"{container!r} matches {len(matches)} containers: "
            + ", ".join(s.name for s in matches)
            + ". Give more of it.",
            param_hint="CONTAINER",
        )
    click.echo(runtime.logs(matches[0].id, tail=tail), nl=False)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--all-hosts", is_flag=True, help="Also remove kernel containers started from other hosts."
)
@click.option(
    "--runtime",
    "engine",
    default="auto",
    show_default=True,
    help="Engine to sweep: docker, podman, swarm (all nodes), kubernetes.",
)
@errors_as_messages
def gc(dry_run: bool, all_hosts: bool, engine: str) -> None:
    """Remove kernel containers whose Jupyter server is gone."""
    from ..kernels.orphans import find_orphans, remove_orphans

    runtime = get_runtime(engine)
    orphans = find_orphans(runtime, include_foreign=all_hosts)
    if not orphans:
        click.echo("no orphaned kernel containers")
        return
    for orphan in orphans:
        click.echo(
            f"{'would remove' if dry_run else 'removing'} {orphan.container.name}: {orphan.reason}"
        )
    if not dry_run:
        remove_orphans(runtime, orphans)
