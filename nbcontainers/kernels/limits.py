"""Resource limits as the engine reads them: sizes, CPU counts and process caps checked and
put in one form every engine client parses alike, and the values an engine would read as
"no limit at all" refused, with or without an admin's policy.

Docker (and Podman's compatible API) reads a memory limit of 0, a NanoCPUs of 0, a pids
limit of 0 or -1 and a tmpfs ``size=0`` as *unlimited*; a memory limit below 6 MiB or a CPU
limit below 0.01 is refused by the engine or rounds to nothing on the way there. A setting
that would reach the engine as one of those is a ConfigError naming the setting, never a
kernel without the limit it seemed to ask for.
"""

from __future__ import annotations

import math
import re

from ..errors import ConfigError

__all__ = [
    "MIN_MEMORY",
    "MIN_NANO_CPUS",
    "MIN_TMPFS",
    "canonical_size",
    "checked_cpus",
    "checked_pids",
    "checked_size",
    "size_bytes",
]

MIN_MEMORY = 6 << 20  # Docker's own minimum memory limit ("Minimum memory limit allowed is 6MB")
MIN_NANO_CPUS = 10_000_000  # 0.01 CPU: Docker's smallest CPU limit
MIN_TMPFS = 1 << 20  # /dev/shm and /home/nbc: a tmpfs of size 0 is an unlimited tmpfs
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?")


def size_bytes(size: str) -> int:
    """Docker-style sizes: "512m", "2g", "1.5g", "1024" (bytes); a ConfigError otherwise."""
    match = _SIZE_RE.fullmatch(str(size).strip().lower())
    if not match:
        raise ConfigError(f"Invalid size {size!r}: use a number with k, m, g or t, e.g. '16g'.")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def canonical_size(count: int) -> str:
    """``count`` bytes as a whole number of the largest unit that divides it ("2g", "1536m",
    "4097"): what every engine client here (docker-py, Swarm, Kubernetes quantities, the fake
    engine) reads as the same number, unlike "1.5g" or "1t"."""
    for suffix in ("g", "m", "k"):
        if count % _UNITS[suffix] == 0:
            return f"{count // _UNITS[suffix]}{suffix}"
    return str(count)


def checked_size(setting: str, value: str, minimum: int, what: str) -> str:
    """``value`` of ``setting`` in canonical form; below ``minimum`` (zero and negative
    included) it is refused: the engine reads it as ``what`` ("no memory limit")."""
    text = str(value).strip()
    if text.startswith("-"):
        raise ConfigError(
            f"{setting}={value!r} is negative, which the engine reads as {what}. Ask for a "
            f"size of at least {canonical_size(minimum)}, e.g. {setting}='2g', or leave it unset."
        )
    try:
        count = size_bytes(text)
    except ConfigError as exc:
        raise ConfigError(f"{setting}={value!r}: {exc}") from None
    if count < minimum:
        raise ConfigError(
            f"{setting}={value!r} is {count} bytes: the engine reads that as {what} (or "
            f"refuses it). Ask for at least {canonical_size(minimum)}, e.g. {setting}='2g', "
            "or leave it unset."
        )
    return canonical_size(count)


def checked_cpus(cpus: float) -> int | None:
    """The ``cpus`` setting as the engine's NanoCPUs; 0 is unset (None). A value that is not
    a finite number, is negative, or rounds below 0.01 CPU is refused: NanoCPUs of 0 is no
    CPU limit at all."""
    if cpus == 0:
        return None
    nano = cpus * 1e9
    # inf and nan compare false with everything: refused explicitly, as is a product too big.
    if not math.isfinite(nano) or nano < MIN_NANO_CPUS or int(nano) < MIN_NANO_CPUS:
        raise ConfigError(
            f"cpus={cpus!r} would reach the engine as no CPU limit (or be refused by it). "
            f"Ask for at least {MIN_NANO_CPUS / 1e9:g} CPUs, e.g. cpus=2, or leave it unset (0)."
        )
    return int(nano)


def checked_pids(pids: int) -> int:
    """The ``pids_limit`` setting; 0 and negative numbers mean no process limit to the engine,
    so they are refused."""
    if isinstance(pids, bool) or not isinstance(pids, int) or pids <= 0:
        raise ConfigError(
            f"pids_limit={pids!r} means no process limit to the engine. Ask for a positive "
            "number, e.g. pids_limit=4096 (the default)."
        )
    return pids
