"""Serving images an export built, as the engine lists them: what tests compare before and
after, so none is left behind."""

from __future__ import annotations

import subprocess

from nbcontainers.serving.render import MARKER


def serving_images() -> dict[str, set[str]]:
    """Image id -> its tags, for every image an export built (untagged ones too)."""
    done = subprocess.run(
        [
            "docker",
            "images",
            "--no-trunc",
            "--filter",
            f"label=io.nbcontainers.export={MARKER}",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    images: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        image_id, _, ref = line.partition(" ")
        images.setdefault(image_id, set())
        if "<none>" not in ref:
            images[image_id].add(ref)
    return images


def remove_new(before: dict[str, set[str]]) -> list[str]:
    """Remove every serving image and tag that is not in ``before``; say which."""
    left = []
    for image_id, refs in serving_images().items():
        new = refs - before.get(image_id, set()) if image_id in before else refs | {image_id}
        for ref in sorted(new, key=lambda r: r == image_id):  # tags first, then the image
            subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True, check=False)
            left.append(ref)
    return left
