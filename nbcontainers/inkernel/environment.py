"""The environment capture: what is installed in this Python and how, as one JSON document.

Runs in the user's kernel, in a plain ``python -c`` (``nbcontainers snapshot --python``) and
in a container started from an image, so it is stdlib-only and reads nothing from the
environment's variables: nothing secret can reach a snapshot. The host parses the answer
(``nbcontainers/recipe/capture.py``).
"""

from __future__ import annotations

import glob
import importlib.metadata as md
import json
import os
import platform
import shutil
import site
import subprocess
import sys
from typing import Any

__all__ = ["NVIDIA_SMI_QUERY", "TORCH_FACTS", "capture"]

# Runs with ``t`` bound to the torch module and leaves the facts in ``facts``: in the kernel
# when the session imported torch, else in a child process so the capture imports nothing
# heavy into the user's kernel. A string, not a function, because the child gets it as -c.
TORCH_FACTS = """
ok = bool(t.cuda.is_available())
facts = {
    "version": t.__version__,
    "cuda": t.version.cuda,
    "cudnn": t.backends.cudnn.version() if t.backends.cudnn.is_available() else None,
    "cuda_available": ok,
    "devices": [t.cuda.get_device_name(i) for i in range(t.cuda.device_count())] if ok else [],
}
"""

NVIDIA_SMI_QUERY = ("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")


def capture() -> str:
    """This environment as JSON: interpreter, distributions, apt, torch, GPUs, history."""
    dists = _distributions(_conda_records())
    apt, torch, smi, history = _apt(), _torch(dists), _nvidia_smi(), _history()
    # Last: the module list is what the session (and the steps above) imported.
    return json.dumps(
        {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "user_site": _user_site(),
            "cwd": os.getcwd(),
            "image": os.environ.get("NBCONTAINERS_IMAGE"),
            "modules": sorted({m.split(".")[0] for m in list(sys.modules)}),
            "distributions": dists,
            "apt": apt,
            "torch": torch,
            "nvidia_smi": smi,
            "history": history,
        }
    )


def _user_site() -> str | None:
    """Where ``pip install --user`` (``%pip install`` as a non-root user) puts packages, when
    this Python reads it: in a container kernel a folder of the lasting home, kept per image
    (kernels/home.py). Its distributions are among the ``distributions``, with this location,
    so a snapshot pins them like the image's own."""
    if not site.ENABLE_USER_SITE:
        return None
    return site.getusersitepackages()


def _conda_records() -> dict[str, Any]:
    """conda's own records: every file a conda package put into this prefix, so a
    distribution's .dist-info folder tells whether conda installed it."""
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
    return conda


def _distributions(conda: dict[str, Any]) -> list[dict[str, Any]]:
    dists = []
    for d in md.distributions():
        name = d.metadata["Name"]
        if not name:
            continue
        # PEP 610: how pip got it (VCS commit, archive URL and hash, local or editable path).
        direct = d.read_text("direct_url.json")
        # The .dist-info folder's name is what conda's records list (see _conda_records).
        info_dir = os.path.basename(str(getattr(d, "_path", "")).rstrip("/\\"))
        dists.append(
            {
                "name": name,
                "version": d.version,
                "installer": (d.read_text("INSTALLER") or "").strip(),
                "direct_url": json.loads(direct) if direct else None,
                "conda": conda.get(info_dir),
                "requires": list(d.requires or []),
                "top_level": (d.read_text("top_level.txt") or "").split(),
                "location": str(d.locate_file("")),
            }
        )
    return dists


def _apt() -> list[str]:
    try:
        out = subprocess.run(
            # Every Debian package with its version; the host diffs it against the base image.
            ["dpkg-query", "-W", "-f", "${Package}=${Version}\n"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return sorted(line for line in out.splitlines() if line)
    except (OSError, subprocess.SubprocessError):
        return []


def _torch(dists: list[dict[str, Any]]) -> dict[str, Any]:
    if "torch" in sys.modules:
        ns = {"t": sys.modules["torch"]}
        try:
            exec(TORCH_FACTS, ns)
            return dict(ns["facts"], imported=True)
        except Exception as exc:
            return {
                "version": getattr(ns["t"], "__version__", None),
                "imported": True,
                "error": repr(exc)[:300],
            }
    if any((d["name"] or "").lower() == "torch" for d in dists):
        code = "import json, torch as t\n" + TORCH_FACTS + "\nprint(json.dumps(facts))"
        try:
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
            )
            lines = done.stdout.strip().splitlines()
            if done.returncode == 0:
                return dict(json.loads(lines[-1]), imported=False)
            return {"imported": False, "error": done.stderr.strip()[-300:]}
        except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
            return {"imported": False, "error": repr(exc)[:300]}
    return {}


def _nvidia_smi() -> dict[str, Any]:
    # Raw output, parsed on the host (capture.parse_nvidia_smi), where it is unit-tested.
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {"found": False, "rc": None, "stdout": "", "stderr": ""}
    try:
        done = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=30)
        return {
            "found": True,
            "rc": done.returncode,
            "stdout": done.stdout,
            "stderr": done.stderr[-300:],
        }
    except (OSError, subprocess.SubprocessError) as exc:
        return {"found": True, "rc": None, "stdout": "", "stderr": repr(exc)[:300]}


def _history() -> list[str]:
    """Install commands from the session's history (``%pip install``, ``!apt-get install``).
    ``get_ipython`` is the sender's (see ``sources.kernel_function``): absent outside IPython."""
    history = []
    try:
        ip = globals()["get_ipython"]()
        for _, _, line in ip.history_manager.get_range(output=False):
            for cmd in str(line).splitlines():
                s = cmd.strip()
                if s.startswith(
                    (
                        "%pip install",
                        "!pip install",
                        "%conda install",
                        "!apt-get install",
                        "!apt install",
                        "!conda install",
                    )
                ):
                    history.append(s)
    except Exception:
        pass
    return history
