"""One error tree for nbcontainers; every message says what happened and what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BuildError",
    "ConfigError",
    "ContainerConflict",
    "ContainerCrashed",
    "ContainerNotFound",
    "EngineUnavailable",
    "ExportError",
    "GPUUnavailable",
    "ImageMissing",
    "NbcontainersError",
    "RuntimeFailure",
    "SnapshotError",
    "UnknownImage",
    "Unsupported",
    "did_you_mean",
]


def did_you_mean(word: str, possibilities: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" (or a short list) for close matches, else ""."""
    choices = sorted(set(possibilities))
    scored = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in choices), reverse=True
    )
    # Offer the clear winner alone; near-ties (within 0.05 of the best) together.
    close = [c for r, c in scored if r >= 0.5 and r >= scored[0][0] - 0.05][:3] if scored else []
    if not close:
        # Prefix/substring matches catch "torch" -> "pytorch-cpu" that ratio misses.
        close = [c for c in choices if word and (word in c or c in word)][:3]
    if not close:
        return ""
    if len(close) == 1:
        return f" Did you mean {close[0]!r}?"
    return " Did you mean one of: " + ", ".join(repr(c) for c in close) + "?"


class NbcontainersError(Exception):
    """Base of every error nbcontainers raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it.
    """

    exit_code = 1


class ConfigError(NbcontainersError, ValueError):
    """A kernelspec, traitlets or catalog setting is invalid."""

    exit_code = 9  # 2 is click's: a command line it could not parse


class UnknownImage(ConfigError, KeyError):
    """An image name is not in the catalog."""

    exit_code = 2  # a name mistyped on the command line, like any bad argument

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        super().__init__(
            f"Unknown image {name!r}.{did_you_mean(name, known)} "
            f"Known images: {', '.join(known) or '(none)'}. "
            "Run `nbcontainers images list` to see them, or add your own to "
            "~/.config/nbcontainers/images.json."
        )
        self.name = name

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class EngineUnavailable(NbcontainersError):
    """No container engine answers."""

    exit_code = 3


class ImageMissing(NbcontainersError):
    """The image for a kernel is not present locally and will not be fetched implicitly."""

    exit_code = 4


class BuildError(NbcontainersError):
    """An image build failed. ``status`` is the builder's exit status and ``log_tail`` its last
    lines of output, where a builder ran."""

    exit_code = 5

    def __init__(self, message: str, *, status: int | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.log_tail = log_tail


class GPUUnavailable(NbcontainersError):
    """A GPU image was asked for where no usable GPU (or driver) is."""

    exit_code = 6


class RuntimeFailure(NbcontainersError):
    """The container engine refused an operation."""


class ContainerConflict(RuntimeFailure):
    """A container name is already taken (another start created it a moment ago)."""


class ContainerNotFound(RuntimeFailure):
    """An operation needs a container that does not exist (any more)."""


class Unsupported(RuntimeFailure):
    """The engine can't do what was asked (a limit it can't enforce, GPUs it can't hand
    out); the message names the missing piece and the fix."""


class ContainerCrashed(NbcontainersError):
    """A kernel container exited on its own; the message carries exit code, OOM flag, log tail."""


class SnapshotError(NbcontainersError):
    """The environment can't be captured or written as a reproducible snapshot; the message
    says why and what to do."""

    exit_code = 7


class ExportError(NbcontainersError):
    """A model can't be exported, or its serving image failed its smoke test."""

    exit_code = 8
