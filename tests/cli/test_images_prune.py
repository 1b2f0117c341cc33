"""`nbcontainers images prune` against the in-memory runtime: which images it picks, what it
keeps and why, confirmation, --dry-run, --json, and engines that can't list images."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result

from nbcontainers.catalog.build import stale_images
from nbcontainers.catalog.entries import load_catalog
from nbcontainers.cli import main
from nbcontainers.errors import ContainerConflict, Unsupported
from nbcontainers.labels import SERVING_MARK, SNAPSHOT_MARK, SOURCE_HASH
from nbcontainers.runtimes import get_runtime as load  # the real loader, before any patch
from nbcontainers.runtimes.base import ContainerSpec
from nbcontainers.runtimes.fake import FakeRuntime
from nbcontainers.runtimes.kubernetes.client import ClusterImages

OLD = "nbcontainers/python:0ld0ld0ld0ld"
BUILT = {SOURCE_HASH: "0ld"}


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, fake_runtime: FakeRuntime) -> FakeRuntime:
    """The fake with the catalog images (built by us: labelled), one stale image of ours, and
    images that prune must leave alone."""
    for image in load_catalog().values():
        fake_runtime.add_image(image.ref, {SOURCE_HASH: "now"})
    fake_runtime.add_image(OLD, BUILT)
    fake_runtime.add_image("nbcontainers/python:notours0000")  # no label: not built by us
    fake_runtime.add_image("someone/else:1", BUILT)  # labelled, but not our repository
    fake_runtime.add_image("nbcontainers/snap:1", {**BUILT, SNAPSHOT_MARK: "1"})
    fake_runtime.add_image("nbcontainers/serving-m:1", {**BUILT, SERVING_MARK: "1"})
    monkeypatch.setattr("nbcontainers.runtimes.get_runtime", lambda name="docker": fake_runtime)
    return fake_runtime


def cli(*args: str, answer: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=answer)


def test_only_our_unreferenced_images_are_chosen(engine: FakeRuntime) -> None:
    used = "nbcontainers/pytorch-cpu:st0pped00000"
    engine.add_image(used, BUILT)
    cid = engine.run(ContainerSpec(image=used, command=("true",)))
    engine.exit(cid, 0)  # a stopped container still holds its image
    engine.add_image("nbcontainers/pytorch-cpu:0ld0ld0ld0ld", BUILT)
    plan = stale_images(engine, load_catalog())
    assert [i.tags for i in plan.remove] == [(OLD,), ("nbcontainers/pytorch-cpu:0ld0ld0ld0ld",)]
    why = {i.tags[0]: reason for i, reason in plan.kept}
    assert why[used] == "used by a container"
    assert why["someone/else:1"] == "also tagged outside nbcontainers/"
    assert (
        why["nbcontainers/snap:1"]
        == why["nbcontainers/serving-m:1"]
        == ("a snapshot or serving image")
    )
    assert all(why[image.ref] == "in the catalog" for image in load_catalog().values())
    assert "nbcontainers/python:notours0000" not in why  # never even considered


def test_an_untagged_image_of_ours_goes_only_with_a_full_prune(
    engine: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    untagged = replace(engine.add_image("nbcontainers/python:rebuilt0000", BUILT), tags=())
    listed = engine.images
    # As engines answer: an untagged image has no tag in any repository.
    extra = lambda repository=None, **kw: [] if repository else [untagged]  # noqa: E731
    monkeypatch.setattr(engine, "images", lambda **kw: [*listed(**kw), *extra(**kw)])
    assert untagged in stale_images(engine, load_catalog()).remove
    catalog = load_catalog()
    assert untagged not in stale_images(engine, catalog, [catalog["python"]]).remove


def test_prune_asks_then_removes_and_reports_space(engine: FakeRuntime) -> None:
    refused = cli("images", "prune", answer="n\n")
    assert refused.exit_code == 1 and OLD in refused.output
    assert engine.image_info(OLD) is not None  # "no" removed nothing
    done = cli("images", "prune", answer="y\n")
    assert done.exit_code == 0, done.output
    assert f"removed {OLD} (1 MB)" in done.output and "freed up to 1 MB" in done.output
    assert "kept nbcontainers/snap:1: a snapshot or serving image" in done.output
    assert engine.image_info(OLD) is None
    for ref in [i.ref for i in load_catalog().values()] + ["nbcontainers/python:notours0000"]:
        assert engine.image_info(ref) is not None
    again = cli("images", "prune", "-y")
    assert again.exit_code == 0 and "no stale nbcontainers image" in again.output


def test_dry_run_and_json(engine: FakeRuntime) -> None:
    dry = cli("images", "prune", "--dry-run")
    assert dry.exit_code == 0 and f"would remove {OLD}" in dry.output
    assert engine.image_info(OLD) is not None
    done = cli("images", "prune", "--dry-run", "--json")
    report = json.loads(done.output)
    assert report["dry_run"] and [r["tags"] for r in report["removed"]] == [[OLD]]
    assert report["size"] == 1 << 20 and engine.image_info(OLD) is not None
    assert {"id", "tags", "why"} <= set(report["kept"][0])
    asked = cli("images", "prune", "--json")
    assert asked.exit_code == 2 and "add -y" in asked.output and engine.image_info(OLD)


def test_names_limit_prune_to_those_images(engine: FakeRuntime) -> None:
    other = "nbcontainers/pytorch-cpu:0ld0ld0ld0ld"
    engine.add_image(other, BUILT)
    done = cli("images", "prune", "-y", "pytorch-cpu")
    assert done.exit_code == 0 and f"removed {other}" in done.output
    assert engine.image_info(other) is None and engine.image_info(OLD) is not None
    typo = cli("images", "prune", "-y", "pyton")
    assert typo.exit_code == 2 and "python" in typo.output


def test_an_engine_refusal_is_reported_as_kept(
    engine: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(ref: str) -> None:
        raise ContainerConflict("image is being used by running container abc")

    monkeypatch.setattr(engine, "remove_image", refuse)
    done = cli("images", "prune", "-y")
    assert done.exit_code == 0, done.output
    assert f"kept {OLD}: image is being used by running container abc" in done.output
    assert "no stale nbcontainers image" in done.output


class NoListing:
    """A third-party runtime written before the seam had ``images``."""

    def list(self, labels: object) -> list[object]:
        return []


def test_an_engine_that_cannot_list_images(
    engine: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbcontainers.runtimes as runtimes

    found = {"nolist": f"{__name__}:NoListing"}
    monkeypatch.setattr(runtimes, "available_runtimes", lambda: found)
    monkeypatch.setattr(runtimes, "get_runtime", lambda name="x": load("nolist"))
    assert isinstance(runtimes.get_runtime(), NoListing)  # the loader still loads it
    done = cli("images", "prune", "-y")
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "NoListing) can't list images" in done.output
    with pytest.raises(Unsupported, match="nodes"):
        ClusterImages().images()
