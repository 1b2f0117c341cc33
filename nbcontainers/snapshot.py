"""`%container snapshot`: capture the environment a kernel really runs in, write a folder that
plain `docker build` turns back into it, and optionally verify that by rebuilding.

Capture runs inside the live kernel (local or container) as stdlib-only source; nothing from
the environment (variables, pip credentials) is captured, so nothing secret can be written.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .catalog import canonical_name
from .errors import NbcontainersError

__all__ = [
    "CAPTURE_SOURCE",
    "Package",
    "Snapshot",
    "SnapshotError",
    "compare_packages",
    "parse_capture",
    "write_snapshot",
]

MARKER = "nbcontainers-snapshot"
DEFAULT_BASE = (
    "debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251"
)
# Installed by the Dockerfile's system layer, not from the lock.
_SYSTEM_DISTS = {"pip", "setuptools", "wheel"}
PROJECT_GLOBS = ("*.ipynb", "*.py", "requirements*.txt", "pyproject.toml", "*.md")
_SECRET_NAMES = re.compile(r"(^\.env|\.pem$|\.key$|^id_(rsa|ed25519)|secret|token|\.netrc$)", re.I)


class SnapshotError(NbcontainersError):
    """The environment can't be written as a reproducible snapshot; the message says why."""

    exit_code = 7


# Stdlib-only, so it runs in any kernel; its result is one JSON document.
CAPTURE_SOURCE = r"""
def __nbc_capture():
    import importlib.metadata as md, json, os, platform, subprocess, sys
    dists = []
    for d in md.distributions():
        name = d.metadata["Name"]
        if not name:
            continue
        direct = d.read_text("direct_url.json")
        dists.append({
            "name": name, "version": d.version,
            "installer": (d.read_text("INSTALLER") or "").strip(),
            "direct_url": json.loads(direct) if direct else None,
            "requires": list(d.requires or []),
            "top_level": (d.read_text("top_level.txt") or "").split(),
            "location": str(d.locate_file("")),
        })
    apt = []
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n"],
                             capture_output=True, text=True, timeout=30).stdout
        apt = sorted(line for line in out.splitlines() if line)
    except (OSError, subprocess.SubprocessError):
        pass
    torch = {}
    if "torch" in sys.modules:
        t = sys.modules["torch"]
        torch = {"version": t.__version__, "cuda": t.version.cuda,
                 "cudnn": t.backends.cudnn.version() if t.backends.cudnn.is_available() else None,
                 "cuda_available": bool(t.cuda.is_available())}
    history = []
    try:
        ip = get_ipython()  # noqa: F821 - defined in IPython kernels
        for _, _, line in ip.history_manager.get_range(output=False):
            for cmd in str(line).splitlines():
                s = cmd.strip()
                if s.startswith(("%pip install", "!pip install", "%conda install",
                                 "!apt-get install", "!apt install", "!conda install")):
                    history.append(s)
    except Exception:
        pass
    return json.dumps({
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform.platform(), "machine": platform.machine(),
        "executable": sys.executable, "prefix": sys.prefix, "cwd": os.getcwd(),
        "image": os.environ.get("NBCONTAINERS_IMAGE"),
        "modules": sorted({m.split(".")[0] for m in list(sys.modules)}),
        "distributions": dists, "apt": apt, "torch": torch, "history": history,
    })
"""


@dataclass(frozen=True)
class Package:
    """One installed distribution and how to get it back."""

    name: str
    version: str
    kind: str  # index, vcs, url, local, editable, system
    source: str = ""  # VCS URL@commit, archive URL, local path
    requires: tuple[str, ...] = ()
    top_level: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonical_name(self.name)


