"""`%container pin`: write what the current container kernel runs into the notebook's own
metadata (``metadata.nbcontainers``, :mod:`nbcontainers.kernels.declared`), so that the
``nbc-notebook`` kernel, papermill and a colleague's machine start that same image.

A kernel cannot edit the notebook a frontend holds in memory: JupyterLab, Notebook 7 and
VS Code save their own copy over the file, and nbclient/papermill write theirs; no message
of the Jupyter protocol sets notebook metadata, and JupyterLab exposes no page global to
Javascript outputs (only a lab extension can reach the model). So the pin goes two ways:

- into the file on disk (atomically, every other byte of JSON kept), where the notebook's
  path is known (``JPY_SESSION_NAME``/``__session__`` from Jupyter Server, VS Code's
  ``__vsc_ipynb_file__``, or ``--notebook PATH``); the frontend then asks before it saves
  over a file changed on disk, and *File > Reload Notebook from Disk* shows the metadata;
- as this cell's output (:data:`~nbcontainers.kernels.declared.PIN_MIMETYPE`), which every
  frontend keeps in its own copy and saves: a notebook whose metadata was saved over still
  declares the pin through it, and papermill's output notebook carries it too.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError

from ..catalog.entries import CatalogImage, load_catalog
from ..errors import NbcontainersError
from ..kernels.declared import (
    METADATA_KEY,
    PIN_MIMETYPE,
    declaration_from_metadata,
    load_notebook,
    lock_hash,
    notebook_path,
    notebook_trusted,
)
from ..runtimes.base import ImageInfo
from .parser import UsageParser

__all__ = ["pin", "pinned_metadata", "write_pin"]


def _parser() -> UsageParser:
    parser = UsageParser(prog="%container pin", add_help=False)
    parser.add_argument("name", nargs="?", help="the container kernel (default: the active one)")
    parser.add_argument("--notebook", default=None, help="the .ipynb to write (default: this one)")
    return parser


def pin(shell: Any, argv: list[str]) -> None:
    """`%container pin [NAME] [--notebook PATH]`: pin the active (or NAME's) container kernel,
    else the container this kernel itself runs in, into the notebook's metadata."""
    args = _parser().parse_args(argv)
    try:
        metadata, what = _current(shell, args.name)
        notebook = _notebook(shell, args.notebook)
        if notebook is not None:
            # Relative to the notebook's folder, as the reader takes it.
            snapshot = metadata.get("snapshot")
            if snapshot and Path(snapshot).is_relative_to(notebook.parent):
                metadata["snapshot"] = os.path.relpath(snapshot, notebook.parent)
        declaration_from_metadata(metadata, notebook.parent if notebook else Path.cwd())
        if notebook is not None:
            write_pin(notebook, metadata)
    except NbcontainersError as exc:
        raise UsageError(str(exc)) from None
    shown = json.dumps(metadata, sort_keys=True)
    if notebook is None:
        where = (
            "Not written to a file: the frontend did not say which notebook this is (papermill "
            "and nbclient don't); this cell's output carries the pin, or run `%container pin "
            "--notebook PATH`."
        )
    else:
        where = (
            f"Written to {notebook}. This cell's output carries it too, so saving the open "
            "notebook keeps it; File > Reload Notebook from Disk shows it in the metadata."
        )
    text = f"Pinned {what}: metadata.nbcontainers = {shown}\n{where}"
    from IPython.display import display

    display({PIN_MIMETYPE: metadata, "text/plain": text}, raw=True)  # type: ignore[no-untyped-call]


def pinned_metadata(
    image: CatalogImage, info: ImageInfo | None, gpus: Any, mem_limit: str, cpus: float
) -> dict[str, Any]:
    """The ``metadata.nbcontainers`` that runs ``image`` (``info``: the engine's view of it)
    again: a snapshot by its folder and lock hash; a registry image by its repo digest (a
    tag may move, a digest can be pulled anywhere); a locally built image by name and ID."""
    metadata: dict[str, Any] = {}
    folder = image.source
    # The repository a tag ref names ("host:5000/team/x:1" -> "host:5000/team/x").
    repo = image.ref.rpartition(":")[0] if ":" in image.ref.split("/")[-1] else image.ref
    pulled = [d for d in (info.repo_digests if info else ()) if d.split("@")[0] == repo]
    if image.user_defined and folder is not None and (folder / "environment.json").is_file():
        metadata["snapshot"] = str(folder)
        lock = lock_hash(folder)
        if lock:
            metadata["lock_sha256"] = lock
    elif "@sha256:" in image.ref:
        metadata["image"] = image.ref
    elif pulled and image.user_defined:
        metadata["image"] = pulled[0]
    else:
        metadata["image"] = image.name
        if info is not None:
            metadata["digest"] = info.id
    if gpus not in (None, ""):
        metadata["gpus"] = gpus
    if mem_limit:
        metadata["mem_limit"] = mem_limit
    if cpus:
        metadata["cpus"] = cpus
    return metadata


def _current(shell: Any, name: str | None) -> tuple[dict[str, Any], str]:
    """What to pin and how to name it: the relayed kernel, else this kernel's own image."""
    # The state `load` keeps on the shell (magics/__init__.py), and the image, engine and
    # settings the relay session started each kernel with: never read back from the kernel.
    state = getattr(getattr(shell, "_nbcontainers_magics", None), "state", None)
    if state is not None and (state.relays or name):
        relay = state.existing(name)
        kernel, image, runtime = state.kernels.describe(relay)
        config = kernel.spec.metadata.get("kernel_provisioner", {}).get("config", {})
        metadata = pinned_metadata(
            image,
            runtime.image_info(image.ref),
            config.get("gpus"),
            str(config.get("mem_limit") or ""),
            float(config.get("cpus") or 0.0),
        )
        return metadata, f"container kernel {relay.name!r} ({image.ref})"
    own = os.environ.get("NBCONTAINERS_IMAGE")
    if not own:
        raise UsageError(
            "No container kernel to pin: start one with `%container use NAME`, or run this in "
            "a kernel of an nbc-* kernelspec."
        )
    # A kernel of an nbc-* kernelspec runs in the image itself; the engine may be out of reach.
    image = load_catalog()[own]
    info = None
    given = os.environ.get("NBCONTAINERS_IMAGE_ID")
    if given:  # set by whoever started this kernel, where the engine can't be asked from here
        info = ImageInfo(given, (image.ref,), (), {}, 0, "")
    else:
        try:
            from ..runtimes import get_runtime

            info = get_runtime().image_info(image.ref)
        except NbcontainersError:
            info = None
    return pinned_metadata(image, info, None, "", 0.0), f"this kernel's image ({image.ref})"


def _notebook(shell: Any, given: str | None) -> Path | None:
    """The notebook file to write: ``--notebook``, else the one the frontend named."""
    if given:
        path = Path(given).expanduser().resolve()
        if path.suffix != ".ipynb" or not path.is_file():
            raise UsageError(f"--notebook {given}: no such .ipynb file.")
        return path
    user_ns = getattr(shell, "user_ns", {})
    # ipykernel copies JPY_SESSION_NAME to __session__; VS Code sets __vsc_ipynb_file__.
    for name in (user_ns.get("__session__"), user_ns.get("__vsc_ipynb_file__")):
        if name:
            found = notebook_path({"JPY_SESSION_NAME": str(name)}, os.getcwd())
            if found is not None:
                return found
    return notebook_path(os.environ, os.getcwd())


def write_pin(notebook: Path, metadata: dict[str, Any]) -> None:
    """Set ``metadata.nbcontainers`` in the notebook file, atomically, keeping the rest."""
    try:
        data = load_notebook(notebook)  # read again while the frontend is saving it
    except (OSError, ValueError) as exc:
        raise UsageError(f"Cannot read {notebook} to pin into it: {exc}.") from None
    if not isinstance(data, dict) or not isinstance(data.setdefault("metadata", {}), dict):
        raise UsageError(f"{notebook} is not a notebook (no metadata object).")
    # A notebook Jupyter trusted stays trusted after this edit (its signature is of the
    # content); one it did not trust is not made trusted by a pin.
    trusted = notebook_trusted(data)
    data["metadata"][METADATA_KEY] = metadata
    # nbformat's own layout (indent 1, sorted keys), so a diff shows the pin alone.
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=notebook.parent, prefix=f".{notebook.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, notebook.stat().st_mode & 0o7777)
        os.replace(tmp, notebook)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if trusted:
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary()  # type: ignore[no-untyped-call]
        notary.sign(nbformat.reads(text, as_version=4))  # type: ignore[no-untyped-call]
