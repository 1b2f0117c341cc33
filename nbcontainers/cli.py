"""The `nbcontainers` command line: images, kernelspecs, gc, snapshot, export, hub, doctor.

Thin over the library: parse, call one function, print. Imports happen inside the commands,
so `nbcontainers --help` loads neither an engine SDK nor Jupyter.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import NbcontainersError
from .hub.command import hub
from .serving.options import click_options as export_click_options
from .serving.options import export_options

if TYPE_CHECKING:  # for annotations only: importing them costs every command its start-up
    from .catalog import CatalogImage
    from .runtimes import ContainerRuntime

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _errors_as_messages(func: F) -> F:
    """Print ``Error: …`` and exit with the error's code instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NbcontainersError as exc:
            # click's own ClickException would exit 1 for everything; scripts tell a missing
            # engine (3) from a missing image (4) by the code.
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _runtime() -> ContainerRuntime:
    # Resolved per call, through the entry points, so tests and other engines can stand in.
    from .runtimes import get_runtime

    return get_runtime()


@click.group()
@click.version_option(package_name="nbcontainers")
def main() -> None:
    """Run Jupyter kernels in pinned container images."""


main.add_command(hub)  # `nbcontainers hub setup`: prepare a JupyterHub host (as root)


# -- images -------------------------------------------------------------------------------


@main.group()
def images() -> None:
    """List, build and pull catalog images."""


@images.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_errors_as_messages
def images_list(as_json: bool) -> None:
    """Show catalog images and whether each is present on the engine."""
    from .catalog import load_catalog

    catalog = load_catalog()
    runtime = _runtime()
    rows = []
    for image in catalog.values():
        info = runtime.image_info(image.ref)
        rows.append(
            {
                "name": image.name,
                "kernel": image.kernel_name,
                "ref": image.ref,
                "present": info is not None,
                "size_mb": round(info.size / 1e6) if info else None,
                "gpu": image.gpu,
                "cuda": image.cuda,
                "display_name": image.display_name,
                "user_defined": image.user_defined,
            }
        )
    if as_json:  # the keys above are what scripts rely on: add to them, never rename
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(i.name) for i in catalog.values()), default=4)
    for r in rows:
        where = f"{r['size_mb']} MB" if r["present"] else "not built"
        gpu = " [needs a GPU]" if r["gpu"] else ""
        click.echo(f"{r['name']:<{width}}  {r['ref']:<40} {where:<10} {r['display_name']}{gpu}")


def _selected(names: tuple[str, ...], all_images: bool, skip_gpu: bool) -> list[CatalogImage]:
    from .catalog import load_catalog

    catalog = load_catalog()
    if all_images:
        return [i for i in catalog.values() if not (skip_gpu and i.gpu)]
    if not names:
        raise click.UsageError("Name at least one image, or pass --all.")
    # An unknown name raises UnknownImage, whose message carries the did-you-mean.
    return [catalog[n] for n in names]


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "all_images", is_flag=True, help="Build every buildable catalog image.")
@click.option("--cpu-only", is_flag=True, help="With --all, skip GPU images.")
@click.option("--base-image", default=None, help="Override the base image (build ARG BASE_IMAGE).")
@click.option("--force", is_flag=True, help="Rebuild even if the image is present.")
@click.option("-v", "--verbose", is_flag=True, help="Print every build line.")
@_errors_as_messages
def images_build(
    names: tuple[str, ...],
    all_images: bool,
    cpu_only: bool,
    base_image: str | None,
    force: bool,
    verbose: bool,
) -> None:
    """Build images from their Dockerfiles (progress shown)."""
    from .build import build_image
    from .progress import BuildProgress

    runtime = _runtime()
    for image in _selected(names, all_images, skip_gpu=cpu_only):
        if not force and runtime.image_info(image.ref) is not None:
            click.echo(f"{image.name}: {image.ref} is present (use --force to rebuild)")
            continue
        progress = BuildProgress(verbose=verbose)
        try:  # a failed build must still end the progress line before the error prints
            info = build_image(image, runtime, on_line=progress, base_image=base_image)
        finally:
            progress.close()
        click.echo(f"{image.name}: built {image.ref} ({info.size / 1e6:.0f} MB)")


