"""``missing_image`` for kernels started from the picker: the build's progress goes to the
server log, and a build longer than the start timeout fails the start with a clear message
while the build goes on for the next start."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from nbcontainers.catalog.entries import CatalogImage
from nbcontainers.errors import ImageMissing
from nbcontainers.kernels.images import ensure_image
from nbcontainers.runtimes.base import BuildCallback, BuildRequest, ImageInfo
from nbcontainers.runtimes.fake import FakeRuntime


class SlowRuntime(FakeRuntime):
    """A build that waits for the test to let it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        assert self.release.wait(10)
        return super().build(request, on_event)


def tiny(tmp_path: Path, name: str) -> CatalogImage:
    source = tmp_path / name
    source.mkdir()
    (source / "Dockerfile").write_text("FROM nbcontainers/base:bookworm\nRUN echo hi\n")
    return CatalogImage(name=name, ref=f"nbcontainers/{name}:1", display_name=name, source=source)


def test_the_server_log_shows_the_build_steps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, image = FakeRuntime(), tiny(tmp_path, "logged")
    log = logging.getLogger("test-images")
    with caplog.at_level(logging.INFO, logger="test-images"):
        ensure_image(engine, image, "build", log, wait=10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("Image nbcontainers/logged:1 is missing; building it now")
    assert "Building nbcontainers/logged:1: step 2/2 RUN echo hi" in lines
    assert lines[-1].startswith("Image nbcontainers/logged:1 is ready after")
    assert engine.image_info(image.ref) is not None


def test_a_build_longer_than_the_start_timeout_fails_the_start_clearly(tmp_path: Path) -> None:
    engine, image = SlowRuntime(), tiny(tmp_path, "slow")
    log = logging.getLogger("test-images")
    with pytest.raises(ImageMissing) as caught:
        ensure_image(engine, image, "build", log, wait=0.2)
    assert str(caught.value).startswith(
        "Image nbcontainers/slow:1 for kernel 'nbc-slow' is still being built ("
    )
    assert "Start the kernel again in a few minutes" in str(caught.value)
    assert "startup_timeout (now 0 s)" in str(caught.value)
    engine.release.set()
    ensure_image(engine, image, "build", log, wait=10)  # the next start waits for that build
    assert len(engine.builds) == 1 and engine.image_info(image.ref) is not None


def test_a_failed_background_build_is_reported_at_the_next_start(tmp_path: Path) -> None:
    engine, image = SlowRuntime(), tiny(tmp_path, "broken")
    (image.source / "Dockerfile").write_text("RUN true\n")  # type: ignore[operator]
    log = logging.getLogger("test-images")
    with pytest.raises(ImageMissing, match="still being built"):
        ensure_image(engine, image, "build", log, wait=0.1)
    engine.release.set()
    with pytest.raises(Exception, match="the Dockerfile has no FROM"):
        ensure_image(engine, image, "build", log, wait=10)
    (image.source / "Dockerfile").write_text("FROM x\n")  # type: ignore[operator]
    ensure_image(engine, image, "build", log, wait=10)  # fixed: a fresh build
    assert engine.image_info(image.ref) is not None


def test_error_policy_still_fails_at_once_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(ImageMissing, match="nbcontainers images build quick"):
        ensure_image(FakeRuntime(), tiny(tmp_path, "quick"), "error", logging.getLogger("t"))


class HubRuntime(FakeRuntime):
    """An engine that knows where its images come from (as rootless Podman on a hub does)."""

    def missing_image_advice(self, ref: str, kernel: str) -> str | None:
        return f"{ref} for {kernel}: ask your admin"


def test_the_engines_own_advice_replaces_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(ImageMissing, match=r"^nbcontainers/hubbed:1 for nbc-hubbed: ask your ad"):
        ensure_image(HubRuntime(), tiny(tmp_path, "hubbed"), "error", logging.getLogger("t"))


def test_podmans_advice_comes_from_the_users_storage_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from nbcontainers.runtimes.base import missing_image_advice
    from nbcontainers.runtimes.podman.runtime import PodmanRuntime

    conf = tmp_path / "containers" / "storage.conf"
    conf.parent.mkdir()
    conf.write_text('[storage.options]\nadditionalimagestores = ["/var/lib/nbcontainers/s"]\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    engine = PodmanRuntime(base_url="unix:///nonexistent.sock")
    facts = replace(FakeRuntime().ping(), name="podman", rootless=True)
    monkeypatch.setattr(engine, "ping", lambda: facts)
    said = missing_image_advice(engine, "nbcontainers/python:x", "nbc-python")
    assert said is not None and "shared image store (/var/lib/nbcontainers/s)" in said
    rootful = PodmanRuntime(base_url="unix:///nonexistent.sock")
    monkeypatch.setattr(rootful, "ping", lambda: replace(facts, rootless=False))
    assert missing_image_advice(rootful, "nbcontainers/python:x", "nbc-python") is None
    assert missing_image_advice(FakeRuntime(rootless=True), "x", "nbc-x") is None
