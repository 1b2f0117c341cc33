"""Image builds from a catalog folder: the build context, the host's find-links wheels and pip
settings as build secrets, handed to the runtime's builder; and which built images no catalog
entry uses any more (``stale_images``, for ``nbcontainers images prune``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError, Unsupported
from ..labels import SERVING_MARK, SNAPSHOT_MARK, SOURCE_HASH
from ..pipsettings import PipSettings, read_pip_settings
from ..runtimes.base import BuildCallback, BuildEvent, BuildRequest, ContainerRuntime, ImageInfo
from .entries import REPOSITORY, CatalogImage, canonical_name, read_pins, source_hash

__all__ = [
    "LOCAL_BASE",
    "StaleImages",
    "build_image",
    "choose_base",
    "stale_images",
]

LOCAL_BASE = "nbcontainers/base:bookworm"  # made by scripts/make-local-base.sh where no registry is

LineCallback = Callable[[str], None]


def _vendor_wheels(lock: Path, settings: PipSettings, dest: Path) -> list[str]:
    """Link the host's find-links wheels that the lock pins into ``dest``; return their pins."""
    pins = read_pins(lock)
    vendored = []
    for folder in settings.local_find_links():
        for wheel in folder.glob("*.whl"):
            # Only wheels the lock pins at that exact version: any other wheel in the folder
            # would be ignored by pip's --require-hashes resolve anyway, and costs context size.
            parts = wheel.name.split("-")
            if len(parts) < 3 or pins.get(canonical_name(parts[0])) != parts[1]:
                continue
            target = dest / wheel.name
            # A hard link costs nothing for a 200 MB torch wheel; across filesystems, a copy.
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
            vendored.append(f"{parts[0]}=={parts[1]}")
    return vendored


def _both(say: LineCallback, tell: BuildCallback, event: BuildEvent) -> None:
    say(event.text)
    tell(event)


def _dockerfile_base(source: Path) -> str | None:
    match = re.search(r"^ARG\s+BASE_IMAGE=(\S+)", (source / "Dockerfile").read_text(), re.M)
    return match.group(1) if match else None


def choose_base(image: CatalogImage, runtime: ContainerRuntime) -> tuple[str | None, str]:
    """Which base to build on, and why: ``$NBCONTAINERS_BASE_IMAGE``, else the Dockerfile's
    pinned base if present or pullable; the locally made Debian base stands in only for a
    pinned Debian bookworm base that is not present."""
    override = os.environ.get("NBCONTAINERS_BASE_IMAGE")
    if override:
        return override, "from NBCONTAINERS_BASE_IMAGE"
    pinned = image.base or (_dockerfile_base(image.source) if image.source else None)
    if not pinned:
        return None, "the Dockerfile's own FROM"
    if runtime.image_info(pinned) is not None:
        return None, f"the Dockerfile's base {pinned} (present locally)"
    # The local base is made from this host's own Debian bookworm packages, so it can stand in
    # for a bookworm base and nothing else (a CUDA base would silently lose its libraries).
    if pinned.startswith("debian:bookworm") and runtime.image_info(LOCAL_BASE) is not None:
        return LOCAL_BASE, f"local base {LOCAL_BASE} (made by scripts/make-local-base.sh)"
    return None, f"the Dockerfile's base {pinned} (BuildKit pulls it)"


