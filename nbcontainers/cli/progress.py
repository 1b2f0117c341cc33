"""Terminal progress for builds and pulls: a bar in a terminal, plain lines elsewhere."""

from __future__ import annotations

import re
import sys
from typing import TextIO

__all__ = ["BuildProgress", "PullProgress"]

_STEP = re.compile(r"^#\d+ \[(?:[\w-]+ )?(\d+)/(\d+)\] (.*)$")


def _bar(done: float, total: float, width: int = 28) -> str:
    filled = int(width * done / total) if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class BuildProgress:
    """Feed it BuildKit's plain output; in a terminal it draws one line with a step bar."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and not verbose
        self.step, self.total, self.label = 0, 0, ""

    def __call__(self, line: str) -> None:
        match = _STEP.match(line)
        if match:
            self.step, self.total = int(match.group(1)), int(match.group(2))
            self.label = match.group(3)[:60]
        if not self.tty:
            self.stream.write(line + "\n")
        elif match or not line.startswith("#"):
            if not line.startswith("#"):
                self.stream.write("\r\x1b[K" + line + "\n")
            self.stream.write(
                f"\r\x1b[K{_bar(self.step, self.total or 1)} step {self.step}/{self.total} "
                f"{self.label}"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


class PullProgress:
    """Callback for runtime.pull(): a byte bar in a terminal, a line per 10% elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_decile = -1

    def __call__(self, what: str, done: int, total: int | None) -> None:
        mib, tot = done / 2**20, (total or 0) / 2**20
        if self.tty:
            self.stream.write(f"\r\x1b[K{what} {_bar(done, total or 1)} {mib:.0f}/{tot:.0f} MiB")
        else:
            decile = int(10 * done / total) if total else 0
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(f"{what}: {mib:.0f}/{tot:.0f} MiB\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