@dataclass(frozen=True)
class Snapshot:
    python: str
    packages: tuple[Package, ...]
    image: str | None = None
    apt: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    torch: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _classify(dist: Mapping[str, Any]) -> Package:
    direct = dist.get("direct_url") or {}
    url = _strip_credentials(str(direct.get("url", "")))
    kind, source = "index", ""
    if not dist.get("installer"):
        kind = "system"
    elif "vcs_info" in direct:
        vcs = direct["vcs_info"]
        kind, source = "vcs", f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    elif "archive_info" in direct and not url.startswith("file:"):
        hashes = direct["archive_info"].get("hashes") or {}
        fragment = next((f"#{k}={v}" for k, v in sorted(hashes.items())), "")
        kind, source = "url", url + fragment
    elif direct:
        editable = bool((direct.get("dir_info") or {}).get("editable"))
        kind, source = ("editable" if editable else "local"), url
    return Package(
        name=str(dist["name"]),
        version=str(dist["version"]),
        kind=kind,
        source=source,
        requires=tuple(dist.get("requires") or ()),
        top_level=tuple(dist.get("top_level") or ()),
    )


def parse_capture(text: str) -> Snapshot:
    data = json.loads(text)
    classified = (_classify(d) for d in data["distributions"])
    packages = sorted(
        {p.key: p for p in classified}.values(),
        key=lambda p: p.key,
    )
    facts = {k: data.get(k) for k in ("implementation", "platform", "machine", "cwd")}
    return Snapshot(
        python=data["python"],
        packages=tuple(packages),
        image=data.get("image"),
        apt=tuple(data.get("apt") or ()),
        history=tuple(data.get("history") or ()),
        modules=tuple(data.get("modules") or ()),
        torch=data.get("torch") or {},
        facts=facts,
    )


def _requirement_names(requires: tuple[str, ...]) -> list[str]:
    names = []
    for req in requires:
        if "extra ==" in req:
            continue  # optional extras were not necessarily installed
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if match:
            names.append(canonical_name(match.group(0)))
    return names


def minimal_packages(snap: Snapshot) -> list[Package]:
    """The distributions whose modules the session imported, and everything they require."""
    by_key = {p.key: p for p in snap.packages}
    imported = set(snap.modules)
    wanted = [
        p.key
        for p in snap.packages
        if set(p.top_level) & imported or p.key.replace("-", "_") in imported
    ]
    keep: set[str] = set()
    while wanted:
        key = wanted.pop()
        if key in keep or key not in by_key:
            continue
        keep.add(key)
        wanted.extend(_requirement_names(by_key[key].requires))
    return [p for p in snap.packages if p.key in keep]


def compare_packages(live: Snapshot, rebuilt: Snapshot) -> list[str]:
    """Differences between two package sets (system packages aside), as readable lines."""

    def pins(snap: Snapshot) -> dict[str, str]:
        return {
            p.key: p.version
            for p in snap.packages
            if p.kind != "system" and p.key not in _SYSTEM_DISTS
        }

    a, b = pins(live), pins(rebuilt)
    lines = [f"missing in rebuild: {k}=={a[k]}" for k in sorted(a.keys() - b.keys())]
    lines += [f"extra in rebuild: {k}=={b[k]}" for k in sorted(b.keys() - a.keys())]
    lines += [
        f"version differs: {k} live {a[k]} rebuilt {b[k]}"
        for k in sorted(a.keys() & b.keys())
        if a[k] != b[k]
    ]
    return lines


def _lock_line(p: Package, wheel: str | None, hashes: list[str]) -> str:
    if wheel:
        line = f"{p.name} @ file:///opt/nbc/wheels/{wheel}"
    elif p.kind in ("vcs", "url"):
        line = f"{p.name} @ {p.source.split('#', 1)[0] if hashes else p.source}"
    else:
        line = f"{p.name}=={p.version}"
    return line + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes)


def _hashes_for(
    lock: list[Package],
    hashes: Mapping[tuple[str, str], list[str]],
    wheel_dir: Path,
    wheel_names: Mapping[str, str],
) -> dict[str, list[str]] | None:
    """Hashes for every lock line, or None: pip's hash mode is all or nothing."""
    from .hashes import file_sha256

    result = {}
    for p in lock:
        if p.key in wheel_names:
            found = [file_sha256(wheel_dir / wheel_names[p.key])]
        elif p.kind == "url" and "#sha256=" in p.source:
            found = [p.source.split("#sha256=", 1)[1]]
        elif p.kind == "index":
            found = list(hashes.get((p.name, p.version), []))
        else:
            found = []
        if not found:
            return None
        result[p.key] = found
    return result


