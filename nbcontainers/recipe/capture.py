"""Capture a live Python environment: run the capture (``inkernel/environment.py``) in a
kernel or a Python executable, and parse its answer into a :class:`Snapshot` (how each
distribution was installed, conda records, GPU and torch facts).

Nothing from the environment (variables, pip credentials) is captured, and credentials in the
URLs it does capture (install sources, `%pip` lines of the history) are redacted here, on the
host side: the capture itself runs in the kernel and imports nothing of ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SnapshotError
from ..evaluate import Evaluate
from ..sources import bundle, kernel_function
from .environment import Package, Snapshot
from .redact import redact, redact_url

__all__ = [
    "capture_kernel",
    "capture_python",
    "capture_source",
    "parse_capture",
    "parse_nvidia_smi",
]

_INKERNEL = Path(__file__).parent.parent / "inkernel"


@lru_cache(maxsize=1)
def capture_source() -> str:
    """Python that defines ``__nbc_capture()`` (and nothing else), which returns the capture's
    JSON: what a kernel, ``python -c`` or an image's python3 runs."""
    # Wrapped in one function: the kernel's namespace gets nothing else, and a plain
    # `python -c` or an image's python3 can run the same text.
    source = bundle(_INKERNEL, ["environment"], "The nbcontainers environment capture.")
    return kernel_function(source, "capture", "__nbc_capture")


def _conda_spec(record: Mapping[str, Any] | None, name: str, version: str) -> str:
    """``channel::name=version=build`` as `conda install` takes it, from a conda-meta record."""
    record = record or {}
    channel = str(record.get("channel") or "").rstrip("/").rsplit("/", 1)[-1]
    spec = f"{record.get('name') or name}={record.get('version') or version}"
    if record.get("build"):
        spec += f"={record['build']}"
    return f"{channel}::{spec}" if channel else spec


def _classify(dist: Mapping[str, Any]) -> Package:
    """How one distribution was installed (PEP 610's direct_url.json, INSTALLER, conda),
    which says how the lock can get it back."""
    direct = dist.get("direct_url") or {}
    # No token, password or URL signature goes further than this: a private index's or a
    # presigned URL's credential must not reach a lock, environment.json or a message.
    url = redact_url(str(direct.get("url", "")))
    kind, source = "index", ""
    # conda first: conda-built packages may carry a direct_url.json pointing at the build
    # machine's source folder, which would read as an unreproducible local install.
    if dist.get("conda") or dist.get("installer") == "conda":
        kind = "conda"
        source = _conda_spec(dist.get("conda"), str(dist["name"]), str(dist["version"]))
    elif not dist.get("installer"):
        kind = "system"  # no INSTALLER: Debian's python3-* packages, the interpreter's own
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


def _mebibytes(text: str) -> int | None:
    match = re.fullmatch(r"\s*([\d.]+)\s*(MiB|GiB)?\s*", text)
    if not match:
        return None  # "[N/A]", "[Insufficient Permissions]"
    value = float(match.group(1))
    return int(value * 1024 if match.group(2) == "GiB" else value)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """GPUs from ``nvidia-smi --query-gpu=name,driver_version,memory.total
    --format=csv,noheader`` output: one ``{"name", "driver_version", "memory_mib"}`` a line."""
    gpus = []
    for line in text.splitlines():
        # Split from the right: a GPU's name could hold a comma, the other fields can't.
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue
        gpus.append(
            {"name": parts[0], "driver_version": parts[1], "memory_mib": _mebibytes(parts[2])}
        )
    return gpus


def _gpu_facts(smi: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], str]:
    """(GPUs, how they were found or why there are none) from the kernel's nvidia-smi run."""
    if not smi or not smi.get("found"):
        return [], "no nvidia-smi in the kernel's environment: no NVIDIA GPU visible"
    if smi.get("rc") != 0:
        reason = (str(smi.get("stderr") or "").strip().splitlines() or ["failed"])[0]
        return [], f"nvidia-smi failed (exit {smi.get('rc')}): {reason}"
    gpus = parse_nvidia_smi(str(smi.get("stdout") or ""))
    return gpus, "nvidia-smi" if gpus else "nvidia-smi lists no GPU"


def parse_capture(text: str) -> Snapshot:
    """The capture's JSON (``inkernel/environment.py``) as a :class:`Snapshot`."""
    data = json.loads(text)
    classified = (_classify(d) for d in data["distributions"])
    # One entry per distribution (a second copy on sys.path is shadowed), sorted by name.
    packages = sorted(
        {p.key: p for p in classified}.values(),
        key=lambda p: p.key,
    )
    facts = {k: data.get(k) for k in ("implementation", "platform", "machine", "cwd")}
    facts["gpu"], facts["gpu_probe"] = _gpu_facts(data.get("nvidia_smi"))
    return Snapshot(
        python=data["python"],
        packages=tuple(packages),
        image=data.get("image"),
        apt=tuple(data.get("apt") or ()),
        # An install line with a private index's token in its URL is what a history holds.
        history=tuple(redact(str(line)) for line in data.get("history") or ()),
        modules=tuple(data.get("modules") or ()),
        torch=data.get("torch") or {},
        facts=facts,
    )


def capture_kernel(evaluate: Evaluate) -> Snapshot:
    """Capture the kernel that ``evaluate(code, expression)`` runs in, leaving no name behind."""
    # Defined, called, deleted: the user's namespace keeps no name of ours.
    snap = parse_capture(evaluate(capture_source(), "__nbc_capture()"))
    evaluate("del __nbc_capture", "None")
    return snap


def capture_python(executable: str) -> Snapshot:
    """Capture a Python environment that is not a kernel (`nbcontainers snapshot --python`)."""
    import subprocess

    try:
        done = subprocess.run(
            [executable, "-c", capture_source() + "\nprint(__nbc_capture())"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotError(
            f"Could not run {executable}: {exc}. Pass --python the path of a Python executable."
        ) from None
    if done.returncode != 0:
        raise SnapshotError(f"Could not inspect {executable}: {done.stderr.strip()[-500:]}")
    return parse_capture(done.stdout)
