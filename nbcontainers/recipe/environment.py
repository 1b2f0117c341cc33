"""A captured Python environment as values: its distributions and the facts around them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalog.entries import canonical_name

__all__ = ["Package", "Snapshot"]


@dataclass(frozen=True)
class Package:
    """One installed distribution and how to get it back."""

    name: str
    version: str
    kind: str  # index, vcs, url, local, editable, conda, system
    source: str = ""  # VCS URL@commit, archive URL, local path, conda channel::name=version=build
    requires: tuple[str, ...] = ()
    top_level: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonical_name(self.name)


@dataclass(frozen=True)
class Snapshot:
    """What a capture found: Python, distributions, apt packages, history and facts."""

    python: str
    packages: tuple[Package, ...]
    image: str | None = None
    apt: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    torch: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
