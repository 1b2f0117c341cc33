"""What a pooled kernel is compared with a cold one on, on any engine: the code a kernel runs
to say what it sees of itself, how the engine made its container, and the assertions that
the two are alike. Used by test_pool_docker.py and, run as the Podman test user outside
pytest, by podman_pool_probe.py (which imports it from its own folder): standard library only.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

# What a kernel can see of itself: cwd, env, ids, who it is and its home, files, import
# path, mounts, privileges, and what IPython noted of its start.
SEEN = textwrap.dedent(
    """
    import getpass, json, os, pwd, site, subprocess, sys
    mounts = sorted(
        (line.split()[4], line.split()[5].split(",")[0])
        for line in open("/proc/self/mountinfo")
    )
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status") if ":\\t" in line)
    print(json.dumps({
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "ids": [os.getuid(), os.getgid(), os.getgroups()],
        "who": {
            "getuser": getpass.getuser(),
            "passwd": list(pwd.getpwuid(os.getuid())),
            "whoami": subprocess.run(["whoami"], capture_output=True, text=True).stdout.strip(),
            "home": os.path.expanduser("~"),
            "home_writable": os.access(os.path.expanduser("~"), os.W_OK),
            "user_site": site.getusersitepackages(),
            "user_site_on_path": site.getusersitepackages() in sys.path,
        },
        "files": sorted(os.listdir(".")),
        "path": sys.path,
        "argv": sys.argv,
        "mounts": mounts,
        "security": {k: status[k].strip() for k in
                     ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs", "Seccomp")},
        "ipython": {
            "dh": [str(d) for d in _dh],
            "starting_dir": get_ipython().starting_dir,
            "session": globals().get("__session__"),
            "extensions": sorted(get_ipython().extension_manager.loaded),
            "startup": globals().get("STARTUP"),
        },
    }))
    """
)
# An IPython startup file: it must run after the hand-over, in the notebook's folder.
STARTUP = "import os\nSTARTUP = [os.getcwd(), os.environ.get('JPY_SESSION_NAME')]\n"
# How the engine made a container (Docker's inspect, and Podman's Docker-compatible one).
HOST_KEYS = ("CapDrop", "CapAdd", "SecurityOpt", "Init", "Privileged", "ShmSize", "PidsLimit",
             "Memory", "NanoCpus", "ReadonlyRootfs", "Tmpfs", "UsernsMode")  # fmt: skip


def private(path: str) -> str:
    """Each container has its own private folder (/tmp/nbc-XXXX): the same kind."""
    return re.sub(r"/tmp/nbc-[^/]+", "<private>", path)


def ipython_dir(root: Path, config: str = "") -> str:
    """An IPython folder with a startup file and, given ``config``, ipython_kernel_config.py."""
    profile = root / "ipython" / "profile_default"
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-seen.py").write_text(STARTUP)
    if config:
        (profile / "ipython_kernel_config.py").write_text(config)
    return str(root / "ipython")


def seen_in(printed: str) -> dict[str, Any]:
    """What SEEN printed, less what differs between any two containers of the same kind."""
    seen: dict[str, Any] = json.loads(printed)
    seen["env"].pop("HOSTNAME", None)
    seen["mounts"] = [[private(m), o] for m, o in seen["mounts"]]
    return seen


def made(inspected: dict[str, Any]) -> dict[str, Any]:
    """How the engine made a container, from its inspect data, private folders made alike."""
    host = inspected["HostConfig"]
    return {
        "host": {k: host.get(k) for k in HOST_KEYS},
        "mounts": sorted(
            [private(m["Source"]), private(m["Destination"]), m["RW"]] for m in inspected["Mounts"]
        ),
        "user": inspected["Config"]["User"],
        "image": inspected["Config"]["Image"],
        "network": (host.get("NetworkMode") or "").split(":")[0],
    }


def assert_alike(
    cold: dict[str, Any],
    pooled: dict[str, Any],
    notebook: Path,
    workspace: Path,
    sessions: tuple[str, str],
) -> None:
    """The cold kernel and the pooled one (their ``seen_in``) see the same of themselves, in
    ``notebook``, ``workspace`` mounted writable, each with its own session name. Pops the
    session names: the callers' own checks (ids, env values) come after."""
    a, b = cold, pooled
    assert b["cwd"] == a["cwd"] == str(notebook)
    assert a["env"].pop("JPY_SESSION_NAME") == sessions[0]
    assert b["env"].pop("JPY_SESSION_NAME") == sessions[1]
    assert b["env"] == a["env"]
    assert b["ids"] == a["ids"]
    # Who it is and its ~: a passwd entry for any uid, a writable home whose user site is on
    # the import path from the interpreter's start (%pip install imports at once).
    assert b["who"] == a["who"]
    assert a["who"]["getuser"] == a["env"]["USER"] == a["env"]["LOGNAME"]
    assert a["who"]["home"] == a["env"]["HOME"]
    assert a["who"]["passwd"][5] == a["env"]["HOME"] or a["ids"][0] == 0  # root: the image's
    assert a["who"]["whoami"] == a["who"]["passwd"][0]
    assert a["who"]["home_writable"] and a["who"]["user_site_on_path"]
    assert b["files"] == a["files"] == ["data.csv"]
    assert b["path"] == a["path"]
    assert b["argv"] == a["argv"]
    assert b["mounts"] == a["mounts"]
    assert [str(workspace), "rw"] in b["mounts"]
    assert b["security"] == a["security"]
    assert b["security"]["NoNewPrivs"] == "1" and b["security"]["CapEff"] == "0" * 16
    # What IPython noted of its start: the folder, the session, the startup file's run.
    assert a["ipython"].pop("session") == sessions[0]
    assert b["ipython"].pop("session") == sessions[1]
    assert a["ipython"].pop("startup") == [str(notebook), sessions[0]]
    assert b["ipython"].pop("startup") == [str(notebook), sessions[1]]
    assert b["ipython"] == a["ipython"]
    assert b["ipython"]["dh"] == [str(notebook)] and b["ipython"]["extensions"]
