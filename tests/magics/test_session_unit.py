"""The session theme against stand-in kernels on the in-memory runtime: list, local, stop,
restart, logs, the cell routing, load/unload, completion of `%container`."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbcontainers.magics import load, unload
from nbcontainers.magics.parser import SUBCOMMANDS
from nbcontainers.magics.session import LOCAL_ASSIGNMENT

from .conftest import StandInRelay, loaded


def line(shell: InteractiveShell, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    shell.run_line_magic("container", text)
    return capsys.readouterr().out


def test_list_without_kernels_names_the_images(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    out = line(shell, "list", capsys)
    assert out.startswith("No container kernels. Start one with `%container use NAME`; images: ")
    assert "python, pytorch-cpu" in out


def test_list_shows_each_kernel_its_state_and_uptime(
    shell: InteractiveShell,
    container_kernel: StandInRelay,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = loaded(shell).state
    state.relays["pytorch-cpu"] = StandInRelay("pytorch-cpu", None, "f" * 64)  # type: ignore[assignment]
    state.relays["old"] = StandInRelay("old", None, None, alive=False)  # type: ignore[assignment]
    rows = line(shell, "list", capsys).splitlines()
    cid = (container_kernel.container_id or "")[:12]
    assert rows[0] == f"python               active  {cid}  up 1m05s"
    assert rows[1] == f"pytorch-cpu          idle    {'f' * 12}  up 1m05s"
    assert rows[2] == "old                  dead    -  up 1m05s"


def test_local_switches_back_and_says_so(
    shell: InteractiveShell, container_kernel: StandInRelay, capsys: pytest.CaptureFixture[str]
) -> None:
    assert line(shell, "local", capsys) == (
        "Cells run in the local kernel again; container kernel 'python' keeps running "
        "(`%container stop` ends it).\n"
    )
    assert loaded(shell).state.active is None and "python" in loaded(shell).state.relays
    assert line(shell, "local", capsys) == "Cells already run in the local kernel.\n"


def test_stop_and_restart_by_image_or_kernelspec_name(
    shell: InteractiveShell, container_kernel: StandInRelay, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = (container_kernel.container_id or "")[:12]
    assert line(shell, "restart nbc-python", capsys) == (
        f"Restarted container kernel 'python' ({cid}).\n"
    )
    assert container_kernel.restarted
    assert line(shell, "stop", capsys) == (
        "Stopped container kernel 'python'; cells run in the local kernel.\n"
    )
    assert container_kernel.stopped
    assert loaded(shell).state.relays == {} and loaded(shell).state.active is None


def test_an_unknown_kernel_gets_a_did_you_mean(
    shell: InteractiveShell, container_kernel: StandInRelay
) -> None:
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "stop pyhton")
    assert str(caught.value) == (
        "No container kernel 'pyhton' in this notebook. Did you mean 'python'? "
        "`%container list` shows them."
    )


@pytest.mark.parametrize("sub", ["status", "stop", "restart", "logs", "push x", "pull x"])
def test_no_kernel_means_a_usage_error_naming_the_images(shell: InteractiveShell, sub: str) -> None:
    with pytest.raises(UsageError, match=r"^No container kernel is active: start one with "):
        shell.run_line_magic("container", sub)


def test_logs_come_from_the_runtime(
    shell: InteractiveShell,
    container_kernel: StandInRelay,
    fake_runtime: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_runtime.exit(container_kernel.container_id, 1, log="one\ntwo\nthree")
    assert line(shell, "logs --tail 2", capsys) == "two\nthree\n\n"


def test_use_of_a_folder_that_is_no_snapshot(shell: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", f"use {tmp_path / 'env'}")
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'env'} is not a snapshot folder (no Dockerfile and ")
    assert f"Write one with `%container snapshot {tmp_path / 'env'}`" in text
    assert "name a catalog image: python, " in text


def test_limits_only_apply_to_container_images(shell: InteractiveShell) -> None:
    # python3 is ipykernel's own kernelspec: found, but it runs no container.
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("container", "use python3 --gpus all")
    assert str(caught.value) == (
        "--gpus/--memory/--cpus only apply to container images, not kernel 'python3'."
    )


def test_a_cell_without_a_kernel_is_a_usage_error(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="No container kernel is active"):
        shell.run_cell_magic("container", "", "print(1)")


def test_routing_sends_cells_to_the_active_kernel_only(
    shell: InteractiveShell, container_kernel: StandInRelay
) -> None:
    route = loaded(shell).session.route
    assert route(["x = 1\n"]) == ["%%container\n", "x = 1\n"]
    assert route(["\n", "  await f()\n"]) == ["%%container\n", "\n", "  await f()\n"]
    for local in (
        "%container local\n",
        "%%container other\n",
        "%load_ext autoreload\n",
        "%export-serving clf --example X[:4]\n",
        "server = %export-serving clf --example X[:4] --run\n",
        "s = %container status\n",
    ):
        assert route([local]) == [local], local
    assert route([]) == [] and route(["\n"]) == ["\n"]
    loaded(shell).state.active = None
    assert route(["x = 1\n"]) == ["x = 1\n"]


def test_assignment_from_the_magic_runs_locally() -> None:
    assert LOCAL_ASSIGNMENT.match("server = %export-serving clf --example X[:4] --run")
    assert LOCAL_ASSIGNMENT.match("s = %export_serving clf")
    assert not LOCAL_ASSIGNMENT.match("x = compute(%export)")


def test_load_is_idempotent_and_unload_takes_everything_out(_ipython: InteractiveShell) -> None:
    load(_ipython)
    load(_ipython)
    try:
        routes = [
            t for t in _ipython.input_transformers_cleanup if getattr(t, "__name__", "") == "route"
        ]
        assert len(routes) == 1
        for name in ("export-serving", "export_serving", "container"):
            assert name in _ipython.magics_manager.magics["line"], name
        assert "container" in _ipython.magics_manager.magics["cell"]
    finally:
        unload(_ipython)
    assert not [
        t for t in _ipython.input_transformers_cleanup if getattr(t, "__name__", "") == "route"
    ]
    for name in ("export-serving", "export_serving", "container"):
        assert name not in _ipython.magics_manager.magics["line"], name
    assert "container" not in _ipython.magics_manager.magics["cell"]
    assert "%container" not in _ipython.strdispatchers["complete_command"].strs
    unload(_ipython)  # twice is fine


def test_completion_of_the_magic(shell: InteractiveShell, container_kernel: StandInRelay) -> None:
    complete = loaded(shell).completion.complete_magic
    shell.user_ns["nbc_test_frame"] = 1

    def words(text: str) -> list[str]:
        return complete(shell, SimpleNamespace(line=text))

    assert words("%container ") == SUBCOMMANDS and words("%container us") == SUBCOMMANDS
    assert "python" in words("%container use ") and "pytorch-cpu" in words("%container use py")
    assert words("%container stop ") == ["python"]
    assert "nbc_test_frame" in words("%container push ")
    assert not [w for w in words("%container push ") if w.startswith("_")]
    assert words("%container snapshot ") == []


def test_completion_and_inspection_ask_the_active_container(
    shell: InteractiveShell, container_kernel: StandInRelay
) -> None:
    from nbcontainers.magics.completion import Completion

    asked: list[str] = []
    container_kernel.complete = lambda code, pos: asked.append(code) or {"from": "container"}  # type: ignore[attr-defined]
    container_kernel.inspect = lambda code, pos, level: {"from": "container"}  # type: ignore[attr-defined]
    kernel = SimpleNamespace(
        do_complete=lambda code, pos: {"from": "local"},
        do_inspect=lambda code, pos, level=0, omit=(): {"from": "local"},
    )
    completion = Completion(loaded(shell).state)
    completion.patch(kernel)
    assert kernel.do_complete("import o", 8) == {"from": "container"}
    # `%container …` lines run locally, so they complete locally.
    assert kernel.do_complete("%container us", 13) == {"from": "local"}
    assert kernel.do_inspect("os", 2) == {"from": "container"}
    loaded(shell).state.active = None
    assert kernel.do_complete("import o", 8) == {"from": "local"}
    completion.restore(kernel)
    assert not re.search("Completion", repr(kernel.do_complete))
    assert asked == ["import o"]
