"""Image builds: a BuildKit-capable client, the build context, pip settings as build secrets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .catalog import CatalogImage, canonical_name, read_pins, source_hash
from .errors import BuildError
from .pipsettings import PipSettings, read_pip_settings
from .runtimes.base import ContainerRuntime, ImageInfo

__all__ = [
    "LOCAL_BASE",
    "Builder",
    "build_image",
    "choose_base",
    "find_builder",
]

LOCAL_BASE = "nbcontainers/base:bookworm"  # made by scripts/make-local-base.sh where no registry is

LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class Builder:
    """A command line that builds with BuildKit (secrets and RUN --mount need it)."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


def _client_candidates() -> list[str]:
    found = [shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"]
    unique: list[str] = []
    for c in found:
        if c and os.access(c, os.X_OK) and os.path.realpath(c) not in map(os.path.realpath, unique):
            unique.append(c)
    return unique


def _quiet(argv: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


@lru_cache(maxsize=1)
def find_builder() -> Builder:
    """Pick how to build: the buildx plugin, else a pre-23 client's built-in BuildKit."""
    candidates = _client_candidates()
    for client in candidates:
        done = _quiet([client, "buildx", "version"])
        if done is not None and done.returncode == 0:
            return Builder((client, "buildx", "build", "--load"), {}, f"{client} buildx")
    for client in candidates:
        done = _quiet([client, "version", "--format", "{{.Client.Version}}"])
        version = (done.stdout.strip() if done else "") or "0"
        leading = re.match(r"\d+", version)
        major = int(leading.group(0)) if leading else 0
        # Clients before 23.0 drive BuildKit themselves; later ones delegate to buildx.
        if 0 < major < 23:
            return Builder(
                (client, "build"),
                {"DOCKER_BUILDKIT": "1"},
                f"{client} {version} with its built-in BuildKit",
            )
    raise BuildError(
        "No Docker client here can build with BuildKit (the image sources use build "
        "secrets). Install the buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, "
        "or `docker-buildx-plugin` from Docker's repository), or Debian's `docker.io` "
        "package whose client builds with BuildKit. "
        f"Clients found: {', '.join(candidates) or 'none'}."
    )


def _vendor_wheels(lock: Path, settings: PipSettings, dest: Path) -> list[str]:
    """Link the host's find-links wheels that the lock pins into ``dest``; return their pins."""
    pins = read_pins(lock)
    vendored = []
    for folder in settings.local_find_links():
        for wheel in folder.glob("*.whl"):
            parts = wheel.name.split("-")
            if len(parts) < 3 or pins.get(canonical_name(parts[0])) != parts[1]:
                continue
            target = dest / wheel.name
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
            vendored.append(f"{parts[0]}=={parts[1]}")
    return vendored


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
) -> ImageInfo:
    """Build ``image`` from its source folder, tagging it with its catalog ref."""
    if not image.buildable or image.source is None:
        raise BuildError(
            f"Image {image.name!r} has no Dockerfile to build from "
            f"(source: {image.source}). Pull it instead: `nbcontainers images pull {image.name}`."
        )
    say = on_line or (lambda _line: None)
    builder = find_builder()
    settings = settings or read_pip_settings()
    if base_image is None:
        base_image, why = choose_base(image, runtime)
    else:
        why = "given on the command line"
    say(
        f"building {image.ref} with {builder.description}; base: {base_image or image.base} ({why})"
    )

    with tempfile.TemporaryDirectory(prefix="nbc-build-") as tmp:
        context = Path(tmp) / "context"
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
        pipconf.write_text(
            settings.render(
                cert="/run/secrets/pipcert" if cert and os.path.isfile(cert) else "",
                find_links=("/tmp/nbc-wheels",),
                remote_only=True,
            )
        )
        pipconf.chmod(0o600)

        argv = [
            *builder.argv,
            "--progress=plain",
            "-t",
            image.ref,
            "--secret",
            f"id=pipconf,src={pipconf}",
            "--label",
            f"io.nbcontainers.source-hash={source_hash(image.source)}",
            "--label",
            f"io.nbcontainers.base={base_image or image.base or ''}",
        ]
        if cert and os.path.isfile(cert):
            argv += ["--secret", f"id=pipcert,src={cert}"]
        if base_image:
            argv += ["--build-arg", f"BASE_IMAGE={base_image}"]
        if any("+" in pin for pin in vendored):
            # The local-label wheel (e.g. torch +cpu) is in the context: skip its upstream index.
            argv += ["--build-arg", "EXTRA_INDEX_URL="]
        argv.append(str(context))
        if vendored:
            say(f"using wheels from the host's find-links: {', '.join(vendored)}")
        _stream(argv, {**os.environ, **builder.env}, say, image)

    info = runtime.image_info(image.ref)
    if info is None:
        raise BuildError(f"The build of {image.ref} finished but the engine has no such image.")
    return info


def _stream(argv: list[str], env: dict[str, str], say: LineCallback, image: CatalogImage) -> None:
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            errors="replace",
        )
    except OSError as exc:
        raise BuildError(f"Could not run {argv[0]}: {exc}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        say(line)
    if proc.wait() != 0:
        raise BuildError(
            f"Building image {image.name!r} failed (exit {proc.returncode}). Last lines:\n"
            + "\n".join(tail)
            + f"\nRetry with `nbcontainers images build {image.name}` once the cause is fixed."
        )
