"""A newcomer's first commands, as the README gives them: the built wheel installed with its
`lab` extra into a fresh venv outside the checkout, then the Install and Quickstart blocks run
from a folder of their own (the interactive frontends only asked for their version)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

CHECKOUT = Path(__file__).resolve().parent.parent
INTERACTIVE = {("jupyter", "lab"), ("jupyter", "notebook"), ("jupyter", "console")}


def _block(section: str) -> list[list[str]]:
    """The commands of the first code block under README heading ``section``, comments cut."""
    text = (CHECKOUT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    block = re.search(r"```\n(.*?)```", body, re.S)
    assert block, f"README's {section} section lost its code block"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines()]


def test_the_readme_first_commands_in_a_fresh_venv(tmp_path: Path, python_image: str) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), CHECKOUT],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("nbcontainers-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    shutil.copy(CHECKOUT / "examples" / "quickstart.ipynb", work / "in.ipynb")
    # A fresh user's environment: none of the suite's Jupyter, nbcontainers or per-test data
    # folders (conftest's XDG_DATA_HOME would move `kernelspec install --user`'s target).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "NBCONTAINERS")) and k != "XDG_DATA_HOME"
    }
    env.update(HOME=str(work / "home"), PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    env.pop("VIRTUAL_ENV", None)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
        )

    ran = []
    for argv in _block("Install") + _block("Quickstart"):
        if not argv:
            continue
        if argv[:2] == ["pip", "install"]:
            assert argv[2] == "nbcontainers[lab]", argv  # the README installs the lab extra
            argv = [str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[lab]"]
        elif tuple(argv[:2]) in INTERACTIVE:
            argv = [*argv[:2], "--version"]
        elif argv[0] == "papermill":
            argv = [*argv, "--cwd", str(work)]
        done = run(argv)
        ran.append(argv[0] if argv[0] != str(venv / "bin" / "pip") else "pip")
        assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
        if argv[:2] == ["nbcontainers", "doctor"]:
            assert "[ok  ] engine: Docker" in done.stdout  # from the wheel, not the checkout
            assert "make" not in done.stdout, done.stdout  # no checkout here: no make advice
    assert ran.count("nbcontainers") >= 3 and "papermill" in ran and "pip" in ran
    assert "in a container: True" in (work / "out.ipynb").read_text()
    assert (work / "quickstart-output.txt").read_text() == "written from the container kernel\n"
    # Everything came from the venv: the wheel's package, its catalog, its kernelspecs.
    where = run(["python", "-c", "import nbcontainers; print(nbcontainers.__file__)"])
    assert where.stdout.startswith(str(venv)), where.stdout
    specs = work / "home" / ".local" / "share" / "jupyter" / "kernels"
    assert (specs / "nbc-python" / "kernel.json").is_file()  # `kernelspec install`: --user
    assert list(venv.glob("lib/python*/site-packages/nbcontainers-*.dist-info/licenses/LICENSE"))
