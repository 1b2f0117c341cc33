"""The snapshot theme: `%container snapshot` writes a folder that rebuilds the live kernel's
environment, and a snapshot folder becomes a catalog image for `%container use ./DIR`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class

from ..catalog.entries import register_user_image
from .missing import ensure_in_cell, showing
from .parser import Handler
from .state import NotebookState, catalog_names

__all__ = ["SnapshotMagics", "register_snapshot_image", "snapshot_folder_image"]


@magics_class
class SnapshotMagics(Magics):
    """Captures the active container kernel (or the local one) as a snapshot folder."""

    def __init__(self, shell: Any, state: NotebookState) -> None:
        super().__init__(shell)
        self.state = state

    def subcommands(self) -> dict[str, Handler]:
        return {"snapshot": self.snapshot}

    def snapshot(self, args: argparse.Namespace) -> None:
        from ..runtimes import get_runtime
        from ..snapshot import build_and_verify, take_snapshot

        relay = self.state.active_relay()
        runtime = get_runtime()
        # The container's base image is recorded by digest; the local kernel has none.
        image_ref = self.state.kernels.describe(relay)[1].ref if relay is not None else None
        evaluate, wheel_dir = self.state.evaluator()
        # Relative to the notebook's folder (the local kernel's cwd), which the container
        # kernel shares at the same path: the folder is where the user looks for it.
        folder = Path(args.dir).expanduser()
        if not folder.is_absolute():
            folder = Path.cwd() / folder
        written, snap = take_snapshot(
            evaluate,
            folder,
            wheel_dir=wheel_dir,
            minimal=args.minimal,
            image_ref=image_ref,
            runtime=runtime,
            vendor_all=args.wheels,
        )
        kept = len(json.loads((written / "environment.json").read_text())["packages"])
        where = relay.name if relay else "the local kernel"
        print(
            f"Snapshot of {where} written to {written} ({kept} distributions). "
            f"Rebuild it with `docker build {written}`."
        )
        if args.build or args.verify:
            # --build registers only a rebuild that matches: a broken image never joins
            # the catalog.
            with showing(
                self.shell,
                f"Rebuilding {written.name} to compare its packages with the live kernel.",
                "Rebuilt and compared",
            ) as progress:
                ref, differences = build_and_verify(
                    written, snap, runtime, on_event=progress.build_event
                )
            if differences:
                raise UsageError(
                    "The rebuilt image differs from the live kernel:\n  " + "\n  ".join(differences)
                )
            print(f"Built {ref}: its packages match the live kernel (0 differences).")
            if args.build:
                name = register_snapshot_image(written)
                print(f"Registered as image {name!r}: `%container use {name}`.")


def snapshot_folder_image(where: str, shell: Any = None) -> str:
    """The catalog image of the snapshot folder ``where``: built first if it is not yet
    (with progress in ``shell``'s cell), registered (as `--build` does), its name returned."""
    from ..runtimes import get_runtime
    from ..snapshot import is_snapshot_folder, snapshot_image

    folder = Path(where).expanduser()
    folder = (folder if folder.is_absolute() else Path.cwd() / folder).resolve()
    if not is_snapshot_folder(folder):
        raise UsageError(
            f"{where} is not a snapshot folder (no Dockerfile and environment.json from "
            f"`%container snapshot`). Write one with `%container snapshot {where}`, or "
            f"name a catalog image: {catalog_names()}."
        )
    image = snapshot_image(folder)
    # The tag is the folder's content hash: an edited Dockerfile or lock builds anew.
    ensure_in_cell(shell, image, get_runtime())
    return register_snapshot_image(folder)


def register_snapshot_image(folder: Path) -> str:
    """Add the snapshot folder to the user's image catalog; return the image name."""
    from ..snapshot import snapshot_image

    name = str(snapshot_image(folder).name)
    # A build folder, not a ref: the catalog recomputes the tag from the folder's content.
    register_user_image(
        name, {"build": str(folder), "display_name": f"Snapshot {folder.name} (container)"}
    )
    return name