def render_dockerfile(
    snap: Snapshot, base: str, extra_index: str | None, has_wheels: bool, apt_extra: list[str]
) -> str:
    apt = " ".join(["ca-certificates", "python3", "python3-pip", *apt_extra])
    lines = [
        f"# {MARKER}: generated by nbcontainers from a live kernel "
        f"(Python {snap.python}{', image ' + snap.image if snap.image else ''}).",
        "# Plain `docker build .` rebuilds it; behind a private index or TLS proxy pass a",
        "# pip.conf and CA bundle as BuildKit secrets `pipconf` / `pipcert`.",
        f"ARG BASE_IMAGE={base}",
        "FROM ${BASE_IMAGE}",
        "",
        "# system layer",
        "RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \\",
        f"    apt-get install -y --no-install-recommends {apt}; \\",
        "    rm -rf /var/lib/apt/lists/*; rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; \\",
        "    useradd --uid 1000 --user-group --home-dir /home/nbc --shell /bin/bash nbc; \\",
        "    mkdir -p /home/nbc /opt/nbc/wheels; chown nbc:nbc /home/nbc; chmod 1777 /home/nbc",
        "",
        "# dependency layer: from the lock alone",
        "COPY requirements.lock /opt/nbc/requirements.lock",
    ]
    if has_wheels:
        lines.append("COPY wheels/ /opt/nbc/wheels/")
    if extra_index:
        lines.append(f"ARG EXTRA_INDEX_URL={extra_index}")
    index_arg = ' ${EXTRA_INDEX_URL:+--extra-index-url "$EXTRA_INDEX_URL"}' if extra_index else ""
    lines += [
        "RUN --mount=type=secret,id=pipconf --mount=type=secret,id=pipcert \\",
        "    --mount=type=bind,source=.nbc/wheels,target=/tmp/nbc-wheels \\",
        "    set -eu; \\",
        "    if [ ! -e /run/secrets/pipconf ] && [ -s /run/secrets/pipcert ]; then "
        "export PIP_CERT=/run/secrets/pipcert; fi; \\",
        "    PIP_CONFIG_FILE=/run/secrets/pipconf PIP_ROOT_USER_ACTION=ignore "
        "PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        f"    python3 -m pip install --no-cache-dir --no-deps{index_arg} "
        "--find-links /tmp/nbc-wheels -r /opt/nbc/requirements.lock",
        "",
        "# project files last: editing them rebuilds only this layer",
        "COPY --chown=nbc:nbc project/ /home/nbc/project/",
        "ENV PYTHONUNBUFFERED=1 LANG=C.UTF-8",
        "USER nbc",
        "WORKDIR /home/nbc/project",
        'CMD ["python3", "-m", "ipykernel_launcher", "--help"]',
        f'LABEL io.nbcontainers.snapshot="{MARKER}"',
        f'LABEL io.nbcontainers.python="{snap.python}"',
        "",
    ]
    return "\n".join(lines)


DOCKERIGNORE = """# nbcontainers snapshot: what the build context leaves out
**/.ipynb_checkpoints
**/__pycache__
**/.git
**/.env
**/*.pem
**/*.key
environment.json
"""


