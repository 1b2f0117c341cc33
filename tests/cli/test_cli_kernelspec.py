"""`nbcontainers kernelspec`: install with --user/--sys-prefix/--prefix/--replace, an aligned
list and Jupyter's --json, and a remove that asks before removing all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jupyter_client.kernelspec import KernelSpecManager

from nbcontainers.cli import main


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Jupyter that searches only ``tmp_path``'s prefix, so removals touch nothing else."""
    folder = tmp_path / "share" / "jupyter" / "kernels"
    folder.mkdir(parents=True)
    monkeypatch.setattr(
        "nbcontainers.catalog.kernelspecs.KernelSpecManager",
        lambda: KernelSpecManager(kernel_dirs=[str(folder)]),
    )
    return folder


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def test_install_list_and_json(kernels: Path, tmp_path: Path) -> None:
    done = cli("kernelspec", "install", "python", "nbc-pytorch-cpu", "--prefix", str(tmp_path))
    assert done.exit_code == 0, done.output
    listed = cli("kernelspec", "list").output.splitlines()
    assert listed[0].split() == ["NAME", "PATH"]
    assert [line.split() for line in listed[1:]] == [
        ["nbc-python", str(kernels / "nbc-python")],
        ["nbc-pytorch-cpu", str(kernels / "nbc-pytorch-cpu")],
    ]
    assert listed[1].index("/") == listed[2].index("/")  # aligned
    specs = json.loads(cli("kernelspec", "list", "--json").output)["kernelspecs"]
    assert specs["nbc-python"]["resource_dir"] == str(kernels / "nbc-python")
    assert specs["nbc-python"]["spec"]["metadata"]["kernel_provisioner"]["config"] == {
        "image": "python"
    }


def test_install_refuses_to_overwrite_a_foreign_kernelspec(kernels: Path, tmp_path: Path) -> None:
    theirs = kernels / "nbc-python"
    theirs.mkdir()
    (theirs / "kernel.json").write_text(json.dumps({"argv": ["x"], "display_name": "mine"}))
    done = cli("kernelspec", "install", "python", "--prefix", str(tmp_path))
    assert done.exit_code == 9 and "Pass --replace to overwrite it." in done.output
    assert json.loads((theirs / "kernel.json").read_text())["display_name"] == "mine"
    again = cli("kernelspec", "install", "python", "--prefix", str(tmp_path), "--replace")
    assert again.exit_code == 0
    # Ours is updated in place without --replace: re-running install is the upgrade path.
    assert cli("kernelspec", "install", "python", "--prefix", str(tmp_path)).exit_code == 0


def test_install_takes_one_destination(tmp_path: Path) -> None:
    done = cli("kernelspec", "install", "--user", "--prefix", str(tmp_path))
    assert done.exit_code == 2 and "Pass one of --user, --sys-prefix and --prefix." in done.output


def test_remove_all_asks_first(kernels: Path, tmp_path: Path) -> None:
    cli("kernelspec", "install", "python", "pytorch-cpu", "--prefix", str(tmp_path))
    refused = cli("kernelspec", "remove", stdin="n\n")
    assert "Remove all 2 nbcontainers kernelspecs (nbc-python, nbc-pytorch-cpu)?" in refused.output
    assert refused.exit_code == 1 and (kernels / "nbc-python").is_dir()
    named = cli("kernelspec", "remove", "python")  # a name removes without asking
    assert named.output == "removed nbc-python\n" and not (kernels / "nbc-python").exists()
    typo = cli("kernelspec", "remove", "nbc-pytorch-cp")
    assert typo.exit_code == 2 and "Did you mean 'nbc-pytorch-cpu'?" in typo.output
    done = cli("kernelspec", "remove", "-y")
    assert done.exit_code == 0 and done.output == "removed nbc-pytorch-cpu\n"
    assert cli("kernelspec", "remove").output == "no nbcontainers kernelspecs installed\n"


def test_the_committed_kernelspecs_are_what_regenerate_writes() -> None:
    from nbcontainers.catalog.entries import load_catalog
    from nbcontainers.catalog.kernelspecs import GENERATED, kernel_json, notebook_kernel_json

    root = Path(__file__).resolve().parents[2] / "kernelspecs"
    for image in load_catalog(include_user=False).values():
        committed = json.loads((root / image.kernel_name / "kernel.json").read_text())
        assert committed == kernel_json(image), "run `nbcontainers images regenerate`"
    notebook = json.loads((root / "nbc-notebook" / "kernel.json").read_text())
    assert notebook == notebook_kernel_json(), "run `nbcontainers images regenerate`"
    # The note names commands that exist.
    for command in re.findall(r"`nbcontainers ([a-z ]+)`", GENERATED):
        assert CliRunner().invoke(main, [*command.split(), "--help"]).exit_code == 0, command


def test_install_all_adds_nbc_notebook_and_runs_the_launcher_here(
    kernels: Path, tmp_path: Path
) -> None:
    import sys

    assert cli("kernelspec", "install", "--prefix", str(tmp_path)).exit_code == 0
    spec = json.loads((kernels / "nbc-notebook" / "kernel.json").read_text())
    assert spec["display_name"] == "Container (from this notebook)"
    python = json.loads((kernels / "nbc-python" / "kernel.json").read_text())["argv"]
    # The installing interpreter, which has nbcontainers: a frontend runs argv as written.
    assert python[:3] == [sys.executable, "-m", "nbcontainers.launch"]
    assert python[python.index("--") + 1 :][:1] == ["python3"]  # the image's interpreter
