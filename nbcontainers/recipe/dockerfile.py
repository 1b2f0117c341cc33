"""The Dockerfile lines snapshots and serving images share: the Debian system layer in its
three forms and the pip install step fed by build secrets.

Every line here is part of a user-visible Dockerfile: tests pin them byte for byte, so a change
shows up as a golden-file diff.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_BASE",
    "LOCK_IN_IMAGE",
    "debian_layer",
    "pip_install_step",
    "serving_build_layer",
    "serving_runtime_layer",
    "snapshot_system_layer",
]

DEFAULT_BASE = (
    "debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251"
)
LOCK_IN_IMAGE = "/opt/nbc/requirements.lock"

_APT_LISTS = "/var/lib/apt/lists/*"


def debian_layer(
    packages: Sequence[str],
    steps: Sequence[str],
    *,
    remove: Sequence[str] = (_APT_LISTS,),
    also_remove: str = "",
) -> list[str]:
    """One ``RUN`` that installs Debian ``packages`` without recommends, removes ``remove``
    (apt's lists at least: dead weight in a layer) and runs ``also_remove`` on that same
    line, then runs ``steps``.

    Each step is one Dockerfile line of shell (it may hold several ``;``-joined commands, or
    a ``\\``-continued command); the lines are chained with ``; \\`` so that a failure
    anywhere fails the build (``set -e``).
    """
    removal = f"rm -rf {' '.join(remove)}" + (f"; {also_remove}" if also_remove else "")
    # In one RUN with the update: a cached `apt-get update` layer would go stale.
    commands = [f"apt-get install -y --no-install-recommends {' '.join(packages)}", removal]
    commands += steps
    lines = ["RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \\"]
    lines += [f"    {c}; \\" for c in commands[:-1]]
    lines.append(f"    {commands[-1]}")
    # One Dockerfile line per item, also for a step that continues over two.
    return [part for line in lines for part in line.split("\n")]


def snapshot_system_layer(extra_apt: Sequence[str]) -> list[str]:
    """Debian's python3 and pip (made installable into), the apt packages the kernel added to
    its image, and the ``nbc`` user (uid 1000) whose home the kernel may write as any uid."""
    return debian_layer(
        ["ca-certificates", "python3", "python3-pip", *extra_apt],
        [
            "useradd --uid 1000 --user-group --home-dir /home/nbc --shell /bin/bash nbc",
            "mkdir -p /home/nbc /opt/nbc/wheels; chown nbc:nbc /home/nbc; chmod 1777 /home/nbc",
        ],
        # Debian marks its python3 externally managed; this image is ours to install into.
        also_remove="rm -f /usr/lib/python3*/EXTERNALLY-MANAGED",
    )


def serving_build_layer(debian_python: bool) -> list[str]:
    """The serving image's build stage: a virtualenv at /opt/venv. Debian's python3 where
    the model's Python is bookworm's, else the ``python:X.Y-slim`` base brings its own."""
    apt = ["ca-certificates", "python3", "python3-venv"] if debian_python else ["ca-certificates"]
    return debian_layer(apt, ["python3 -m venv /opt/venv"])


def serving_runtime_layer(debian_python: bool) -> list[str]:
    """The serving image's runtime stage: tini as PID 1, apt's caches and logs gone too,
    and a ``nbc`` user (uid 1000) with no home of its own (the root filesystem is read-only)."""
    apt = ["ca-certificates", "python3", "tini"] if debian_python else ["ca-certificates", "tini"]
    return debian_layer(
        apt,
        [
            "useradd --uid 1000 --user-group --no-create-home --home-dir /tmp \\\n"
            "        --shell /usr/sbin/nologin nbc"
        ],
        remove=(_APT_LISTS, "/var/cache/apt/*.bin", "/var/log/apt/*", "/var/log/dpkg.log"),
    )


def pip_install_step(
    pip: str, extra_index: str | None, then: str = "", lock: str = LOCK_IN_IMAGE
) -> list[str]:
    """Dockerfile lines that install ``lock`` with ``pip`` the way
    :func:`nbcontainers.catalog.build.build_image` feeds a build: pip.conf and CA bundle as the
    BuildKit secrets ``pipconf`` / ``pipcert`` (never in a layer), wheels from the context's
    ``.nbc/wheels``, ``EXTRA_INDEX_URL`` as a build ARG (empty skips it). ``then`` runs after
    the install in the same layer."""
    # An ARG, not a fixed flag: a build with the local-label wheel vendored passes it empty.
    lines = [f"ARG EXTRA_INDEX_URL={extra_index}"] if extra_index else []
    index_arg = ' ${EXTRA_INDEX_URL:+--extra-index-url "$EXTRA_INDEX_URL"}' if extra_index else ""
    install = (
        f"    {pip} install --no-cache-dir --no-deps{index_arg} "
        f"--find-links /tmp/nbc-wheels -r {lock}"
    )
    # --no-deps: the lock is the whole closure, so pip must not resolve anything on its own.
    lines += [
        "RUN --mount=type=secret,id=pipconf --mount=type=secret,id=pipcert \\",
        "    --mount=type=bind,source=.nbc/wheels,target=/tmp/nbc-wheels \\",
        "    set -eu; \\",
        # A given pip.conf names its own CA bundle; without one, the bundle alone is used.
        "    if [ ! -e /run/secrets/pipconf ] && [ -s /run/secrets/pipcert ]; then "
        "export PIP_CERT=/run/secrets/pipcert; fi; \\",
        "    PIP_CONFIG_FILE=/run/secrets/pipconf PIP_ROOT_USER_ACTION=ignore "
        "PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        install + ("; \\" if then else ""),
    ]
    if then:
        lines.append(f"    {then}")
    return lines
