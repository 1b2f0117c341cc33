"""Container runtimes behind one Protocol: the one registry that finds them by name, and the one
rule for what a process keeps of them.

The registry is the entry point group ``nbcontainers.runtimes``: nbcontainers' own engines are
registered there by its installation (pyproject.toml), another package adds one the same way.

The caching rule (nothing else in the package keeps runtimes or engine facts):

- a runtime object is kept by :func:`shared_runtime`: one per registered name and the engine
  that name means now (``auto``: :func:`choose_engine`; else the ``DOCKER_HOST`` it would
  read), for the life of the process. Whatever starts kernels, checks images or answers a
  notebook again and again uses it; :func:`get_runtime` makes a new one for one-off use (a CLI
  command, a test) and keeps nothing;
- an engine's facts are kept by :func:`engine_facts`: ``ping()``'s answer, per runtime object,
  for :data:`FACTS_TTL` seconds (``fresh=True`` asks again, after a failure that may mean the
  engine changed). ``ping()`` itself always asks the engine: it is the health check.

Not an engine's and so outside the rule: which build client this host has
(``buildkit.find_builder``), found once per process like any installed program.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import weakref
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from .base import (
    BuildEvent,
    BuildRequest,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    GPURequest,
    ImageInfo,
    Mount,
    Placement,
    parse_placement,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildEvent",
    "BuildRequest",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "ContainerStats",
    "EngineFacts",
    "ExecResult",
    "GPURequest",
    "ImageInfo",
    "Mount",
    "Placement",
    "available_runtimes",
    "choose_engine",
    "engine_facts",
    "get_runtime",
    "parse_placement",
    "shared_runtime",
]

ENTRY_POINT_GROUP = "nbcontainers.runtimes"
AUTO = "auto"
FACTS_TTL = 60.0  # seconds engine_facts reuses a runtime's facts


def available_runtimes() -> dict[str, str]:
    """Runtime name -> ``module:Class`` for every registered engine."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def choose_engine() -> tuple[str, str | None, str]:
    """What ``runtime = "auto"`` means here: (runtime name, endpoint or None, why).

    An explicit ``DOCKER_HOST`` wins; else a non-root user's own rootless engine (rootless
    Docker's socket where it runs, else Podman, started on demand); else the system engine.
    """
    host = os.environ.get("DOCKER_HOST")
    if host:
        kind = "podman" if "podman" in host else "docker"
        return kind, host, "DOCKER_HOST is set"
    if os.getuid() != 0:
        run_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        rootless_docker = Path(run_dir) / "docker.sock"
        if rootless_docker.is_socket():
            return "docker", f"unix://{rootless_docker}", "your rootless Docker engine"
        if shutil.which("podman"):
            return "podman", None, "your rootless Podman engine"
    return "docker", None, "the system engine"


def get_runtime(name: str = AUTO) -> ContainerRuntime:
    """A new runtime of the engine registered as ``name`` (``auto``: see choose_engine)."""
    import importlib

    endpoint = None
    if name == AUTO:
        name, endpoint, _why = choose_engine()
    known = available_runtimes()
    if name not in known:
        # Our own engines come with the installation: a bare checkout on sys.path has none.
        installed = "" if "docker" in known else " (nbcontainers is not installed: `pip install`)"
        raise ConfigError(
            f"Unknown runtime {name!r}.{did_you_mean(name, [*known, AUTO])} "
            f"Known runtimes: {', '.join(sorted([*known, AUTO]))}{installed}; another package "
            f"adds one under the entry point group {ENTRY_POINT_GROUP!r}."
        )
    module_name, _, attr = known[name].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Runtime {name!r} ({known[name]}) can't be loaded: {exc}") from None
    runtime: ContainerRuntime = factory(endpoint) if endpoint else factory()
    return runtime


_SHARED: dict[tuple[str, str | None, str | None], ContainerRuntime] = {}
_SHARED_LOCK = threading.Lock()


def shared_runtime(name: str = AUTO) -> ContainerRuntime:
    """This process's runtime for ``name``, made on first use and kept while ``name`` keeps
    meaning the same engine. Kernel starts share it: a new one costs ~10 ms before its first
    call (finding the registered engines, the SDK asking the engine's API version), and its
    connection to the engine stays open between starts."""
    # A notebook may change DOCKER_HOST between two starts: that is another engine.
    key = (
        (name, *choose_engine()[:2])
        if name == AUTO
        else (name, os.environ.get("DOCKER_HOST"), None)
    )
    with _SHARED_LOCK:
        runtime = _SHARED.get(key)
        if runtime is None:
            runtime = _SHARED[key] = get_runtime(name)
        return runtime


# id(runtime) -> (a weak reference to it, when asked, its facts). By id and weakly, because a
# runtime may be unhashable (a dataclass) and must not be kept alive by its facts.
_FACTS: dict[int, tuple[weakref.ref[Any], float, EngineFacts]] = {}
_FACTS_LOCK = threading.Lock()


def engine_facts(runtime: ContainerRuntime, fresh: bool = False) -> EngineFacts:
    """``runtime.ping()``'s answer, asked at most every :data:`FACTS_TTL` seconds for one
    runtime object (``fresh``: now). Every kernel start needs them, and two round trips
    (~10 ms) each time would be the start's largest engine cost; what they say (version,
    limits, GPU mode) changes only when the engine is reconfigured."""
    with _FACTS_LOCK:
        kept = _FACTS.get(id(runtime))
    if kept and kept[0]() is runtime and not fresh and time.monotonic() - kept[1] < FACTS_TTL:
        return kept[2]
    facts = runtime.ping()  # outside the lock: a dead engine takes seconds to say so
    with _FACTS_LOCK:
        for key in [k for k, v in _FACTS.items() if v[0]() is None]:
            del _FACTS[key]  # runtimes gone since
        _FACTS[id(runtime)] = (weakref.ref(runtime), time.monotonic(), facts)
    return facts
