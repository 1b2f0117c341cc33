"""The pieces a cancelled build is undone with: the client stopped (SIGINT, then SIGKILL),
the tag put back as it was, a Podman service's step processes found."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from nbcontainers.runtimes.base import ImageInfo
from nbcontainers.runtimes.buildkit import stop_client, undo_partial_tag
from nbcontainers.runtimes.fake import FakeRuntime
from nbcontainers.runtimes.podman.build import step_processes


def test_a_tag_that_appeared_is_removed() -> None:
    engine = FakeRuntime()
    with pytest.raises(KeyboardInterrupt), undo_partial_tag(engine, "me/new:1", _no_retag):
        engine.add_image("me/new:1")  # exported just before the cancel reached the engine
        raise KeyboardInterrupt
    assert engine.image_info("me/new:1") is None


def test_a_tag_that_moved_goes_back_and_one_left_alone_stays() -> None:
    old = ImageInfo("sha256:old", ("me/img:1",), (), {}, 1, "")
    new = ImageInfo("sha256:new", ("me/img:1",), (), {}, 1, "")

    answers = [old, new]  # before the build, after it

    class Moved(FakeRuntime):
        def image_info(self, ref: str) -> ImageInfo | None:
            return answers.pop(0) if answers else None

    engine, retagged = Moved(), []
    with (
        pytest.raises(RuntimeError),
        undo_partial_tag(
            engine, "me/img:1", lambda image_id, ref: retagged.append((image_id, ref))
        ),
    ):
        raise RuntimeError("the build failed")
    assert retagged == [("sha256:old", "me/img:1")]

    kept = FakeRuntime(images=["me/kept:1"])
    with pytest.raises(KeyboardInterrupt), undo_partial_tag(kept, "me/kept:1", _no_retag):
        raise KeyboardInterrupt  # cancelled before the engine tagged anything
    assert kept.image_info("me/kept:1") is not None


def _no_retag(image_id: str, ref: str) -> None:
    raise AssertionError(f"nothing to put back, yet asked to tag {image_id} as {ref}")


def test_a_client_that_ignores_sigint_is_killed() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    started = time.monotonic()
    stop_client(stubborn, grace=0.3)
    assert stubborn.returncode == -9 and time.monotonic() - started < 10
    stubborn.stdout.close()


def test_step_processes_are_found_by_the_working_containers_hostname() -> None:
    cid = "abcdef123456" + "0" * 52
    step = subprocess.Popen(
        ["sh", "-c", "sleep 60 & wait"], env={**os.environ, "HOSTNAME": cid[:12]}
    )
    try:
        deadline = time.monotonic() + 5
        found: list[int] = []
        while len(found) < 2 and time.monotonic() < deadline:  # the shell and its sleep
            found = step_processes({cid})
            time.sleep(0.05)
        assert step.pid in found and len(found) == 2
        assert step_processes({"f" * 64}) == []
    finally:
        step.kill()
        step.wait()
        for pid in step_processes({cid}):
            os.kill(pid, 9)
