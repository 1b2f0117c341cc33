"""The one warming loop (kernels/warmup.py) that a server's pool_warm and a notebook's
NBCONTAINERS_POOL_WARM both go through: what it warms, skips and logs, and the notebook's
use of it from a thread (relay/session.py), without a kernel or an engine."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from nbcontainers.kernels import warmup
from nbcontainers.relay.session import RelaySession


def test_the_loop_warms_what_has_a_pool_and_logs_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def size(n: int | None) -> int | None:
        return n

    async def broken() -> int | None:
        raise RuntimeError("no engine")

    starts: list[tuple[str, Any]] = [
        ("a", lambda: size(2)),
        ("quiet", lambda: size(None)),
        ("none", lambda: size(0)),
        ("bad", broken),
        ("b", lambda: size(1)),
    ]
    with caplog.at_level(logging.INFO, logger="nbcontainers"):
        warmed = asyncio.run(warmup.warm(starts, wait=False))
    assert warmed == ["a", "b"]
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "nbcontainers: pool_warm lists none, but its pool_size is 0: nothing to fill",
        "nbcontainers: cannot warm the kernel pool for bad: no engine",
    ]


def test_a_notebook_warms_from_a_thread_then_says_done(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    done = threading.Event()

    def start() -> int:
        ran.append(threading.current_thread().name)
        return 1

    with caplog.at_level(logging.WARNING, logger="nbcontainers"):
        thread = warmup.warm_in_background([("a", start)], done=done.set)
        thread.join(timeout=30)
    assert done.is_set() and thread.name == "nbc-pool-warm" and thread.daemon
    assert len(ran) == 1 and ran[0] != threading.main_thread().name
    assert caplog.records == []


def test_the_notebook_skips_images_without_a_pool_or_not_on_the_engine(
    tmp_path: Path, fake_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is built behind the user's back, and no kernel starts for a pool of 0."""
    from nbcontainers.catalog.entries import load_catalog

    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="auto": fake_runtime)
    started: list[str] = []
    monkeypatch.setattr(
        "nbcontainers.relay.session.make_manager",
        lambda name, spec: started.append(name) or pytest.fail("no kernel may start"),
    )
    fake_runtime.remove_image(load_catalog()["pytorch-cpu"].ref)
    session = RelaySession(lambda: str(tmp_path))
    done = threading.Event()
    monkeypatch.setenv("NBCONTAINERS_POOL_SIZE", "0")
    session.warm(["python"], str(tmp_path), done=done.set).join(timeout=30)
    monkeypatch.setenv("NBCONTAINERS_POOL_SIZE", "1")
    session.warm(["pytorch-cpu"], str(tmp_path), done=done.set).join(timeout=30)
    assert done.is_set() and started == []
