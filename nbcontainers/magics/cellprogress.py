"""Build and pull progress in the running cell: an ipywidgets bar where the frontend renders
widgets, plain lines elsewhere (nbclient, papermill and its logs, jupyter console).

Which one is chosen (:func:`widgets_shown`): ``$NBCONTAINERS_PROGRESS`` ("widget" or "text")
when set; else a bar only in an ipykernel with ipywidgets importable whose current request
comes from an interactive notebook frontend. JupyterLab, Notebook 7 and VS Code tag every
execute request with the cell's id (``metadata.cellId``); nbclient, papermill and console
send none, so they get lines that end up in the saved notebook and the log. When unsure, text.
Either way the first and last line (what is built, how it ended) are printed as text.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable
from typing import Any

from ..runtimes.base import BuildEvent

__all__ = [
    "PROGRESS_ENV",
    "CellProgress",
    "TextProgress",
    "WidgetProgress",
    "cell_progress",
    "widgets_shown",
]

PROGRESS_ENV = "NBCONTAINERS_PROGRESS"
HEARTBEAT = 30.0  # seconds of a step's output between two lines that say how long it runs
REFRESH = 0.1  # seconds between widget updates: a pip log is hundreds of lines a second


def _ipywidgets_importable() -> bool:
    try:
        import ipywidgets  # type: ignore[import-untyped]  # noqa: F401
    except Exception:  # not installed, or broken: text is always there
        return False
    return True


def widgets_shown(shell: Any) -> bool:
    """Whether this cell's frontend gets a widget bar (see the module docstring)."""
    asked = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if asked == "text":
        return False
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not _ipywidgets_importable():
        return False  # a terminal IPython has no frontend to show a widget
    if asked == "widget":
        return True
    try:
        parent = kernel.get_parent("shell") or {}
    except Exception:  # an ipykernel without get_parent: unsure, so text
        return False
    return bool((parent.get("metadata") or {}).get("cellId"))


class CellProgress:
    """Progress of one build or pull in the cell; subclasses draw it."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.started = time.monotonic()

    def elapsed(self) -> str:
        return _duration(time.monotonic() - self.started)

    def begin(self, text: str) -> None:
        self.say(text)

    def build_event(self, event: BuildEvent) -> None:
        raise NotImplementedError

    def pulled(self, what: str, done: int, total: int | None) -> None:
        raise NotImplementedError

    def end(self, text: str, ok: bool) -> None:
        self.say(text)


class TextProgress(CellProgress):
    """One line per build step (each once), a line every half minute of a long step's output,
    and a line per tenth of a pull's bytes or per layer done."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        super().__init__(say)
        self._seen: set[tuple[int | None, int | None, str]] = set()
        self._last_line = time.monotonic()
        self._step = ""
        self._step_started = time.monotonic()
        self._last: tuple[int, str] | None = None

    def build_event(self, event: BuildEvent) -> None:
        now = time.monotonic()
        if event.kind == "step":
            key = (event.step, event.total, event.text)
            if key not in self._seen:
                self._seen.add(key)
                self._step = _step_label(event)
                self.say("  " + self._step)
                self._last_line = self._step_started = now
        elif self._step and now - self._last_line > HEARTBEAT:
            # On the step's output, not a timer: no thread writes into the cell.
            where = self._step.split("]")[0].lstrip("[")
            self.say(f"  ... {_duration(now - self._step_started)} into step {where}")
            self._last_line = now

    def pulled(self, what: str, done: int, total: int | None) -> None:
        # ``what`` changes as layers finish: a layer done at 100% of the bytes known so far
        # (a tiny one, or one the engine had) still gets its line, so the last says "all".
        key = (int(10 * done / total) if total else 0, what)
        if key != self._last:
            self._last = key
            self.say(f"  {what}: {done / 2**20:.0f}/{(total or 0) / 2**20:.0f} MiB")


class WidgetProgress(CellProgress):
    """A bar and a label in the cell: the step (or bytes) done, and the latest output line."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        super().__init__(say)
        import ipywidgets as widgets

        self.bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="Starting", bar_style="info"
        )
        self.step = widgets.HTML()
        self.line = widgets.HTML()
        self.box = widgets.VBox([widgets.HBox([self.bar, self.step]), self.line])
        self._shown = False
        self._drawn = 0.0

    def _show(self) -> None:
        # On the first event, so the bar sits below what the command printed before it.
        if not self._shown:
            from IPython.display import display

            display(self.box)  # type: ignore[no-untyped-call]
            self._shown = True

    def build_event(self, event: BuildEvent) -> None:
        self._show()
        if event.kind == "step" and event.step and event.total:
            # A step starts: the ones before it are done.
            self.bar.value = (event.step - 1) / event.total
            self.bar.description = f"Step {event.step}/{event.total}"
            self.step.value = f"<code>{html.escape(_step_label(event)[:100])}</code>"
        elif time.monotonic() - self._drawn > REFRESH:
            self._drawn = time.monotonic()
            self.line.value = f"<small><code>{html.escape(event.text[-160:])}</code></small>"

    def pulled(self, what: str, done: int, total: int | None) -> None:
        self._show()
        if total and time.monotonic() - self._drawn > REFRESH:
            self._drawn = time.monotonic()
            self.bar.value = min(done / total, 1.0)
            self.bar.description = f"{100 * done // total}%"
            self.step.value = html.escape(f"{what}: {done / 2**20:.0f}/{total / 2**20:.0f} MiB")

    def end(self, text: str, ok: bool) -> None:
        self.bar.value = 1.0 if ok else self.bar.value
        self.bar.bar_style = "success" if ok else "danger"
        self.bar.description = "Done" if ok else "Stopped"
        self.line.value = ""
        super().end(text, ok)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def _step_label(event: BuildEvent) -> str:
    text = event.text
    if text.startswith("#") and "] " in text:  # BuildKit's "#7 [2/5] RUN ...": drop the id
        text = text.split("] ", 1)[1]
    where = f"[{event.step}/{event.total}] " if event.step and event.total else ""
    return where + text


def cell_progress(shell: Any, say: Callable[[str], None] = print) -> CellProgress:
    """The progress display for the running cell of ``shell``."""
    if widgets_shown(shell):
        try:
            return WidgetProgress(say)
        except Exception:  # a broken ipywidgets: the lines still tell the user
            pass
    return TextProgress(say)
