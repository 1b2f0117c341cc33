"""The `nbcontainers` CLI with click's runner against the in-memory runtime: output, help and
exit codes, no engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.cli import main
from nbcontainers.runtimes.fake import FakeRuntime
from nbcontainers.serving.options import OPTIONS


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, fake_runtime: FakeRuntime) -> FakeRuntime:
    """What `get_runtime()` hands the CLI: the fake with every catalog image present."""
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="docker": fake_runtime)
    return fake_runtime


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_images_list(engine: FakeRuntime) -> None:
    done = cli("images", "list")
    assert done.exit_code == 0, done.output
    header, *lines = done.output.splitlines()
    assert header.split() == ["NAME", "IMAGE", "REF", "SIZE", "NEEDS", "KERNEL", "DISPLAY", "NAME"]
    rows = {line.split()[0]: line for line in lines}
    assert set(rows) == set(load_catalog())
    ref = load_catalog()["python"].ref
    assert rows["python"].split()[1:4] == [ref, "1", "MB"]  # present: 1 MB (the fake's size)
    assert rows["pytorch-gpu"].split()[4] == "GPU"
    # Aligned: every column starts where its header does.
    at = header.index("SIZE")
    assert all(line[at:].split()[0] in ("1", "not") for line in lines)


def test_images_list_json_and_absent_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = FakeRuntime()
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="docker": empty)
    text = cli("images", "list")
    assert all("not built" in line for line in text.output.splitlines()[1:])
    done = cli("images", "list", "--json")
    rows = json.loads(done.output)
    assert done.exit_code == 0 and {r["name"] for r in rows} == set(load_catalog())
    python = next(r for r in rows if r["name"] == "python")
    assert python["kernel"] == "nbc-python" and python["present"] is False
    assert python["size_mb"] is None and python["user_defined"] is False


def test_images_build_skips_present_images(engine: FakeRuntime) -> None:
    done = cli("images", "build", "python")
    assert done.exit_code == 0
    assert done.output == (
        f"python: {load_catalog()['python'].ref} is present (use --force to rebuild)\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["images", "build"], 2, "Name at least one image, or pass --all."),
        (["images", "build", "pyton"], 2, "Did you mean 'python'?"),
        (["images", "pull", "python"], 4, "Error: pull nbcontainers/python:"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
        (["export", "m.skops"], 2, "Missing option '--example'"),
        (["export", "nope.skops", "--example", "b.npy"], 8, "No file nope.skops"),
        (["snapshot", "out", "--python", "p", "--kernel", "k"], 2, "not both"),
    ],
)
def test_errors_exit_with_their_code(
    engine: FakeRuntime, args: list[str], code: int, said: str
) -> None:
    done = cli(*args)
    assert done.exit_code == code, done.output
    assert said in done.output


def test_images_pull_from_a_registry(engine: FakeRuntime) -> None:
    ref = load_catalog()["python"].ref
    engine.remove_image(ref)
    engine.registry.add(ref)
    done = cli("images", "pull", "python")
    assert done.exit_code == 0 and done.output.endswith(f"python: pulled {ref}\n")
    assert engine.image_info(ref) is not None


def test_kernelspec_list_shows_the_installed_kernelspecs(kernelspec_prefix: Path) -> None:
    done = cli("kernelspec", "list")
    assert done.exit_code == 0
    header, *lines = done.output.splitlines()
    assert header.split() == ["NAME", "PATH"]
    listed = dict(line.split(None, 1) for line in lines)
    for image in load_catalog(include_user=False).values():
        assert listed[image.kernel_name] == str(kernelspec_prefix / "kernels" / image.kernel_name)


def test_kernelspec_install_and_remove(tmp_path: Path) -> None:
    done = cli("kernelspec", "install", "python", "--prefix", str(tmp_path))
    assert done.exit_code == 0, done.output
    spec = tmp_path / "share" / "jupyter" / "kernels" / "nbc-python" / "kernel.json"
    assert done.output == f"installed nbc-python -> {spec.parent}\n"
    assert json.loads(spec.read_text())["metadata"]["kernel_provisioner"]["config"] == {
        "image": "python"
    }


def test_export_help_lists_every_option_with_its_help() -> None:
    done = cli("export", "--help")
    assert done.exit_code == 0
    flat = " ".join(done.output.split())  # click wraps long help texts
    for option in OPTIONS:
        assert option.flag in flat and " ".join(option.help.split()) in flat, option.flag
    assert "--gpu / --cpu" in flat and "--example TEXT" in flat and "[required]" in flat
    assert "--name TEXT The model's name in URLs (default: from MODEL)." in flat
    assert "--format [auto|torch.export|safetensors|skops|source|pickle]" in flat


def test_export_reports_init_args_that_are_not_json(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text("def double(x):\n    return x * 2\n")
    (tmp_path / "batch.json").write_text("[[1, 2]]")
    done = cli("export", "model.py:double", "--example", "batch.json", "--init-args", "{x")
    assert done.exit_code == 2
    assert "Error: Invalid value for --init-args: not JSON: Expecting property name" in done.output


def test_gc_and_doctor_against_the_fake_engine(engine: FakeRuntime) -> None:
    done = cli("gc", "--dry-run")
    assert done.exit_code == 0 and done.output == "no orphaned kernel containers\n"
    doctor = cli("doctor")
    assert "[ok  ] engine: Fake 1.0 at memory://" in doctor.output
    engine.available = False
    down = cli("doctor")
    assert down.exit_code == 3  # no engine, as every other command says it
    assert down.output.startswith("[FAIL] engine: Cannot reach the fake engine")
    assert "fix: " in down.output


def test_version() -> None:
    from importlib.metadata import version

    done = cli("--version")
    assert done.exit_code == 0 and version("nbcontainers") in done.output
