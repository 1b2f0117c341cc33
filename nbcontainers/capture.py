"""Capture a live Python environment: the stdlib-only source that runs inside the kernel, the
parsing of its answer (how each distribution was installed, conda records, GPU and torch
facts), and the ways to run it (a Python executable, a running kernel's connection file).

Nothing from the environment (variables, pip credentials) is captured, so nothing secret can
reach a snapshot.
"""

from __future__ import annotations

import ast
import json
import queue
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .catalog import canonical_name
from .errors import SnapshotError

__all__ = [
    "CAPTURE_SOURCE",
    "Evaluate",
    "Package",
    "Snapshot",
    "capture_kernel",
    "capture_python",
    "find_connection_file",
    "kernel_evaluator",
    "parse_capture",
    "parse_nvidia_smi",
]

# evaluate(code, expression): run ``code`` in the kernel, return ``expression``'s value there.
Evaluate = Callable[[str, str], Any]

# Runs with ``t`` bound to the torch module and leaves the facts in ``facts``: in the kernel
# when the session imported torch, else in a child process so the capture imports nothing
# heavy into the user's kernel.
_TORCH_FACTS = """
ok = bool(t.cuda.is_available())
facts = {
    "version": t.__version__,
    "cuda": t.version.cuda,
    "cudnn": t.backends.cudnn.version() if t.backends.cudnn.is_available() else None,
    "cuda_available": ok,
    "devices": [t.cuda.get_device_name(i) for i in range(t.cuda.device_count())] if ok else [],
}
"""

_NVIDIA_SMI_QUERY = ("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")

# Stdlib-only, so it runs in any kernel; its result is one JSON document.
_CAPTURE_TEMPLATE = r"""
def __nbc_capture():
    import glob, importlib.metadata as md, json, os, platform, shutil, subprocess, sys
    # conda's own records: every file a conda package put into this prefix, so a
    # distribution's .dist-info folder tells whether conda installed it.
    conda = {}
    for record in glob.glob(os.path.join(sys.prefix, "conda-meta", "*.json")):
        try:
            with open(record, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        info = {k: meta.get(k) for k in ("name", "version", "build", "channel")}
        for path in meta.get("files") or ():
            if "-info" in path:
                for part in path.replace("\\", "/").split("/"):
                    if part.endswith((".dist-info", ".egg-info")):
                        conda[part] = info
                        break
    dists = []
    for d in md.distributions():
        name = d.metadata["Name"]
        if not name:
            continue
        direct = d.read_text("direct_url.json")
        info_dir = os.path.basename(str(getattr(d, "_path", "")).rstrip("/\\"))
        dists.append({
            "name": name, "version": d.version,
            "installer": (d.read_text("INSTALLER") or "").strip(),
            "direct_url": json.loads(direct) if direct else None,
            "conda": conda.get(info_dir),
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
        ns = {"t": sys.modules["torch"]}
        try:
            exec(@TORCH_FACTS@, ns)
            torch = dict(ns["facts"], imported=True)
        except Exception as exc:
            torch = {"version": getattr(ns["t"], "__version__", None), "imported": True,
                     "error": repr(exc)[:300]}
    elif any((d["name"] or "").lower() == "torch" for d in dists):
        code = "import json, torch as t\n" + @TORCH_FACTS@ + "\nprint(json.dumps(facts))"
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, timeout=120)
            lines = done.stdout.strip().splitlines()
            torch = dict(json.loads(lines[-1]), imported=False) if done.returncode == 0 \
                else {"imported": False, "error": done.stderr.strip()[-300:]}
        except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
            torch = {"imported": False, "error": repr(exc)[:300]}
    smi = {"found": False, "rc": None, "stdout": "", "stderr": ""}
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            done = subprocess.run([exe, *@SMI_QUERY@], capture_output=True, text=True, timeout=30)
            smi = {"found": True, "rc": done.returncode, "stdout": done.stdout,
                   "stderr": done.stderr[-300:]}
        except (OSError, subprocess.SubprocessError) as exc:
            smi = {"found": True, "rc": None, "stdout": "", "stderr": repr(exc)[:300]}
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
        "distributions": dists, "apt": apt, "torch": torch, "nvidia_smi": smi,
        "history": history,
    })
"""

CAPTURE_SOURCE = _CAPTURE_TEMPLATE.replace("@TORCH_FACTS@", repr(_TORCH_FACTS)).replace(
    "@SMI_QUERY@", repr(_NVIDIA_SMI_QUERY)
)


@dataclass(frozen=True)
class Package:
    """One installed distribution and how to get it back."""

    name: str
    version: str
    kind: str  # index, vcs, url, local, editable, conda, system
    source: str = ""  # VCS URL@commit, archive URL, local path, conda channel::name=version=build
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


