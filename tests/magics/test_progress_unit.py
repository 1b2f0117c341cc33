"""Progress of a missing image's build or pull in the cell: text lines or a widget bar, and
what an interrupt leaves (the in-memory runtime emits the build events)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.error import UsageError

from nbcontainers.catalog.entries import CatalogImage
from nbcontainers.magics import cellprogress as progress_module
from nbcontainers.magics.cellprogress import TextProgress, WidgetProgress, cell_progress
from nbcontainers.magics.missing import ensure_in_cell
from nbcontainers.relay.session import RelaySession
from nbcontainers.runtimes.base import BuildCallback, BuildEvent, BuildRequest, ImageInfo
from nbcontainers.runtimes.fake import FakeRuntime


def kernel_shell(metadata: dict[str, Any]) -> Any:
    """What ipykernel's shell offers the progress: a kernel whose current request has
    ``metadata`` (JupyterLab sends the cell's id there; nbclient sends nothing)."""
    parent = {"header": {"msg_type": "execute_request"}, "metadata": metadata}
    return SimpleNamespace(kernel=SimpleNamespace(get_parent=lambda channel="shell": parent))


def image(tmp_path: Path, steps: int = 3) -> CatalogImage:
    source = tmp_path / "tiny"
    source.mkdir(exist_ok=True)
    body = "".join(f"RUN echo step {i}\n" for i in range(2, steps + 1))
    (source / "Dockerfile").write_text("FROM nbcontainers/base:bookworm\n" + body)
    return CatalogImage(name="tiny", ref="nbcontainers/tiny:1", display_name="Tiny", source=source)


@pytest.mark.parametrize(
    ("shell", "env", "widget"),
    [
        (SimpleNamespace(), "", False),  # a terminal IPython: no kernel, no frontend
        (kernel_shell({}), "", False),  # nbclient, papermill, console
        (kernel_shell({"cellId": "c1"}), "", True),  # JupyterLab, Notebook 7, VS Code
        (kernel_shell({"cellId": "c1"}), "text", False),
        (kernel_shell({}), "widget", True),
        (SimpleNamespace(), "widget", False),  # asked for, but nothing could show it
    ],
)
def test_widget_or_text(
    shell: Any, env: str, widget: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(progress_module.PROGRESS_ENV, env)
    assert progress_module.widgets_shown(shell) is widget
    chosen = cell_progress(shell, say=lambda _line: None)
    assert isinstance(chosen, WidgetProgress if widget else TextProgress)


def test_without_ipywidgets_it_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "_ipywidgets_importable", lambda: False)
    assert not progress_module.widgets_shown(kernel_shell({"cellId": "c1"}))


def test_a_missing_image_is_built_with_text_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FakeRuntime()
    tiny = image(tmp_path)
    ensure_in_cell(SimpleNamespace(), tiny, engine)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "Image tiny (nbcontainers/tiny:1) is not built yet: building it now with in-memory. "
        "Interrupt the cell to cancel."
    )
    assert out[1:4] == [
        "  [1/3] FROM nbcontainers/base:bookworm",
        "  [2/3] RUN echo step 2",
        "  [3/3] RUN echo step 3",
    ]
    assert re.fullmatch(r"Built nbcontainers/tiny:1 in \d+ s\.", out[4])
    assert engine.image_info(tiny.ref) is not None
    ensure_in_cell(SimpleNamespace(), tiny, engine)  # present now: nothing to do, nothing said
    assert capsys.readouterr().out == "" and len(engine.builds) == 1


def test_text_shows_each_step_once_and_how_long_a_step_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[str] = []
    text = TextProgress(lines.append)
    step = BuildEvent("step", "#5 [2/3] RUN pip install torch", 2, 3)
    text.build_event(step)
    text.build_event(BuildEvent("log", "#5 1.2 Collecting torch"))
    text.build_event(step)  # BuildKit names a step again when it returns to it
    assert lines == ["  [2/3] RUN pip install torch"]
    monkeypatch.setattr(progress_module, "HEARTBEAT", -1.0)
    text.build_event(BuildEvent("log", "#5 40.0 Downloading"))
    assert re.fullmatch(r"  \.\.\. \d+ s into step 2/3", lines[-1])


def test_widget_bar_follows_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    lines: list[str] = []
    bar = WidgetProgress(lines.append)
    bar.begin("Image tiny is not built yet: building it now.")
    assert shown == []  # the bar comes with the first event, below the first line
    bar.build_event(BuildEvent("step", "#4 [2/4] RUN echo <b>", 2, 4))
    assert shown == [bar.box]
    assert bar.bar.value == pytest.approx(0.25) and bar.bar.description == "Step 2/4"
    assert bar.step.value == "<code>[2/4] RUN echo &lt;b&gt;</code>"  # escaped
    bar.build_event(BuildEvent("log", "#4 0.1 <b>"))
    assert "&lt;b&gt;" in bar.line.value
    bar.end("Built nbcontainers/tiny:1 in 3 s.", ok=True)
    assert bar.bar.value == 1.0 and bar.bar.bar_style == "success"
    # The first and last lines are text too: the saved notebook says what happened.
    assert lines == [
        "Image tiny is not built yet: building it now.",
        "Built nbcontainers/tiny:1 in 3 s.",
    ]


def test_widget_pull_shows_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("IPython.display.display", lambda _box: None)
    monkeypatch.setattr(progress_module, "REFRESH", -1.0)
    bar = WidgetProgress(lambda _line: None)
    bar.pulled("pulling me/img:1", 3 << 20, 4 << 20)
    assert bar.bar.value == pytest.approx(0.75) and bar.bar.description == "75%"
    assert bar.step.value == "pulling me/img:1: 3/4 MiB"


