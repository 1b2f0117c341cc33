"""Completion and inspection while a container kernel is active: the local kernel's
``do_complete``/``do_inspect`` are patched to ask the container, and `%container <TAB>`
completes subcommands and names."""

from __future__ import annotations

from typing import Any

from ..catalog.entries import load_catalog
from .parser import SUBCOMMANDS
from .session import LOCAL_PREFIXES
from .state import NotebookState

__all__ = ["USE_FLAGS", "Completion"]

# `%container use NAME` takes these (the per-notebook resources, within the admin's policy).
USE_FLAGS = ["--cpus", "--gpus", "--mem"]


class Completion:
    """Installs itself into the local kernel (:meth:`patch`) and takes itself out again
    (:meth:`restore`); without a kernel (plain IPython) only `%container` completion works."""

    def __init__(self, state: NotebookState) -> None:
        self.state = state
        self._original_complete: Any = None
        self._original_inspect: Any = None

    def patch(self, kernel: Any) -> None:
        # ipykernel has no hook for this: its request handlers call these two methods.
        self._original_complete = kernel.do_complete
        self._original_inspect = kernel.do_inspect
        kernel.do_complete = self.do_complete
        kernel.do_inspect = self.do_inspect

    def restore(self, kernel: Any) -> None:
        if self._original_complete is not None:
            kernel.do_complete = self._original_complete
            kernel.do_inspect = self._original_inspect

    def do_complete(self, code: str, cursor_pos: int) -> Any:
        relay = self.state.active_relay()
        line = code[:cursor_pos].rsplit("\n", 1)[-1].lstrip()
        # `%container …` lines run locally, so they complete locally too.
        if relay is not None and relay.alive and not line.startswith(LOCAL_PREFIXES):
            try:
                return relay.complete(code, cursor_pos)
            except Exception as exc:
                self.state.shell.kernel.log.debug("container completion failed: %s", exc)
        return self._original_complete(code, cursor_pos)

    # Shift-Tab in the container's namespace; a failure (the kernel died) falls back to
    # the local answer instead of an empty tooltip.
    def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> Any:
        relay = self.state.active_relay()
        if relay is not None and relay.alive:
            try:
                return relay.inspect(code, cursor_pos, detail_level)
            except Exception as exc:
                self.state.shell.kernel.log.debug("container inspection failed: %s", exc)
        return self._original_inspect(code, cursor_pos, detail_level, omit_sections)

    def complete_magic(self, _shell: Any, event: Any) -> list[str]:
        """Tab completion for `%container …`: subcommands, then image/kernel names, then
        `use`'s resource flags."""
        words = event.line.split()
        at_new_word = event.line.endswith(" ")
        position = len(words) - (0 if at_new_word else 1)
        # Word 0 is "%container"; completing word 1 offers the subcommands.
        if position <= 1:
            return SUBCOMMANDS
        if words[1] in ("use",) and position == 2:
            return sorted(load_catalog())
        if words[1] == "use" and position >= 3:
            if words[position - 1] in (*USE_FLAGS, "--memory"):
                return []  # the flag's value is the user's to type
            used = {"--mem" if word == "--memory" else word for word in words[2:position]}
            return [flag for flag in USE_FLAGS if flag not in used]  # each flag once
        if words[1] in ("status", "stop", "restart", "logs") and position == 2:
            return sorted(self.state.relays)
        if words[1] == "push":
            return sorted(n for n in self.state.shell.user_ns if not n.startswith("_"))
        return []