def build_image(
    image: CatalogImage,
    runtime: ContainerRuntime,
    *,
    on_line: LineCallback | None = None,
    base_image: str | None = None,
    settings: PipSettings | None = None,
    on_event: BuildCallback | None = None,
) -> ImageInfo:
    """Build ``image`` from its source folder, tagging it with its catalog ref.

    ``on_line`` gets every line of output, ``on_event`` the runtime's build events (steps
    with their position, for a progress bar). An exception from either, or an interrupt,
    cancels the build and leaves no image (the runtime's contract)."""
    if not image.buildable or image.source is None:
        raise BuildError(
            f"Image {image.name!r} has no Dockerfile to build from "
            f"(source: {image.source}). Pull it instead: `nbcontainers images pull {image.name}`."
        )
    say = on_line or (lambda _line: None)
    tell = on_event or (lambda _event: None)
    settings = settings or read_pip_settings()
    if base_image is None:
        base_image, why = choose_base(image, runtime)
    else:
        why = "given on the command line"
    builder = runtime.builder()
    say(f"building {image.ref} with {builder}; base: {base_image or image.base} ({why})")

    with tempfile.TemporaryDirectory(prefix="nbc-build-") as tmp:
        context = Path(tmp) / "context"
        # A copy, never the catalog folder itself: the wheels and pip.conf written next must
        # not land in the user's (or the installed package's) tree. A stale .nbc is skipped.
        shutil.copytree(image.source, context, ignore=shutil.ignore_patterns(".nbc"))
        wheels = context / ".nbc" / "wheels"
        wheels.mkdir(parents=True)
        vendored = _vendor_wheels(context / "requirements.lock", settings, wheels)
        secrets = Path(tmp) / "secrets"
        secrets.mkdir(mode=0o700)
        pipconf = secrets / "pip.conf"
        cert = (
            settings.cert or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
        )
        has_cert = bool(cert and os.path.isfile(cert))
        pipconf.write_text(
            settings.render(
                cert="/run/secrets/pipcert" if has_cert else "",
                find_links=("/tmp/nbc-wheels",),
                remote_only=True,
            )
        )
        pipconf.chmod(0o600)
        # The build-context contract pip_install_step() writes against: secrets pipconf and
        # pipcert (never in a layer), wheels in .nbc/wheels, EXTRA_INDEX_URL as a build ARG.
        build_secrets = {"pipconf": pipconf}
        if has_cert and cert:
            build_secrets["pipcert"] = Path(cert)
        build_args = {"BASE_IMAGE": base_image} if base_image else {}
        if any("+" in pin for pin in vendored):
            # The local-label wheel (e.g. torch +cpu) is in the context: skip its upstream index.
            build_args["EXTRA_INDEX_URL"] = ""
        request = BuildRequest(
            context=context,
            tag=image.ref,
            build_args=build_args,
            labels={
                SOURCE_HASH: source_hash(image.source),
                "io.nbcontainers.base": base_image or image.base or "",
            },
            secrets=build_secrets,
        )
        if vendored:
            say(f"using wheels from the host's find-links: {', '.join(vendored)}")
        try:
            return runtime.build(request, lambda event: _both(say, tell, event))
        except BuildError as exc:
            if exc.status is None:
                raise  # not the build's failure (no builder, a cancel): its message stands
            raise BuildError(
                f"Building image {image.name!r} failed (exit {exc.status}). Last lines:\n"
                + exc.log_tail
                + f"\nRetry with `nbcontainers images build {image.name}` once the cause is fixed.",
                status=exc.status,
                log_tail=exc.log_tail,
            ) from None


@dataclass
class StaleImages:
    """What ``images prune`` would remove, and the nbcontainers-built images it keeps (with why)."""

    remove: list[ImageInfo] = field(default_factory=list)
    kept: list[tuple[ImageInfo, str]] = field(default_factory=list)


def stale_images(
    runtime: ContainerRuntime,
    catalog: Mapping[str, CatalogImage],
    only: Sequence[CatalogImage] = (),
) -> StaleImages:
    """The images ``build_image`` made (they carry its source-hash label) that no catalog entry
    names any more: old-hash tags of ``nbcontainers/NAME``, and such images left untagged by a
    rebuild. Kept: current catalog refs, images a container (running or stopped) was made
    from, snapshot and serving images (a user's own work: remove those with the engine's CLI),
    and any image also tagged outside ``nbcontainers/`` (someone named it for themselves).
    With ``only``, just the old tags of those catalog images (no untagged ones)."""
    lister = getattr(runtime, "images", None)
    if lister is None:
        raise Unsupported(
            f"This engine's runtime ({type(runtime).__name__}) can't list images, so "
            "nbcontainers can't tell which are stale. Remove old images with the engine's own "
            "CLI, or `nbcontainers images rm NAME` for catalog images."
        )
    current = {image.ref for image in catalog.values()}
    # Stopped containers count too: removing their image would break `docker start` of them.
    used = {ref for state in runtime.list({}) for ref in (state.image, state.image_id) if ref}
    found = StaleImages()
    repos: list[str | None] = [image.ref.rpartition(":")[0] for image in only] or [None]
    listed = {
        i.id: i for repo in repos for i in lister(labels={SOURCE_HASH: None}, repository=repo)
    }
    for info in listed.values():
        why = ""
        if current & set(info.tags):
            why = "in the catalog"
        elif SNAPSHOT_MARK in info.labels or SERVING_MARK in info.labels:
            why = "a snapshot or serving image"
        elif used & {info.id, *info.tags}:
            why = "used by a container"
        elif any(not tag.startswith(f"{REPOSITORY}/") for tag in info.tags):
            why = "also tagged outside nbcontainers/"
        if why:
            found.kept.append((info, why))
        else:
            found.remove.append(info)
    return found
