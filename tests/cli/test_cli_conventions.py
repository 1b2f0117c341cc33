"""The CLI follows Jupyter's and Docker's conventions: help on every option, --json on every
list, distinct exit codes, completion of image names, ps/logs/images rm through the seam."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner, Result

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.cli import main
from nbcontainers.labels import KERNEL_ID, OWNER, SERVER_HOST, SERVER_PID
from nbcontainers.runtimes.base import ContainerSpec
from nbcontainers.runtimes.fake import FakeRuntime


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, fake_runtime: FakeRuntime) -> FakeRuntime:
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="docker": fake_runtime)
    return fake_runtime


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def _commands(
    group: click.Group, path: str = "nbcontainers"
) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    seen = list(_commands(main))
    assert len(seen) > 15  # the walk reached the subcommands
    missing = [
        f"{path} {opt.opts[0]}"
        for path, command in seen
        for opt in command.params
        if isinstance(opt, click.Option) and not opt.help
    ]
    assert missing == []
    undocumented = [path for path, command in seen if not (command.help or "").strip()]
    assert undocumented == []


def test_every_list_command_has_json() -> None:
    for path in ("images list", "kernelspec list", "ps", "doctor"):
        command: click.Command = main
        for word in path.split():
            assert isinstance(command, click.Group)
            command = command.commands[word]
        assert "as_json" in {p.name for p in command.params}, path


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["images", "build", "--nope"], 2),  # click: usage
        (["images", "build", "pyton"], 2),  # a mistyped name is a usage error too
        (["images", "pull", "python"], 4),  # not in the fake's registry: image missing
    ],
)
def test_exit_codes_are_distinct(engine: FakeRuntime, args: list[str], code: int) -> None:
    assert cli(*args).exit_code == code


def test_a_broken_user_catalog_is_a_config_error(
    engine: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text("{not json")
    done = cli("images", "list")
    assert done.exit_code == 9 and "is not valid JSON" in done.output
    engine.available = False
    assert cli("images", "list").exit_code in (3, 9)


def test_image_names_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "images.json").write_text('{"images": {"pyro": {"ref": "me/pyro:1"}}}')
    for args in (["images", "build"], ["images", "check"], ["kernelspec", "install"]):
        complete = ShellComplete(main, {}, "nbcontainers", "_NBCONTAINERS_COMPLETE")
        found = [c.value for c in complete.get_completions(args, "py")]
        assert found == ["pyro", "python", "pytorch-cpu", "pytorch-gpu"], args


def test_completion_script_is_what_the_readme_says() -> None:
    done = CliRunner().invoke(
        main, [], prog_name="nbcontainers", env={"_NBCONTAINERS_COMPLETE": "bash_source"}
    )
    assert "_nbcontainers_completion" in done.output
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert 'eval "$(_NBCONTAINERS_COMPLETE=bash_source nbcontainers)"' in readme


def _kernel(engine: FakeRuntime, kernel_id: str, script: str) -> str:
    ref = load_catalog()["python"].ref
    labels = {KERNEL_ID: kernel_id, OWNER: "alice", SERVER_HOST: "elsewhere", SERVER_PID: "1"}
    return engine.run(
        ContainerSpec(ref, ("sh", "-c", script), name=f"nbc-{kernel_id[:8]}", labels=labels)
    )


def test_ps_and_logs(engine: FakeRuntime) -> None:
    assert cli("ps").output == "no kernel containers running\n"
    _kernel(engine, "1234abcd-0000", "echo hello from the kernel; sleep 1")
    _kernel(engine, "9876fedc-0000", "echo done; exit 3")
    shown = cli("ps")
    header, *rows = shown.output.splitlines()
    assert header.split() == ["CONTAINER", "IMAGE", "STATUS", "OWNER", "SERVER", "STARTED"]
    assert len(rows) == 1 and rows[0].split()[:5][::2] == ["nbc-1234abcd", "running", "other"]
    every = json.loads(cli("ps", "--all", "--json").output)
    assert {r["name"]: r["exit_code"] for r in every} == {"nbc-1234abcd": None, "nbc-9876fedc": 3}
    assert cli("logs", "nbc-1234abcd").output == "hello from the kernel\n"
    assert cli("logs", "9876").output == "done\n"  # a kernel id prefix
    missing = cli("logs", "nbc-1234abce")
    assert missing.exit_code == 1 and "Did you mean 'nbc-1234abcd'?" in missing.output
    assert cli("logs", "nbc-").exit_code == 2  # ambiguous


def test_images_rm_asks_before_all(engine: FakeRuntime) -> None:
    ref = load_catalog()["python"].ref
    refused = cli("images", "rm", "--all", stdin="n\n")
    assert refused.exit_code == 1 and "Remove 3 image(s)" in refused.output
    assert engine.image_info(ref) is not None  # nothing removed after "n"
    done = cli("images", "rm", "python")
    assert done.exit_code == 0 and done.output == f"python: removed {ref}\n"
    assert engine.image_info(ref) is None
    assert cli("images", "rm", "python").output == f"python: {ref} is not present\n"
    rest = cli("images", "rm", "--all", "-y")
    assert rest.exit_code == 0 and rest.output.count("removed") == 2


def test_build_all_skips_what_it_cannot_build(
    engine: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBCONTAINERS_CONFIG_DIR", str(tmp_path))
    users = {"stack": {"ref": "registry.example/me/stack:1.4"}, "dev": {"build": "no-such"}}
    (tmp_path / "images.json").write_text(json.dumps({"images": users}))
    done = cli("images", "build", "--all")
    assert done.exit_code == 0, done.output
    assert "stack: skipped (no build folder; `nbcontainers images pull stack`)" in done.output
    assert f"dev: skipped (its build folder {tmp_path / 'no-such'} does not exist" in done.output
    assert "python: " in done.output and "is present" in done.output  # the rest went on
    one = cli("images", "build", "dev")
    assert one.exit_code == 9 and "does not exist" in one.output
    listed = {r["name"]: r for r in json.loads(cli("images", "list", "--json").output)}
    assert listed["dev"]["status"] == "build folder missing" and listed["dev"]["problem"]
    assert "e3b0c44298fc" not in cli("images", "list").output.split("dev", 1)[1].split()[1]


def test_doctor_json_and_its_exit_code(engine: FakeRuntime) -> None:
    done = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(done.output)}
    assert checks["engine"]["status"] == "ok" and done.exit_code == 0, done.output
    engine.remove_image(load_catalog()["python"].ref)
    missing = cli("doctor", "--json")
    python = next(c for c in json.loads(missing.output) if c["name"] == "image python")
    assert python["fix"] == "nbcontainers images build python" and missing.exit_code == 4