class InterruptedRuntime(FakeRuntime):
    """A build that the user interrupts at its second step."""

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        def interrupt_at_step_two(event: BuildEvent) -> None:
            if on_event:
                on_event(event)
            if event.step == 2:
                raise KeyboardInterrupt

        return super().build(request, interrupt_at_step_two)


def test_an_interrupt_cancels_the_build_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = InterruptedRuntime()
    tiny = image(tmp_path)
    with pytest.raises(KeyboardInterrupt):  # propagates: "Run all" and nbclient stop here
        ensure_in_cell(SimpleNamespace(), tiny, engine)
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "  [2/3] RUN echo step 2"
    assert re.fullmatch(r"Cancelled the build after \d+ s: it left no image\.", out[-1])
    assert engine.image_info(tiny.ref) is None


def test_a_registry_image_is_pulled(capsys: pytest.CaptureFixture[str]) -> None:
    ref = "registry.example/team/img:2"
    engine = FakeRuntime(registry=[ref])
    remote = CatalogImage(name="team", ref=ref, display_name="Team")
    ensure_in_cell(SimpleNamespace(), remote, engine)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Image team ({ref}) is not on this engine: pulling it now.")
    assert out[1] == f"  pulling {ref}: 0/0 MiB"
    assert re.fullmatch(rf"Pulled {re.escape(ref)} in \d+ s\.", out[-1])
    assert engine.image_info(ref) is not None


def test_text_pull_lines_per_tenth_and_per_layer_done() -> None:
    lines: list[str] = []
    text = TextProgress(lines.append)
    for what, done in [("1/3 layers", 1), ("1/3 layers", 2), ("1/3 layers", 5), ("2/3 layers", 10)]:
        text.pulled(f"pulling x, {what}", done << 20, 10 << 20)
    text.pulled("pulling x, 3/3 layers", 10 << 20, 10 << 20)  # a tiny layer, at 100% already
    assert lines == [
        "  pulling x, 1/3 layers: 1/10 MiB",
        "  pulling x, 1/3 layers: 2/10 MiB",
        "  pulling x, 1/3 layers: 5/10 MiB",
        "  pulling x, 2/3 layers: 10/10 MiB",
        "  pulling x, 3/3 layers: 10/10 MiB",
    ]


class LateInterruptRuntime(FakeRuntime):
    """An engine that finishes the pull just as the user interrupts it."""

    def pull(self, ref: str, progress: Any = None) -> ImageInfo:
        super().pull(ref, progress)
        raise KeyboardInterrupt


def test_an_interrupt_as_the_pull_ends_leaves_no_image(capsys: pytest.CaptureFixture[str]) -> None:
    ref = "registry.example/team/img:2"
    engine = LateInterruptRuntime(registry=[ref])
    remote = CatalogImage(name="team", ref=ref, display_name="Team")
    with pytest.raises(KeyboardInterrupt):
        ensure_in_cell(SimpleNamespace(), remote, engine)
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(r"Cancelled the pull after \d+ s: the image was not added\.", last)
    assert engine.image_info(ref) is None


def test_an_image_no_registry_has_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    remote = CatalogImage(name="team", ref="registry.example/none:1", display_name="Team")
    with pytest.raises(UsageError, match="no registry has it"):
        ensure_in_cell(SimpleNamespace(), remote, FakeRuntime())
    assert re.fullmatch(r"The pull failed after \d+ s\.", capsys.readouterr().out.splitlines()[-1])


def test_image_of_a_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image and runtime an installed kernelspec's nbcontainers provisioner starts, as
    the relay session decides them (no config parsed back: the session wrote it)."""

    def install(name: str, metadata: dict[str, Any]) -> None:
        folder = tmp_path / "kernels" / name
        folder.mkdir(parents=True)
        argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": name, "language": "python", "metadata": metadata}
        (folder / "kernel.json").write_text(json.dumps(spec))

    def provisioner(config: dict[str, Any]) -> dict[str, Any]:
        return {"kernel_provisioner": config}

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    install(
        "team",
        provisioner(
            {"provisioner_name": "nbcontainers", "config": {"image": "python", "runtime": "podman"}}
        ),
    )
    install("other", provisioner({"provisioner_name": "local-provisioner"}))
    install("plain", {})
    session = RelaySession(lambda: str(tmp_path / "xfer"))
    found = session.specify("team")
    assert found.image is not None and found.image.name == "python"
    assert found.runtime_name == "podman" and found.in_container
    assert session.specify("other").image is None and not session.specify("other").in_container
    assert session.specify("plain").image is None and not session.specify("plain").in_container


def test_engines_are_made_once_per_name_and_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbcontainers.relay.session import Engines

    made: list[str] = []
    monkeypatch.setattr(
        "nbcontainers.runtimes.get_runtime", lambda name="auto": made.append(name) or FakeRuntime()
    )
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    engines = Engines()
    assert engines.get("auto") is engines.get("auto") and made == ["auto"]
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    assert engines.get("auto") is not None and made == ["auto", "auto"]


def test_on_a_hub_a_catalog_image_comes_from_the_shared_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = FakeRuntime(rootless=True)
    # What rootless Podman's runtime says on a hub (runtimes.base.ExplainsMissingImages).
    engine.missing_image_advice = lambda ref, kernel: f"{ref}: ask your admin"  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="nbcontainers/tiny:1: ask your admin"):
        ensure_in_cell(SimpleNamespace(), image(tmp_path), engine)
    assert engine.builds == [] and capsys.readouterr().out == ""
    own = replace(image(tmp_path), user_defined=True)  # the user's own image: built for them
    ensure_in_cell(SimpleNamespace(), own, engine)
    assert engine.image_info(own.ref) is not None
