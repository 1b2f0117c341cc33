"""The wheel alone carries the front end prebuilt and enables the server extension: what
`pip install nbcontainers[lab]` gives a user with no Node. Needs pyproject.toml's data-files
for share/jupyter/labextensions/nbcontainers-lab and etc/jupyter/jupyter_server_config.d."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .labserver import REPO, build_labextension


def test_the_wheel_installs_and_enables_the_lab_extension(tmp_path: Path) -> None:
    build_labextension()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("nbcontainers-*.whl")
    # What an installer puts under the environment's prefix: the wheel's .data/data/ tree.
    # (Not `pip install --prefix`: it first uninstalls the checkout's own editable install.)
    prefix = tmp_path / "prefix"
    with zipfile.ZipFile(wheel) as whl:
        for name in whl.namelist():
            head, sep, rest = name.partition(".data/data/")
            if sep and "/" not in head:
                (prefix / rest).parent.mkdir(parents=True, exist_ok=True)
                (prefix / rest).write_bytes(whl.read(name))
    share = prefix / "share" / "jupyter"
    assert (share / "labextensions" / "nbcontainers-lab" / "package.json").is_file(), (
        "the wheel lacks the prebuilt labextension: pyproject.toml needs its data-files"
    )
    env = {**os.environ, "JUPYTER_PATH": str(share)}
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "labextension", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    text = listed.stdout + listed.stderr
    line = next((x for x in text.splitlines() if "nbcontainers-lab" in x), "")
    assert "enabled" in line and "OK" in line, text
    enable = prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "nbcontainers.json"
    config = json.loads(enable.read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"nbcontainers.lab": True}
