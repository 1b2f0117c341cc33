"""What ``hub setup`` reports: the changes it made and the problems left, each with its fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Echo", "SetupResult"]

Echo = Callable[[str], None]


@dataclass
class SetupResult:
    """What setup found: ``problems`` left for the admin (each with the command that fixes
    it), ``changes`` it made. Exit status 0 only when no problem is left."""

    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0
