"""A container kernel at home, on a real Docker engine: it knows who it is for any uid
(getpass, whoami, USER/LOGNAME, ``~``), its ``~`` outlives the kernel in the user's folder on
the host, and ``%pip install`` of a package imports at once, after a restart, and is in the
snapshot; a pooled kernel of a uid without a passwd entry is the same as a cold one.

Before kernels/home.py (uid 48213, same engine and image): ``getpass.getuser()`` raised
``KeyError: 'getpwuid(): uid not found: 48213'``, ``whoami`` failed, USER/LOGNAME were unset,
HOME was the tmpfs /home/nbc, and after ``%pip install`` the import failed with
ModuleNotFoundError (the user site was not on sys.path) and, after a restart, the package and
``~/kept.txt`` were gone. Before the user site's .pth line, pip warned that the package's
command was "not on PATH" and ``!nbctiny`` was "command not found".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.recipe.capture import capture_source, parse_capture

from ..drive import container_kernel, run
from .pool_alike import assert_alike, ipython_dir, made
from .pooled_starts import seen_by, start_nbc_python

pytestmark = pytest.mark.docker

UID = 48213
WHO = (
    "import getpass, os, subprocess\n"
    "print(getpass.getuser(), os.environ['USER'], os.environ['LOGNAME'],"
    " subprocess.run(['whoami'], capture_output=True, text=True).stdout.strip(),"
    " os.path.expanduser('~'), os.getuid())\n"
    "open(os.path.expanduser('~/kept.txt'), 'w').write('kept')\n"
)


def _wheel(folder: Path) -> Path:
    """A tiny pure-Python wheel (``nbctiny``, VALUE = 42, and a command ``nbctiny``), written
    by hand: no build tools, no index."""
    files = {
        "nbctiny/__init__.py": "VALUE = 42\n\n\ndef main():\n    print('tiny', VALUE)\n",
        "nbctiny-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: nbctiny\nVersion: 0.1\n",
        "nbctiny-0.1.dist-info/entry_points.txt": "[console_scripts]\nnbctiny = nbctiny:main\n",
        "nbctiny-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{name},sha256={encoded},{len(text.encode())}")
    record.append("nbctiny-0.1.dist-info/RECORD,,")
    path = folder / "nbctiny-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr("nbctiny-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's data folder (where kernels' homes and identity files go) for this test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "nbcontainers"


@pytest.mark.parametrize("uid", [UID, None], ids=["uid-48213", "server-uid"])
def test_identity_home_and_pip_install_last(
    python_image: str, tmp_path: Path, data: Path, uid: int | None
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    _wheel(workspace)
    config: dict[str, Any] = {}
    if uid is not None:
        os.chown(workspace, uid, uid)
        config["user"] = f"{uid}:{uid}"
    expect_uid = os.getuid() if uid is None else uid
    name = "root" if uid is None else f"u{uid}"  # 48213 has no passwd entry on this host
    home = str(Path.home()) if uid is None else f"/home/u{uid}"
    with container_kernel(workspace, **config) as (km, kc):
        out, reply = run(kc, WHO)
        assert reply["status"] == "ok", out
        assert out.split() == [name, name, name, name, home, str(expect_uid)]
        out, reply = run(kc, "%pip install --no-index ./nbctiny-0.1-py3-none-any.whl", 180)
        assert reply["status"] == "ok" and "Successfully installed nbctiny-0.1" in out, out
        assert "not on PATH" not in out, out  # pip's own warning, before the .pth line
        out, reply = run(kc, "import nbctiny; print(nbctiny.VALUE, nbctiny.__file__)")
        assert reply["status"] == "ok", out  # at once: no restart
        value, where = out.split()
        userbase = f"{home}/.local/share/nbcontainers/python/python"
        assert value == "42" and where.startswith(userbase + "/lib/python3.11/site-packages/")
        # The snapshot captures it (a local wheel: its file URL, from pip's direct_url.json).
        out, reply = run(kc, capture_source() + "\nprint(__nbc_capture())", 120)
        assert reply["status"] == "ok", out
        assert "nbctiny" in {p.name for p in parse_capture(out).packages}
        captured = json.loads(out)
        site = f"{userbase}/lib/python3.11/site-packages"
        assert captured["user_site"] == site  # says where %pip put it
        [tiny] = [d for d in captured["distributions"] if d["name"] == "nbctiny"]
        assert tiny["location"] == site and tiny["direct_url"]["url"].startswith("file://")
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=60)
        out, reply = run(
            kc,
            "import nbctiny, os\n"
            "print(nbctiny.VALUE, open(os.path.expanduser('~/kept.txt')).read())\n"
            "!nbctiny",
        )
        # The command it installed runs from the notebook (`!`), after a restart too.
        assert reply["status"] == "ok" and out.split() == ["42", "kept", "tiny", "42"], out
    # On the host: the user's folder, 0700, and the file is the kernel user's.
    folder = data / ("home" if uid is None else f"homes/{uid}")
    kept = folder / "kept.txt"
    assert kept.read_text() == "kept" and kept.stat().st_uid == expect_uid
    assert folder.stat().st_uid == expect_uid and folder.stat().st_mode & 0o777 == 0o700


def test_a_pooled_kernel_of_another_uid_equals_a_cold_one(
    pool: Any, runtime: Any, tmp_path: Path, data: Path
) -> None:
    notebook = tmp_path / "project" / "nb"
    notebook.mkdir(parents=True)
    (notebook / "data.csv").write_text("a,b\n")
    for folder in (tmp_path, tmp_path / "project", notebook):
        os.chown(folder, UID, UID)
    ipython = ipython_dir(tmp_path)
    for path in [tmp_path / "ipython", *(tmp_path / "ipython").rglob("*")]:
        os.chown(path, UID, UID)  # IPython writes its profile's folders
    config = {
        "pool_size": 1,
        "workspace_root": str(tmp_path),
        "user": f"{UID}:{UID}",
        "env": {"IPYTHONDIR": ipython},
    }
    cold = start_nbc_python(notebook, "project/nb/a.ipynb", **config)
    pooled = None
    try:
        assert cold.provisioner._pooled is None
        assert pool.wait_ready(1, timeout=60)
        pooled = start_nbc_python(notebook, "project/nb/b.ipynb", **config)
        assert pooled.provisioner._pooled is not None
        a, b = seen_by(cold), seen_by(pooled)
        assert_alike(a, b, notebook, tmp_path, ("project/nb/a.ipynb", "project/nb/b.ipynb"))
        assert b["ids"][:2] == [UID, UID]
        assert b["who"]["getuser"] == b["who"]["whoami"] == f"u{UID}"
        assert b["who"]["home"] == f"/home/u{UID}"
        api = runtime.api
        assert made(api.inspect_container(pooled.provisioner.container_id)) == made(
            api.inspect_container(cold.provisioner.container_id)
        )
    finally:
        for km in (cold, pooled):
            if km is not None and km.has_kernel:
                km.shutdown_kernel(now=True)


def test_the_users_own_home_where_the_workspace_root_holds_it(
    python_image: str, tmp_path: Path, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JupyterHub's case: the workspace root is the user's home, so ``~`` is that folder itself
    (no folder of the data dir over it): a file written to ``~`` is in the home on the host."""
    home = tmp_path / "home"
    notebook = home / "project"
    notebook.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    with container_kernel(notebook, workspace_root=str(home)) as (km, kc):
        out, reply = run(
            kc,
            "import os, site, sys; open(os.path.expanduser('~/direct.txt'), 'w').write('x')\n"
            "print(os.path.expanduser('~'), os.getcwd(), site.getusersitepackages() in sys.path)",
        )
        assert reply["status"] == "ok", out
        assert out.split() == [str(home), str(notebook), "True"]
        targets = [m["Destination"] for m in runtime.api.inspect_container(
            km.provisioner.container_id)["Mounts"]]  # fmt: skip
        assert targets.count(str(home)) == 1  # the workspace root's mount, and no other
    assert (home / "direct.txt").read_text() == "x"
    site = home / ".local/share/nbcontainers/python/python/lib/python3.11/site-packages"
    assert site.is_dir()
