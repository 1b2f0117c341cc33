"""`nbcontainers images …`: list, build, pull, check, remove, prune, regenerate catalog images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .common import JSON, complete_images, errors_as_messages, get_runtime, print_rows

if TYPE_CHECKING:
    from ..catalog.entries import CatalogImage
    from ..runtimes.base import ImageInfo

__all__ = ["images"]

NAMES = click.argument("names", nargs=-1, shell_complete=complete_images)


@click.group()
def images() -> None:
    """List, build, pull, check, remove and prune catalog images."""


@images.command("list")
@JSON
@errors_as_messages
def images_list(as_json: bool) -> None:
    """Show catalog images and whether each is present on the engine."""
    from ..catalog.entries import load_catalog
    from ..doctor import image_problem

    runtime = get_runtime()
    rows = []
    for image in load_catalog().values():
        problem = image_problem(image)
        info = None if problem else runtime.image_info(image.ref)
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
                "problem": problem or None,
                # What the table shows: a size, or why there is none.
                "status": (
                    "build folder missing"
                    if problem
                    else f"{round(info.size / 1e6)} MB"
                    if info
                    else "not built"
                ),
                "needs": "GPU" if image.gpu else "",
            }
        )
    columns = {"name": "NAME", "ref": "IMAGE REF", "status": "SIZE", "needs": "NEEDS"}
    columns["display_name"] = "KERNEL DISPLAY NAME"
    print_rows(rows, columns, as_json, empty="no catalog images")


def _selected(names: tuple[str, ...], all_images: bool, skip_gpu: bool) -> list[CatalogImage]:
    from ..catalog.entries import load_catalog

    catalog = load_catalog()
    if all_images:
        if names:
            raise click.UsageError("Name images or pass --all, not both.")
        return [i for i in catalog.values() if not (skip_gpu and i.gpu)]
    if not names:
        raise click.UsageError("Name at least one image, or pass --all.")
    # An unknown name raises UnknownImage, whose message carries the did-you-mean.
    return [catalog[n] for n in names]


@images.command("build")
@NAMES
@click.option("--all", "all_images", is_flag=True, help="Build every buildable catalog image.")
@click.option("--cpu-only", is_flag=True, help="With --all, skip GPU images.")
@click.option("--base-image", default=None, help="Override the base image (build ARG BASE_IMAGE).")
@click.option("--force", is_flag=True, help="Rebuild even if the image is present.")
@click.option("-v", "--verbose", is_flag=True, help="Print every build line.")
@errors_as_messages
def images_build(
    names: tuple[str, ...],
    all_images: bool,
    cpu_only: bool,
    base_image: str | None,
    force: bool,
    verbose: bool,
) -> None:
    """Build images from their Dockerfiles (progress shown)."""
    from ..catalog.build import build_image
    from ..doctor import image_problem
    from ..errors import ConfigError
    from .progress import BuildProgress

    runtime = get_runtime()
    for image in _selected(names, all_images, skip_gpu=cpu_only):
        problem = image_problem(image)
        if problem and not all_images:
            raise ConfigError(f"Cannot build {image.name!r}: {problem}.")
        if problem or not image.buildable:
            # --all means "what can be built": a registry-only image is pulled, not built.
            why = problem or f"no build folder; `nbcontainers images pull {image.name}`"
            click.echo(f"{image.name}: skipped ({why})")
            continue
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
@NAMES
@click.option(
    "--all", "all_images", is_flag=True, help="Pull every catalog image without a build folder."
)
@errors_as_messages
def images_pull(names: tuple[str, ...], all_images: bool) -> None:
    """Pull images from their registry (progress shown)."""
    from .progress import PullProgress

    runtime = get_runtime()
    for image in _selected(names, all_images, skip_gpu=False):
        if all_images and image.buildable:
            click.echo(f"{image.name}: skipped (built here: `nbcontainers images build`)")
            continue
        progress = PullProgress()
        try:
            runtime.pull(image.ref, progress)
        finally:
            progress.close()
        click.echo(f"{image.name}: pulled {image.ref}")


@images.command("check")
@click.argument("name", shell_complete=complete_images)
@click.option(
    "--timeout", default=60.0, show_default=True, metavar="SECONDS", help="How long it may take."
)
@JSON
@errors_as_messages
def images_check(name: str, timeout: float, as_json: bool) -> None:
    """Start image NAME once, as a kernel would run, and check what a kernel needs.

    NAME is a catalog image or an image ref (org/image:tag). Exits 1 when a check fails.
    """
    import json

    from ..catalog.entries import load_catalog
    from ..doctor import CHECK_UID, check_image
    from ..errors import UnknownImage

    try:
        ref = load_catalog()[name].ref
    except UnknownImage:
        if ":" not in name and "/" not in name:
            raise
        ref = name  # a raw ref: the image someone means to add to the catalog
    report = check_image(get_runtime(), ref, timeout=timeout)
    if as_json:
        shown = {"ref": ref, "ok": report.ok, "facts": report.facts}
        click.echo(json.dumps({**shown, "problems": list(report.problems)}, indent=2))
    else:
        facts = report.facts
        if "python" in facts:
            click.echo(f"[ok  ] python3 {facts['python']}")
        if "ipykernel" in facts:
            click.echo(f"[ok  ] ipykernel {facts['ipykernel']}")
        if facts.get("home_writable") and "kernelapp" in facts:
            click.echo(f"[ok  ] runs as uid {CHECK_UID} with a writable HOME")
        for problem in report.problems:
            click.echo(f"[FAIL] {problem}")
        click.echo(f"{ref}: {'a kernel can run here' if report.ok else 'not usable as is'}")
    if not report.ok:
        raise SystemExit(1)


@images.command("rm")
@NAMES
@click.option("--all", "all_images", is_flag=True, help="Remove every catalog image present.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing with --all.")
@errors_as_messages
def images_rm(names: tuple[str, ...], all_images: bool, yes: bool) -> None:
    """Remove catalog images from the engine (kernels using them must be stopped first)."""
    runtime = get_runtime()
    selected = _selected(names, all_images, skip_gpu=False)
    present = [i for i in selected if runtime.image_info(i.ref) is not None]
    if all_images and present and not yes:
        listed = ", ".join(i.name for i in present)
        click.confirm(f"Remove {len(present)} image(s): {listed}?", abort=True)
    for image in selected:
        if image not in present and not all_images:
            click.echo(f"{image.name}: {image.ref} is not present")
    for image in present:
        runtime.remove_image(image.ref)
        click.echo(f"{image.name}: removed {image.ref}")
    if all_images and not present:
        click.echo("no catalog image is present")


@images.command("prune")
@NAMES
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before removing.")
@JSON
@errors_as_messages
def images_prune(names: tuple[str, ...], dry_run: bool, yes: bool, as_json: bool) -> None:
    """Remove images nbcontainers built that no catalog entry uses any more.

    Those are old-hash tags (nbcontainers/NAME:OLDHASH) left when an image's sources
    changed, and such images left untagged by a rebuild; with NAMEs, only the old tags of those
    catalog images. Never removed: the catalog's current images, images a container (running
    or stopped) uses, snapshot and serving images, and images nbcontainers did not build.
    Asks first unless -y (--json, which can't ask, needs -y or --dry-run).
    """
    import json

    from ..catalog.build import stale_images
    from ..catalog.entries import load_catalog
    from ..errors import NbcontainersError

    if as_json and not (yes or dry_run):
        raise click.UsageError("--json can't ask before removing: add -y, or --dry-run.")
    runtime = get_runtime()
    catalog = load_catalog()
    plan = stale_images(runtime, catalog, [catalog[n] for n in names])
    kept = [{"id": i.id, "tags": list(i.tags), "why": why} for i, why in plan.kept]

    def name(info: ImageInfo) -> str:
        return ", ".join(info.tags) or f"{info.id.removeprefix('sha256:')[:12]} (untagged)"

    if plan.remove and not (yes or dry_run):
        listed = "".join(f"\n  {name(i)}  {i.size / 1e6:.0f} MB" for i in plan.remove)
        click.confirm(f"Remove {len(plan.remove)} stale image(s):{listed}\n?", abort=True)
    removed = []
    for info in plan.remove:
        if not dry_run:
            try:
                runtime.remove_image(info.id)
            except NbcontainersError as exc:  # the engine refused (a container made since)
                kept.append({"id": info.id, "tags": list(info.tags), "why": str(exc)})
                continue
        removed.append(info)
    size = sum(i.size for i in removed)
    if as_json:
        shown = [{"id": i.id, "tags": list(i.tags), "size": i.size} for i in removed]
        report = {"dry_run": dry_run, "removed": shown, "kept": kept, "size": size}
        click.echo(json.dumps(report, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for info in removed:
        click.echo(f"{verb} {name(info)} ({info.size / 1e6:.0f} MB)")
    for row in kept:
        if row["why"] == "in the catalog":  # the JSON lists them; the text says what matters
            continue
        click.echo(f"kept {', '.join(row['tags']) or row['id'][:19]}: {row['why']}")
    if not removed:
        click.echo("no stale nbcontainers image")
    else:  # layers shared with a kept image stay on disk, so this is an upper bound
        click.echo(f"{'would free' if dry_run else 'freed'} up to {size / 1e6:.0f} MB")


@images.command("regenerate")
@click.option("--check", is_flag=True, help="Fail if the generated files are out of date.")
@errors_as_messages
def images_regenerate(check: bool) -> None:
    """Regenerate images/catalog.json and kernelspecs/ from the image sources."""
    from ..catalog.entries import catalog_path, load_catalog, render_catalog
    from ..catalog.kernelspecs import write_kernelspecs

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
    write_kernelspecs(load_catalog(include_user=False), out)  # nbc-notebook too
    click.echo(f"wrote {path} and {out}/")