def write_snapshot(
    snap: Snapshot,
    folder: Path,
    *,
    minimal: bool = False,
    wheels: Mapping[str, Path] | None = None,
    project: Path | None = None,
    base: str = DEFAULT_BASE,
    apt_base: set[str] | None = None,
    hashes: Mapping[tuple[str, str], list[str]] | None = None,
) -> Path:
    """Write the snapshot folder atomically: into a sibling temp folder, then renamed.

    ``wheels`` maps distribution keys of local/editable installs to wheels built from them.
    An existing folder is replaced only if it is an earlier snapshot.
    """
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        previous = folder / "environment.json"
        try:
            ours = json.loads(previous.read_text()).get("kind") == MARKER
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise SnapshotError(
                f"{folder} exists and is not an nbcontainers snapshot; nothing was written. "
                "Pick a new folder or an earlier snapshot's folder to replace."
            )
    packages = minimal_packages(snap) if minimal else list(snap.packages)
    wheels = dict(wheels or {})
    unreproducible = [
        p for p in packages if p.kind in ("local", "editable") and p.key not in wheels
    ]
    if unreproducible:
        names = ", ".join(f"{p.name} ({p.source or 'local install'})" for p in unreproducible)
        raise SnapshotError(
            f"Cannot reproduce {names}: installed from a local path that no longer builds. "
            "Reinstall it from an index or a VCS URL, or restore the folder, then snapshot "
            "again; nothing was written."
        )
    lock = [p for p in packages if p.kind != "system" and p.key not in _SYSTEM_DISTS]
    local_labels = sorted({p.version.split("+", 1)[1] for p in lock if "+" in p.version})
    extra_index = None
    if any(label == "cpu" or label.startswith("cu") for label in local_labels):
        extra_index = f"https://download.pytorch.org/whl/{local_labels[0]}"
    apt_extra = sorted(
        line.split("=", 1)[0] for line in snap.apt if apt_base is not None and line not in apt_base
    )
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".nbc-snapshot-", dir=parent))
    staging.chmod(0o755)
    try:
        (staging / ".nbc" / "wheels").mkdir(parents=True)
        (staging / "wheels").mkdir()
        wheel_names = {}
        for key, wheel in wheels.items():
            shutil.copy2(wheel, staging / "wheels" / wheel.name)
            wheel_names[key] = wheel.name
        header = [f"# {MARKER} lock: exact versions of what the kernel had installed."]
        if extra_index:
            header.append(
                f"# local version labels ({', '.join(local_labels)}) come from {extra_index}"
            )
        line_hashes = _hashes_for(lock, hashes or {}, staging / "wheels", wheel_names)
        if line_hashes is None:
            header.append(
                "# no hash lines: not every distribution has a published hash "
                "(a VCS install, or an index that gives none)"
            )
        else:
            header.append("# every line carries its files' sha256: pip installs in hash mode")
        body = [
            _lock_line(p, wheel_names.get(p.key), (line_hashes or {}).get(p.key, [])) for p in lock
        ]
        (staging / "requirements.lock").write_text("\n".join(header + body) + "\n")
        (staging / "Dockerfile").write_text(
            render_dockerfile(snap, base, extra_index, bool(wheel_names), apt_extra)
        )
        (staging / ".dockerignore").write_text(DOCKERIGNORE)
        (staging / "project").mkdir()
        if project is not None:
            _copy_project(project, staging / "project", exclude=folder)
        (staging / "environment.json").write_text(
            json.dumps(
                {
                    "kind": MARKER,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "python": snap.python,
                    "image": snap.image,
                    "base": base,
                    "minimal": minimal,
                    "packages": [
                        {"name": p.name, "version": p.version, "kind": p.kind, "source": p.source}
                        for p in packages
                    ],
                    "apt_added": apt_extra,
                    "history": list(snap.history),
                    "torch": dict(snap.torch),
                    **{k: v for k, v in snap.facts.items() if k != "cwd"},
                },
                indent=2,
            )
            + "\n"
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _copy_project(source: Path, dest: Path, exclude: Path) -> None:
    """Notebooks, code and declared requirements of the notebook's folder (top level only),
    never files whose names look like secrets."""
    for pattern in PROJECT_GLOBS:
        for path in source.glob(pattern):
            if (
                path.is_file()
                and not _SECRET_NAMES.search(path.name)
                and exclude not in path.parents
            ):
                shutil.copy2(path, dest / path.name)


def _download_all(evaluate: Any, snap: Snapshot, wheel_dir: str, minimal: bool) -> dict[str, Path]:
    """Have the kernel's own pip download every pinned distribution (its platform, its pip
    settings) into ``wheel_dir``; return key -> file."""
    packages = minimal_packages(snap) if minimal else list(snap.packages)
    pins = [
        f"{p.name}=={p.version}"
        for p in packages
        if p.kind == "index" and p.key not in _SYSTEM_DISTS
    ]
    dest = Path(wheel_dir) / "all"
    dest.mkdir(exist_ok=True)
    (dest / "pins.txt").write_text("\n".join(pins) + "\n")
    code = (
        "import subprocess as __nbc_sp, sys as __nbc_sys\n"
        "__nbc_dl = __nbc_sp.run([__nbc_sys.executable, '-m', 'pip', 'download', '--no-deps',"
        f" '-q', '-d', {str(dest)!r}, '-r', {str(dest / 'pins.txt')!r}], capture_output=True,"
        " text=True)\n"
        "__nbc_dl = (__nbc_dl.returncode, __nbc_dl.stderr[-800:])\n"
        "del __nbc_sp, __nbc_sys"
    )
    code_and_err = evaluate(code, "__nbc_dl")
    evaluate("globals().pop('__nbc_dl', None)", "None")
    if code_and_err[0] != 0:
        raise SnapshotError(
            f"Could not download every distribution for --wheels: "
            f"{code_and_err[1].strip()}; nothing was written."
        )
    files: dict[str, Path] = {}
    for path in dest.iterdir():
        if path.suffix in (".whl", ".gz", ".zip"):
            stem = (
                path.name.split("-")[0] if path.suffix == ".whl" else (path.name.rsplit("-", 1)[0])
            )
            files[canonical_name(stem)] = path
    return files


def lookup_hashes(snap: Snapshot) -> dict[tuple[str, str], list[str]]:
    """Published file hashes for the index-installed distributions (see hashes.py)."""
    from .hashes import published_hashes
    from .pipsettings import read_pip_settings

    pins = [
        (p.name, p.version)
        for p in snap.packages
        if p.kind == "index" and p.key not in _SYSTEM_DISTS
    ]
    return published_hashes(pins, read_pip_settings())


def capture_python(executable: str) -> Snapshot:
    """Capture a Python environment that is not a kernel (`nbcontainers snapshot --python`)."""
    import subprocess

    done = subprocess.run(
        [executable, "-c", CAPTURE_SOURCE + "\nprint(__nbc_capture())"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SnapshotError(f"Could not inspect {executable}: {done.stderr.strip()[-500:]}")
    return parse_capture(done.stdout)


def image_packages(runtime: Any, ref: str) -> Snapshot:
    """Capture what an image has installed (Python distributions, apt packages)."""
    from .runtimes.base import ContainerSpec

    marker = "@@nbcontainers-capture@@"
    cid = runtime.run(
        ContainerSpec(
            image=ref,
            command=("python3", "-c", CAPTURE_SOURCE + f"\nprint({marker!r} + __nbc_capture())"),
            network_mode="none",
        )
    )
    try:
        code = runtime.wait(cid, timeout=120)
        # All of it: the engine splits long lines (16 KiB) into several log entries.
        output = runtime.logs(cid, tail=1_000_000)
    finally:
        runtime.remove(cid)
    if code != 0 or marker not in output:
        raise SnapshotError(f"Could not inspect image {ref} (exit {code}): {output[-500:]}")
    snap = parse_capture(output.split(marker, 1)[1].replace("\n", ""))
    return snap


def snapshot_image(folder: Path) -> Any:
    """The catalog entry (a :class:`~nbcontainers.catalog.CatalogImage`) that builds a
    snapshot folder, named ``snapshot-<folder name>``."""
    from .catalog import CatalogImage, source_hash

    name = "snapshot-" + re.sub(r"[^a-z0-9._-]", "-", folder.name.lower())
    return CatalogImage(
        name=name,
        ref=f"nbcontainers/{name}:{source_hash(folder)}",
        display_name=f"Snapshot {folder.name} (container)",
        base=DEFAULT_BASE,
        source=folder,
        user_defined=True,
    )


def build_and_verify(
    folder: Path, live: Snapshot, runtime: Any, on_line: Any = None
) -> tuple[str, list[str]]:
    """Build the snapshot folder, start the image, compare its packages with ``live``.

    Returns (image ref, differences); no differences means the rebuild matches.
    """
    from .build import build_image

    image = snapshot_image(folder)
    build_image(image, runtime, on_line=on_line)
    rebuilt = image_packages(runtime, image.ref)
    return image.ref, compare_packages(live, rebuilt)


def take_snapshot(
    evaluate: Any,
    folder: Path,
    *,
    wheel_dir: str,
    minimal: bool = False,
    image_ref: str | None = None,
    runtime: Any = None,
    base: str = DEFAULT_BASE,
    vendor_all: bool = False,
) -> tuple[Path, Snapshot]:
    """Capture a live kernel and write its snapshot folder.

    ``evaluate(code, expression)`` runs ``code`` in the kernel and returns the value of
    ``expression`` there. Local and editable installs are built into wheels (in
    ``wheel_dir``, which the kernel can write) and vendored; ``image_ref`` (the catalog image
    the kernel runs in) gives the apt baseline for the system layer. ``vendor_all`` also
    downloads every other distribution's file, so the folder builds with no index at all.
    """
    snap = parse_capture(evaluate(CAPTURE_SOURCE, "__nbc_capture()"))
    evaluate("del __nbc_capture", "None")
    wheels: dict[str, Path] = {}
    for p in snap.packages:
        if p.kind not in ("local", "editable"):
            continue
        path = urlsplit(p.source).path if p.source.startswith("file:") else p.source
        code = (
            "import os as __nbc_os, subprocess as __nbc_sp, sys as __nbc_sys\n"
            f"__nbc_rc = __nbc_sp.run([__nbc_sys.executable, '-m', 'pip', 'wheel', '--no-deps',"
            f" '-q', '-w', {wheel_dir!r}, {path!r}], capture_output=True).returncode "
            f"if __nbc_os.path.isdir({path!r}) else -1\n"
            "del __nbc_os, __nbc_sp, __nbc_sys"
        )
        if evaluate(code, "__nbc_rc") == 0:
            stem = re.sub(r"[-_.]+", "_", p.name).lower()
            built = [
                w
                for w in Path(wheel_dir).glob("*.whl")
                if w.name.lower().startswith(f"{stem}-{p.version.lower()}")
            ]
            if built:
                wheels[p.key] = built[0]
        evaluate("globals().pop('__nbc_rc', None)", "None")
    if vendor_all:
        wheels.update(_download_all(evaluate, snap, wheel_dir, minimal))
    apt_base = set(image_packages(runtime, image_ref).apt) if image_ref and runtime else None
    hashes = lookup_hashes(snap)
    project = Path(str(snap.facts.get("cwd") or "")) if snap.facts.get("cwd") else None
    written = write_snapshot(
        snap,
        folder,
        minimal=minimal,
        wheels=wheels,
        project=project if project and project.is_dir() else None,
        base=base,
        apt_base=apt_base,
        hashes=hashes,
    )
    for wheel in wheels.values():
        wheel.unlink(missing_ok=True)
    shutil.rmtree(Path(wheel_dir) / "all", ignore_errors=True)
    return written, snap


def dependency_closure(snap: Snapshot, roots: Iterable[str]) -> list[Package]:
    """The distributions named in ``roots`` and everything they require, in snapshot order."""
    by_key = {p.key: p for p in snap.packages}
    wanted = [canonical_name(r) for r in roots]
    keep: set[str] = set()
    while wanted:
        key = wanted.pop()
        if key in keep or key not in by_key:
            continue
        keep.add(key)
        wanted.extend(_requirement_names(by_key[key].requires))
    return [p for p in snap.packages if p.key in keep]


def render_lock(
    lock: list[Package], hashes: Mapping[tuple[str, str], list[str]], title: str
) -> str:
    """A requirements lock for ``lock``: hash lines on every entry when each has a published
    hash (pip's hash mode is all or nothing), else plain pins."""
    line_hashes = _hashes_for(lock, hashes, Path("/nonexistent"), {})
    header = [f"# {title}"]
    if line_hashes is None:
        header.append("# no hash lines: not every distribution has a published hash")
    else:
        header.append("# every line carries its files' sha256: pip installs in hash mode")
    body = [_lock_line(p, None, (line_hashes or {}).get(p.key, [])) for p in lock]
    return "\n".join(header + body) + "\n"
