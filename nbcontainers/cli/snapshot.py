"""`nbcontainers snapshot`: write a folder (Dockerfile + lock) that rebuilds an environment."""

from __future__ import annotations

import json
import sys

import click

from .common import errors_as_messages, get_runtime

__all__ = ["snapshot"]


@click.command()
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
@errors_as_messages
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

    from ..snapshot import (
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
            ref, differences = build_and_verify(written, snap, get_runtime(), on_line=progress)
        finally:
            progress.close()
        if differences:
            raise click.ClickException("rebuilt image differs:\n  " + "\n  ".join(differences))
        click.echo(f"verified: {ref} has the same packages (0 differences)")