@images.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "all_images", is_flag=True)
@_errors_as_messages
def images_pull(names: tuple[str, ...], all_images: bool) -> None:
    """Pull images from their registry (progress shown)."""
    from .progress import PullProgress

    runtime = _runtime()
    for image in _selected(names, all_images, skip_gpu=False):
        progress = PullProgress()
        try:
            runtime.pull(image.ref, progress)
        finally:
            progress.close()
        click.echo(f"{image.name}: pulled {image.ref}")


@images.command("regenerate")
@click.option("--check", is_flag=True, help="Fail if the generated files are out of date.")
@_errors_as_messages
def images_regenerate(check: bool) -> None:
    """Regenerate images/catalog.json and kernelspecs/ from the image sources."""
    from .catalog import catalog_path, load_catalog, render_catalog
    from .kernels.kernelspecs import write_kernelspec

    path = catalog_path()
    text = render_catalog()
    if check:  # CI's drift test: the generated catalog must match its sources
        if not path.is_file() or path.read_text() != text:
            raise click.ClickException(
                f"{path} is out of date: run `nbcontainers images regenerate`."
            )
        click.echo(f"{path} is up to date")
        return
    path.write_text(text)
    out = path.resolve().parent.parent / "kernelspecs"  # data/images links to the checkout
    for image in load_catalog(include_user=False).values():
        write_kernelspec(image, out)
    click.echo(f"wrote {path} and {out}/")


# -- kernelspecs ----------------------------------------------------------------------------


@main.group()
def kernelspec() -> None:
    """Install, list and remove the nbc-<image> kernelspecs."""


@kernelspec.command("install")
@click.argument("names", nargs=-1)
@click.option("--sys-prefix", is_flag=True, help="Install into this Python environment.")
@click.option("--prefix", default=None, help="Install under this prefix.")
@_errors_as_messages
def kernelspec_install(names: tuple[str, ...], sys_prefix: bool, prefix: str | None) -> None:
    """Install one kernelspec per catalog image (or the NAMES given)."""
    from .catalog import load_catalog
    from .kernels.kernelspecs import install_kernelspecs

    if sys_prefix:
        prefix = sys.prefix
    done = install_kernelspecs(load_catalog(), list(names) or None, prefix=prefix)
    for name, path in done.items():
        click.echo(f"installed {name} -> {path}")


@kernelspec.command("list")
@_errors_as_messages
def kernelspec_list() -> None:
    """List installed nbcontainers kernelspecs."""
    from .kernels.kernelspecs import installed_kernelspecs

    for name, path in sorted(installed_kernelspecs().items()):
        click.echo(f"{name}  {path}")


@kernelspec.command("remove")
@click.argument("names", nargs=-1)
@_errors_as_messages
def kernelspec_remove(names: tuple[str, ...]) -> None:
    """Remove nbcontainers kernelspecs (all of them when no NAMES are given)."""
    from .kernels.kernelspecs import remove_kernelspecs

    for name in remove_kernelspecs(list(names) or None):
        click.echo(f"removed {name}")


# -- housekeeping ---------------------------------------------------------------------------


