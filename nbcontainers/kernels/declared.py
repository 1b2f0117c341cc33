"""A notebook's own container environment: what ``metadata.nbcontainers`` declares, read for
the ``nbc-notebook`` kernelspec and applied to a kernel's launch settings.

The schema (every key optional; ``image`` and ``snapshot`` exclude each other)::

    "nbcontainers": {
      "image": "pytorch-cpu",          # a catalog image name, or a registry ref pinned by
                                       #   digest: "ghcr.io/org/img@sha256:<64 hex>"
      "snapshot": "env",               # or a folder written by `%container snapshot`,
                                       #   relative to the notebook's folder
      "digest": "sha256:<64 hex>",     # with a catalog name: the image ID it must have
      "lock_sha256": "<64 hex>",       # with a snapshot: sha256 of its requirements.lock
      "gpus": "all" | 1 | "0,1",       # as c.ContainerProvisioner.gpus
      "mem_limit": "8g",               # as c.ContainerProvisioner.mem_limit
      "cpus": 2                        # as c.ContainerProvisioner.cpus
    }

Nothing declared is the catalog's default image, said in one line. Anything declared that
can't be had is a ConfigError naming the key and the fix: never another image, never the
host. ``%container pin`` (magics/pin.py) writes the same keys; when a frontend overwrote the
file with its in-memory copy, the pin's own output (:data:`PIN_MIMETYPE`) still declares it.
An image from outside the catalogs (a digest, a snapshot folder) needs a notebook Jupyter
trusts here, or papermill/nbclient asked to run it: JupyterLab starts a kernel on open.

The module is long because each of the seven keys has its own check and message (naming the
key and the fix) beside the reading of a notebook and the applying to a kernel's settings.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..catalog.entries import CatalogImage, load_catalog, register_user_image
from ..errors import ConfigError, NbcontainersError, UnknownImage, did_you_mean
from ..hostgpus import parse_gpu_request
from ..runtimes import engine_facts
from ..runtimes.base import ContainerRuntime
from .limits import MIN_MEMORY, checked_cpus, checked_size
from .plan import LaunchConfig

__all__ = [
    "KEYS",
    "METADATA_KEY",
    "NOTEBOOK_IMAGE",
    "PIN_MIMETYPE",
    "Declaration",
    "DeclaredConfig",
    "apply_declaration",
    "declaration_from_metadata",
    "load_notebook",
    "lock_hash",
    "notebook_path",
    "notebook_trusted",
    "read_declaration",
    "resolve_image",
]

NOTEBOOK_IMAGE = "@notebook"  # the image of the nbc-notebook kernelspec: "what it declares"
METADATA_KEY = "nbcontainers"
KEYS = ("image", "snapshot", "digest", "lock_sha256", "gpus", "mem_limit", "cpus")
# The output `%container pin` displays: the declaration again, inside the frontend's own copy.
PIN_MIMETYPE = "application/vnd.nbcontainers.pin+json"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._\-]*")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_REF_RE = re.compile(r"(?P<repo>[a-z0-9][a-z0-9._\-/:]*[a-z0-9])@(?P<digest>sha256:[0-9a-f]{64})")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("nbcontainers.declared")


@dataclass(frozen=True)
class DeclaredConfig(LaunchConfig):
    """A LaunchConfig that also carries the declared image (a catalog name) and ``gpus``:
    what :func:`apply_declaration` returns, where LaunchConfig itself has no such fields."""

    image: str = ""
    gpus: Any = None


@dataclass(frozen=True)
class Declaration:
    """What a notebook asks to run in, checked; ``source`` says where that came from."""

    image: str = ""  # a catalog name or repo@sha256:… ("" with a snapshot)
    snapshot: Path | None = None  # the folder, absolute
    digest: str = ""
    lock_sha256: str = ""
    gpus: Any = None  # as the gpus trait: None is the image's default
    mem_limit: str = ""
    cpus: float = 0.0
    source: str = ""  # "metadata.nbcontainers of /x/nb.ipynb", "the catalog's default"

    @property
    def kind(self) -> str:
        """ "snapshot", "digest" (a registry ref pinned by digest) or "catalog"."""
        if self.snapshot is not None:
            return "snapshot"
        return "digest" if "@" in self.image else "catalog"

    def key(self, name: str) -> str:
        """``metadata.nbcontainers.NAME of /x/nb.ipynb``: how a message names a key."""
        where = f" ({self.source})" if self.source else ""
        return f"metadata.nbcontainers.{name}{where}"


def notebook_path(
    env: Mapping[str, str], cwd: str | None, kernel_manager: Any = None
) -> Path | None:
    """The notebook a kernel serves, or None where nobody said.

    Jupyter Server puts it in the kernel's environment as ``JPY_SESSION_NAME`` (an absolute
    path when the frontend gives the session a name, as JupyterLab and Notebook 7 do; else
    the API path, relative to the server's root) and starts the kernel in its folder
    (``cwd``). VS Code's own launcher sets no such variable (vscode-jupyter#16291), only the
    folder. papermill and nbclient set neither: the notebook papermill runs is found up this
    call's own stack, or, from a worker thread, as the notebook of the nbclient client whose
    kernel manager is ``kernel_manager`` (the provisioner's own).
    """
    raw = str(env.get("JPY_SESSION_NAME", "")).strip()
    if raw:
        found = _existing_notebook(raw, cwd)
        if found is not None:
            return found
    return _papermill_notebook(kernel_manager)


def _existing_notebook(raw: str, cwd: str | None) -> Path | None:
    path = Path(raw).expanduser()
    names = [raw]
    if not path.is_absolute() and re.match(r"[A-Za-z][\w-]+:", raw):
        names.append(raw.split(":", 1)[1])  # a drive prefix (jupyter-collaboration's "RTC:")
    candidates = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_absolute():
            candidates.append(path)
        elif cwd:
            # The API path is relative to the server's root, the cwd is the notebook's folder.
            candidates += [Path(cwd) / path, Path(cwd) / path.name]
    for candidate in candidates:
        if candidate.suffix == ".ipynb" and candidate.is_file():
            return candidate.resolve()
    return None


def _papermill_notebook(kernel_manager: Any) -> Path | None:
    """The local notebook file that an nbclient client (papermill's) is starting a kernel
    for: found up this call's stack, else (a call from a worker thread sees no coroutine
    frames) the live client whose kernel manager is ``kernel_manager``. Never a guess among
    clients: one whose start failed may outlive it (kept by a traceback) in a long process."""
    if "nbclient.client" not in sys.modules:
        return None
    current = inspect.currentframe()
    frame: Any = current.f_back if current is not None else None
    while frame is not None:
        found = _client_notebook(frame.f_locals.get("self"))
        if found is not None:
            return found
        frame = frame.f_back
    if kernel_manager is None:
        return None
    from nbclient.client import NotebookClient

    for client in gc.get_objects():
        if isinstance(client, NotebookClient) and client.km is kernel_manager:
            return _client_notebook(client)
    return None


def _client_notebook(client: Any) -> Path | None:
    if not type(client).__module__.startswith(("nbclient", "papermill")):
        return None
    metadata = getattr(getattr(client, "nb", None), "metadata", None) or {}
    given = str((metadata.get("papermill") or {}).get("input_path") or "")
    if not given.endswith(".ipynb") or "://" in given:
        return None
    path = Path(given).expanduser()
    if path.is_absolute():
        return path.resolve() if path.is_file() else None
    # papermill opens a relative input path from the folder it was started in, which --cwd may
    # since have left: that folder is the shell's $PWD, which os.chdir does not change.
    for folder in (Path.cwd(), Path(os.environ.get("PWD") or ".")):
        if (folder / path).is_file():
            return (folder / path).resolve()
    return None


def read_declaration(
    notebook: Path | None, default_image: str, kernel_manager: Any = None
) -> tuple[Declaration, str | None]:
    """The notebook's declaration, and a line to show when it falls back to ``default_image``
    because nothing is declared (None otherwise). A declaration that is malformed is a
    ConfigError naming the key and the fix. ``kernel_manager`` is the provisioner's: the
    papermill run it belongs to vouches for the notebook it was asked to run."""
    fallback = Declaration(image=default_image, source="the catalog's default image")
    if notebook is None:
        return fallback, (
            f"No notebook is named for this kernel (the frontend set no JPY_SESSION_NAME): "
            f"running the catalog's default image {default_image!r}. Open the notebook through "
            "Jupyter Server or papermill, or pick a kernel of one image (nbc-<image>)."
        )
    try:
        data = load_notebook(Path(notebook))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read notebook {notebook} for its container declaration: {exc}. Fix the "
            "file, or pick a kernel of one image (nbc-<image>)."
        ) from None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    declared = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    where = f"metadata.nbcontainers of {notebook}"
    if declared is None:
        declared = _pinned_output(data)
        where = f"the `%container pin` output in {notebook}"
    if declared is None:
        return fallback, (
            f"Notebook {notebook} declares no container environment (no metadata.nbcontainers): "
            f"running the catalog's default image {default_image!r}. `%container pin` writes "
            "what a container kernel runs into it."
        )
    declaration = declaration_from_metadata(declared, Path(notebook).parent, where)
    if declaration.kind != "catalog":
        _check_trusted(Path(notebook), data, declaration, kernel_manager)
    if declaration.image or declaration.snapshot is not None:
        return declaration, None
    return replace(declaration, image=default_image), (
        f"{where} declares resources but no image: running the catalog's default image "
        f"{default_image!r} with them. Add 'image' or 'snapshot' to choose one."
    )


# Jupyter Server saves a notebook in place (its atomic_writing keeps a backup, then rewrites
# the file): a kernel started while the frontend saves can read it cut. How long (s) a read
# that is not JSON is tried again before it is the file's fault.
SAVE_WAIT = 1.0


def load_notebook(notebook: Path) -> Any:
    """The notebook file's JSON, read again for up to :data:`SAVE_WAIT` seconds while it is not
    JSON (a save in progress); then its OSError or ValueError, for the caller to word."""
    deadline = time.monotonic() + SAVE_WAIT
    while True:
        try:
            return json.loads(notebook.read_text(encoding="utf-8"))
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def notebook_trusted(data: Any) -> bool:
    """Whether Jupyter trusts this notebook content here: signed in the user's trust database
    (what Jupyter Server does when the user saves it, or `jupyter trust NOTEBOOK`)."""
    try:
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary()  # type: ignore[no-untyped-call]
        # Read as Jupyter Server reads it (nbformat may fill in what an old file lacks).
        node = nbformat.reads(json.dumps(data), as_version=4)  # type: ignore[no-untyped-call]
        return bool(notary.check_signature(node))  # type: ignore[no-untyped-call]
    except Exception:  # no nbformat, an unreadable trust database: not trusted
        return False


def _check_trusted(notebook: Path, data: Any, decl: Declaration, kernel_manager: Any) -> None:
    """An image from outside the catalogs (a registry digest, a snapshot folder's Dockerfile)
    runs its code as the user, with the notebook's folder mounted, the moment its kernel
    starts, and JupyterLab starts it when the notebook is opened: so only for a notebook
    Jupyter trusts here, or one that papermill or nbclient was asked to run."""
    if notebook_trusted(data) or _papermill_notebook(kernel_manager) == notebook.resolve():
        return
    what = f"image {decl.image}" if decl.kind == "digest" else f"snapshot folder {decl.snapshot}"
    key = "image" if decl.kind == "digest" else "snapshot"
    raise ConfigError(
        f"{decl.key(key)}: this notebook asks for {what}, which is not in your catalog, and "
        "Jupyter does not trust the notebook here (it was not saved by you on this machine): "
        "its kernel would run that image's code as you, with this folder mounted, as soon as "
        f"it is opened. If you trust it, run `jupyter trust {notebook}` and start the kernel "
        "again; else pick a kernel of one image (nbc-<image>)."
    )


def _pinned_output(notebook: Any) -> Any:
    """The newest `%container pin` output in the notebook's cells, or None."""
    found = None
    for cell in notebook.get("cells", []) if isinstance(notebook, dict) else []:
        for output in cell.get("outputs", []) if isinstance(cell, dict) else []:
            data = output.get("data") if isinstance(output, dict) else None
            if isinstance(data, dict) and PIN_MIMETYPE in data:
                found = data[PIN_MIMETYPE]
    return found


def declaration_from_metadata(value: Any, folder: Path, source: str = "") -> Declaration:
    """``metadata.nbcontainers`` checked into a Declaration; ``folder`` (the notebook's)
    anchors a relative snapshot folder. Raises a ConfigError naming the key and the fix."""
    where = f" in {source}" if source else ""
    shape = '{"image": "python"}'
    if not isinstance(value, dict):
        raise ConfigError(
            f"metadata.nbcontainers{where} must be an object like {shape}, not "
            f"{type(value).__name__}. Fix it in the notebook's metadata, or remove it."
        )
    for key in value:
        if key not in KEYS:
            raise ConfigError(
                f"Unknown key {key!r} in metadata.nbcontainers{where}.{did_you_mean(key, KEYS)} "
                f"Valid keys: {', '.join(KEYS)}."
            )
    decl = Declaration(source=source)

    def bad(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{decl.key(key)} = {value[key]!r} {problem}. {fix}")

    image = value.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise bad("image", "is not an image name", "Name a catalog image, e.g. 'python'.")
        image = image.strip()
        if any(c in image for c in "/:@") and not _REF_RE.fullmatch(image):
            raise bad(
                "image",
                "is a registry ref not pinned by digest (it may name another image tomorrow)",
                "Pin it as 'repo@sha256:<64 hex>' (the image's RepoDigests, as the engine's "
                "image inspect lists them), or name a catalog image",
            )
        if "@" not in image and not _NAME_RE.fullmatch(image):
            raise bad("image", "is not a catalog image name", "Use lowercase letters, 0-9, ._-")
    snapshot = value.get("snapshot")
    folder_path = None
    if snapshot is not None:
        if not isinstance(snapshot, str) or not snapshot.strip():
            raise bad("snapshot", "is not a folder", "Name the folder `%container snapshot` wrote")
        if image is not None:
            raise bad(
                "snapshot", "is declared with 'image' too", "Keep one of 'image' and 'snapshot'"
            )
        folder_path = Path(snapshot).expanduser()
        folder_path = folder_path if folder_path.is_absolute() else folder / folder_path
    digest = _checked_hex(value, "digest", decl, with_prefix=True)
    if digest and (snapshot is not None or "@" in (image or "")):
        if snapshot is not None:
            raise bad(
                "digest", "applies to a catalog 'image'", "A snapshot is pinned by lock_sha256"
            )
        if not (image or "").endswith(digest):
            raise bad("digest", f"differs from the one in 'image' ({image})", "Remove 'digest'")
    lock = _checked_hex(value, "lock_sha256", decl, with_prefix=False)
    if lock and snapshot is None:
        raise bad("lock_sha256", "applies to a 'snapshot' only", "Remove it, or add 'snapshot'")
    gpus = value.get("gpus")
    if gpus is not None:
        try:
            parse_gpu_request(gpus)
        except ValueError as exc:
            raise bad(
                "gpus", f"is invalid ({exc})", "Use 'all', a count like 1, or ids '0,1'"
            ) from None
    mem = value.get("mem_limit")
    if mem is not None:
        try:
            mem = checked_size("mem_limit", str(mem), MIN_MEMORY, "no memory limit")
        except ConfigError as exc:
            raise bad("mem_limit", f"is invalid ({exc})", "Use a size like '8g'") from None
    cpus = value.get("cpus")
    if cpus is not None:
        ok = isinstance(cpus, (int, float)) and not isinstance(cpus, bool)
        if not ok or not math.isfinite(cpus) or cpus <= 0:
            raise bad("cpus", "is not a positive number of cores", "Use a number like 2 or 0.5")
        try:
            checked_cpus(float(cpus))
        except ConfigError as exc:
            raise bad("cpus", f"is invalid ({exc})", "Use a number like 2 or 0.5") from None
    return replace(
        decl,
        image=image or "",
        snapshot=folder_path,
        digest=digest,
        lock_sha256=lock,
        gpus=gpus,
        mem_limit=mem or "",
        cpus=float(cpus or 0.0),
    )


def _checked_hex(value: Mapping[str, Any], key: str, decl: Declaration, with_prefix: bool) -> str:
    given = value.get(key)
    if given is None:
        return ""
    pattern = _DIGEST_RE if with_prefix else _HEX_RE
    if not isinstance(given, str) or not pattern.fullmatch(given.strip().lower()):
        form = "sha256:<64 hex digits>" if with_prefix else "<64 hex digits>"
        raise ConfigError(
            f"{decl.key(key)} = {given!r} is not {form}. Write it again with `%container pin`, "
            f"or remove '{key}'."
        )
    return given.strip().lower()


def resolve_image(declaration: Declaration) -> CatalogImage:
    """The catalog image a declaration names; a registry ref or a snapshot folder joins the
    user's catalog first (as `%container use ./DIR` does), so a kernel can name it. An
    unknown name is a ConfigError with a did-you-mean; nothing is built or pulled here."""
    if declaration.kind == "snapshot":
        folder = declaration.snapshot
        assert folder is not None
        if not (folder / "Dockerfile").is_file():
            raise ConfigError(
                f"{declaration.key('snapshot')}: {folder} is not a snapshot folder (no Dockerfile)."
                f" Write it with `%container snapshot {folder.name}` next to the notebook, or "
                "declare a catalog 'image' instead."
            )
        if declaration.lock_sha256:
            lock = folder / "requirements.lock"
            got = hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else "(none)"
            if got != declaration.lock_sha256:
                raise ConfigError(
                    f"{declaration.key('lock_sha256')}: {lock} hashes to {got}, not the pinned "
                    f"{declaration.lock_sha256}: the snapshot changed since `%container pin`. "
                    "Restore the folder (e.g. from version control), or `%container pin` again."
                )
        name = "snapshot-" + re.sub(r"[^a-z0-9._-]", "-", folder.name.lower())
        register_user_image(
            name, {"build": str(folder), "display_name": f"Snapshot {folder.name} (container)"}
        )
    elif declaration.kind == "digest":
        match = _REF_RE.fullmatch(declaration.image)
        assert match is not None
        repo = re.sub(r"[^a-z0-9._-]", "-", match["repo"].rsplit("/", 1)[-1].split(":")[0])
        name = f"pinned-{repo}-{match['digest'][7:19]}"
        register_user_image(name, {"ref": declaration.image, "display_name": declaration.image})
    else:
        name = declaration.image
    try:
        return load_catalog()[name]
    except UnknownImage as exc:
        raise ConfigError(f"{declaration.key('image')}: {exc}") from None


def apply_declaration(
    config: LaunchConfig,
    declaration: Declaration,
    *,
    runtime: ContainerRuntime | None = None,
    log: logging.Logger | logging.LoggerAdapter[Any] = log,
    wait: float | None = None,
) -> LaunchConfig:
    """``config`` with what ``declaration`` sets (image as a catalog name, gpus, mem_limit,
    cpus: a :class:`DeclaredConfig` where LaunchConfig lacks the first two), once the image
    is on ``runtime``: a snapshot folder built and a digest pulled, with progress in ``log``,
    for up to ``wait`` seconds (then the start fails saying it goes on). The admin's policy
    is checked first, so nothing refused is built or pulled; the caller applies it again."""
    from ..runtimes import shared_runtime
    from .gpu_request import gpu_request
    from .images import ensure_image
    from .policy import load_policy
    from .policy_rules import apply_policy

    image = resolve_image(declaration)
    changes: dict[str, Any] = {"image": image.name, "gpus": declaration.gpus}
    if declaration.mem_limit:
        changes["mem_limit"] = declaration.mem_limit
    if declaration.cpus:
        changes["cpus"] = declaration.cpus
    if not {"image", "gpus"} <= {f.name for f in fields(config)}:
        config = DeclaredConfig(**{f.name: getattr(config, f.name) for f in fields(config)})
    config = replace(config, **changes)
    try:
        apply_policy(load_policy(), config, image, None)
    except ConfigError as exc:  # the policy's own message, said to come from the notebook
        raise ConfigError(f"{declaration.source or 'The declaration'} is refused: {exc}") from None
    runtime = runtime or shared_runtime()
    try:
        gpu_request(image, declaration.gpus, remote=engine_facts(runtime).remote)
    except NbcontainersError as exc:
        key = "gpus" if declaration.gpus is not None else "image"
        raise ConfigError(
            f"{declaration.key(key)}: {exc} Declare a CPU image or fewer GPUs in the notebook's "
            "metadata, or open it where the GPUs are."
        ) from None
    if declaration.kind == "snapshot":
        ensure_image(runtime, image, "build", log, wait)
    elif declaration.kind == "digest":
        try:
            ensure_image(runtime, image, "pull", log, wait)
        except NbcontainersError as exc:
            if "still being" in str(exc):
                raise
            raise ConfigError(
                f"{declaration.key('image')}: the engine cannot get {declaration.image}: "
                f"{str(exc).rstrip('.')}. Check that its registry is reachable and still holds "
                "that digest (and that you are logged in to it, if it is private), or declare "
                "another image."
            ) from None
    elif declaration.digest:
        _check_digest(runtime, image, declaration)
    return config


def _check_digest(runtime: ContainerRuntime, image: CatalogImage, decl: Declaration) -> None:
    """A catalog image pinned by ID must be that very image: a rebuild is another one."""
    info = runtime.image_info(image.ref)
    if info is not None and (
        info.id == decl.digest or any(d.endswith(decl.digest) for d in info.repo_digests)
    ):
        return
    now = f"is {info.id}" if info is not None else "is not on this engine"
    raise ConfigError(
        f"{decl.key('digest')}: the notebook is pinned to image {decl.digest}, but "
        f"{image.name!r} ({image.ref}) {now}; that digest is not available here. Get that very "
        "image (load it into this engine, or push it and declare 'image': 'repo@sha256:…'), "
        f"or run `%container pin` to pin this machine's {image.name!r}, or remove 'digest' to "
        "run whatever the catalog builds."
    )


def lock_hash(folder: Path) -> str:
    """sha256 of a snapshot folder's requirements.lock, "" without one (`%container pin`)."""
    lock = folder / "requirements.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else ""