def _conda_spec(record: Mapping[str, Any] | None, name: str, version: str) -> str:
    """``channel::name=version=build`` as `conda install` takes it, from a conda-meta record."""
    record = record or {}
    channel = str(record.get("channel") or "").rstrip("/").rsplit("/", 1)[-1]
    spec = f"{record.get('name') or name}={record.get('version') or version}"
    if record.get("build"):
        spec += f"={record['build']}"
    return f"{channel}::{spec}" if channel else spec


def _classify(dist: Mapping[str, Any]) -> Package:
    direct = dist.get("direct_url") or {}
    url = _strip_credentials(str(direct.get("url", "")))
    kind, source = "index", ""
    # conda first: conda-built packages may carry a direct_url.json pointing at the build
    # machine's source folder, which would read as an unreproducible local install.
    if dist.get("conda") or dist.get("installer") == "conda":
        kind = "conda"
        source = _conda_spec(dist.get("conda"), str(dist["name"]), str(dist["version"]))
    elif not dist.get("installer"):
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
    data = json.loads(text)
    classified = (_classify(d) for d in data["distributions"])
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
        history=tuple(data.get("history") or ()),
        modules=tuple(data.get("modules") or ()),
        torch=data.get("torch") or {},
        facts=facts,
    )


def capture_kernel(evaluate: Evaluate) -> Snapshot:
    """Capture the kernel that ``evaluate(code, expression)`` runs in, leaving no name behind."""
    snap = parse_capture(evaluate(CAPTURE_SOURCE, "__nbc_capture()"))
    evaluate("del __nbc_capture", "None")
    return snap


def capture_python(executable: str) -> Snapshot:
    """Capture a Python environment that is not a kernel (`nbcontainers snapshot --python`)."""
    import subprocess

    try:
        done = subprocess.run(
            [executable, "-c", CAPTURE_SOURCE + "\nprint(__nbc_capture())"],
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


def find_connection_file(connection: str) -> Path:
    """A kernel's connection file from its path, its file name (``kernel-<id>.json``) or its
    id (or a unique part of it), looked up in Jupyter's runtime folder."""
    path = Path(connection).expanduser()
    if path.is_file():
        return path.resolve()
    from jupyter_client import find_connection_file as jupyter_find
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        return Path(jupyter_find(connection)).resolve()
    except OSError:
        raise SnapshotError(
            f"No kernel connection file {connection!r}: neither a file nor a kernel in "
            f"{jupyter_runtime_dir()}. Pass the path `%connect_info` prints in the notebook, "
            "or the kernel's id."
        ) from None


@contextmanager
def kernel_evaluator(
    connection: str, timeout: float = 30, run_timeout: float = 900
) -> Iterator[Evaluate]:
    """Connect to a running kernel; yield ``evaluate(code, expression)`` for it.

    Raises :class:`SnapshotError` when the kernel does not answer within ``timeout`` seconds
    (gone, or busy running a cell) or a request does not finish within ``run_timeout``.
    """
    from jupyter_client.blocking.client import BlockingKernelClient

    path = find_connection_file(connection)
    client = BlockingKernelClient(connection_file=str(path))
    try:
        client.load_connection_file()
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"{path} is not a kernel connection file ({exc}).") from None
    client.start_channels()
    try:
        try:
            client.wait_for_ready(timeout=timeout)
        except (RuntimeError, TimeoutError):
            raise SnapshotError(
                f"The kernel of {path} did not answer within {timeout:g} s. Is it still "
                "running, and idle (a busy kernel answers after its cell)? Pass --timeout to "
                "wait longer."
            ) from None

        def evaluate(code: str, expression: str) -> Any:
            return _execute(client, code, expression, run_timeout)

        yield evaluate
    finally:
        client.stop_channels()


def _execute(client: Any, code: str, expression: str, timeout: float) -> Any:
    msg_id = client.execute(
        code,
        silent=True,
        store_history=False,
        user_expressions={"v": expression},
        allow_stdin=False,
        stop_on_error=False,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = client.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise SnapshotError(
                f"The kernel did not finish the capture within {timeout:g} s; nothing was written."
            ) from None
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    content = reply["content"]
    if content.get("status") != "ok":
        raise SnapshotError(
            f"The capture failed in the kernel: {content.get('ename')}: "
            f"{content.get('evalue')}; nothing was written."
        )
    value = content["user_expressions"]["v"]
    if value.get("status") != "ok":
        raise SnapshotError(
            f"The capture failed in the kernel: {value.get('ename')}: "
            f"{value.get('evalue')}; nothing was written."
        )
    return ast.literal_eval(value["data"]["text/plain"])