@main.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--all-hosts", is_flag=True, help="Also remove kernel containers started from other hosts."
)
@_errors_as_messages
def gc(dry_run: bool, all_hosts: bool) -> None:
    """Remove kernel containers whose Jupyter server is gone."""
    from .kernels.orphans import find_orphans, remove_orphans

    runtime = _runtime()
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


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--python",
    "python",
    default=None,
    metavar="EXE",
    help="The Python environment to capture (default: the one running nbcontainers).",
)
@click.option(
    "--kernel",
    "kernel",
    default=None,
    metavar="CONNECTION_FILE",
    help="Capture a running kernel instead: its connection file, kernel-<id>.json name or id "
    "(in the notebook, `%connect_info` prints it).",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="With --kernel: how long to wait for the kernel to answer.",
)
@click.option("--minimal", is_flag=True, help="Only what the environment's imports need.")
@click.option("--verify", is_flag=True, help="Rebuild the image and compare package sets.")
@_errors_as_messages
def snapshot(
    folder: str,
    python: str | None,
    kernel: str | None,
    timeout: float,
    minimal: bool,
    verify: bool,
) -> None:
    """Write FOLDER: a Dockerfile and lock that rebuild a Python environment.

    Captures a Python executable (--python) or a running Jupyter kernel (--kernel). In a
    notebook, `%container snapshot` captures the live kernel itself.
    """
    from pathlib import Path

    from .snapshot import (
        build_and_verify,
        capture_python,
        check_target,
        lookup_hashes,
        snapshot_kernel,
        write_snapshot,
    )

    if python and kernel:
        raise click.UsageError("Pass --python or --kernel, not both.")
    # Refuse an unusable folder before the capture, which can take a while.
    check_target(Path(folder))
    if kernel:
        written, snap = snapshot_kernel(kernel, Path(folder), minimal=minimal, timeout=timeout)
        source = f"kernel {kernel}"
    else:
        python = python or sys.executable
        snap = capture_python(python)
        written = write_snapshot(
            snap, Path(folder), minimal=minimal, hashes=lookup_hashes(snap, minimal)
        )
        source = python
    kept = len(json.loads((written / "environment.json").read_text())["packages"])
    click.echo(f"wrote {written} ({kept} of {len(snap.packages)} distributions from {source})")
    if verify:
        from .progress import BuildProgress

        progress = BuildProgress()
        try:
            ref, differences = build_and_verify(written, snap, _runtime(), on_line=progress)
        finally:
            progress.close()
        if differences:
            raise click.ClickException("rebuilt image differs:\n  " + "\n  ".join(differences))
        click.echo(f"verified: {ref} has the same packages (0 differences)")


# --name is the CLI's own (in a notebook the variable names the model), listed after --example.
_NAME = click.option("--name", default=None, help="The model's name in URLs (default: from MODEL).")


@main.command("export")
@click.argument("model")
@export_click_options({"example": [_NAME]})
@_errors_as_messages
def export_command(model: str, name: str | None, **values: Any) -> None:
    """Export a saved MODEL as a tested serving image.

    MODEL is a .pt2 (torch.export.save), a .skops file, a .pkl/.joblib with --format pickle,
    or file.py:function. In a notebook, `%export-serving` exports a live model instead.
    """
    from pathlib import Path

    from .serving.export import export_from_namespace
    from .serving.saved import load_example, load_model

    var, namespace = load_model(model, values["format"])
    namespace["__nbc_example__"] = load_example(values["example"])
    if name:
        namespace[name] = namespace[var]
        var = name
    try:
        options = export_options(
            values, example="__nbc_example__", source=str(Path(model.split(":")[0]).resolve())
        )
    except ValueError as exc:  # only --init-args is parsed there
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--init-args") from None
    # The image is labelled with the installed version, as `%export-serving` labels it.
    result = export_from_namespace(namespace, var, options, runtime=_runtime(), say=click.echo)
    if result.served:
        click.echo(f"{result.url}/v2/models/{result.name}/infer")


@main.command()
@_errors_as_messages
def doctor() -> None:
    """Check the engine, images, GPUs and kernelspecs, and say what to fix."""
    from .doctor import run_checks
    from .runtimes import choose_engine

    checks = run_checks(_runtime(), why=choose_engine()[2])
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    for c in checks:
        click.echo(f"[{marks[c.status]}] {c.name}: {c.detail}")
        if c.fix and c.status != "ok":
            click.echo(f"       fix: {c.fix}")
    if any(c.status == "fail" for c in checks):  # warnings alone leave a usable setup
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
